//! `POST /instructor/data`: the Training data page's upload form (multipart: `archive`,
//! GLUE's SST-2.zip, or `files`, the three TSVs). The upload is streamed to a hidden folder
//! beside the data folder, never held in memory, then checked and installed on a blocking
//! thread ([`app::runs::dataset::ssr::TrainingData::add`]). The answer is a redirect back to the
//! page, which says once what was installed or what is wrong.

use super::{AppState, redirect_telling};
use app::auth::ssr::{caller_of, instructor_only};
use app::error::AppError;
use app::flash::Outcome;
use app::runs::dataset::ssr::TrainingData;
use app::runs::dataset::{FLASH_PAGE, MAX_UPLOAD_MB, UPLOAD_PATH};
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use tower_sessions::Session;
use trainer::data::SST2_FILES;

/// The largest request body read: twice the largest upload, so that one somewhat over the
/// limit is read to its end and refused in words, plus room for the multipart framing.
pub(super) const BODY_LIMIT: usize = 2 * ((MAX_UPLOAD_MB as usize) << 20) + 64 * 1024;

/// `POST /instructor/data`: installs the uploaded SST-2 and redirects to the page.
pub(super) async fn upload_data(
    State(state): State<AppState>,
    session: Session,
    multipart: Multipart,
) -> Response {
    if let Err(error) = caller_of(&session, &state.pool)
        .await
        .and_then(instructor_only)
    {
        return (error.status(), error.to_string()).into_response();
    }
    let outcome: Result<String, AppError> = async {
        let data = state.data.clone();
        if !data.trains_here {
            return Err(AppError::bad_request(
                "This web node trains no runs, so its own copy of SST-2 would go unused: \
                 install it on each worker node with `jigsaw-lab data add SST-2.zip`.",
            ));
        }
        refuse_while_runs_use_it(&state, &data).await?;
        let upload = Upload::receive(multipart, &data).await?;
        // Runs may have been queued while the upload streamed in.
        refuse_while_runs_use_it(&state, &data).await?;
        let source = upload.source.clone();
        let facts = tokio::task::spawn_blocking(move || data.add(&source))
            .await
            .map_err(AppError::internal)??;
        drop(upload);
        Ok(facts.train_rows.to_string())
    }
    .await;
    match outcome {
        Ok(rows) => {
            tracing::info!("SST-2 installed from an upload ({rows} training sentences)");
            redirect_telling(&session, UPLOAD_PATH, FLASH_PAGE, Outcome::Done(rows)).await
        }
        Err(error) => {
            let problem = Outcome::Problem(error.to_string());
            redirect_telling(&session, UPLOAD_PATH, FLASH_PAGE, problem).await
        }
    }
}

/// Refuses to replace usable data while runs are queued or training on it.
async fn refuse_while_runs_use_it(state: &AppState, data: &TrainingData) -> Result<(), AppError> {
    let active = app::runs::queue::RunQueue::new(state.pool.clone())
        .active_count()
        .await?;
    if active > 0 && data.checked().await.is_ok() {
        return Err(AppError::bad_request(format!(
            "{active} run{} waiting or training on the data installed now; replace it when no \
             run is queued or training.",
            if active == 1 { " is" } else { "s are" }
        )));
    }
    Ok(())
}

/// The uploaded files in a hidden folder beside the data folder, deleted when this is
/// dropped; `source` is the zip or the folder of TSVs in it.
struct Upload {
    folder: PathBuf,
    source: PathBuf,
}

impl Upload {
    /// Reads the form, streaming each file to disk.
    async fn receive(mut multipart: Multipart, data: &TrainingData) -> Result<Self, AppError> {
        let limit = MAX_UPLOAD_MB << 20;
        let too_large = || {
            AppError::bad_request(format!(
                "The upload is larger than the {MAX_UPLOAD_MB} MB allowed; SST-2.zip is about 7 MB."
            ))
        };
        let unreadable = |e: axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                AppError::bad_request(format!("The upload could not be read: {}", e.body_text()))
            }
        };
        let parent = data.parent()?;
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| cannot_stage(&parent, e))?;
        let folder = parent.join(format!(
            ".sst2-upload-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        tokio::fs::create_dir(&folder)
            .await
            .map_err(|e| cannot_stage(&parent, e))?;
        let mut upload = Upload {
            source: folder.clone(),
            folder,
        };
        let (mut zip, mut files, mut size) = (false, Vec::new(), 0u64);
        while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
            let target = match field.name() {
                Some("archive") => upload.folder.join("upload.zip"),
                Some("files") => {
                    let chosen = field.file_name().unwrap_or_default().to_string();
                    if chosen.is_empty() {
                        upload.folder.join(".empty")
                    } else {
                        let name = Path::new(&chosen)
                            .file_name()
                            .and_then(|n| n.to_str())
                            .filter(|n| SST2_FILES.contains(n))
                            .ok_or_else(|| {
                                AppError::bad_request(format!(
                                    "\u{201c}{chosen}\u{201d} is not one of SST-2's files: \
                                     choose train.tsv, dev.tsv and test.tsv."
                                ))
                            })?;
                        upload.folder.join(name)
                    }
                }
                _ => continue,
            };
            let mut file = tokio::fs::File::create(&target)
                .await
                .map_err(AppError::internal)?;
            let mut written = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                // Past the limit the rest is read and dropped, to answer in words.
                size += chunk.len() as u64;
                written += chunk.len() as u64;
                if size <= limit {
                    file.write_all(&chunk).await.map_err(AppError::internal)?;
                }
            }
            file.flush().await.map_err(AppError::internal)?;
            if written == 0 {
                // A file input left empty sends a part with no bytes.
                let _ = tokio::fs::remove_file(&target).await;
                continue;
            }
            match target.file_name().and_then(|n| n.to_str()) {
                Some("upload.zip") => zip = true,
                Some(name) => files.push(name.to_string()),
                None => {}
            }
        }
        if size > limit {
            return Err(too_large());
        }
        match (zip, files.is_empty()) {
            (true, false) => Err(AppError::bad_request(
                "Upload either the zip or the three files, not both.",
            )),
            (false, true) => Err(AppError::bad_request(
                "Choose GLUE's SST-2.zip, or the three files train.tsv, dev.tsv and test.tsv.",
            )),
            (true, true) => {
                upload.source = upload.folder.join("upload.zip");
                Ok(upload)
            }
            (false, false) => {
                let missing: Vec<&str> = SST2_FILES
                    .iter()
                    .copied()
                    .filter(|name| !files.iter().any(|f| f == name))
                    .collect();
                if missing.is_empty() {
                    Ok(upload)
                } else {
                    Err(AppError::bad_request(format!(
                        "The upload has no {}: choose all three files, train.tsv, dev.tsv and test.tsv.",
                        missing.join(" and no ")
                    )))
                }
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// The data folder's parent cannot hold the upload.
fn cannot_stage(parent: &Path, error: std::io::Error) -> AppError {
    AppError::bad_request(format!(
        "The server cannot write to {} ({error}); make it writable, or set JIGSAW_SST2_DIR to \
         a folder the server can write.",
        parent.display()
    ))
}
