//! Fine-tuning on SST-2, as a plain loop in the shape of burn's custom training loop:
//! forward, `backward`, `GradientsParams`, clip, `optim.step`, emitting an [`Event`] at
//! every step so the browser can draw the run live.
//!
//! AdamW (weight decay 0.01, none on biases and LayerNorm), linear warmup then linear decay
//! (as HF's `get_linear_schedule_with_warmup`), global gradient-norm clipping at 1.0,
//! dropout from the checkpoint's config, dynamic padding, and seeded shuffling and dropout,
//! so a CPU run is reproducible from its seed. LoRA adds PEFT-style branches (with dropout)
//! beside the frozen query and value projections; see [`crate::model::LoraBranch`].
//!
//! [`train`] prepares a run (model, data, and the checkpoint it resumes from, if any), then
//! loops over the epochs' batches: one optimizer step each, the steps' losses read back
//! from the device in windows, validation and checkpoints when due. It finishes with the
//! test evaluation and the export. The run's state and phases are in `run.rs`; reading
//! losses back and spotting divergence in `readback.rs`; the optimizer in `optimizer.rs`;
//! f16's loss scaling in `loss_scale.rs`;
//! tokenizing and padding batches in `sentences.rs`; evaluations in `evaluate.rs`; the
//! start-up timing log in `start_phases.rs`. [`warm_up`] (`warm_up.rs`) compiles a GPU's
//! kernels for a run's settings before any run needs them.

mod evaluate;
mod loss_scale;
mod optimizer;
mod readback;
mod resume;
mod run;
mod sentences;
mod start_phases;
mod warm_up;

use crate::checkpoint::ResumeKey;
use crate::data::DataError;
use crate::device::{BackendKind, ComputeDevice, return_freed_cpu_memory};
use crate::loader::LoadError;
use crate::model::{EncoderConfig, SequenceClassifier};
use crate::optim::OptimizerChoice;
use crate::tokenize::TokenizeError;
use run::{Halt, Run};
use run_protocol::{Event, Method, Metrics, ParamCounts, RunSettings};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
pub use warm_up::{WarmUp, warm_up};

/// Everything a run needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// HF model directory to start from.
    pub model_dir: PathBuf,
    /// Directory with the SST-2 TSVs.
    pub sst2_dir: PathBuf,
    /// The run's settings as a team chose them (the model name in it is only a label:
    /// `model_dir` is what loads).
    pub settings: RunSettings,
    /// Sentences carved out of train for validation.
    pub validation_size: usize,
    /// Evaluate on validation every this many steps (and at each epoch end).
    pub eval_every: Option<usize>,
    /// Sentences whose attention maps are reported before training and at each evaluation.
    pub probe_sentences: Vec<String>,
    /// Where to keep checkpoints; a run finding one here resumes from it.
    pub checkpoint_dir: Option<PathBuf>,
    /// Also checkpoint when this much time has passed since the last one (epoch ends always).
    pub checkpoint_every: Option<std::time::Duration>,
    /// Write the fine-tuned model here as an HF directory when the run finishes.
    pub export_dir: Option<PathBuf>,
    /// Read losses and gradient norms back from the device every this many steps, in one
    /// transfer; `None` chooses by device (every step on the CPU, where reading is free;
    /// every [`GPU_READBACK_EVERY`] steps on a GPU, where each read waits for the queue).
    pub readback_every: Option<usize>,
    /// Resume only from a checkpoint at or before this step: the caller has stored the
    /// run's events up to it, and resuming from a later one would leave a gap in them.
    pub resume_at_most: Option<usize>,
    /// Which AdamW implementation steps the run; a resumed run keeps its checkpoint's.
    pub optimizer: OptimizerChoice,
    /// Also evaluate on the private test split (SST-2 dev) at each epoch end, for
    /// hyperparameter sweeps from the command line. The app never sets it: its leaderboard
    /// keeps that split for the end of a run.
    pub test_each_epoch: bool,
    /// Finish with the model of the evaluation with the best validation accuracy instead
    /// of the last step's: the final test, the export and the reported validation numbers
    /// are that model's. Selection uses the validation split only, never the test split.
    pub keep_best: bool,
    /// Stop training once this much time has passed in this process and finish with the
    /// model so far (its best, with `keep_best`); [`Metrics::stopped_at_time_limit`] says
    /// so. A run resumed after a restart gets the whole limit again.
    pub time_limit: Option<std::time::Duration>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("data/models/all-MiniLM-L6-v2"),
            sst2_dir: PathBuf::from("../shared/data/sst2"),
            settings: RunSettings::default(),
            validation_size: 2_000,
            eval_every: None,
            probe_sentences: vec!["the movie was not good .".into()],
            checkpoint_dir: None,
            checkpoint_every: Some(std::time::Duration::from_secs(600)),
            export_dir: None,
            readback_every: None,
            resume_at_most: None,
            optimizer: OptimizerChoice::Auto,
            test_each_epoch: false,
            keep_best: false,
            time_limit: None,
        }
    }
}

/// Steps between loss read-backs on a GPU (see [`TrainConfig::readback_every`]).
pub const GPU_READBACK_EVERY: usize = 10;

/// Why a run could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// The model could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A sentence could not be tokenized.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// A checkpoint could not be written or read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The fine-tuned model could not be exported.
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
}

impl TrainConfig {
    /// The settings a checkpoint must have been written with to resume this run: those
    /// that change its trajectory, and what it keeps.
    fn resume_key(&self) -> ResumeKey {
        ResumeKey {
            model_dir: self.model_dir.display().to_string(),
            settings: self.settings.clone(),
            validation_size: self.validation_size,
            keep_best: self.keep_best,
        }
    }

    /// Checks the settings against the run protocol's one table of limits, and the
    /// engine's own options; anything accepted here can run.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        // The protocol's messages start with the form's field names ("Batch size must…");
        // here they continue a sentence of their own.
        self.settings
            .check_limits()
            .map_err(|message| TrainError::Config(lower_first_word(&message)))?;
        if self.optimizer == OptimizerChoice::Flat && self.settings.lora_rank.is_some() {
            return bad(
                "the flat optimizer steps full fine-tuning only; use per-tensor for LoRA".into(),
            );
        }
        if self.eval_every == Some(0) {
            return bad("evaluating every 0 steps is not possible".into());
        }
        if self.readback_every == Some(0) {
            return bad("reading the loss back every 0 steps is not possible".into());
        }
        Ok(())
    }
}

/// `message` with its first word in lower case unless it is an abbreviation ("LoRA").
fn lower_first_word(message: &str) -> String {
    let first_word = message.split(' ').next().unwrap_or_default();
    let mut chars = first_word.chars();
    match chars.next() {
        Some(first) if chars.all(char::is_lowercase) => first
            .to_lowercase()
            .chain(message[first.len_utf8()..].chars())
            .collect(),
        _ => message.to_string(),
    }
}

/// Lets another thread stop a run; checked before every step.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Asks the run to stop at its next step.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Counts the parameters of a loaded model's architecture for `method` (see
/// [`run_protocol::param_counts`]).
pub fn param_counts(config: &EncoderConfig, num_labels: usize, method: Method) -> ParamCounts {
    run_protocol::param_counts(&config.shape(), num_labels, method)
}

/// Runs a whole fine-tuning run, reporting through `emit`. Never panics: errors and
/// panics inside burn (such as running out of GPU memory) end the run with
/// [`Event::Failed`]. Returns the final metrics when the run finished. On the CPU the
/// memory the run's tensors held goes back to the operating system when it ends.
pub fn train(
    config: &TrainConfig,
    device: &ComputeDevice,
    cancel: &CancelToken,
    emit: &mut dyn FnMut(Event),
) -> Option<Metrics> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(config, device, cancel, emit)
    }));
    if device.kind() == BackendKind::Cpu {
        return_freed_cpu_memory();
    }
    match outcome {
        Ok(Ok(metrics)) => metrics,
        Ok(Err(error)) => {
            emit(Event::Failed {
                reason: error.to_string(),
            });
            None
        }
        Err(panic) => {
            emit(Event::Failed {
                reason: failure_reason(&panic_message(&*panic)),
            });
            None
        }
    }
}

/// The message an engine panic carried (`panic!` with a literal or a formatted string), or a
/// general one.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the engine stopped unexpectedly".into())
}

/// Turns an engine panic message into advice.
fn failure_reason(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("out of memory") || lower.contains("outofmemory") || lower.contains("allocat")
    {
        format!(
            "The device ran out of memory. Lower the batch size or max_len and try again. ({message})"
        )
    } else {
        format!("The training engine stopped: {message}")
    }
}

/// A whole run: its metrics when it finished, `None` when it was cancelled or diverged
/// (its last event says which), an error when it failed.
fn run(
    config: &TrainConfig,
    compute: &ComputeDevice,
    cancel: &CancelToken,
    emit: &mut dyn FnMut(Event),
) -> Result<Option<Metrics>, TrainError> {
    config.validate()?;
    let (mut run, model) = Run::prepare(config, compute, emit)?;
    match train_steps(&mut run, model, cancel) {
        Ok(model) => run.finish(model).map(Some),
        Err(Halt::Ended) => Ok(None),
        Err(Halt::Failed(error)) => Err(error),
    }
}

/// The training loop: every batch not done before the checkpoint the run resumed from, one
/// optimizer step each, then the read-back, evaluation and checkpoint the step calls for.
/// Returns the trained model once every step has been reported.
fn train_steps(
    run: &mut Run<'_>,
    mut model: SequenceClassifier,
    cancel: &CancelToken,
) -> Result<SequenceClassifier, Halt> {
    'epochs: for epoch in 1..=run.epochs() {
        for batch in run.batches_left(epoch) {
            if cancel.is_cancelled() {
                return Err(run.cancelled());
            }
            model = run.step(model, epoch, &batch)?;
            let mut due = run.due(epoch);
            let out_of_time = run.out_of_time();
            // The last step before the time limit is evaluated, so the run finishes with a
            // measured model.
            due.evaluation |= out_of_time;
            run.read_back_if_due(&due)?;
            run.draw_untrained_attention();
            if due.evaluation {
                run.evaluate_and_keep_best(&model, epoch, due.end_of_epoch);
            }
            if due.checkpoint {
                run.checkpoint(&model)?;
            }
            if out_of_time {
                break 'epochs;
            }
        }
    }
    run.report_pending()?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_protocol::LoraSettings;

    #[test]
    fn lora_counts_match_the_lesson_for_minilm() {
        let config = crate::model::config::parse_config(
            r#"{"model_type":"bert","vocab_size":30522,"hidden_size":384,"num_hidden_layers":6,"num_attention_heads":12,"intermediate_size":1536,"max_position_embeddings":512,"type_vocab_size":2}"#,
            std::path::Path::new("config.json"),
        )
        .unwrap();
        let full = param_counts(&config, 2, Method::Full);
        assert_eq!(full.total, 22_713_216 + 384 * 2 + 2);
        let lora = param_counts(&config, 2, Method::Lora(LoraSettings::new(16, 32.0)));
        let adapters = lora.total - full.total;
        assert_eq!(adapters, 147_456);
        let share = adapters as f64 / full.total as f64;
        assert!((share - 0.0065).abs() < 0.0001, "{share}");
    }

    #[test]
    fn only_a_plain_first_word_is_lowered() {
        assert_eq!(lower_first_word("Batch size must be"), "batch size must be");
        assert_eq!(lower_first_word("LoRA rank must be"), "LoRA rank must be");
        assert_eq!(lower_first_word(""), "");
    }

    #[test]
    fn hard_limits_are_clear_errors() {
        let base = TrainConfig::default();
        let with = |change: fn(&mut RunSettings)| {
            let mut config = base.clone();
            change(&mut config.settings);
            config
        };
        for (config, needle) in [
            (with(|s| s.learning_rate = f64::NAN), "learning rate"),
            (with(|s| s.learning_rate = -1.0), "learning rate"),
            (with(|s| s.batch_size = 0), "batch size"),
            (with(|s| s.epochs = 1000), "epochs"),
            (with(|s| s.warmup_ratio = 1.5), "warmup"),
            (with(|s| s.max_len = 100_000), "max length"),
            (
                with(|s| s.set_method(Method::Lora(LoraSettings::new(0, 1.0)))),
                "rank",
            ),
            (
                with(|s| {
                    s.set_method(Method::Lora(LoraSettings {
                        dropout: 1.0,
                        ..LoraSettings::new(8, 16.0)
                    }))
                }),
                "dropout",
            ),
            (
                TrainConfig {
                    eval_every: Some(0),
                    ..base.clone()
                },
                "every 0 steps",
            ),
        ] {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(needle), "{error}");
        }
        base.validate().unwrap();
    }
}
