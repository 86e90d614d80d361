//! `GET /runs/{id}/model.zip`: a finished run's fine-tuned model, zipped.

use super::{AppState, error_response};
use app::auth::ssr::caller_of;
use app::error::AppError;
use app::runs::RunStatus;
use app::runs::queue::RunQueue;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

/// `GET /runs/{id}/model.zip`: a finished run's fine-tuned model as an HF directory
/// (config.json with id2label, model.safetensors, tokenizer.json), zipped.
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
        tokio::task::spawn_blocking(move || zip_dir(&dir, &format!("jigsaw-run-{run_id}")))
            .await
            .map_err(AppError::internal)?
            .map_err(AppError::internal)
    }
    .await;
    match result {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/zip".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"jigsaw-run-{run_id}.zip\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => error_response(error),
    }
}

/// Zips the files of `dir` (not recursive) under the folder name `root`, uncompressed
/// (model weights hardly compress).
fn zip_dir(dir: &std::path::Path, root: &str) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
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
        let bytes = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
        zip.write_all(&bytes).map_err(|e| e.to_string())?;
    }
    zip.finish()
        .map(|cursor| cursor.into_inner())
        .map_err(|e| e.to_string())
}
