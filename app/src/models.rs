//! The models the pages read, and the limits on what they read. On the server,
//! [`ModelService`] holds the default model the lesson widgets read and the fine-tuned
//! model of a team's finished run, and runs both on tokio's blocking threads so a long
//! sentence never stalls the async threads that serve every other request.

#[cfg(feature = "ssr")]
pub use service::ModelService;

/// The longest text, in characters, that a widget, a run's attention sentence or "try
/// your model" accepts.
pub const MAX_SENTENCE_CHARS: usize = 512;

pub use run_protocol::VIEWER_MAX_TOKENS;

/// Rejects empty and over-long input with a message for the student.
#[cfg(feature = "ssr")]
pub fn check_sentence(text: &str) -> Result<(), crate::error::AppError> {
    use crate::error::AppError;
    let characters = text.chars().count();
    if text.trim().is_empty() {
        return Err(AppError::BadRequest("Type a sentence first.".into()).respond());
    }
    if characters > MAX_SENTENCE_CHARS {
        return Err(AppError::BadRequest(format!(
            "That text has {characters} characters; the widgets take at most {MAX_SENTENCE_CHARS}."
        ))
        .respond());
    }
    Ok(())
}

/// SST-2's labels paired with the head's probabilities.
#[cfg(feature = "ssr")]
pub fn labelled(probabilities: Vec<f32>) -> Vec<(String, f32)> {
    trainer::data::LABELS
        .iter()
        .map(|label| label.to_string())
        .zip(probabilities)
        .collect()
}

#[cfg(feature = "ssr")]
mod service {
    use super::VIEWER_MAX_TOKENS;
    use crate::error::AppError;
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::sync::{OwnedSemaphorePermit, Semaphore};
    use trainer::inference::Predictor;

    /// Model readings (widgets, "try your model") that may be running or waiting at once,
    /// across the whole server; one more is answered 429 at once instead of piling up.
    pub const MODEL_REQUESTS_AT_ONCE: usize = 8;
    /// Readings one signed-in visitor (a student or an instructor, by session) may have
    /// running or waiting at once, so that one cannot fill the line for the whole class.
    /// Visitors without a session share only the server-wide line: a class behind one
    /// address must not share two places.
    pub const MODEL_REQUESTS_PER_SESSION: usize = 2;

    /// A place in the line of model readings, given back when dropped.
    struct Place {
        _permit: OwnedSemaphorePermit,
        _share: Option<SessionShare>,
    }

    /// Readings running or waiting per session.
    type SessionCounts = Arc<Mutex<HashMap<String, usize>>>;

    /// One reading counted against a session, uncounted when dropped.
    struct SessionShare {
        session: String,
        counts: SessionCounts,
    }

    impl Drop for SessionShare {
        fn drop(&mut self) {
            if let Ok(mut counts) = self.counts.lock()
                && let Some(count) = counts.get_mut(&self.session)
            {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&self.session);
                }
            }
        }
    }

    /// The request's session id, when it has a session.
    async fn session_id() -> Option<String> {
        let session = leptos_axum::extract::<tower_sessions::Session>()
            .await
            .ok()?;
        session.id().map(|id| id.to_string())
    }
    use trainer::model::EncoderConfig;

    /// The models the pages read. Cheap to clone; clones share the loaded models.
    #[derive(Clone)]
    pub struct ModelService {
        default: Arc<Mutex<Predictor>>,
        default_config: EncoderConfig,
        default_name: String,
        /// The fine-tuned model read last, with its run: kept loaded for the next sentence.
        trained: Arc<Mutex<Option<(i64, Predictor)>>>,
        /// One permit per reading running or waiting.
        requests: Arc<Semaphore>,
        /// Readings running or waiting per session.
        per_session: SessionCounts,
    }

    impl std::fmt::Debug for ModelService {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ModelService")
                .field("default", &self.default_name)
                .finish_non_exhaustive()
        }
    }

    impl ModelService {
        /// The service around the loaded default model `predictor`, called `name`, with its
        /// architecture `config` (for the LoRA counter).
        pub fn new(name: String, predictor: Predictor, config: EncoderConfig) -> Self {
            Self {
                default: Arc::new(Mutex::new(predictor)),
                default_config: config,
                default_name: name,
                trained: Arc::new(Mutex::new(None)),
                requests: Arc::new(Semaphore::new(MODEL_REQUESTS_AT_ONCE)),
                per_session: Arc::default(),
            }
        }

        /// A place in the line of model readings, or the 429 that says the caller's own
        /// share or the whole line is full.
        async fn place_in_line(&self) -> Result<Place, AppError> {
            let share = match session_id().await {
                Some(session) => {
                    let mut counts = self
                        .per_session
                        .lock()
                        .map_err(|_| AppError::internal("the reading counts' lock is poisoned"))?;
                    let count = counts.entry(session.clone()).or_insert(0);
                    if *count >= MODEL_REQUESTS_PER_SESSION {
                        return Err(AppError::busy(
                            format!(
                                "You already have {MODEL_REQUESTS_PER_SESSION} sentences being \
                                 read; each waits for the one before. Try again in 2 s."
                            ),
                            Duration::from_secs(2),
                        ));
                    }
                    *count += 1;
                    Some(SessionShare {
                        session,
                        counts: self.per_session.clone(),
                    })
                }
                None => None,
            };
            // A refusal here drops `share`, which gives the session's place back.
            let permit = self.requests.clone().try_acquire_owned().map_err(|_| {
                AppError::busy(
                    "The model is busy with other students' sentences. Try again in 2 s.",
                    Duration::from_secs(2),
                )
            })?;
            Ok(Place {
                _permit: permit,
                _share: share,
            })
        }

        /// The default model's name, e.g. all-MiniLM-L6-v2.
        pub fn default_name(&self) -> &str {
            &self.default_name
        }

        /// The default model's architecture.
        pub fn default_config(&self) -> &EncoderConfig {
            &self.default_config
        }

        /// Runs `read` on the default model, on a blocking thread.
        pub async fn with_default<T: Send + 'static>(
            &self,
            read: impl FnOnce(&Predictor) -> Result<T, AppError> + Send + 'static,
        ) -> Result<T, AppError> {
            let default = self.default.clone();
            let place = self.place_in_line().await?;
            tokio::task::spawn_blocking(move || {
                let _place = place;
                let predictor = default
                    .lock()
                    .map_err(|_| AppError::internal("the default model's lock is poisoned"))?;
                read(&predictor)
            })
            .await
            .map_err(AppError::internal)?
        }

        /// Runs `read` on run `run_id`'s fine-tuned model, exported in `dir`, on a blocking
        /// thread; the model is loaded (on the CPU) unless it is the one read last.
        pub async fn with_trained<T: Send + 'static>(
            &self,
            run_id: i64,
            dir: PathBuf,
            read: impl FnOnce(&Predictor) -> Result<T, AppError> + Send + 'static,
        ) -> Result<T, AppError> {
            let trained = self.trained.clone();
            let place = self.place_in_line().await?;
            tokio::task::spawn_blocking(move || {
                let _place = place;
                let mut loaded = trained
                    .lock()
                    .map_err(|_| AppError::internal("the trained model's lock is poisoned"))?;
                if loaded.as_ref().map(|(id, _)| *id) != Some(run_id) {
                    let cpu = trainer::device::ComputeDevice::cpu();
                    let predictor = Predictor::load(&dir, Some(VIEWER_MAX_TOKENS), cpu.device())
                        .map_err(|error| {
                            tracing::error!(%error, run = run_id, "a run's model does not load");
                            AppError::not_found(
                                "This run's model cannot be read on the server: its files are \
                                 damaged or gone. Your teacher can find the details in the \
                                 server log; training the run again makes a new model.",
                            )
                        })?;
                    *loaded = Some((run_id, predictor));
                }
                let (_, predictor) = loaded
                    .as_ref()
                    .ok_or_else(|| AppError::internal("no model"))?;
                read(predictor)
            })
            .await
            .map_err(AppError::internal)?
        }
    }
}
