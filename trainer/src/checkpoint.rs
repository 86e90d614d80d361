//! Checkpoints: the model, the optimizer's state and the run's progress, written together
//! so a run resumes exactly where it stopped. The learning-rate schedule is a function of the
//! step, and data order and dropout are functions of the seed and the step, so the step is
//! all the schedule and the data need.
//!
//! A checkpoint is written to `latest.partial/` and then swapped in, so a crash while
//! writing leaves the previous one intact.

use crate::model::SequenceClassifier;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a run stood when its checkpoint was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps completed.
    pub step: usize,
    /// The settings the run was started with; a checkpoint only resumes the same run.
    pub settings: String,
    /// Last validation loss and accuracy, if any evaluation ran.
    pub last_validation: Option<(f64, f64)>,
}

/// A checkpoint found on disk.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Its directory.
    pub dir: PathBuf,
    /// What it holds.
    pub progress: Progress,
}

impl Saved {
    /// The model weights file.
    pub fn model_file(&self) -> PathBuf {
        self.dir.join("model.bpk")
    }

    /// The optimizer state file.
    pub fn optimizer_file(&self) -> PathBuf {
        self.dir.join("optimizer.bpk")
    }
}

fn io(path: &Path, error: impl std::fmt::Display) -> String {
    format!("{}: {error}", path.display())
}

/// Writes a checkpoint of `model` and `optimizer` at `progress` into `root`.
pub fn save(
    root: &Path,
    model: &SequenceClassifier,
    optimizer: &ModuleOptimizer,
    progress: &Progress,
) -> Result<(), String> {
    let partial = root.join("latest.partial");
    let latest = root.join("latest");
    let previous = root.join("previous");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| io(&partial, e))?;
    model
        .clone()
        .save_file(partial.join("model.bpk"))
        .map_err(|e| io(&partial.join("model.bpk"), e))?;
    optimizer
        .save(partial.join("optimizer.bpk"))
        .map_err(|e| io(&partial.join("optimizer.bpk"), e))?;
    let json = serde_json::to_string_pretty(progress).map_err(|e| io(&partial, e))?;
    std::fs::write(partial.join("progress.json"), json)
        .map_err(|e| io(&partial.join("progress.json"), e))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| io(&previous, e))?;
    }
    if latest.exists() {
        std::fs::rename(&latest, &previous).map_err(|e| io(&latest, e))?;
    }
    std::fs::rename(&partial, &latest).map_err(|e| io(&partial, e))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| io(&previous, e))?;
    }
    Ok(())
}

/// Finds the newest complete checkpoint under `root`, if there is one.
pub fn find(root: &Path) -> Result<Option<Saved>, String> {
    for name in ["latest", "previous"] {
        let dir = root.join(name);
        let file = dir.join("progress.json");
        if !file.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        let progress =
            serde_json::from_str(&text).map_err(|e| io(&file, format!("not a checkpoint: {e}")))?;
        return Ok(Some(Saved { dir, progress }));
    }
    Ok(None)
}
