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
use crate::data::{self, DataError, Example, SplitOptions};
use crate::device::{BackendKind, ComputeDevice};
use crate::events::{EvalSplit, Event, Metrics};
use crate::loader::{self, LoadError};
use crate::model::{BatchTensors, EncoderConfig, Family, LoraSettings, SequenceClassifier};
use crate::optim::{AdamW, FlatAdamW, OptimizerChoice, clip_scale};
use crate::rng::SeededRng;
use crate::tokenize::{Encoding, TextEncoder, TokenBatch, TokenizeError, pad_to_multiple};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Labels of SST-2.
pub const LABELS: [&str; 2] = ["negative", "positive"];

/// How the model's weights are trained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Every weight is updated.
    Full,
    /// The base is frozen; low-rank adapters on attention query and value, and the head, train.
    Lora(LoraSettings),
}

/// Everything a run needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// HF model directory to start from.
    pub model_dir: PathBuf,
    /// Directory with the SST-2 TSVs.
    pub sst2_dir: PathBuf,
    /// Full fine-tuning or LoRA.
    pub method: Method,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Sentences per step.
    pub batch_size: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Share of the steps spent warming the learning rate up, 0..1.
    pub warmup_ratio: f64,
    /// Longest sequence in tokens; longer sentences are truncated.
    pub max_len: usize,
    /// Train on only this many sentences.
    pub train_subset: Option<usize>,
    /// Sentences carved out of train for validation.
    pub validation_size: usize,
    /// Evaluate on validation every this many steps (and at each epoch end).
    pub eval_every: Option<usize>,
    /// Seed for data order, dropout and the new head.
    pub seed: u64,
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
            method: Method::Full,
            learning_rate: 5e-5,
            batch_size: 32,
            epochs: 2,
            warmup_ratio: 0.1,
            max_len: 64,
            train_subset: None,
            validation_size: 2_000,
            eval_every: None,
            seed: 42,
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
            self.method,
            self.learning_rate,
            self.batch_size,
            self.epochs,
            self.warmup_ratio,
            self.max_len,
            self.train_subset,
            self.validation_size,
            self.seed,
            // Added only when set, so checkpoints written before this setting still resume.
            if self.keep_best { " keep_best" } else { "" }
        )
    }

    /// Checks the hard limits; anything accepted here can run.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.optimizer == OptimizerChoice::Flat && self.method != Method::Full {
            return bad(
                "the flat optimizer steps full fine-tuning only; use per-tensor for LoRA".into(),
            );
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 1.0)
        {
            return bad(format!(
                "the learning rate must be a number above 0 and at most 1, not {}",
                self.learning_rate
            ));
        }
        if !(1..=1024).contains(&self.batch_size) {
            return bad(format!(
                "the batch size must be between 1 and 1024, not {}",
                self.batch_size
            ));
        }
        if !(1..=100).contains(&self.epochs) {
            return bad(format!(
                "epochs must be between 1 and 100, not {}",
                self.epochs
            ));
        }
        if !(self.warmup_ratio.is_finite() && (0.0..1.0).contains(&self.warmup_ratio)) {
            return bad(format!(
                "the warmup ratio must be at least 0 and below 1, not {}",
                self.warmup_ratio
            ));
        }
        if !(8..=512).contains(&self.max_len) {
            return bad(format!(
                "max_len must be between 8 and 512 tokens, not {}",
                self.max_len
            ));
        }
        if self.eval_every == Some(0) {
            return bad("evaluating every 0 steps is not possible".into());
        }
        if self.readback_every == Some(0) {
            return bad("reading the loss back every 0 steps is not possible".into());
        }
        if let Method::Lora(LoraSettings {
            rank,
            alpha,
            dropout,
        }) = self.method
        {
            if !(1..=256).contains(&rank) {
                return bad(format!(
                    "the LoRA rank must be between 1 and 256, not {rank}"
                ));
            }
            if !(alpha.is_finite() && alpha > 0.0) {
                return bad(format!("LoRA alpha must be a positive number, not {alpha}"));
            }
            if !(0.0..1.0).contains(&dropout) {
                return bad(format!(
                    "LoRA dropout must be at least 0 and below 1, not {dropout}"
                ));
            }
        }
        Ok(())
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

/// The step plan of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPlan {
    /// Steps per epoch: ceil(examples / batch size).
    pub steps_per_epoch: usize,
    /// All steps.
    pub total_steps: usize,
    /// Steps of linear warmup: ceil(warmup ratio × total).
    pub warmup_steps: usize,
}

impl StepPlan {
    /// Plans `epochs` passes over `examples` sentences.
    pub fn new(examples: usize, batch_size: usize, epochs: usize, warmup_ratio: f64) -> Self {
        let steps_per_epoch = examples.div_ceil(batch_size.max(1));
        let total_steps = steps_per_epoch * epochs;
        let warmup_steps = (warmup_ratio * total_steps as f64).ceil() as usize;
        Self {
            steps_per_epoch,
            total_steps,
            warmup_steps,
        }
    }

    /// The learning rate for 0-based step `step`, as HF's linear schedule with warmup.
    pub fn learning_rate(&self, peak: f64, step: usize) -> f64 {
        let factor = if step < self.warmup_steps {
            step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let remaining = self.total_steps.saturating_sub(step) as f64;
            remaining / self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64
        };
        peak * factor.max(0.0)
    }
}

/// Parameter counts of a model as configured for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamCounts {
    /// All parameters, adapters included.
    pub total: usize,
    /// Parameters the optimizer updates.
    pub trainable: usize,
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

/// A weight matrix of every encoder layer that LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraTarget {
    /// Attention query projection.
    Query,
    /// Attention key projection.
    Key,
    /// Attention value projection.
    Value,
    /// Attention output projection.
    AttentionOutput,
    /// Feed-forward expansion.
    FfnIn,
    /// Feed-forward projection back.
    FfnOut,
}

/// The targets training uses: attention query and value.
pub const DEFAULT_LORA_TARGETS: [LoraTarget; 2] = [LoraTarget::Query, LoraTarget::Value];

/// Adapter parameters of rank `rank` on `targets` in every layer: r × (d_in + d_out) each.
pub fn lora_adapter_params(config: &EncoderConfig, rank: usize, targets: &[LoraTarget]) -> usize {
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let per_layer: usize = targets
        .iter()
        .map(|target| match target {
            LoraTarget::Query
            | LoraTarget::Key
            | LoraTarget::Value
            | LoraTarget::AttentionOutput => rank * (h + h),
            LoraTarget::FfnIn | LoraTarget::FfnOut => rank * (h + i),
        })
        .sum();
    config.num_layers * per_layer
}

/// Counts parameters for `method` from the architecture's shapes.
pub fn param_counts(config: &EncoderConfig, num_labels: usize, method: Method) -> ParamCounts {
    let h = config.hidden_size;
    let i = config.intermediate_size;
    let linear = |d_in: usize, d_out: usize| d_in * d_out + d_out;
    let norm = 2 * h;
    let embeddings =
        (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * h + norm;
    let layer = 4 * linear(h, h) + norm + linear(h, i) + linear(i, h) + norm;
    let head = linear(h, h) + linear(h, num_labels);
    let base = embeddings + config.num_layers * layer + head;
    match method {
        Method::Full => ParamCounts {
            total: base,
            trainable: base,
        },
        Method::Lora(LoraSettings { rank, .. }) => {
            let adapters = lora_adapter_params(config, rank, &DEFAULT_LORA_TARGETS);
            let trained_head = match config.family {
                Family::Roberta => head,
                Family::Bert | Family::DistilBert => linear(h, num_labels),
            };
            ParamCounts {
                total: base + adapters,
                trainable: adapters + trained_head,
            }
        }
    }
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
    device.seed(config.seed);
    let mut start_phases = StartPhases::new(started);
    let loaded = loader::load(&config.model_dir, LABELS.len(), config.max_len, &device)?;
    start_phases.done("model loaded");
    let splits = data::load_sst2(
        &config.sst2_dir,
        &SplitOptions {
            validation_size: config.validation_size,
            train_subset: config.train_subset,
            seed: config.seed,
        },
    )?;
    let tokenizer = loaded.tokenizer;
    let mut train_set = TrainingSentences::new(&splits.train);
    let validation_set = encode(&tokenizer, &splits.validation)?;
    let test_set = encode(&tokenizer, &splits.private_test)?;
    start_phases.done("data read, validation and test tokenized");

    let mut model = loaded.model;
    if let Method::Lora(settings) = config.method {
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
        matches!(config.method, Method::Full),
    );

    let plan = StepPlan::new(
        splits.train.len(),
        config.batch_size,
        config.epochs,
        config.warmup_ratio,
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
    let counts = param_counts(&loaded.config, LABELS.len(), config.method);
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
    for epoch in 1..=config.epochs {
        let mut order: Vec<usize> = (0..splits.train.len()).collect();
        SeededRng::new(config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9)).shuffle(&mut order);
        for batch_indices in order.chunks(config.batch_size) {
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
            device.seed(config.seed.wrapping_add(step as u64 + 1));
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
            let lr = plan.learning_rate(config.learning_rate, step);
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
                if end_of_epoch && config.test_each_epoch && epoch < config.epochs {
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
    fn the_schedule_warms_up_then_decays_linearly_like_hf() {
        let plan = StepPlan::new(1_000, 10, 2, 0.1);
        assert_eq!(
            (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps),
            (100, 200, 20)
        );
        assert_eq!(plan.learning_rate(2e-5, 0), 0.0);
        assert!((plan.learning_rate(2e-5, 10) - 1e-5).abs() < 1e-12);
        assert!((plan.learning_rate(2e-5, 20) - 2e-5).abs() < 1e-12);
        assert!((plan.learning_rate(2e-5, 110) - 1e-5).abs() < 1e-12);
        assert_eq!(plan.learning_rate(2e-5, 200), 0.0);
        let no_warmup = StepPlan::new(10, 3, 1, 0.0);
        assert_eq!((no_warmup.total_steps, no_warmup.warmup_steps), (4, 0));
        assert_eq!(no_warmup.learning_rate(1.0, 0), 1.0);
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
        for (config, needle) in [
            (
                TrainConfig {
                    learning_rate: f64::NAN,
                    ..base.clone()
                },
                "learning rate",
            ),
            (
                TrainConfig {
                    learning_rate: -1.0,
                    ..base.clone()
                },
                "learning rate",
            ),
            (
                TrainConfig {
                    batch_size: 0,
                    ..base.clone()
                },
                "batch size",
            ),
            (
                TrainConfig {
                    epochs: 1000,
                    ..base.clone()
                },
                "epochs",
            ),
            (
                TrainConfig {
                    warmup_ratio: 1.5,
                    ..base.clone()
                },
                "warmup",
            ),
            (
                TrainConfig {
                    max_len: 100_000,
                    ..base.clone()
                },
                "max_len",
            ),
            (
                TrainConfig {
                    method: Method::Lora(LoraSettings::new(0, 1.0)),
                    ..base.clone()
                },
                "rank",
            ),
            (
                TrainConfig {
                    method: Method::Lora(LoraSettings {
                        dropout: 1.0,
                        ..LoraSettings::new(8, 16.0)
                    }),
                    ..base.clone()
                },
                "dropout",
            ),
        ] {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(needle), "{error}");
        }
        base.validate().unwrap();
    }
}
