//! The models teams can fine-tune, one HF folder each in the models folder. The
//! instructor's Models page lists them with what they are and what this server's runs
//! measured with them, adds one from an uploaded zip and removes one that no run is using;
//! `jigsaw-lab models` does the same from the terminal. A new model is unpacked into a
//! hidden folder, checked by the engine (it loads and classifies two sentences on the
//! CPU), and only then renamed into place, so teams never see a half-written or broken
//! model.

use crate::error::AppError;
use leptos::prelude::*;
use run_protocol::Family;
use serde::{Deserialize, Serialize};

/// The largest upload, zipped, unless JIGSAW_MAX_MODEL_UPLOAD_MB says otherwise.
pub const DEFAULT_MAX_UPLOAD_MB: u64 = 2048;

/// Where the Models page's upload form posts (multipart: `name`, `archive`); the server
/// answers with a redirect back to the page, which says what happened.
pub const UPLOAD_PATH: &str = "/instructor/models";

/// The page name the upload's outcome is kept under ([`crate::flash`]).
pub const FLASH_PAGE: &str = "models";

/// The longest model name.
pub const MAX_MODEL_NAME_CHARS: usize = 64;

/// One model folder as the Models page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// The folder's name, which the run form lists.
    pub name: String,
    /// What the engine read from it, or why it cannot use it.
    pub summary: Result<ModelFacts, String>,
    /// Whether it is the server's default model (the lesson widgets run it).
    pub is_default: bool,
    /// Runs waiting for it or training it now; it cannot be removed while there are any.
    pub active_runs: i64,
    /// What this server's runs measured with it.
    pub measured: Measured,
}

/// What a model folder is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFacts {
    /// The family, from `model_type`.
    pub family: Family,
    /// Parameters with a two-label head.
    pub params: usize,
    /// Rows of the token embedding.
    pub vocab_size: usize,
    /// The longest input in tokens.
    pub max_len: usize,
    /// Bytes on disk.
    pub disk_bytes: u64,
}

/// What the runs on this server measured with one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Runs that finished.
    pub finished_runs: i64,
    /// The best validation accuracy of those runs (0 to 1).
    pub best_validation: Option<f64>,
    /// Training sentences per second on each device, the median of its latest runs.
    pub speeds: Vec<(String, f64)>,
}

/// What the Models page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelsPage {
    /// Every model folder.
    pub models: Vec<ModelEntry>,
    /// The largest zip the upload accepts, in MB.
    pub max_upload_mb: u64,
    /// What the upload just posted did, told once.
    pub outcome: Option<crate::flash::Outcome>,
}

/// Every model folder, for the instructor.
#[server(prefix = "/api", endpoint = "models")]
pub async fn list_models() -> Result<ModelsPage, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_instructor(&pool).await?;
    let library: ssr::Library = AppError::from_context("model library")?;
    Ok(ModelsPage {
        models: library.entries(&pool).await?,
        max_upload_mb: library.max_upload_bytes >> 20,
        outcome: crate::flash::ssr::take(FLASH_PAGE).await?,
    })
}

/// Removes a model that no queued or running run uses (not the default model).
#[server(prefix = "/api", endpoint = "remove-model")]
pub async fn remove_model(name: String) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_instructor(&pool).await?;
    let library: ssr::Library = AppError::from_context("model library")?;
    library.remove(&pool, &name).await
}

/// Checks a model name: 1 to [`MAX_MODEL_NAME_CHARS`] letters, digits, dots, dashes and
/// underscores, not starting with a dot (which would hide it, and is how folders being
/// added or removed are kept out of the list).
#[cfg(feature = "ssr")]
pub fn check_name(name: &str) -> Result<(), AppError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if name.is_empty() || name.chars().count() > MAX_MODEL_NAME_CHARS {
        return Err(AppError::bad_request(format!(
            "A model's name must have 1 to {MAX_MODEL_NAME_CHARS} characters."
        )));
    }
    if !name.chars().all(allowed) || name.starts_with('.') {
        return Err(AppError::bad_request(format!(
            "\u{201c}{name}\u{201d} cannot be a model's name: use letters, digits, dots, dashes and underscores, not starting with a dot."
        )));
    }
    Ok(())
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! The models folder on disk: listing, adding (from a zip or a folder) and removing.

    use super::{Measured, ModelEntry, ModelFacts, check_name};
    use crate::db::DbPool;
    use crate::error::AppError;
    use crate::runs::RunStatus;
    use crate::runs::queue::RunQueue;
    use crate::uploads::{Staging, copy_folder, unpack_zip};
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    /// The latest runs per model and device whose speed counts.
    const MEASURED_RUNS: usize = 5;

    /// The models folder, as the server configures it.
    #[derive(Debug, Clone)]
    pub struct Library {
        /// One HF model folder per model.
        pub dir: PathBuf,
        /// The model the lesson widgets run, which cannot be removed.
        pub default_model: String,
        /// The largest zip accepted, in bytes; unpacked, a model may be four times that.
        pub max_upload_bytes: u64,
        /// One model added or removed at a time: each check loads a whole model on the CPU.
        pub changes: Arc<Mutex<()>>,
    }

    impl Library {
        /// The folder's models (hidden folders left out), by name.
        pub fn names(&self) -> Vec<String> {
            let Ok(entries) = std::fs::read_dir(&self.dir) else {
                return Vec::new();
            };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().is_dir())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect();
            names.sort();
            names
        }

        /// Every model with what it is and what this server's runs measured with it.
        pub async fn entries(&self, pool: &DbPool) -> Result<Vec<ModelEntry>, AppError> {
            let dir = self.dir.clone();
            let names = self.names();
            let described = tokio::task::spawn_blocking(move || {
                names
                    .into_iter()
                    .map(|name| {
                        let summary = describe(&dir.join(&name));
                        (name, summary)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(AppError::internal)?;
            let usage = usage(pool).await?;
            Ok(described
                .into_iter()
                .map(|(name, summary)| {
                    let model_usage = usage.get(&name);
                    // Speeds are scaled by the model's size, unknown when it cannot be read.
                    let measured = match (model_usage, summary.as_ref()) {
                        (Some(usage), Ok(facts)) => {
                            usage.measured(Some((facts.params, facts.family)))
                        }
                        (Some(usage), Err(_)) => usage.measured(None),
                        (None, _) => Measured::default(),
                    };
                    ModelEntry {
                        is_default: name == self.default_model,
                        active_runs: model_usage.map_or(0, |u| u.active),
                        measured,
                        summary,
                        name,
                    }
                })
                .collect())
        }

        /// Adds the model in `source` (an HF folder, or a zip of one) as `name`: copies or
        /// unpacks it into a hidden folder, checks it with the engine, then renames it into
        /// place. Blocking; nothing is left behind when it fails.
        pub fn add(&self, source: &Path, name: &str) -> Result<ModelFacts, AppError> {
            check_name(name)?;
            let _one_at_a_time = self.changes.lock().unwrap_or_else(|e| e.into_inner());
            if !source.exists() {
                return Err(AppError::bad_request(format!(
                    "{} does not exist.",
                    source.display()
                )));
            }
            let taken = || {
                AppError::bad_request(format!(
                    "There is already a model called \u{201c}{name}\u{201d}; remove it first or choose another name."
                ))
            };
            if self.dir.join(name).exists() {
                return Err(taken());
            }
            std::fs::create_dir_all(&self.dir).map_err(AppError::internal)?;
            let staging = Staging::new(&self.dir, "adding", name)?;
            let max_bytes = self.max_upload_bytes.saturating_mul(4);
            if source.is_dir() {
                let (inside, models) = (source.canonicalize(), self.dir.canonicalize());
                if let (Ok(inside), Ok(models)) = (inside, models)
                    && (models.starts_with(&inside) || inside.starts_with(&models))
                {
                    return Err(AppError::bad_request(format!(
                        "{} is the models folder or inside it; add a model from another folder.",
                        source.display()
                    )));
                }
                copy_folder(source, staging.path(), &mut 0, max_bytes)?;
            } else {
                unpack_zip(source, staging.path(), max_bytes)?;
            }
            let missing = trainer::catalog::missing_files(staging.path());
            if !missing.is_empty() {
                let mut message = format!(
                    "The model folder has no {}: use the whole folder as transformers saves it.",
                    missing.join(" and no ")
                );
                if missing.contains(&"tokenizer.json") {
                    message.push_str(
                        " A folder with only a SentencePiece spm.model gets its tokenizer.json from \
                         AutoTokenizer.from_pretrained(folder).save_pretrained(folder) in Python.",
                    );
                }
                return Err(AppError::bad_request(message));
            }
            let facts = trainer::catalog::check(staging.path())
                .map(facts)
                .map_err(|error| {
                    AppError::bad_request(format!(
                        "This model cannot be used: {}",
                        strip_folder(&error.to_string(), staging.path())
                    ))
                })?;
            let target = self.dir.join(name);
            if target.exists() {
                return Err(taken());
            }
            std::fs::rename(staging.path(), &target).map_err(|e| match e.kind() {
                std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists => {
                    taken()
                }
                _ => AppError::internal(e),
            })?;
            staging.keep();
            Ok(facts)
        }

        /// Removes the model `name`, unless it is the default or a queued or running run
        /// uses it. The folder is first renamed to a hidden one, so it leaves the list at
        /// once, then deleted.
        pub async fn remove(&self, pool: &DbPool, name: &str) -> Result<(), AppError> {
            if !self.names().iter().any(|listed| listed == name) {
                return Err(AppError::NotFound(format!(
                    "There is no model called \u{201c}{name}\u{201d}."
                )));
            }
            if name == self.default_model {
                return Err(AppError::bad_request(format!(
                    "\u{201c}{name}\u{201d} is the default model, which the lesson widgets run; it cannot be removed."
                )));
            }
            let busy = |active: i64| {
                AppError::bad_request(format!(
                    "\u{201c}{name}\u{201d} cannot be removed while {active} run{} waiting for it or training it.",
                    if active == 1 { " is" } else { "s are" }
                ))
            };
            let active = |usage: BTreeMap<String, Usage>| usage.get(name).map_or(0, |u| u.active);
            let before = active(usage(pool).await?);
            if before > 0 {
                return Err(busy(before));
            }
            // Hidden first, so the run form stops offering it; a run queued in between is
            // seen by the second look, and the model comes back.
            let dir = self.dir.join(name);
            let hidden = Staging::path_for(&self.dir, "removing", name);
            std::fs::rename(&dir, &hidden).map_err(AppError::internal)?;
            let after = match usage(pool).await {
                Ok(usage) => active(usage),
                Err(error) => {
                    let _ = std::fs::rename(&hidden, &dir);
                    return Err(error);
                }
            };
            if after > 0 {
                std::fs::rename(&hidden, &dir).map_err(AppError::internal)?;
                return Err(busy(after));
            }
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(hidden))
                .await
                .map_err(AppError::internal)?
                .map_err(AppError::internal)?;
            Ok(())
        }

        /// Deletes what an add, an upload or a removal left in the models folder when the
        /// server stopped in the middle of it (the hidden `.adding-`, `.upload-` and
        /// `.removing-` entries). Run once at start-up, before anything is added.
        pub fn sweep(&self) {
            let Ok(entries) = std::fs::read_dir(&self.dir) else {
                return;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if [".adding-", ".upload-", ".removing-"]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
                {
                    let path = entry.path();
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    match removed {
                        Ok(()) => {
                            tracing::info!("removed {name}, left by an interrupted model change")
                        }
                        Err(error) => tracing::warn!("cannot remove {}: {error}", path.display()),
                    }
                }
            }
        }
    }

    /// Describes one model folder, or says why the engine cannot read it.
    fn describe(dir: &Path) -> Result<ModelFacts, String> {
        let missing = trainer::catalog::missing_files(dir);
        if !missing.is_empty() {
            return Err(format!("no {}", missing.join(" and no ")));
        }
        trainer::catalog::describe(dir)
            .map(facts)
            .map_err(|error| strip_folder(&error.to_string(), dir))
    }

    fn facts(summary: trainer::catalog::ModelSummary) -> ModelFacts {
        ModelFacts {
            family: summary.family,
            params: summary.params,
            vocab_size: summary.vocab_size,
            max_len: summary.max_len,
            disk_bytes: summary.disk_bytes,
        }
    }

    /// An engine message without the server's folder path in it.
    fn strip_folder(message: &str, dir: &Path) -> String {
        message.replace(&format!("{}/", dir.display()), "")
    }

    /// How the runs on this server used one model.
    #[derive(Debug, Default)]
    struct Usage {
        active: i64,
        finished: i64,
        best_validation: Option<f64>,
        /// Default-model speeds of the latest finished runs, per device, newest first.
        reference_speeds: BTreeMap<String, Vec<f64>>,
    }

    impl Usage {
        /// What the runs measured, speeds scaled to a model of `size` (parameters and
        /// family; no speeds when that is unknown).
        fn measured(&self, size: Option<(usize, run_protocol::Family)>) -> Measured {
            Measured {
                finished_runs: self.finished,
                best_validation: self.best_validation,
                speeds: self
                    .reference_speeds
                    .iter()
                    .filter_map(|(device, speeds)| {
                        let (params, family) = size?;
                        let mut latest: Vec<f64> =
                            speeds.iter().take(MEASURED_RUNS).copied().collect();
                        latest.sort_by(f64::total_cmp);
                        let median = match latest.len() {
                            0 => return None,
                            n if n % 2 == 1 => latest[n / 2],
                            n => (latest[n / 2 - 1] + latest[n / 2]) / 2.0,
                        };
                        Some((
                            device.clone(),
                            run_protocol::estimate::speed_of_model(median, params, family),
                        ))
                    })
                    .collect(),
            }
        }
    }

    /// Every model's runs on this server, by name.
    async fn usage(pool: &DbPool) -> Result<BTreeMap<String, Usage>, AppError> {
        let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
        for run in RunQueue::new(pool.clone()).model_history().await? {
            let entry = usage.entry(run.model).or_default();
            match run.status {
                RunStatus::Queued | RunStatus::Running => entry.active += 1,
                RunStatus::Succeeded => {
                    entry.finished += 1;
                    if let Some(v) = run.validation_accuracy.filter(|v| v.is_finite()) {
                        entry.best_validation =
                            Some(entry.best_validation.map_or(v, |best| best.max(v)));
                    }
                }
                _ => {}
            }
            if let (Some(speed), Some(device)) = (run.reference_speed, run.device)
                && speed.is_finite()
                && speed > 0.0
            {
                entry
                    .reference_speeds
                    .entry(device)
                    .or_default()
                    .push(speed);
            }
        }
        Ok(usage)
    }
}
