//! `POST /instructor/models`: the Models page's upload form (multipart: `name`, `archive`).
//! The zip is streamed to a hidden file in the models folder, never held in memory, then
//! unpacked, checked by the engine and moved into place on a blocking thread
//! ([`app::library::ssr::Library::add`]). The answer is a redirect back to the page, which
//! says once what was added or what is wrong, so the form works without the page's script.

use super::{AppState, redirect_telling};
use app::auth::ssr::{caller_of, instructor_only};
use app::error::AppError;
use app::flash::Outcome;
use app::library::ssr::Library;
use app::library::{FLASH_PAGE, UPLOAD_PATH};
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use tower_sessions::Session;

/// The most bytes of the name field read (a name is at most 64 ASCII characters).
const MAX_NAME_BYTES: usize = 256;

/// Room for the form's other field and the multipart framing beside the zip.
const FORM_OVERHEAD: usize = 64 * 1024;

/// The largest request body the upload route reads: twice the largest zip, so that a zip
/// somewhat over the limit is read to its end and refused with the page's message, rather
/// than the connection being cut while the browser still sends.
pub(super) fn body_limit(library: &Library) -> usize {
    usize::try_from(library.max_upload_bytes.saturating_mul(2))
        .unwrap_or(usize::MAX)
        .saturating_add(FORM_OVERHEAD)
}

/// `POST /instructor/models`: adds the uploaded model and redirects to the Models page.
pub(super) async fn upload_model(
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
        let upload = Upload::receive(multipart, &state.library).await?;
        let library = state.library.clone();
        let (name, zip) = (upload.name.clone(), upload.zip.clone());
        tokio::task::spawn_blocking(move || library.add(&zip, &name))
            .await
            .map_err(AppError::internal)??;
        Ok(upload.name.clone())
    }
    .await;
    match outcome {
        Ok(name) => {
            tracing::info!("model {name} added from an upload");
            redirect_telling(&session, UPLOAD_PATH, FLASH_PAGE, Outcome::Done(name)).await
        }
        Err(error) => {
            let problem = Outcome::Problem(error.to_string());
            redirect_telling(&session, UPLOAD_PATH, FLASH_PAGE, problem).await
        }
    }
}

/// The form's fields: the name, and the zip saved to a hidden file that is deleted when
/// this is dropped.
struct Upload {
    name: String,
    zip: PathBuf,
}

impl Upload {
    /// Reads the form, streaming the zip to disk.
    async fn receive(mut multipart: Multipart, library: &Library) -> Result<Self, AppError> {
        let too_large = || {
            AppError::bad_request(format!(
                "The zip is larger than the {} MB allowed (JIGSAW_MAX_MODEL_UPLOAD_MB).",
                library.max_upload_bytes >> 20
            ))
        };
        let unreadable = |e: axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                AppError::bad_request(format!("The upload could not be read: {}", e.body_text()))
            }
        };
        tokio::fs::create_dir_all(&library.dir)
            .await
            .map_err(AppError::internal)?;
        let mut upload = Upload {
            name: String::new(),
            zip: library.dir.join(format!(
                ".upload-{}-{}.zip",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            )),
        };
        let (mut received, mut size) = (false, 0u64);
        while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
            match field.name() {
                Some("name") => {
                    let mut bytes = Vec::new();
                    while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                        bytes.extend_from_slice(&chunk);
                        if bytes.len() > MAX_NAME_BYTES {
                            return Err(AppError::bad_request(format!(
                                "A model's name must have 1 to {} characters.",
                                app::library::MAX_MODEL_NAME_CHARS
                            )));
                        }
                    }
                    upload.name = String::from_utf8_lossy(&bytes).trim().to_string();
                    app::library::check_name(&upload.name)?;
                }
                Some("archive") => {
                    let mut file = tokio::fs::File::create(&upload.zip)
                        .await
                        .map_err(AppError::internal)?;
                    while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                        // Past the limit the rest is read and dropped, to answer in words.
                        size += chunk.len() as u64;
                        if size <= library.max_upload_bytes {
                            file.write_all(&chunk).await.map_err(AppError::internal)?;
                        }
                    }
                    file.flush().await.map_err(AppError::internal)?;
                    received = true;
                }
                _ => {}
            }
        }
        if !received {
            return Err(AppError::bad_request("Choose a zip file to upload."));
        }
        if size > library.max_upload_bytes {
            return Err(too_large());
        }
        app::library::check_name(&upload.name)?;
        Ok(upload)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.zip);
    }
}
