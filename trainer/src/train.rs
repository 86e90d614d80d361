//! Fine-tuning on SST-2, as a plain loop in the shape of burn's custom training loop:
//! forward, `backward`, `GradientsParams`, clip, `optim.step`, emitting an [`Event`] at
//! every step so the browser can draw the run live.
//!
//! AdamW (weight decay 0.01, none on biases and LayerNorm), linear warmup then linear decay
//! (as HF's `get_linear_schedule_with_warmup`), global gradient-norm clipping at 1.0,
//! dropout from the checkpoint's config, dynamic padding, and seeded shuffling and dropout,
//! so a CPU run is reproducible from its seed. LoRA adds PEFT-style branches (with dropout)
//! beside the frozen query and value projections; see [`crate::model::LoraBranch`].

use crate::checkpoint::{self, BestEvaluation};
use crate::data::{self, DataError, Example, LABELS, SplitOptions};
use crate::device::{BackendKind, ComputeDevice};
use crate::loader::{self, LoadError};
use crate::model::{BatchTensors, EncoderConfig, Family, SequenceClassifier};
use crate::optim::{AdamW, FlatAdamW, OptimizerChoice, clip_scale};
use crate::rng::SeededRng;
use crate::tokenize::{Encoding, TextEncoder, TokenBatch, TokenizeError, pad_to_multiple};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;
use run_protocol::{EvalSplit, Event, Method, Metrics, ParamCounts, RunSettings, StepPlan};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

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
        }
    }
}

/// Steps between loss read-backs on a GPU (see [`TrainConfig::readback_every`]).
pub const GPU_READBACK_EVERY: usize = 10;

/// Sequence lengths on a GPU are rounded up to a multiple of this (see
/// [`crate::tokenize::pad_to_multiple`]).
const GPU_PAD_MULTIPLE: usize = 8;

/// Weight decay for every weight matrix; biases and LayerNorm parameters get none.
const WEIGHT_DECAY: f32 = 0.01;
/// AdamW epsilon (as PyTorch's AdamW).
const ADAM_EPSILON: f32 = 1e-8;
/// Parameters that take no weight decay, by module path.
const NO_DECAY: &str = r"(\.bias$|norm\.(gamma|beta)$)";
/// Global gradient-norm clipping threshold.
const MAX_GRAD_NORM: f64 = 1.0;
/// A loss above this is treated as divergence (ln 2 ≈ 0.69 is chance for two labels).
const EXPLODED_LOSS: f64 = 1e3;
/// Sentences per evaluation batch.
const EVAL_BATCH: usize = 64;

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
    /// The settings that must match for a checkpoint to resume this run.
    fn resume_key(&self) -> String {
        format!(
            "model={} method={:?} lr={} batch={} epochs={} warmup={} max_len={} subset={:?} validation={} seed={}{}",
            self.model_dir.display(),
            self.settings.method(),
            self.settings.learning_rate,
            self.settings.batch_size,
            self.settings.epochs,
            self.settings.warmup_ratio,
            self.settings.max_len,
            self.settings.train_subset,
            self.validation_size,
            self.settings.seed,
            // Added only when set, so checkpoints written before this setting still resume.
            if self.keep_best { " keep_best" } else { "" }
        )
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
    let mut chars = message.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if second.is_lowercase() => first
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

/// The head parameters LoRA trains, as PEFT does for sequence classification: the
/// `classifier` module only (BERT's pretrained pooler and DistilBERT's pre-classifier stay
/// frozen; RoBERTa's classifier holds both its layers).
fn lora_head_pattern(family: Family) -> &'static str {
    match family {
        Family::Roberta => r"^head\.",
        Family::Bert | Family::DistilBert => r"^head\.out\.",
    }
}

/// Counts the parameters of a loaded model's architecture for `method` (see
/// [`run_protocol::param_counts`]).
pub fn param_counts(config: &EncoderConfig, num_labels: usize, method: Method) -> ParamCounts {
    run_protocol::param_counts(&config.shape(), num_labels, method)
}

/// Runs a whole fine-tuning run, reporting through `emit`. Never panics: errors and
/// panics inside burn (such as running out of GPU memory) end the run with
/// [`Event::Failed`]. Returns the final metrics when the run finished.
pub fn train(
    config: &TrainConfig,
    device: &ComputeDevice,
    cancel: &CancelToken,
    emit: &mut dyn FnMut(Event),
) -> Option<Metrics> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(config, device, cancel, emit)
    }));
    match outcome {
        Ok(Ok(metrics)) => metrics,
        Ok(Err(error)) => {
            emit(Event::Failed {
                reason: error.to_string(),
            });
            None
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the engine stopped unexpectedly".into());
            emit(Event::Failed {
                reason: failure_reason(&message),
            });
            None
        }
    }
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

/// Tokenized sentences with their labels.
struct EncodedSplit {
    encodings: Vec<Encoding>,
    labels: Vec<u8>,
}

fn encode(tokenizer: &TextEncoder, examples: &[Example]) -> Result<EncodedSplit, TokenizeError> {
    Ok(EncodedSplit {
        // On every core. (The training sentences are tokenized as batches need them.)
        encodings: examples
            .par_iter()
            .map(|e| tokenizer.encode(&e.sentence))
            .collect::<Result<_, _>>()?,
        labels: examples.iter().map(|e| e.label).collect(),
    })
}

/// The training sentences, each tokenized the first time a batch needs it: a run's first
/// loss point does not wait for all 67,349 of SST-2's, and later epochs reuse them.
struct TrainingSentences<'a> {
    examples: &'a [Example],
    encodings: Vec<Option<Encoding>>,
}

impl<'a> TrainingSentences<'a> {
    fn new(examples: &'a [Example]) -> Self {
        Self {
            examples,
            encodings: vec![None; examples.len()],
        }
    }

    /// The encodings of the sentences at `indices`, tokenizing those not seen yet.
    fn batch(
        &mut self,
        tokenizer: &TextEncoder,
        indices: &[usize],
    ) -> Result<Vec<Encoding>, TokenizeError> {
        let missing: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| self.encodings[i].is_none())
            .collect();
        let encoded = missing
            .par_iter()
            .map(|&i| tokenizer.encode(&self.examples[i].sentence))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, encoding) in missing.into_iter().zip(encoded) {
            self.encodings[i] = Some(encoding);
        }
        Ok(indices
            .iter()
            .filter_map(|&i| self.encodings[i].clone())
            .collect())
    }
}

fn labels_tensor(labels: &[u8], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    Tensor::from_data(TensorData::new(values, [labels.len()]), device)
}

fn run(
    config: &TrainConfig,
    compute: &ComputeDevice,
    cancel: &CancelToken,
    emit: &mut dyn FnMut(Event),
) -> Result<Option<Metrics>, TrainError> {
    config.validate()?;
    let started = Instant::now();
    let inference_device = compute.device().clone();
    let device = inference_device.clone().autodiff();
    device.seed(config.settings.seed);
    let mut start_phases = StartPhases::new(started);
    let loaded = loader::load(
        &config.model_dir,
        LABELS.len(),
        config.settings.max_len,
        &device,
    )?;
    start_phases.done("model loaded");
    let splits = data::load_sst2(
        &config.sst2_dir,
        &SplitOptions {
            validation_size: config.validation_size,
            train_subset: config.settings.train_subset,
            seed: config.settings.seed,
        },
    )?;
    let tokenizer = loaded.tokenizer;
    let mut train_set = TrainingSentences::new(&splits.train);
    let validation_set = encode(&tokenizer, &splits.validation)?;
    let test_set = encode(&tokenizer, &splits.private_test)?;
    start_phases.done("data read, validation and test tokenized");

    let mut model = loaded.model;
    if let Method::Lora(settings) = config.settings.method() {
        let head = ParamGroup::from_regex(lora_head_pattern(loaded.config.family))
            .map_err(|e| TrainError::Config(format!("{e:?}")))?;
        // no_grad, not freeze: the frozen base keeps its dropout while training, as in PEFT.
        model = model
            .no_grad()
            .with_lora(settings, &device)
            .unfreeze_group(head);
    }
    let flat = config.optimizer.flat(
        compute.kind() == BackendKind::Gpu,
        matches!(config.settings.method(), Method::Full),
    );

    let plan = StepPlan::new(
        splits.train.len(),
        config.settings.batch_size,
        config.settings.epochs,
        config.settings.warmup_ratio,
    );
    let mut step = 0;
    let mut last_validation = (f64::NAN, 0.0);
    let mut best: Option<(BestEvaluation, SequenceClassifier)> = None;
    // The step of the newest checkpoint this run wrote or resumed from, while it is the
    // checkpoint folder's latest (see `checkpoint::save`).
    let mut own_latest_checkpoint = None;
    let saved = match &config.checkpoint_dir {
        Some(root) => {
            checkpoint::find(root, config.resume_at_most).map_err(TrainError::Checkpoint)?
        }
        None => None,
    };
    // A resumed run keeps the optimizer its checkpoint's state belongs to.
    let flat = saved
        .as_ref()
        .map_or(flat, |saved| saved.flat_optimizer_file().is_file());
    let mut optimizer = RunOptimizer::new(flat)?;
    if let Some(saved) = saved {
        if saved.progress.settings != config.resume_key() {
            return Err(TrainError::Checkpoint(format!(
                "the checkpoint in {} belongs to a run with other settings; remove it to start afresh",
                saved.dir.display()
            )));
        }
        model =
            checkpoint::load_model(model, &saved.model_file()).map_err(TrainError::Checkpoint)?;
        optimizer = optimizer
            .load(&saved, &model)
            .map_err(TrainError::Checkpoint)?;
        step = saved.progress.step;
        own_latest_checkpoint = saved.dir.ends_with("latest").then_some(step);
        last_validation = saved.progress.last_validation.unwrap_or(last_validation);
        if let Some(evaluation) = saved.progress.best.filter(|_| config.keep_best) {
            let kept = checkpoint::load_model(model.clone(), &saved.best_model_file())
                .map_err(TrainError::Checkpoint)?;
            best = Some((evaluation, kept.valid()));
        }
    }
    let resumed_from_step = (step > 0).then_some(step);
    let counts = param_counts(&loaded.config, LABELS.len(), config.settings.method());
    start_phases.done("ready to train");
    let mut awaiting_first_loss = Some(start_phases);
    emit(Event::Started {
        device: compute.description(),
        backend: match compute.kind() {
            BackendKind::Cpu => "cpu".into(),
            BackendKind::Gpu => "gpu".into(),
        },
        params_total: counts.total,
        params_trainable: counts.trainable,
        steps_planned: plan.total_steps,
        train_examples: splits.train.len(),
        resumed_from_step,
    });
    let probes = config
        .probe_sentences
        .iter()
        .map(|s| tokenizer.encode(s).map(|e| (s.clone(), e)))
        .collect::<Result<Vec<_>, _>>()?;
    // The maps before training are drawn once the first loss is out: they need inference
    // kernels of their own, and the loss curve should not wait for them.
    // (A run cancelled or diverging at its first step draws none.)
    let mut untrained = (resumed_from_step.is_none() && !probes.is_empty()).then(|| model.valid());

    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let padding = Padding {
        pad_id: tokenizer.pad_id(),
        multiple: match compute.kind() {
            BackendKind::Cpu => 1,
            BackendKind::Gpu => GPU_PAD_MULTIPLE,
        },
        cap: tokenizer.max_len(),
    };
    let readback_every = config.readback_every.unwrap_or(match compute.kind() {
        BackendKind::Cpu => 1,
        BackendKind::Gpu => GPU_READBACK_EVERY,
    });
    let mut pending = PendingSteps::default();
    let mut last_checkpoint = Instant::now();
    let mut batch_number = 0;
    for epoch in 1..=config.settings.epochs {
        let mut order: Vec<usize> = (0..splits.train.len()).collect();
        SeededRng::new(config.settings.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9))
            .shuffle(&mut order);
        for batch_indices in order.chunks(config.settings.batch_size) {
            batch_number += 1;
            if batch_number <= step {
                continue; // done before the checkpoint this run resumed from
            }
            if cancel.is_cancelled() {
                if pending.report(emit).is_err() {
                    return Ok(None);
                }
                emit(Event::Cancelled { step });
                return Ok(None);
            }
            pending.start_step();
            // Dropout masks depend only on the seed and the step, so a resumed run repeats them.
            device.seed(config.settings.seed.wrapping_add(step as u64 + 1));
            let encodings = match train_set.batch(&tokenizer, batch_indices) {
                Ok(encodings) => encodings,
                Err(error) => {
                    // The steps done so far are reported before the run fails.
                    let _ = pending.report(emit);
                    return Err(error.into());
                }
            };
            let labels: Vec<u8> = batch_indices
                .iter()
                .map(|&i| splits.train[i].label)
                .collect();
            let batch = BatchTensors::new(&padding.apply(&encodings), &device);
            let logits = model.forward(&batch);
            let loss = loss_fn.forward(logits, labels_tensor(&labels, &device));
            let loss_on_device = loss.clone().detach();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = plan.learning_rate(config.settings.learning_rate, step);
            let grad_norm;
            (model, grad_norm) = optimizer.step(lr, model, grads);
            step += 1;
            pending.push(PendingStep {
                step,
                epoch,
                loss: loss_on_device,
                grad_norm,
                lr,
                examples: labels.len(),
            });
            let end_of_epoch = step == epoch * plan.steps_per_epoch;
            let evaluate_now = end_of_epoch || config.eval_every.is_some_and(|n| step % n == 0);
            let checkpoint_now = config.checkpoint_dir.is_some()
                && (end_of_epoch
                    || config
                        .checkpoint_every
                        .is_some_and(|every| last_checkpoint.elapsed() >= every));
            // The first step is read back at once so that the loss curve starts without delay.
            if pending.len() >= readback_every || step == 1 || evaluate_now || checkpoint_now {
                if pending.report(emit).is_err() {
                    return Ok(None);
                }
                if let Some(mut phases) = awaiting_first_loss.take() {
                    phases.done("first loss reported");
                }
            }
            if let Some(untrained) = untrained.take() {
                emit_attention(&untrained, &probes, 0, &inference_device, emit);
            }
            if evaluate_now {
                let valid = model.valid();
                last_validation = evaluate(&valid, &validation_set, &padding, &inference_device);
                emit(Event::Eval {
                    step,
                    split: EvalSplit::Validation,
                    loss: last_validation.0,
                    accuracy: last_validation.1,
                });
                if config.keep_best
                    && best
                        .as_ref()
                        .is_none_or(|(kept, _)| last_validation.1 > kept.accuracy)
                {
                    let evaluation = BestEvaluation {
                        step,
                        loss: last_validation.0,
                        accuracy: last_validation.1,
                    };
                    // burn tensors are immutable values: the kept model's weights stay as
                    // they are while training goes on (the optimizer copies instead of
                    // updating them in place while they are shared).
                    best = Some((evaluation, valid.clone()));
                }
                emit_attention(&valid, &probes, step, &inference_device, emit);
                // The last epoch's is the run's final evaluation, below.
                if end_of_epoch && config.test_each_epoch && epoch < config.settings.epochs {
                    let (loss, accuracy) = evaluate(&valid, &test_set, &padding, &inference_device);
                    emit(Event::Eval {
                        step,
                        split: EvalSplit::PrivateTest,
                        loss,
                        accuracy,
                    });
                }
            }
            if let Some(root) = &config.checkpoint_dir
                && checkpoint_now
            {
                let progress = checkpoint::Progress {
                    step,
                    settings: config.resume_key(),
                    last_validation: last_validation.0.is_finite().then_some(last_validation),
                    best: best.as_ref().map(|(evaluation, _)| *evaluation),
                };
                // A best model from this very step is the checkpoint's model.bpk already.
                let best_model = best
                    .as_ref()
                    .filter(|(evaluation, _)| evaluation.step != step)
                    .map(|(_, kept)| kept);
                checkpoint::save(
                    root,
                    &model,
                    |dir| optimizer.save(dir),
                    best_model,
                    &progress,
                    own_latest_checkpoint,
                )
                .map_err(TrainError::Checkpoint)?;
                own_latest_checkpoint = Some(step);
                last_checkpoint = Instant::now();
                emit(Event::Checkpoint { step });
            }
        }
    }
    if pending.report(emit).is_err() {
        return Ok(None);
    }
    let (final_model, kept_step) = match best {
        Some((evaluation, kept)) if evaluation.step != step => {
            last_validation = (evaluation.loss, evaluation.accuracy);
            (kept, Some(evaluation.step))
        }
        _ => (model.valid(), None),
    };
    let (test_loss, test_accuracy) = evaluate(&final_model, &test_set, &padding, &inference_device);
    emit(Event::Eval {
        step,
        split: EvalSplit::PrivateTest,
        loss: test_loss,
        accuracy: test_accuracy,
    });
    if let Some(out) = &config.export_dir {
        crate::export::export_hf(&final_model, loaded.config.family, &config.model_dir, out)?;
    }
    let metrics = Metrics {
        steps: step,
        validation_accuracy: last_validation.1,
        validation_loss: last_validation.0,
        private_test_accuracy: test_accuracy,
        kept_step,
        seconds: started.elapsed().as_secs_f64(),
    };
    emit(Event::Finished {
        metrics: metrics.clone(),
    });
    Ok(Some(metrics))
}

/// Logs, at debug level, how long each phase of a run's start took, to find where the wait
/// before the first loss point goes.
struct StartPhases {
    since: Instant,
    last: Instant,
}

impl StartPhases {
    fn new(since: Instant) -> Self {
        Self { since, last: since }
    }

    /// Logs `phase` as ended now.
    fn done(&mut self, phase: &str) {
        let now = Instant::now();
        tracing::debug!(
            phase,
            took_ms = (now - self.last).as_millis() as u64,
            since_start_ms = (now - self.since).as_millis() as u64,
            "run start"
        );
        self.last = now;
    }
}

/// The optimizer of a run: [`AdamW`] one tensor at a time after [`clip_global_norm`], or
/// [`FlatAdamW`], which clips and steps all parameters at once.
enum RunOptimizer {
    PerTensor(ModuleOptimizer),
    Flat(Box<FlatAdamW>),
}

impl RunOptimizer {
    fn new(flat: bool) -> Result<Self, TrainError> {
        let bad_pattern = |e: String| TrainError::Config(format!("no-decay pattern: {e}"));
        Ok(if flat {
            let no_decay = regex::Regex::new(NO_DECAY).map_err(|e| bad_pattern(e.to_string()))?;
            Self::Flat(Box::new(FlatAdamW::new(
                ADAM_EPSILON,
                WEIGHT_DECAY,
                no_decay,
                Some(MAX_GRAD_NORM),
            )))
        } else {
            let no_decay =
                ParamGroup::from_regex(NO_DECAY).map_err(|e| bad_pattern(format!("{e:?}")))?;
            Self::PerTensor(
                ModuleOptimizer::from(AdamW::new(ADAM_EPSILON, WEIGHT_DECAY)).with_group(
                    no_decay,
                    AdamW::new(ADAM_EPSILON, 0.0),
                    None,
                ),
            )
        })
    }

    /// Clips the gradients to [`MAX_GRAD_NORM`] and steps; returns the updated model and the
    /// gradient norm before clipping, still on the device.
    fn step(
        &mut self,
        lr: f64,
        model: SequenceClassifier,
        mut grads: GradientsParams,
    ) -> (SequenceClassifier, Option<Tensor<1>>) {
        match self {
            Self::PerTensor(optimizer) => {
                let norm = clip_global_norm(&model, &mut grads, MAX_GRAD_NORM);
                (optimizer.step(lr, model, grads), norm)
            }
            Self::Flat(optimizer) => optimizer.step(lr, model, grads),
        }
    }

    /// Writes the state into a checkpoint's directory.
    fn save(&self, dir: &Path) -> Result<(), String> {
        match self {
            Self::PerTensor(optimizer) => {
                let file = dir.join(checkpoint::OPTIMIZER_FILE);
                optimizer
                    .save(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))
            }
            Self::Flat(optimizer) => optimizer.save(&dir.join(checkpoint::FLAT_OPTIMIZER_FILE)),
        }
    }

    /// Takes the state of a saved checkpoint of `model`.
    fn load(self, saved: &checkpoint::Saved, model: &SequenceClassifier) -> Result<Self, String> {
        Ok(match self {
            Self::PerTensor(optimizer) => {
                // Read whole, as the model: burn's `load` reads the state from the path lazily.
                let file = saved.optimizer_file();
                Self::PerTensor(
                    optimizer
                        .from_bytes(checkpoint::read_whole(&file)?)
                        .map_err(|e| format!("{}: {e}", file.display()))?,
                )
            }
            Self::Flat(optimizer) => Self::Flat(Box::new(
                (*optimizer).load(&saved.flat_optimizer_file(), model)?,
            )),
        })
    }
}

/// A step whose loss and gradient norm are still on the device.
struct PendingStep {
    step: usize,
    epoch: usize,
    loss: Tensor<1>,
    grad_norm: Option<Tensor<1>>,
    lr: f64,
    examples: usize,
}

/// Steps not yet reported, read back from the device together in one transfer.
struct PendingSteps {
    steps: Vec<PendingStep>,
    since: Instant,
}

impl Default for PendingSteps {
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            since: Instant::now(),
        }
    }
}

/// The run diverged; [`Event::Diverged`] has been emitted.
struct DivergedRun;

impl PendingSteps {
    /// Marks the start of a step's work, which starts the throughput clock of a new window.
    fn start_step(&mut self) {
        if self.steps.is_empty() {
            self.since = Instant::now();
        }
    }

    fn push(&mut self, step: PendingStep) {
        self.steps.push(step);
    }

    fn len(&self) -> usize {
        self.steps.len()
    }

    /// Reads the pending steps' numbers back and emits their [`Event::Step`]s, or
    /// [`Event::Diverged`] at the first step whose loss or gradient norm is not finite or
    /// whose loss exploded. Throughput is averaged over the steps read together.
    fn report(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(), DivergedRun> {
        if self.steps.is_empty() {
            return Ok(());
        }
        let steps = std::mem::take(&mut self.steps);
        let read = |tensors: Vec<Tensor<1>>| -> Vec<f64> {
            Tensor::cat(tensors, 0)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let losses = read(steps.iter().map(|s| s.loss.clone()).collect());
        let norms = read(steps.iter().filter_map(|s| s.grad_norm.clone()).collect());
        let examples: usize = steps.iter().map(|s| s.examples).sum();
        let examples_per_sec = examples as f64 / self.since.elapsed().as_secs_f64().max(1e-9);
        self.since = Instant::now();
        let mut norms = norms.into_iter();
        for (pending, loss) in steps.iter().zip(losses) {
            let grad_norm = match pending.grad_norm {
                Some(_) => norms.next().unwrap_or(f64::NAN),
                None => 0.0,
            };
            if !loss.is_finite() || loss > EXPLODED_LOSS || !grad_norm.is_finite() {
                emit(Event::Diverged {
                    step: pending.step,
                    loss: loss.is_finite().then_some(loss),
                });
                return Err(DivergedRun);
            }
            emit(Event::Step {
                step: pending.step,
                epoch: pending.epoch,
                loss,
                lr: pending.lr,
                grad_norm,
                examples_per_sec,
            });
        }
        Ok(())
    }
}

/// How batches are padded: with which token, to a multiple of how many columns, and to at
/// most how many.
struct Padding {
    pad_id: u32,
    multiple: usize,
    cap: usize,
}

impl Padding {
    fn apply(&self, encodings: &[Encoding]) -> TokenBatch {
        pad_to_multiple(encodings, self.pad_id, self.multiple, self.cap)
    }
}

/// Mean loss and accuracy of `model` (an inference copy) on `split`.
fn evaluate(
    model: &SequenceClassifier,
    split: &EncodedSplit,
    padding: &Padding,
    device: &Device,
) -> (f64, f64) {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    // Sums stay on the device and are read back once: on a GPU each read waits for the queue.
    let mut loss_sum = Tensor::<1>::zeros([1], device);
    let mut correct = Tensor::<1, Int>::zeros([1], device);
    for (encodings, labels) in split
        .encodings
        .chunks(EVAL_BATCH)
        .zip(split.labels.chunks(EVAL_BATCH))
    {
        let batch = BatchTensors::new(&padding.apply(encodings), device);
        let logits = model.forward(&batch);
        let targets = labels_tensor(labels, device);
        loss_sum = loss_sum.add(
            loss_fn
                .forward(logits.clone(), targets.clone())
                .mul_scalar(labels.len() as f32),
        );
        correct = correct.add(
            logits
                .argmax(1)
                .reshape([labels.len()])
                .equal(targets)
                .int()
                .sum(),
        );
    }
    let n = split.labels.len().max(1) as f64;
    let loss_sum = loss_sum.into_scalar::<f32>() as f64;
    let correct = correct.into_scalar::<i64>();
    (loss_sum / n, correct as f64 / n)
}

/// Emits the attention maps of each probe sentence.
fn emit_attention(
    model: &SequenceClassifier,
    probes: &[(String, Encoding)],
    step: usize,
    device: &Device,
    emit: &mut dyn FnMut(Event),
) {
    for (sentence, encoding) in probes {
        let matrices = crate::inference::attention_matrices(model, encoding, device);
        emit(Event::Attention {
            step,
            sentence: sentence.clone(),
            tokens: encoding.tokens.clone(),
            matrices,
        });
    }
}

/// Collects the ids of every trainable float parameter (LoRA factors included), by rank.
#[derive(Default)]
struct TrainableIds {
    vectors: Vec<ParamId>,
    matrices: Vec<ParamId>,
}

impl ModuleVisitor for TrainableIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match D {
            1 => self.vectors.push(param.id),
            2 => self.matrices.push(param.id),
            _ => {}
        }
        if let Some(adapter) = param.adapter() {
            self.matrices.push(adapter.a.id);
            self.matrices.push(adapter.b.id);
        }
    }
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`, without
/// leaving the device: the scale is min(1, max_norm / (norm + 1e-6)) as a tensor. Returns
/// the norm before clipping, still on the device (`None` when nothing is trainable).
fn clip_global_norm(
    model: &SequenceClassifier,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Option<Tensor<1>> {
    let mut ids = TrainableIds::default();
    model.visit(&mut ids);
    let mut squares: Vec<Tensor<1>> = Vec::new();
    for id in &ids.vectors {
        if let Some(g) = grads.get::<1>(*id) {
            squares.push(g.square().sum());
        }
    }
    for id in &ids.matrices {
        if let Some(g) = grads.get::<2>(*id) {
            squares.push(g.square().sum());
        }
    }
    if squares.is_empty() {
        return None;
    }
    let norm = Tensor::cat(squares, 0).sum().sqrt();
    let scale = clip_scale(norm.clone(), max_norm);
    for id in &ids.vectors {
        if let Some(g) = grads.remove::<1>(*id) {
            grads.register(*id, g.mul(scale.clone()));
        }
    }
    let scale_2d = scale.reshape([1, 1]);
    for id in &ids.matrices {
        if let Some(g) = grads.remove::<2>(*id) {
            grads.register(*id, g.mul(scale_2d.clone()));
        }
    }
    Some(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_protocol::LoraSettings;

    #[test]
    fn a_bad_loss_between_read_backs_ends_the_run_at_its_own_step() {
        let device = Device::flex();
        let scalar = |v: f32| Tensor::<1>::from_data(TensorData::new(vec![v], [1]), &device);
        let mut pending = PendingSteps::default();
        for (step, loss) in [(1, 0.7), (2, 0.6), (3, f32::NAN), (4, f32::NAN)] {
            pending.push(PendingStep {
                step,
                epoch: 1,
                loss: scalar(loss),
                grad_norm: Some(scalar(0.5)),
                lr: 1e-5,
                examples: 8,
            });
        }
        let mut events = Vec::new();
        assert!(pending.report(&mut |e| events.push(e)).is_err());
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Step {
                    step, grad_norm, ..
                } => format!("step {step} norm {grad_norm}"),
                Event::Diverged { step, loss } => format!("diverged {step} {loss:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            ["step 1 norm 0.5", "step 2 norm 0.5", "diverged 3 None"]
        );
        // An exploding loss and a non-finite gradient norm diverge too.
        for (loss, norm) in [(5e3, 0.5), (0.7, f32::INFINITY)] {
            pending.push(PendingStep {
                step: 9,
                epoch: 1,
                loss: scalar(loss),
                grad_norm: Some(scalar(norm)),
                lr: 1e-5,
                examples: 8,
            });
            let mut events = Vec::new();
            assert!(pending.report(&mut |e| events.push(e)).is_err());
            assert!(matches!(events[..], [Event::Diverged { step: 9, .. }]));
        }
    }

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
