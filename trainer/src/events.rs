//! The typed stream a training run emits; the web app persists and broadcasts it.

use serde::{Deserialize, Serialize};

/// Which data an evaluation ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSplit {
    /// Carved out of train; public.
    Validation,
    /// The official SST-2 dev set; private until the instructor reveals it.
    PrivateTest,
}

/// Final numbers of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Accuracy on the validation split, 0..1.
    pub validation_accuracy: f64,
    /// Mean loss on the validation split.
    pub validation_loss: f64,
    /// Accuracy on the private test set (SST-2 dev), 0..1.
    pub private_test_accuracy: f64,
    /// The step whose model the run kept because it had the best validation accuracy,
    /// when that was not the last step (see `TrainConfig::keep_best`); the accuracies above
    /// are that model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_step: Option<usize>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The run has loaded its model and data.
    Started {
        /// The compute device, e.g. "CPU: 2 threads (burn flex)".
        device: String,
        /// "cpu" or "gpu".
        backend: String,
        /// All parameters, adapters included.
        params_total: usize,
        /// Parameters the optimizer updates.
        params_trainable: usize,
        /// Optimizer steps the run will take.
        steps_planned: usize,
        /// Training sentences.
        train_examples: usize,
        /// The step of the checkpoint this run resumed from, if it resumed.
        resumed_from_step: Option<usize>,
    },
    /// One optimizer step.
    Step {
        /// 1-based step number.
        step: usize,
        /// 1-based epoch number.
        epoch: usize,
        /// Training loss of this batch.
        loss: f64,
        /// Learning rate used for this step.
        lr: f64,
        /// Global gradient norm before clipping.
        grad_norm: f64,
        /// Training throughput over this step.
        examples_per_sec: f64,
    },
    /// An evaluation.
    Eval {
        /// Step after which it ran.
        step: usize,
        /// The data it ran on.
        split: EvalSplit,
        /// Mean cross-entropy.
        loss: f64,
        /// Fraction correct, 0..1.
        accuracy: f64,
    },
    /// Attention probabilities for one sentence.
    Attention {
        /// Step after which they were taken (0 = before training).
        step: usize,
        /// The sentence.
        sentence: String,
        /// Its tokens.
        tokens: Vec<String>,
        /// `[layer][head][query * tokens + key]`.
        matrices: Vec<Vec<Vec<f32>>>,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Step it holds.
        step: usize,
    },
    /// The run ended normally.
    Finished {
        /// Its final numbers.
        metrics: Metrics,
    },
    /// The loss became NaN/infinite or exploded; the run stopped at once.
    Diverged {
        /// The step at which it happened.
        step: usize,
        /// The loss seen (may be NaN, serialised as null).
        loss: Option<f64>,
    },
    /// The run could not go on.
    Failed {
        /// Why, with what to do about it.
        reason: String,
    },
    /// The run was cancelled.
    Cancelled {
        /// The last completed step.
        step: usize,
    },
}
