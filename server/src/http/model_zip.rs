//! `GET /runs/{id}/model.zip`: a finished run's fine-tuned model, zipped.

use super::{AppState, error_response};
use app::auth::ssr::caller_of;
use app::error::AppError;
use app::runs::RunStatus;
use app::runs::queue::RunQueue;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

/// `GET /runs/{id}/model.zip`: a finished run's fine-tuned model as an HF directory
/// (config.json with id2label, model.safetensors, tokenizer.json), zipped. The zip is
/// written once beside the model and streamed from disk in chunks, so a class downloading
/// at once holds no model in memory.
pub(super) async fn download_model(
    State(state): State<AppState>,
    session: Session,
    Path(run_id): Path<i64>,
) -> Response {
    let result = async {
        let caller = caller_of(&session, &state.pool).await?;
        app::runs::access::check_access(&state.pool, &caller, run_id).await?;
        let status = RunQueue::new(state.pool.clone()).status(run_id).await?;
        let dir = state.run_env.model_dir(run_id);
        if status != Some(RunStatus::Succeeded) || !dir.is_dir() {
            return Err(AppError::NotFound(
                "This run has no finished model to download.".into(),
            ));
        }
        let zip_path = dir.with_extension("zip");
        if !zip_path.is_file() {
            let root = format!("jigsaw-run-{run_id}");
            let target = zip_path.clone();
            tokio::task::spawn_blocking(move || write_zip(&dir, &root, &target))
                .await
                .map_err(AppError::internal)?
                .map_err(AppError::internal)?;
        }
        let file = tokio::fs::File::open(&zip_path)
            .await
            .map_err(AppError::internal)?;
        let length = file.metadata().await.map_err(AppError::internal)?.len();
        Ok((file, length))
    }
    .await;
    match result {
        Ok((file, length)) => (
            [
                (header::CONTENT_TYPE, "application/zip".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"jigsaw-run-{run_id}.zip\""),
                ),
                (header::CONTENT_LENGTH, length.to_string()),
            ],
            Body::from_stream(chunks_of(file)),
        )
            .into_response(),
        Err(error) => error_response(error),
    }
}

/// The file's bytes, 64 KiB at a time; a read error ends the stream with that error.
fn chunks_of(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buffer = vec![0_u8; 64 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(buffer), Some(file)))
            }
            Err(error) => Some((Err(error), None)),
        }
    })
}

/// Zips the files of `dir` (not recursive) under the folder name `root` into `target`,
/// uncompressed (model weights hardly compress). It writes a file of its own first and
/// renames it into place, so a download never reads half a zip.
fn write_zip(dir: &std::path::Path, root: &str, target: &std::path::Path) -> Result<(), String> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let partial = target.with_extension(format!(
        "zip.{}-{}.partial",
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = fill_zip(dir, root, &partial).and_then(|()| {
        std::fs::rename(&partial, target).map_err(|e| format!("{}: {e}", target.display()))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Writes the zip of [`write_zip`] to `path`.
fn fill_zip(dir: &std::path::Path, root: &str, path: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = format!("{root}/{}", entry.file_name().to_string_lossy());
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        let mut source = std::fs::File::open(entry.path()).map_err(|e| e.to_string())?;
        std::io::copy(&mut source, &mut zip).map_err(|e| e.to_string())?;
    }
    zip.finish()
        .map_err(|e| e.to_string())?
        .flush()
        .map_err(|e| e.to_string())
}
