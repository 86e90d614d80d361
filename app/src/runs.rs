//! Fine-tuning runs from the browser: the run form with its checks, the team's runs with
//! their live queue position, cancelling, and the leaderboards. The queue lives in the
//! database; the server's worker claims runs from it and feeds the events back.

// The run form's server function takes every field as text, so each bad value gets its
// own message; that makes a long argument list.
#![allow(clippy::too_many_arguments)]

use crate::error::AppError;
use leptos::prelude::*;
use run_protocol::RunSettings;
use run_protocol::settings::{DEFAULT_LEARNING_RATE_FULL, DEFAULT_LEARNING_RATE_LORA};
use serde::{Deserialize, Serialize};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a training slot.
    Queued,
    /// Training now.
    Running,
    /// Finished normally.
    Succeeded,
    /// Stopped by an error.
    Failed,
    /// Stopped because the loss became NaN or exploded.
    Diverged,
    /// Stopped by a person.
    Cancelled,
}

impl RunStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Diverged => "diverged",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<RunStatus> {
        [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Diverged,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether the run can still change.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// The learning rate the form shows after the method changes to `method`: that method's
/// default when the field still holds the other method's default, else what was typed.
pub fn default_learning_rate_after_switch(current: &str, method: &str) -> String {
    let (other, own) = if method == "lora" {
        (DEFAULT_LEARNING_RATE_FULL, DEFAULT_LEARNING_RATE_LORA)
    } else {
        (DEFAULT_LEARNING_RATE_LORA, DEFAULT_LEARNING_RATE_FULL)
    };
    if current.trim().parse::<f64>() == Ok(other) {
        format_rate(own)
    } else {
        current.to_string()
    }
}

/// A learning rate as the form shows it: 5e-5, 1e-3.
pub fn format_rate(rate: f64) -> String {
    format!("{rate:e}")
}

/// A base model a team can fine-tune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelChoice {
    /// Directory name, e.g. all-MiniLM-L6-v2.
    pub name: String,
    /// Parameters with a two-label head.
    pub params: usize,
}

/// What the run form needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFormInfo {
    /// The models found in the models folder.
    pub models: Vec<ModelChoice>,
    /// How many a team may have waiting at once.
    pub max_queued: i64,
    /// Training sentences available (SST-2 train minus validation).
    pub train_examples: Option<usize>,
    /// The compute device runs use.
    pub device: String,
    /// Rough training speed of the default model on this device, sentences per second.
    pub examples_per_second: f64,
}

/// A run as lists and pages show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id.
    pub id: i64,
    /// Its team.
    pub team: String,
    /// Who submitted it.
    pub submitted_by: String,
    /// Where it is.
    pub status: RunStatus,
    /// Its settings.
    pub settings: RunSettings,
    /// When it was submitted (UTC).
    pub created_at: String,
    /// 1 = next, while queued.
    pub queue_position: Option<i64>,
    /// Best validation accuracy so far, 0..1.
    pub validation_accuracy: Option<f64>,
    /// Why it failed, diverged or was cancelled.
    pub message: Option<String>,
}

/// What happened to a submitted form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubmitOutcome {
    /// Queued as this run.
    Queued(i64),
    /// Outside the recommended ranges: these hints, and the form must be sent again with
    /// `confirmed` to queue it anyway.
    NeedsConfirmation(Vec<String>),
}

/// One team's line on a leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardLine {
    /// The team.
    pub team: String,
    /// Its best accuracy, 0..1.
    pub accuracy: f64,
    /// The run that scored it.
    pub run_id: i64,
}

/// Both leaderboards of a class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Boards {
    /// Best validation accuracy per team (public).
    pub public: Vec<BoardLine>,
    /// Best SST-2 dev accuracy per team; `None` until the instructor reveals it.
    pub private: Option<Vec<BoardLine>>,
    /// Whether the private board is revealed to students.
    pub revealed: bool,
}

/// A finished run's model reading one sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReading {
    /// The tokens it read.
    pub tokens: Vec<String>,
    /// The most likely label.
    pub label: String,
    /// (label, probability) for each label.
    pub probabilities: Vec<(String, f32)>,
    /// Whether the sentence was cut to the model's length.
    pub truncated: bool,
}

/// Runs a finished run's fine-tuned model on a sentence ("try your model").
#[server(prefix = "/api", endpoint = "try-model")]
pub async fn try_run_model(run_id: i64, text: String) -> Result<ModelReading, AppError> {
    let pool = crate::db::pool()?;
    ssr::check_run_access(&pool, run_id).await?;
    crate::widgets::check_sentence(&text)?;
    let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&pool)
        .await?;
    if status != "succeeded" {
        return Err(AppError::bad_request(
            "Only a finished run has a model to try.",
        ));
    }
    let env: ssr::RunEnvironment = AppError::from_context("run environment")?;
    let dir = env.model_dir(run_id);
    let trained = env.trained.clone();
    tokio::task::spawn_blocking(move || trained.predict(run_id, &dir, &text))
        .await
        .map_err(AppError::internal)?
}

/// The run form's choices and the team's queue allowance.
#[server(prefix = "/api", endpoint = "run-form")]
pub async fn load_run_form() -> Result<RunFormInfo, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_student(&pool).await?;
    let env: ssr::RunEnvironment = AppError::from_context("run environment")?;
    Ok(RunFormInfo {
        models: env.models(),
        max_queued: env.max_queued_per_team,
        train_examples: env.train_examples,
        device: env.device.clone(),
        examples_per_second: env.examples_per_second,
    })
}

/// Checks the run form and queues the run for the caller's team. Values outside the
/// recommended ranges come back as hints first; `confirmed` queues the run anyway.
#[server(prefix = "/api", endpoint = "submit-run")]
pub async fn submit_run(
    model: String,
    method: String,
    lora_rank: String,
    lora_alpha: String,
    learning_rate: String,
    batch_size: String,
    epochs: String,
    warmup_ratio: String,
    max_len: String,
    train_subset: String,
    seed: String,
    probe_sentence: String,
    confirmed: bool,
) -> Result<SubmitOutcome, AppError> {
    let pool = crate::db::pool()?;
    let student = crate::auth::ssr::require_student(&pool).await?;
    let env: ssr::RunEnvironment = AppError::from_context("run environment")?;
    let form = ssr::RunForm {
        model,
        method,
        lora_rank,
        lora_alpha,
        learning_rate,
        batch_size,
        epochs,
        warmup_ratio,
        max_len,
        train_subset,
        seed,
        probe_sentence,
    };
    let (settings, hints) = ssr::check_form(&form, &env.models()).map_err(AppError::bad_request)?;
    if !hints.is_empty() && !confirmed {
        return Ok(SubmitOutcome::NeedsConfirmation(hints));
    }
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE team_id = $1 AND status = 'queued'")
            .bind(student.team_id)
            .fetch_one(&pool)
            .await?;
    if active >= env.max_queued_per_team {
        return Err(AppError::bad_request(format!(
            "Your team already has {active} runs waiting; at most {} may wait at once. \
             Cancel one or wait for it to start.",
            env.max_queued_per_team
        )));
    }
    let today = ssr::utc_date(std::time::SystemTime::now());
    let scored_today: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE team_id = $1 AND status <> 'cancelled' AND created_at >= $2",
    )
    .bind(student.team_id)
    .bind(&today)
    .fetch_one(&pool)
    .await?;
    if scored_today >= env.max_runs_per_day {
        return Err(AppError::bad_request(format!(
            "Your team has used its {} runs for today (cancelled runs do not count). \
             Pick your next settings carefully: more runs tomorrow.",
            env.max_runs_per_day
        )));
    }
    let settings_json = serde_json::to_string(&settings).map_err(AppError::internal)?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (class_id, team_id, submitted_by, settings) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(student.class_id)
    .bind(student.team_id)
    .bind(&student.name)
    .bind(settings_json)
    .fetch_one(&pool)
    .await?;
    env.wake_worker();
    ssr::announce_run(id);
    Ok(SubmitOutcome::Queued(id))
}

/// Moves a queued run to the front of the queue (instructors).
#[server(prefix = "/api", endpoint = "prioritize-run")]
pub async fn prioritize_run(run_id: i64) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    let instructor = crate::auth::ssr::require_instructor(&pool).await?;
    let class_id: Option<i64> = sqlx::query_scalar("SELECT class_id FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(&pool)
        .await?;
    let class_id = class_id.ok_or_else(|| AppError::not_found("There is no such run."))?;
    crate::auth::ssr::check_class_owner(&pool, &instructor, class_id).await?;
    let moved = sqlx::query(
        "UPDATE runs SET priority = (SELECT COALESCE(MAX(priority), 0) + 1 FROM runs) \
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(run_id)
    .execute(&pool)
    .await?;
    if moved.rows_affected() == 0 {
        return Err(AppError::bad_request("Only a waiting run can be moved up."));
    }
    ssr::announce_run(run_id);
    Ok(())
}

/// One run's curves for the team's comparison chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCurves {
    /// The run.
    pub run_id: i64,
    /// Its settings in one line.
    pub label: String,
    /// (step, training loss), at most [`MAX_CURVE_POINTS`] evenly spaced points.
    pub loss: Vec<(f64, f64)>,
    /// (step, validation accuracy in %).
    pub validation_accuracy: Vec<(f64, f64)>,
}

/// The most points a comparison curve keeps.
pub const MAX_CURVE_POINTS: usize = 200;
/// How many of the team's latest runs the comparison shows.
pub const COMPARED_RUNS: i64 = 6;

/// The team's latest runs' loss and validation curves, for comparing them in one chart.
#[server(prefix = "/api", endpoint = "team-curves")]
pub async fn team_curves() -> Result<Vec<RunCurves>, AppError> {
    let pool = crate::db::pool()?;
    let student = crate::auth::ssr::require_student(&pool).await?;
    let run_ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE team_id = $1 AND status <> 'queued' ORDER BY id DESC LIMIT $2",
    )
    .bind(student.team_id)
    .bind(COMPARED_RUNS)
    .fetch_all(&pool)
    .await?;
    let mut curves = Vec::new();
    for run_id in run_ids.into_iter().rev() {
        let run = ssr::loss_curves(&pool, run_id).await?;
        curves.push(RunCurves {
            run_id,
            label: ssr::run_label(&pool, run_id).await?,
            loss: run.loss,
            validation_accuracy: run.validation_accuracy,
        });
    }
    Ok(curves)
}

/// The caller's team's runs, newest first (students), or a class's (instructors).
#[server(prefix = "/api", endpoint = "team-runs")]
pub async fn team_runs(class_id: Option<i64>) -> Result<Vec<RunSummary>, AppError> {
    let pool = crate::db::pool()?;
    match ssr::viewpoint(&pool, class_id).await? {
        ssr::Viewpoint::Team { team_id, .. } => {
            ssr::summaries(&pool, ssr::RunFilter::Team(team_id)).await
        }
        ssr::Viewpoint::Instructor { class_id } => {
            ssr::summaries(&pool, ssr::RunFilter::Class(class_id)).await
        }
    }
}

/// One run, for its team or its class's instructor.
#[server(prefix = "/api", endpoint = "run")]
pub async fn run_detail(run_id: i64) -> Result<RunSummary, AppError> {
    let pool = crate::db::pool()?;
    ssr::check_run_access(&pool, run_id).await?;
    ssr::summaries(&pool, ssr::RunFilter::Run(run_id))
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("There is no such run."))
}

/// Cancels a queued or running run (its team or the instructor).
#[server(prefix = "/api", endpoint = "cancel-run")]
pub async fn cancel_run(run_id: i64) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    ssr::check_run_access(&pool, run_id).await?;
    let queued = sqlx::query(
        "UPDATE runs SET status = 'cancelled', finished_at = $1, \
         message = 'Cancelled before it started.' WHERE id = $2 AND status = 'queued'",
    )
    .bind(crate::db::now())
    .bind(run_id)
    .execute(&pool)
    .await?;
    if queued.rows_affected() == 0 {
        let running = sqlx::query(
            "UPDATE runs SET cancel_requested = TRUE WHERE id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .execute(&pool)
        .await?;
        if running.rows_affected() == 0 {
            return Err(AppError::bad_request("That run has already ended."));
        }
    }
    ssr::announce_run(run_id);
    Ok(())
}

/// The class's leaderboards: public validation accuracy, and SST-2 dev accuracy once
/// revealed (instructors always see it).
#[server(prefix = "/api", endpoint = "boards")]
pub async fn class_boards(class_id: Option<i64>) -> Result<Boards, AppError> {
    let pool = crate::db::pool()?;
    let (class_id, instructor) = match ssr::viewpoint(&pool, class_id).await? {
        ssr::Viewpoint::Team { class_id, .. } => (class_id, false),
        ssr::Viewpoint::Instructor { class_id } => (class_id, true),
    };
    let revealed: i64 = sqlx::query_scalar(
        "SELECT CAST(private_board_revealed AS INTEGER) FROM classes WHERE id = $1",
    )
    .bind(class_id)
    .fetch_one(&pool)
    .await?;
    let revealed = revealed != 0;
    Ok(Boards {
        public: ssr::board(&pool, class_id, ssr::Board::Public).await?,
        private: if revealed || instructor {
            Some(ssr::board(&pool, class_id, ssr::Board::Private).await?)
        } else {
            None
        },
        revealed,
    })
}

/// Shows or hides the private (SST-2 dev) board to the class's students.
#[server(prefix = "/api", endpoint = "reveal-board")]
pub async fn reveal_board(class_id: i64, revealed: bool) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    sqlx::query("UPDATE classes SET private_board_revealed = $1 WHERE id = $2")
        .bind(revealed)
        .bind(class_id)
        .execute(&pool)
        .await?;
    crate::classroom::ssr::announce(class_id);
    Ok(())
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! The run form's checks, run queries, and what the server shares with the worker.

    use super::{BoardLine, MAX_CURVE_POINTS, ModelChoice, RunStatus, RunSummary};
    use crate::db::DbPool;
    use crate::error::AppError;
    use run_protocol::{
        EvalSplit, Event, EventKind, LIMITS, Limits, LoraSettings, Method, RunSettings,
    };
    use std::path::PathBuf;
    use std::sync::Arc;
    use tokio::sync::{Notify, broadcast};

    /// What the run server functions and the worker share, provided by the server.
    #[derive(Debug, Clone)]
    pub struct RunEnvironment {
        /// One HF model directory per model.
        pub models_dir: PathBuf,
        /// Runs a team may have waiting at once.
        pub max_queued_per_team: i64,
        /// Runs (not cancelled) a team may submit per UTC day; they all count on the boards.
        pub max_runs_per_day: i64,
        /// SST-2 training sentences after the validation split, when the data is there.
        pub train_examples: Option<usize>,
        /// The compute device, described.
        pub device: String,
        /// Rough training speed of the default model on this device.
        pub examples_per_second: f64,
        /// Wakes the worker when a run is queued.
        pub wake: Arc<Notify>,
        /// Every persisted run event and status change, for the live pages.
        pub events: broadcast::Sender<RunUpdate>,
        /// Where each run keeps its checkpoints and exported model.
        pub runs_dir: PathBuf,
        /// The fine-tuned model tried last, kept loaded.
        pub trained: TrainedModel,
    }

    /// The most recently tried fine-tuned model, loaded on the CPU.
    #[derive(Clone, Default)]
    pub struct TrainedModel(Arc<std::sync::Mutex<Option<(i64, trainer::inference::Predictor)>>>);

    impl std::fmt::Debug for TrainedModel {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("TrainedModel")
        }
    }

    impl TrainedModel {
        /// Runs `read` on run `run_id`'s exported model in `dir`, loading it first if it is
        /// not the one kept loaded.
        pub fn with_model<T>(
            &self,
            run_id: i64,
            dir: &std::path::Path,
            read: impl FnOnce(&trainer::inference::Predictor) -> Result<T, AppError>,
        ) -> Result<T, AppError> {
            let mut loaded = self
                .0
                .lock()
                .map_err(|_| AppError::internal("model cache poisoned"))?;
            if loaded.as_ref().map(|(id, _)| *id) != Some(run_id) {
                let cpu = trainer::device::ComputeDevice::cpu();
                let predictor = trainer::inference::Predictor::load(dir, Some(64), cpu.device())
                    .map_err(|e| AppError::internal(format!("run {run_id}'s model: {e}")))?;
                *loaded = Some((run_id, predictor));
            }
            let (_, predictor) = loaded
                .as_ref()
                .ok_or_else(|| AppError::internal("no model"))?;
            read(predictor)
        }

        /// Reads `text` with run `run_id`'s exported model in `dir`.
        pub fn predict(
            &self,
            run_id: i64,
            dir: &std::path::Path,
            text: &str,
        ) -> Result<super::ModelReading, AppError> {
            self.with_model(run_id, dir, |predictor| {
                let prediction = predictor
                    .predict(text)
                    .map_err(|e| AppError::bad_request(e.to_string()))?;
                Ok(super::ModelReading {
                    tokens: prediction.tokens,
                    label: prediction.label,
                    probabilities: crate::widgets::labelled(prediction.probs),
                    truncated: prediction.truncated,
                })
            })
        }
    }

    /// Something new about a run.
    #[derive(Debug, Clone, PartialEq)]
    pub struct RunUpdate {
        /// The run.
        pub run_id: i64,
        /// The event's sequence number and JSON, or `None` for a status change.
        pub event: Option<(i64, String)>,
    }

    /// The calling student's team's latest finished run with a model on disk, if any.
    pub async fn team_model(pool: &DbPool) -> Result<Option<(i64, PathBuf)>, AppError> {
        let crate::auth::ssr::Caller::Student(student) = crate::auth::ssr::caller(pool).await?
        else {
            return Ok(None);
        };
        let env: RunEnvironment = AppError::from_context("run environment")?;
        let runs: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE team_id = $1 AND status = 'succeeded' ORDER BY id DESC",
        )
        .bind(student.team_id)
        .fetch_all(pool)
        .await?;
        Ok(runs
            .into_iter()
            .map(|id| (id, env.model_dir(id)))
            .find(|(_, dir)| dir.join("model.safetensors").is_file()))
    }

    impl RunEnvironment {
        /// The usable models: directories with config, weights and tokenizer.
        pub fn models(&self) -> Vec<ModelChoice> {
            let Ok(entries) = std::fs::read_dir(&self.models_dir) else {
                return Vec::new();
            };
            let mut models: Vec<ModelChoice> = entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let dir = entry.path();
                    let complete = ["config.json", "model.safetensors", "tokenizer.json"]
                        .iter()
                        .all(|f| dir.join(f).is_file());
                    if !complete {
                        return None;
                    }
                    let config = trainer::loader::read_config(&dir).ok()?;
                    Some(ModelChoice {
                        name: entry.file_name().to_string_lossy().into_owned(),
                        params: trainer::train::param_counts(&config, 2, Method::Full).total,
                    })
                })
                .collect();
            models.sort_by(|a, b| a.name.cmp(&b.name));
            models
        }

        /// Where run `run_id`'s fine-tuned model is exported, as an HF directory.
        pub fn model_dir(&self, run_id: i64) -> PathBuf {
            self.runs_dir.join(run_id.to_string()).join("model")
        }

        /// Tells the worker to look at the queue now.
        pub fn wake_worker(&self) {
            self.wake.notify_one();
        }
    }

    /// A run's stored loss and validation curves.
    pub struct LossCurves {
        /// (step, training loss), at most [`MAX_CURVE_POINTS`] evenly spaced points.
        pub loss: Vec<(f64, f64)>,
        /// (step, validation loss) per evaluation.
        pub validation_loss: Vec<(f64, f64)>,
        /// (step, validation accuracy in %) per evaluation.
        pub validation_accuracy: Vec<(f64, f64)>,
    }

    /// Reads a run's curves from its stored step and evaluation events.
    pub async fn loss_curves(pool: &DbPool, run_id: i64) -> Result<LossCurves, AppError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, payload FROM run_events WHERE run_id = $1 AND kind IN ($2, $3) ORDER BY seq",
        )
        .bind(run_id)
        .bind(EventKind::Step.as_str())
        .bind(EventKind::Eval.as_str())
        .fetch_all(pool)
        .await?;
        let mut curves = LossCurves {
            loss: Vec::new(),
            validation_loss: Vec::new(),
            validation_accuracy: Vec::new(),
        };
        for (seq, payload) in rows {
            match serde_json::from_str::<Event>(&payload) {
                Ok(Event::Step { step, loss, .. }) => curves.loss.push((step as f64, loss)),
                Ok(Event::Eval {
                    step,
                    split: EvalSplit::Validation,
                    loss,
                    accuracy,
                }) => {
                    curves.validation_loss.push((step as f64, loss));
                    curves
                        .validation_accuracy
                        .push((step as f64, 100.0 * accuracy));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(run = run_id, seq, %error, "a stored run event does not parse; its curve point is left out");
                }
            }
        }
        curves.loss = downsample(&curves.loss, MAX_CURVE_POINTS);
        Ok(curves)
    }

    /// A run's settings in one line.
    pub async fn run_label(pool: &DbPool, run_id: i64) -> Result<String, AppError> {
        let settings: String = sqlx::query_scalar("SELECT settings FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(pool)
            .await?;
        let settings: RunSettings = serde_json::from_str(&settings).map_err(AppError::internal)?;
        Ok(settings.summary())
    }

    /// Keeps at most `max` points: the mean of each of `max` equal slices, so the curve's
    /// shape survives and a long run stays cheap to draw.
    pub fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
        if points.len() <= max || max == 0 {
            return points.to_vec();
        }
        (0..max)
            .filter_map(|i| {
                let slice = &points[i * points.len() / max..(i + 1) * points.len() / max];
                (!slice.is_empty()).then(|| {
                    let n = slice.len() as f64;
                    (
                        slice.iter().map(|p| p.0).sum::<f64>() / n,
                        slice.iter().map(|p| p.1).sum::<f64>() / n,
                    )
                })
            })
            .collect()
    }

    /// The UTC calendar date of `time` as `YYYY-MM-DD`, which compares as that day's first
    /// [`crate::db::timestamp`].
    pub fn utc_date(time: std::time::SystemTime) -> String {
        let mut date = crate::db::timestamp(time);
        date.truncate(10);
        date
    }

    /// Tells open pages that a run changed status.
    pub fn announce_run(run_id: i64) {
        if let Some(env) = leptos::prelude::use_context::<RunEnvironment>() {
            let _ = env.events.send(RunUpdate {
                run_id,
                event: None,
            });
        }
    }

    /// The run form as typed: every field is text, so a bad value gets its own message.
    #[derive(Debug, Clone, Default)]
    pub struct RunForm {
        /// Model name.
        pub model: String,
        /// "full" or "lora".
        pub method: String,
        /// LoRA rank.
        pub lora_rank: String,
        /// LoRA alpha.
        pub lora_alpha: String,
        /// Learning rate.
        pub learning_rate: String,
        /// Batch size.
        pub batch_size: String,
        /// Epochs.
        pub epochs: String,
        /// Warmup ratio.
        pub warmup_ratio: String,
        /// Longest sequence.
        pub max_len: String,
        /// Train subset (empty = all).
        pub train_subset: String,
        /// Seed.
        pub seed: String,
        /// Probe sentence.
        pub probe_sentence: String,
    }

    /// Parses one number field, with a message naming the field.
    fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, String> {
        text.trim().parse().map_err(|_| {
            format!(
                "{field}: \u{201c}{}\u{201d} is not a number.",
                text.trim().chars().take(24).collect::<String>()
            )
        })
    }

    /// A number within `range` (above its start when `low_open`), with a message naming
    /// the field.
    fn float_in(
        field: &str,
        text: &str,
        range: &std::ops::RangeInclusive<f64>,
        low_open: bool,
    ) -> Result<f64, String> {
        Limits::check_float(field, number(field, text)?, range, low_open)
    }

    /// A whole number within `range`, with a message naming the field (a negative number
    /// gets the range, not "not a number").
    fn whole_in(
        field: &str,
        text: &str,
        range: &std::ops::RangeInclusive<usize>,
    ) -> Result<usize, String> {
        let value: i64 = number(field, text)?;
        match usize::try_from(value) {
            Ok(value) => Limits::check_whole(field, value, range),
            Err(_) => Err(format!(
                "{field} must be from {} to {}; {value} is not.",
                range.start(),
                range.end()
            )),
        }
    }

    /// Checks the form: hard limits are errors; values outside the lesson's recommended
    /// ranges come back as hints.
    pub fn check_form(
        form: &RunForm,
        models: &[ModelChoice],
    ) -> Result<(RunSettings, Vec<String>), String> {
        let model = form.model.trim();
        if !models.iter().any(|m| m.name == model) {
            return Err(format!(
                "There is no model called \u{201c}{}\u{201d} here; pick one from the list.",
                model.chars().take(40).collect::<String>()
            ));
        }
        let lora = match form.method.trim() {
            "full" => None,
            "lora" => {
                let rank = whole_in("LoRA rank", &form.lora_rank, &LIMITS.lora_rank)?;
                let alpha = if form.lora_alpha.trim().is_empty() {
                    LoraSettings::default_alpha(rank)
                } else {
                    float_in("LoRA alpha", &form.lora_alpha, &LIMITS.lora_alpha, true)?
                };
                Some((rank, alpha))
            }
            other => {
                return Err(format!(
                    "Method must be full or lora, not \u{201c}{}\u{201d}.",
                    other.chars().take(24).collect::<String>()
                ));
            }
        };
        let learning_rate = LIMITS.check_rate(number("Learning rate", &form.learning_rate)?)?;
        let batch_size = whole_in("Batch size", &form.batch_size, &LIMITS.batch_size)?;
        let epochs = whole_in("Epochs", &form.epochs, &LIMITS.epochs)?;
        let warmup_ratio = float_in(
            "Warmup ratio",
            &form.warmup_ratio,
            &LIMITS.warmup_ratio,
            false,
        )?;
        let max_len = whole_in("Max length", &form.max_len, &LIMITS.max_len)?;
        let train_subset = if form.train_subset.trim().is_empty() {
            None
        } else {
            Some(whole_in(
                "Training sentences",
                &form.train_subset,
                &LIMITS.train_subset,
            )?)
        };
        let seed: u64 = number("Seed", &form.seed)?;
        let probe_sentence = form.probe_sentence.trim().to_string();
        if probe_sentence.chars().count() > crate::widgets::MAX_CHARS {
            return Err(format!(
                "The attention sentence has more than {} characters.",
                crate::widgets::MAX_CHARS
            ));
        }

        let mut hints = Vec::new();
        let (low, high) = if lora.is_some() {
            (1e-4, 1e-3)
        } else {
            (1e-5, 5e-5)
        };
        if learning_rate > high * 2.0 {
            hints.push(format!(
                "A learning rate of {learning_rate:e} is far above the recommended {low:e} to {high:e}{}; expect the loss to jump around or become NaN.",
                if lora.is_some() { " for LoRA" } else { "" }
            ));
        } else if learning_rate < low / 2.0 {
            hints.push(format!(
                "A learning rate of {learning_rate:e} is far below the recommended {low:e} to {high:e}; the model will barely change."
            ));
        }
        if !(8..=32).contains(&batch_size) {
            hints.push(format!(
                "The lesson recommends a batch size of 8, 16 or 32; {batch_size} may {}.",
                if batch_size > 32 {
                    "run out of memory"
                } else {
                    "make training noisy and slow"
                }
            ));
        }
        if !(2..=5).contains(&epochs) {
            hints.push(format!(
                "The lesson recommends 2 to 5 epochs; {epochs} may {}.",
                if epochs > 5 {
                    "overfit and keep the GPU from other teams"
                } else {
                    "undertrain"
                }
            ));
        }
        if warmup_ratio > 0.2 {
            hints.push(format!(
                "The lesson recommends a warmup ratio of 0.0 to 0.2; {warmup_ratio} spends many steps at a low learning rate."
            ));
        }
        let settings = RunSettings {
            model: model.to_string(),
            lora_rank: lora.map(|(rank, _)| rank),
            lora_alpha: lora.map(|(_, alpha)| alpha),
            lora_dropout: None,
            learning_rate,
            batch_size,
            epochs,
            warmup_ratio,
            max_len,
            train_subset,
            seed,
            probe_sentence,
        };
        settings.check_limits()?;
        Ok((settings, hints))
    }

    /// Whose runs, boards and live class events a caller sees.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Viewpoint {
        /// A student: their own class and team.
        Team {
            /// The student's class.
            class_id: i64,
            /// The student's team.
            team_id: i64,
        },
        /// An instructor looking at one of their classes.
        Instructor {
            /// The class.
            class_id: i64,
        },
    }

    impl Viewpoint {
        /// The class seen.
        pub fn class_id(self) -> i64 {
            match self {
                Viewpoint::Team { class_id, .. } | Viewpoint::Instructor { class_id } => class_id,
            }
        }
    }

    /// The caller's viewpoint: students see their own class (`class_id` is ignored);
    /// instructors must name one of theirs.
    pub async fn viewpoint(pool: &DbPool, class_id: Option<i64>) -> Result<Viewpoint, AppError> {
        viewpoint_of(pool, crate::auth::ssr::caller(pool).await?, class_id).await
    }

    /// [`viewpoint`] for a known caller (the server's live class events use it too).
    pub async fn viewpoint_of(
        pool: &DbPool,
        caller: crate::auth::ssr::Caller,
        class_id: Option<i64>,
    ) -> Result<Viewpoint, AppError> {
        use crate::auth::ssr::Caller;
        match (caller, class_id) {
            (Caller::Student(student), _) => Ok(Viewpoint::Team {
                class_id: student.class_id,
                team_id: student.team_id,
            }),
            (Caller::Instructor(instructor), Some(class_id)) => {
                crate::auth::ssr::check_class_owner(pool, &instructor, class_id).await?;
                Ok(Viewpoint::Instructor { class_id })
            }
            (Caller::Instructor(_), None) => Err(AppError::bad_request("Name the class.")),
            (Caller::Anonymous, _) => Err(crate::auth::ssr::join_first()),
        }
    }

    /// Checks the caller may see `run_id`: a member of its team or its class's instructor.
    pub async fn check_run_access(pool: &DbPool, run_id: i64) -> Result<(), AppError> {
        let caller = crate::auth::ssr::caller(pool).await?;
        check_access(pool, &caller, run_id).await
    }

    /// The access rule behind [`check_run_access`], for a known caller (the server's own
    /// routes use it too).
    pub async fn check_access(
        pool: &DbPool,
        caller: &crate::auth::ssr::Caller,
        run_id: i64,
    ) -> Result<(), AppError> {
        let owner: Option<(i64, i64)> =
            sqlx::query_as("SELECT class_id, team_id FROM runs WHERE id = $1")
                .bind(run_id)
                .fetch_optional(pool)
                .await?;
        use crate::auth::ssr::Caller;
        let not_found = || AppError::not_found("There is no such run.");
        match (caller, owner) {
            (Caller::Anonymous, _) => Err(crate::auth::ssr::join_first()),
            (_, None) => Err(not_found()),
            (Caller::Student(student), Some((_, team))) if team == student.team_id => Ok(()),
            // Another team's run is not theirs to see; say so without confirming it exists.
            (Caller::Student(_), Some(_)) => Err(not_found()),
            (Caller::Instructor(instructor), Some((class, _))) => {
                crate::auth::ssr::check_class_owner(pool, instructor, class).await
            }
        }
    }

    /// Which runs [`summaries`] lists.
    #[derive(Debug, Clone, Copy)]
    pub enum RunFilter {
        /// A team's runs.
        Team(i64),
        /// A class's runs.
        Class(i64),
        /// One run.
        Run(i64),
    }

    macro_rules! run_sql {
        ($filter:literal) => {
            concat!(
                "SELECT r.id, t.name, r.submitted_by, r.status, r.settings, r.created_at, ",
                "(SELECT COUNT(*) FROM runs q WHERE q.status = 'queued' AND q.id <= r.id), ",
                "r.validation_accuracy, r.message ",
                "FROM runs r JOIN teams t ON t.id = r.team_id WHERE ",
                $filter,
                " ORDER BY r.id DESC"
            )
        };
    }

    /// Run summaries, newest first. The queue position counts queued runs submitted
    /// earlier (the worker also rotates between teams, so it is an upper bound).
    pub async fn summaries(pool: &DbPool, filter: RunFilter) -> Result<Vec<RunSummary>, AppError> {
        let (sql, value) = match filter {
            RunFilter::Team(id) => (run_sql!("r.team_id = $1"), id),
            RunFilter::Class(id) => (run_sql!("r.class_id = $1"), id),
            RunFilter::Run(id) => (run_sql!("r.id = $1"), id),
        };
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            String,
            i64,
            Option<f64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(sql).bind(value).fetch_all(pool).await?;
        rows.into_iter()
            .map(
                |(
                    id,
                    team,
                    submitted_by,
                    status,
                    settings,
                    created_at,
                    position,
                    accuracy,
                    message,
                )| {
                    let status = RunStatus::parse(&status).ok_or_else(|| {
                        AppError::internal(format!("unknown run status {status}"))
                    })?;
                    Ok(RunSummary {
                        id,
                        team,
                        submitted_by,
                        status,
                        settings: serde_json::from_str(&settings).map_err(AppError::internal)?,
                        created_at,
                        queue_position: (status == RunStatus::Queued).then_some(position),
                        validation_accuracy: accuracy,
                        message,
                    })
                },
            )
            .collect()
    }

    /// Which leaderboard.
    #[derive(Debug, Clone, Copy)]
    pub enum Board {
        /// Validation accuracy.
        Public,
        /// SST-2 dev accuracy.
        Private,
    }

    /// Best accuracy per team, best first (ties: the earlier run).
    pub async fn board(
        pool: &DbPool,
        class_id: i64,
        which: Board,
    ) -> Result<Vec<BoardLine>, AppError> {
        let sql = match which {
            Board::Public => {
                "SELECT t.name, r.validation_accuracy, r.id FROM runs r JOIN teams t ON t.id = r.team_id \
                WHERE r.class_id = $1 AND r.status = 'succeeded' AND r.validation_accuracy IS NOT NULL \
                ORDER BY r.validation_accuracy DESC, r.id"
            }
            Board::Private => {
                "SELECT t.name, r.private_accuracy, r.id FROM runs r JOIN teams t ON t.id = r.team_id \
                WHERE r.class_id = $1 AND r.status = 'succeeded' AND r.private_accuracy IS NOT NULL \
                ORDER BY r.private_accuracy DESC, r.id"
            }
        };
        let rows: Vec<(String, f64, i64)> =
            sqlx::query_as(sql).bind(class_id).fetch_all(pool).await?;
        let mut lines: Vec<BoardLine> = Vec::new();
        for (team, accuracy, run_id) in rows {
            if !lines.iter().any(|l| l.team == team) {
                lines.push(BoardLine {
                    team,
                    accuracy,
                    run_id,
                });
            }
        }
        Ok(lines)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn models() -> Vec<ModelChoice> {
            vec![ModelChoice {
                name: "all-MiniLM-L6-v2".into(),
                params: 22_713_986,
            }]
        }

        fn form() -> RunForm {
            RunForm {
                model: "all-MiniLM-L6-v2".into(),
                method: "full".into(),
                lora_rank: "16".into(),
                lora_alpha: String::new(),
                learning_rate: "2e-5".into(),
                batch_size: "32".into(),
                epochs: "3".into(),
                warmup_ratio: "0.1".into(),
                max_len: "64".into(),
                train_subset: String::new(),
                seed: "42".into(),
                probe_sentence: "the movie was not good .".into(),
            }
        }

        #[test]
        fn downsampling_keeps_short_curves_and_averages_long_ones() {
            let short = vec![(1.0, 2.0), (2.0, 4.0)];
            assert_eq!(downsample(&short, 10), short);
            let long: Vec<(f64, f64)> = (1..=1000).map(|i| (i as f64, 1.0)).collect();
            let kept = downsample(&long, 100);
            assert_eq!(kept.len(), 100);
            assert_eq!(kept[0], (5.5, 1.0));
        }

        #[test]
        fn dates_are_utc_calendar_days() {
            let at =
                |secs: u64| utc_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
            assert_eq!(at(0), "1970-01-01");
            assert_eq!(at(951_782_400), "2000-02-29");
            assert_eq!(at(1_795_651_200), "2026-11-26");
            assert_eq!(at(1_795_737_599), "2026-11-26");
        }

        #[test]
        fn recommended_settings_pass_without_hints() {
            let (settings, hints) = check_form(&form(), &models()).unwrap();
            assert!(hints.is_empty(), "{hints:?}");
            assert_eq!(settings.lora_rank, None);
            assert_eq!(settings.train_subset, None);
        }

        #[test]
        fn a_huge_learning_rate_is_a_hint_not_an_error() {
            let (_, hints) = check_form(
                &RunForm {
                    learning_rate: "1e-3".into(),
                    ..form()
                },
                &models(),
            )
            .unwrap();
            assert_eq!(hints.len(), 1);
            assert!(hints[0].contains("far above"), "{}", hints[0]);
        }

        #[test]
        fn hard_limits_are_errors_naming_the_field() {
            let cases = [
                (
                    RunForm {
                        learning_rate: "NaN".into(),
                        ..form()
                    },
                    "Learning rate",
                ),
                (
                    RunForm {
                        learning_rate: "-1".into(),
                        ..form()
                    },
                    "Learning rate",
                ),
                (
                    RunForm {
                        learning_rate: "fast".into(),
                        ..form()
                    },
                    "not a number",
                ),
                (
                    RunForm {
                        batch_size: "0".into(),
                        ..form()
                    },
                    "Batch size",
                ),
                (
                    RunForm {
                        batch_size: "100000".into(),
                        ..form()
                    },
                    "Batch size",
                ),
                (
                    RunForm {
                        epochs: "2.5".into(),
                        ..form()
                    },
                    "Epochs",
                ),
                (
                    RunForm {
                        max_len: "4".into(),
                        ..form()
                    },
                    "Max length",
                ),
                (
                    RunForm {
                        model: "gpt-9".into(),
                        ..form()
                    },
                    "no model",
                ),
                (
                    RunForm {
                        method: "magic".into(),
                        ..form()
                    },
                    "Method",
                ),
                (
                    RunForm {
                        method: "lora".into(),
                        lora_rank: "0".into(),
                        ..form()
                    },
                    "LoRA rank",
                ),
            ];
            for (bad, expected) in cases {
                let error = check_form(&bad, &models()).unwrap_err();
                assert!(error.contains(expected), "{expected}: {error}");
            }
        }

        #[test]
        fn lora_gets_alpha_twice_the_rank_by_default() {
            let (settings, hints) = check_form(
                &RunForm {
                    method: "lora".into(),
                    learning_rate: "5e-4".into(),
                    ..form()
                },
                &models(),
            )
            .unwrap();
            assert_eq!(settings.lora_rank, Some(16));
            assert_eq!(settings.lora_alpha, Some(32.0));
            assert!(hints.is_empty(), "{hints:?}");
        }
    }
}

#[cfg(test)]
mod form_default_tests {
    use super::*;

    #[test]
    fn switching_method_swaps_an_untouched_default_learning_rate_only() {
        let full = format_rate(DEFAULT_LEARNING_RATE_FULL);
        let lora = format_rate(DEFAULT_LEARNING_RATE_LORA);
        assert_eq!((full.as_str(), lora.as_str()), ("5e-5", "1e-3"));
        assert_eq!(default_learning_rate_after_switch(&full, "lora"), lora);
        assert_eq!(default_learning_rate_after_switch(&lora, "full"), full);
        // The same number typed another way is still the untouched default.
        assert_eq!(default_learning_rate_after_switch("0.00005", "lora"), lora);
        assert_eq!(default_learning_rate_after_switch("3e-5", "lora"), "3e-5");
        assert_eq!(default_learning_rate_after_switch("2e-3", "full"), "2e-3");
        assert_eq!(default_learning_rate_after_switch("5e-5", "full"), "5e-5");
    }
}
