//! Resuming a run from its checkpoint: the checkpoint must carry the run's own
//! [`ResumeKey`]; a damaged one gives way to the checkpoint before it.

use super::TrainError;
use super::optimizer::RunOptimizer;
use crate::checkpoint::{self, BestEvaluation, ResumeKey, Saved};
use crate::model::SequenceClassifier;
use burn::module::Module;

/// The model of the best validation evaluation so far, kept while training goes on.
pub(super) struct KeptModel {
    /// The evaluation it won.
    pub(super) evaluation: BestEvaluation,
    /// An inference copy.
    pub(super) model: SequenceClassifier,
}

/// What a run takes over from the checkpoint it resumes.
#[derive(Default)]
pub(super) struct Resumed {
    /// Steps taken before the checkpoint.
    pub(super) step: usize,
    /// That step, when the checkpoint is its folder's latest (see [`super::run::Run`]'s field).
    pub(super) own_latest_checkpoint: Option<usize>,
    /// The checkpoint's latest validation loss and accuracy.
    pub(super) last_validation: Option<(f64, f64)>,
    /// The checkpoint's kept model, when the run keeps its best.
    pub(super) best: Option<KeptModel>,
}

/// Why a checkpoint did not resume the run.
pub(super) enum Resume {
    /// It belongs to a run with other settings: the run stops and says so.
    OtherRun(TrainError),
    /// One of its files does not load: the checkpoint before it is tried.
    Damaged(String),
}

/// Restores `model` and `optimizer` from the checkpoint `saved`, which must have been
/// written by the run of `key`, with where the run stood and, when it keeps its best
/// (`keep_best`), the kept model.
pub(super) fn resume(
    saved: &Saved,
    key: &ResumeKey,
    keep_best: bool,
    model: SequenceClassifier,
    optimizer: RunOptimizer,
) -> Result<(SequenceClassifier, RunOptimizer, Resumed), Resume> {
    if !saved.progress.settings.is_for(key) {
        return Err(Resume::OtherRun(TrainError::Checkpoint(format!(
            "the checkpoint in {} belongs to a run with other settings; remove it to start afresh",
            saved.dir.display()
        ))));
    }
    let model = checkpoint::load_model(model, &saved.model_file()).map_err(Resume::Damaged)?;
    let optimizer = optimizer.load(saved, &model).map_err(Resume::Damaged)?;
    let step = saved.progress.step;
    let mut best = None;
    if let Some(evaluation) = saved.progress.best.filter(|_| keep_best) {
        let kept = checkpoint::load_model(model.clone(), &saved.best_model_file())
            .map_err(Resume::Damaged)?;
        best = Some(KeptModel {
            evaluation,
            model: kept.valid(),
        });
    }
    let resumed = Resumed {
        step,
        own_latest_checkpoint: saved.dir.ends_with("latest").then_some(step),
        last_validation: saved.progress.last_validation,
        best,
    };
    Ok((model, optimizer, resumed))
}
