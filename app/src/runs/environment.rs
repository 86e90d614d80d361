//! What the run server functions, the worker and the live streams share, provided by the
//! server: the models folder, the queue's limits, the worker's wake-up and the broadcast of
//! run updates.

use super::ModelChoice;
use super::queue::{RecentRuns, RunQueue};
use crate::db::DbPool;
use crate::error::AppError;
use crate::live::ssr::{Notice, Notifier};
use run_protocol::Method;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{Notify, broadcast};

/// The run side's shared parts, provided by the server.
#[derive(Debug, Clone)]
pub struct RunEnvironment {
    /// One HF model directory per model.
    pub models_dir: PathBuf,
    /// Runs a team may have waiting at once.
    pub max_queued_per_team: i64,
    /// Runs (not cancelled) a team may submit per UTC day; they all count on the boards.
    pub max_runs_per_day: i64,
    /// The SST-2 folder, checked when read.
    pub data: crate::runs::dataset::ssr::TrainingData,
    /// Sentences carved out of SST-2 train for validation.
    pub validation_size: usize,
    /// The compute device, described.
    pub device: String,
    /// Training speed of the default model typical of this device, until runs here have
    /// measured it ([`super::timing::measured_speed`]).
    pub examples_per_second: f64,
    /// Wakes the worker when a run is queued.
    pub wake: Arc<Notify>,
    /// Every persisted run event and status change, for the live pages.
    pub events: broadcast::Sender<RunUpdate>,
    /// Where each run keeps its checkpoints and exported model.
    pub runs_dir: PathBuf,
    /// Tells the other nodes (PostgreSQL) about runs' events and status changes.
    pub notifier: Notifier,
}

/// Something new about a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUpdate {
    /// The run.
    pub run_id: i64,
    /// What changed.
    pub change: RunChange,
}

/// What changed about a run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunChange {
    /// This node stored the event with this sequence number and JSON.
    Event(i64, String),
    /// Another node stored the run's events up to this sequence number: read them from
    /// the database.
    StoredUpTo(i64),
    /// The run's status changed, or someone asked it to stop.
    Status,
    /// This node's database listener reconnected and may have missed notices about any
    /// run: every stream reads what it has not sent yet (the run id is not used).
    Resync,
}

impl RunEnvironment {
    /// The usable models: folders (not hidden ones, which are being added or removed) with
    /// a config the engine reads, weights and a tokenizer.
    pub fn models(&self) -> Vec<ModelChoice> {
        let Ok(entries) = std::fs::read_dir(&self.models_dir) else {
            return Vec::new();
        };
        let mut models: Vec<ModelChoice> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let dir = entry.path();
                if name.starts_with('.') || !trainer::catalog::is_model_folder(&dir) {
                    return None;
                }

                let config = trainer::loader::read_config(&dir).ok()?;
                Some(ModelChoice {
                    name,
                    params: trainer::train::param_counts(&config, 2, Method::Full).total,
                    family: config.family,
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

    /// Tells live pages and workers, on this node and the others, that run `run_id`
    /// changed status.
    pub fn announce(&self, run_id: i64) {
        let _ = self.events.send(RunUpdate {
            run_id,
            change: RunChange::Status,
        });
        self.notifier.notify(Notice::RunStatus(run_id));
    }

    /// Tells live pages, on this node and the others, that run `run_id` stored its event
    /// `seq` (`payload`).
    pub fn publish_event(&self, run_id: i64, seq: i64, payload: String) {
        let _ = self.events.send(RunUpdate {
            run_id,
            change: RunChange::Event(seq, payload),
        });
        self.notifier.notify(Notice::RunEvent(run_id, seq));
    }
}

/// Tells open pages that a run changed status (from a server function, whose context
/// holds the environment).
pub fn announce_run(run_id: i64) {
    if let Some(env) = leptos::prelude::use_context::<RunEnvironment>() {
        env.announce(run_id);
    }
}

/// The calling student's team's latest finished run with a model on disk, if any.
pub async fn team_model(pool: &DbPool) -> Result<Option<(i64, PathBuf)>, AppError> {
    let crate::auth::ssr::Caller::Student(student) = crate::auth::ssr::caller(pool).await? else {
        return Ok(None);
    };
    let env: RunEnvironment = AppError::from_context("run environment")?;
    let runs = RunQueue::new(pool.clone())
        .latest_succeeded(RecentRuns::Team(student.team_id), i64::MAX)
        .await?;
    Ok(runs
        .into_iter()
        .map(|id| (id, env.model_dir(id)))
        .find(|(_, dir)| dir.join("model.safetensors").is_file()))
}
