//! A run in progress, phase by phase: [`Run::prepare`] loads the model and the data and
//! resumes from a checkpoint; [`Run::step`] takes one optimizer step;
//! [`Run::evaluate_and_keep_best`] and [`Run::checkpoint`] run when a step calls for them;
//! [`Run::finish`] tests and exports the final model. The loop that calls them is
//! `train_steps` in the parent module.

use super::evaluate::{emit_attention, evaluate};
use super::loss_scale::LossScale;
use super::optimizer::RunOptimizer;
use super::readback::{DivergedRun, PendingStep, PendingSteps};
use super::resume::{KeptModel, Resume, Resumed, resume};
use super::sentences::{EncodedSplit, Padding, TrainingSentences, labels_tensor};
use super::start_phases::StartPhases;
use super::{GPU_READBACK_EVERY, TrainConfig, TrainError, param_counts};
use crate::checkpoint::{self, BestEvaluation, ResumeKey, StoredKey};
use crate::data::{self, LABELS, SplitOptions};
use crate::device::{BackendKind, ComputeDevice};
use crate::loader;
use crate::model::{BatchTensors, Family, Precision, SequenceClassifier, supported_on};
use crate::rng::SeededRng;
use crate::tokenize::{Encoding, TextEncoder};
use burn::module::{Module, ParamGroup};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::GradientsParams;
use burn::tensor::Device;
use run_protocol::{EvalSplit, Event, Method, Metrics, StepPlan};
use std::time::Instant;

/// Sequence lengths on a GPU are rounded up to a multiple of this (see
/// [`crate::tokenize::pad_to_multiple`]).
const GPU_PAD_MULTIPLE: usize = 8;

/// Why the training loop stopped before its end.
pub(super) enum Halt {
    /// The run ended with an event of its own, [`Event::Cancelled`] or
    /// [`Event::Diverged`], already emitted.
    Ended,
    /// The run failed; the caller reports why.
    Failed(TrainError),
}

impl From<TrainError> for Halt {
    fn from(error: TrainError) -> Self {
        Self::Failed(error)
    }
}

impl From<DivergedRun> for Halt {
    fn from(_: DivergedRun) -> Self {
        Self::Ended
    }
}

/// What the step just taken calls for.
pub(super) struct Due {
    /// It was its epoch's last.
    pub(super) end_of_epoch: bool,
    /// A validation evaluation (every epoch's end, and every `eval_every` steps).
    pub(super) evaluation: bool,
    /// A checkpoint (every epoch's end, and when `checkpoint_every` has passed).
    pub(super) checkpoint: bool,
}

/// A run in progress: everything the loop needs besides the model, which the loop owns
/// (each optimizer step takes the model and hands back the updated one).
pub(super) struct Run<'a> {
    config: &'a TrainConfig,
    /// Where the run's events go.
    events: &'a mut dyn FnMut(Event),
    /// When the run started, for its metrics.
    started: Instant,
    /// Where training runs (with autodiff).
    device: Device,
    /// The same device without autodiff, for evaluations and attention maps.
    inference_device: Device,
    /// The model's family, for the export.
    family: Family,
    tokenizer: TextEncoder,
    train_set: TrainingSentences,
    validation_set: EncodedSplit,
    /// The private test split (SST-2 dev).
    test_set: EncodedSplit,
    /// The probe sentences, with their encodings.
    probes: Vec<(String, Encoding)>,
    padding: Padding,
    plan: StepPlan,
    loss_fn: CrossEntropyLoss,
    optimizer: RunOptimizer,
    /// The loss scale, when the run's products are f16.
    loss_scale: Option<LossScale>,
    /// What the run's checkpoints are marked with, to resume only this run.
    resume_key: ResumeKey,
    /// Optimizer steps taken, those before the checkpoint resumed from included.
    step: usize,
    /// Loss and accuracy of the latest validation evaluation, if any ran.
    last_validation: Option<(f64, f64)>,
    /// The best evaluation's model, when the run keeps its best.
    best: Option<KeptModel>,
    /// The step of the newest checkpoint this run wrote or resumed from, while it is the
    /// checkpoint folder's latest (see [`checkpoint::save`]).
    own_latest_checkpoint: Option<usize>,
    /// When this run last wrote a checkpoint (or started).
    last_checkpoint: Instant,
    /// Steps whose numbers are still on the device.
    pending: PendingSteps,
    /// Read the pending steps back when this many wait.
    readback_every: usize,
    /// The model before training, until the probes' maps before training are drawn: they
    /// need inference kernels of their own, so they wait for the first loss point. (A
    /// resumed run, or one cancelled or diverging at its first step, draws none.)
    untrained: Option<SequenceClassifier>,
    /// The start-up timings, until the first loss is reported.
    awaiting_first_loss: Option<StartPhases>,
}

impl<'a> Run<'a> {
    /// Loads the model and the data, adds LoRA when asked, resumes from the checkpoint in
    /// the checkpoint folder if there is one, and emits [`Event::Started`]. Returns the run
    /// and the model to train.
    pub(super) fn prepare(
        config: &'a TrainConfig,
        compute: &ComputeDevice,
        emit: &'a mut dyn FnMut(Event),
    ) -> Result<(Self, SequenceClassifier), TrainError> {
        let started = Instant::now();
        let inference_device = compute.device().clone();
        let device = inference_device.clone().autodiff();
        let precision = config.settings.precision;
        if !supported_on(precision, &device) {
            return Err(TrainError::Config(format!(
                "{} cannot compute in {}: run it again in fp32{}",
                compute.description(),
                precision.as_str(),
                if precision == Precision::Bf16 {
                    " (or f16, where the GPU offers it)"
                } else {
                    ""
                }
            )));
        }
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
        let train_set = TrainingSentences::new(splits.train);
        let validation_set = EncodedSplit::encode(&tokenizer, &splits.validation)?;
        let test_set = EncodedSplit::encode(&tokenizer, &splits.private_test)?;
        start_phases.done("data read, validation and test tokenized");

        let family = loaded.config.family;
        let mut model = loaded.model.with_precision(precision);
        if let Method::Lora(settings) = config.settings.method() {
            let head = ParamGroup::from_regex(lora_head_pattern(family))
                .map_err(|e| TrainError::Config(format!("{e:?}")))?;
            // no_grad, not freeze: the frozen base keeps its dropout while training, as in PEFT.
            model = model
                .no_grad()
                .with_lora(settings, &device)
                .unfreeze_group(head);
        }
        let on_gpu = compute.kind() == BackendKind::Gpu;
        let flat = config
            .optimizer
            .flat(on_gpu, matches!(config.settings.method(), Method::Full));
        let plan = StepPlan::new(
            train_set.len(),
            config.settings.batch_size,
            config.settings.epochs,
            config.settings.warmup_ratio,
        );

        let saved = match &config.checkpoint_dir {
            Some(root) => checkpoint::candidates(root, config.resume_at_most),
            None => Vec::new(),
        };
        let resume_key = config.resume_key();
        let mut restored = None;
        for saved in &saved {
            // A resumed run keeps the optimizer its checkpoint's state belongs to.
            let optimizer = RunOptimizer::new(saved.flat_optimizer_file().is_file())?;
            match resume(
                saved,
                &resume_key,
                config.keep_best,
                model.clone(),
                optimizer,
            ) {
                Ok(state) => {
                    restored = Some(state);
                    break;
                }
                Err(Resume::OtherRun(error)) => return Err(error),
                Err(Resume::Damaged(error)) => {
                    tracing::warn!(%error, "a damaged checkpoint; trying the one before it");
                }
            }
        }
        let (model, optimizer, resumed) = match restored {
            Some(state) => state,
            None => (model, RunOptimizer::new(flat)?, Resumed::default()),
        };

        let resumed_from_step = (resumed.step > 0).then_some(resumed.step);
        let counts = param_counts(&loaded.config, LABELS.len(), config.settings.method());
        start_phases.done("ready to train");
        emit(Event::Started {
            device: compute.description(),
            backend: if on_gpu { "gpu" } else { "cpu" }.into(),
            params_total: counts.total,
            params_trainable: counts.trainable,
            steps_planned: plan.total_steps,
            train_examples: train_set.len(),
            resumed_from_step,
        });
        // Probe sentences are cut where the attention viewer cuts them, so that their maps
        // stay small whatever max_len the run trains with.
        let probe_tokenizer = tokenizer.capped_at(run_protocol::VIEWER_MAX_TOKENS);
        let probes = config
            .probe_sentences
            .iter()
            .map(|s| probe_tokenizer.encode(s).map(|e| (s.clone(), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let untrained = (resumed_from_step.is_none() && !probes.is_empty()).then(|| model.valid());

        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let padding = Padding {
            pad_id: tokenizer.pad_id(),
            multiple: if on_gpu { GPU_PAD_MULTIPLE } else { 1 },
            cap: tokenizer.max_len(),
        };
        let device_readback_every = if on_gpu { GPU_READBACK_EVERY } else { 1 };
        let readback_every = config.readback_every.unwrap_or(device_readback_every);
        let run = Self {
            config,
            events: emit,
            started,
            device,
            inference_device,
            family,
            tokenizer,
            train_set,
            validation_set,
            test_set,
            probes,
            padding,
            plan,
            loss_fn,
            optimizer,
            loss_scale: LossScale::for_precision(precision),
            resume_key,
            step: resumed.step,
            last_validation: resumed.last_validation,
            best: resumed.best,
            own_latest_checkpoint: resumed.own_latest_checkpoint,
            last_checkpoint: Instant::now(),
            pending: PendingSteps::default(),
            readback_every,
            untrained,
            awaiting_first_loss: Some(start_phases),
        };
        Ok((run, model))
    }

    /// The run's epochs.
    pub(super) fn epochs(&self) -> usize {
        self.config.settings.epochs
    }

    /// The batches of `epoch` not taken yet, as indices into the training sentences: the
    /// epoch's seeded shuffle in batches, less those done before the checkpoint resumed.
    pub(super) fn batches_left(&self, epoch: usize) -> Vec<Vec<usize>> {
        let settings = &self.config.settings;
        let mut order: Vec<usize> = (0..self.train_set.len()).collect();
        SeededRng::new(settings.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9))
            .shuffle(&mut order);
        let done = self
            .step
            .saturating_sub((epoch - 1) * self.plan.steps_per_epoch);
        order
            .chunks(settings.batch_size)
            .skip(done)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// One batch of training sentences for each number of columns a batch can be padded
    /// to: the shapes a run can meet (see [`super::warm_up`] and
    /// [`TrainingSentences::one_batch_per_length`]).
    pub(super) fn one_batch_per_length(&mut self) -> Result<Vec<(usize, Vec<usize>)>, TrainError> {
        let batch_size = self.config.settings.batch_size;
        self.train_set
            .one_batch_per_length(&self.tokenizer, &self.padding, batch_size)
            .map_err(TrainError::from)
    }

    /// One optimizer step on the sentences at `indices` of `epoch`: forward, loss,
    /// backward, clip and AdamW. Its loss and gradient norm stay on the device until the
    /// next read-back. Returns the updated model.
    pub(super) fn step(
        &mut self,
        model: SequenceClassifier,
        epoch: usize,
        indices: &[usize],
    ) -> Result<SequenceClassifier, TrainError> {
        self.pending.start_step();
        // Dropout masks depend only on the seed and the step, so a resumed run repeats them.
        self.device
            .seed(self.config.settings.seed.wrapping_add(self.step as u64 + 1));
        let encodings = match self.train_set.batch(&self.tokenizer, indices) {
            Ok(encodings) => encodings,
            Err(error) => {
                // The steps done so far are reported before the run fails.
                let _ = self.pending.report(self.events);
                return Err(error.into());
            }
        };
        let labels = self.train_set.labels(indices);
        let batch = BatchTensors::new(&self.padding.apply(&encodings), &self.device);
        let logits = model.forward(&batch);
        let loss = self
            .loss_fn
            .forward(logits, labels_tensor(&labels, &self.device));
        let loss_on_device = loss.clone().detach();
        let lr = self
            .plan
            .learning_rate(self.config.settings.learning_rate, self.step);
        let grads = match &mut self.loss_scale {
            None => Some(GradientsParams::from_grads(loss.backward(), &model).into()),
            Some(scale) => scale.gradients(loss, &model),
        };
        let (model, grad_norm) = match grads {
            Some(grads) => self.optimizer.step(lr, model, grads),
            // f16 gradients that overflowed: the step is skipped (its norm reported as 0).
            None => (model, None),
        };
        self.step += 1;
        self.pending.push(PendingStep {
            step: self.step,
            epoch,
            loss: loss_on_device,
            grad_norm,
            lr,
            examples: labels.len(),
        });
        Ok(model)
    }

    /// What the step just taken, the last of `epoch` or not, calls for.
    pub(super) fn due(&self, epoch: usize) -> Due {
        let config = self.config;
        let end_of_epoch = self.step == epoch * self.plan.steps_per_epoch;
        Due {
            end_of_epoch,
            evaluation: end_of_epoch
                || config
                    .eval_every
                    .is_some_and(|n| self.step.is_multiple_of(n)),
            checkpoint: config.checkpoint_dir.is_some()
                && (end_of_epoch
                    || config
                        .checkpoint_every
                        .is_some_and(|every| self.last_checkpoint.elapsed() >= every)),
        }
    }

    /// Reads the pending steps back and reports them when the window is full, or when the
    /// evaluation or checkpoint `due` must follow them. The first step is read back at once
    /// so that the loss curve starts without delay.
    pub(super) fn read_back_if_due(&mut self, due: &Due) -> Result<(), DivergedRun> {
        if self.pending.len() >= self.readback_every
            || self.step == 1
            || due.evaluation
            || due.checkpoint
        {
            self.pending.report(self.events)?;
            if let Some(mut phases) = self.awaiting_first_loss.take() {
                phases.done("first loss reported");
            }
        }
        Ok(())
    }

    /// Whether the run has used its time limit and must stop before its last planned step.
    pub(super) fn out_of_time(&self) -> bool {
        self.step < self.plan.total_steps
            && self
                .config
                .time_limit
                .is_some_and(|limit| self.started.elapsed() >= limit)
    }

    /// Reads back and reports every pending step.
    pub(super) fn report_pending(&mut self) -> Result<(), DivergedRun> {
        self.pending.report(self.events)
    }

    /// Ends a cancelled run: the steps taken are reported, then [`Event::Cancelled`].
    pub(super) fn cancelled(&mut self) -> Halt {
        if self.report_pending().is_ok() {
            (self.events)(Event::Cancelled { step: self.step });
        }
        Halt::Ended
    }

    /// Draws the probes' attention maps before training, once (see `untrained`).
    pub(super) fn draw_untrained_attention(&mut self) {
        if let Some(untrained) = self.untrained.take() {
            emit_attention(
                &untrained,
                &self.probes,
                0,
                &self.inference_device,
                self.events,
            );
        }
    }

    /// Evaluates `model` on the validation split, keeps it if the run keeps its best and
    /// this is the best yet, and draws the probes' attention maps. At the end of `epoch`
    /// (`end_of_epoch`) it also evaluates on the test split when asked to, except after the
    /// last epoch, whose test evaluation is the run's final one (see [`Run::finish`]).
    pub(super) fn evaluate_and_keep_best(
        &mut self,
        model: &SequenceClassifier,
        epoch: usize,
        end_of_epoch: bool,
    ) {
        let step = self.step;
        let valid = model.valid();
        let (loss, accuracy) = evaluate(
            &valid,
            &self.validation_set,
            &self.padding,
            &self.inference_device,
        );
        self.last_validation = Some((loss, accuracy));
        (self.events)(Event::Eval {
            step,
            split: EvalSplit::Validation,
            loss,
            accuracy,
        });
        if self.config.keep_best
            && self
                .best
                .as_ref()
                .is_none_or(|kept| accuracy > kept.evaluation.accuracy)
        {
            // burn tensors are immutable values: the kept model's weights stay as they are
            // while training goes on (the optimizer copies instead of updating them in
            // place while they are shared).
            self.best = Some(KeptModel {
                evaluation: BestEvaluation {
                    step,
                    loss,
                    accuracy,
                },
                model: valid.clone(),
            });
        }
        emit_attention(
            &valid,
            &self.probes,
            step,
            &self.inference_device,
            self.events,
        );
        if end_of_epoch && self.config.test_each_epoch && epoch < self.epochs() {
            let (loss, accuracy) = evaluate(
                &valid,
                &self.test_set,
                &self.padding,
                &self.inference_device,
            );
            (self.events)(Event::Eval {
                step,
                split: EvalSplit::PrivateTest,
                loss,
                accuracy,
            });
        }
    }

    /// Writes a checkpoint of `model`, the optimizer's state, the kept best model and where
    /// the run stands, and emits [`Event::Checkpoint`].
    pub(super) fn checkpoint(&mut self, model: &SequenceClassifier) -> Result<(), TrainError> {
        let Some(root) = &self.config.checkpoint_dir else {
            return Ok(());
        };
        let progress = checkpoint::Progress {
            step: self.step,
            settings: StoredKey::of(&self.resume_key),
            last_validation: self.last_validation.filter(|(loss, _)| loss.is_finite()),
            best: self.best.as_ref().map(|kept| kept.evaluation),
        };
        // A best model from this very step is the checkpoint's model.bpk already.
        let best_model = self
            .best
            .as_ref()
            .filter(|kept| kept.evaluation.step != self.step)
            .map(|kept| &kept.model);
        let optimizer = &self.optimizer;
        checkpoint::save(
            root,
            model,
            |dir| optimizer.save(dir),
            best_model,
            &progress,
            self.own_latest_checkpoint,
        )
        .map_err(TrainError::Checkpoint)?;
        self.own_latest_checkpoint = Some(self.step);
        self.last_checkpoint = Instant::now();
        (self.events)(Event::Checkpoint { step: self.step });
        Ok(())
    }

    /// Ends a run whose steps are all reported: evaluates the final model (the kept best
    /// one, or `model`) on the test split, exports it when asked, and emits
    /// [`Event::Finished`] with the run's metrics.
    pub(super) fn finish(mut self, model: SequenceClassifier) -> Result<Metrics, TrainError> {
        let (final_model, kept_step) = match self.best.take() {
            Some(kept) if kept.evaluation.step != self.step => {
                self.last_validation = Some((kept.evaluation.loss, kept.evaluation.accuracy));
                (kept.model, Some(kept.evaluation.step))
            }
            _ => (model.valid(), None),
        };
        let (test_loss, test_accuracy) = evaluate(
            &final_model,
            &self.test_set,
            &self.padding,
            &self.inference_device,
        );
        (self.events)(Event::Eval {
            step: self.step,
            split: EvalSplit::PrivateTest,
            loss: test_loss,
            accuracy: test_accuracy,
        });
        if let Some(out) = &self.config.export_dir {
            crate::export::export_hf(&final_model, self.family, &self.config.model_dir, out)?;
        }
        let (validation_loss, validation_accuracy) =
            self.last_validation.unwrap_or((f64::NAN, 0.0));
        let metrics = Metrics {
            steps: self.step,
            validation_accuracy,
            validation_loss,
            private_test_accuracy: test_accuracy,
            kept_step,
            stopped_at_time_limit: self
                .config
                .time_limit
                .filter(|_| self.step < self.plan.total_steps)
                .map(|limit| limit.as_secs()),
            seconds: self.started.elapsed().as_secs_f64(),
        };
        (self.events)(Event::Finished {
            metrics: metrics.clone(),
        });
        Ok(metrics)
    }
}

/// The head parameters LoRA trains, as [`run_protocol::lora_trains_head_dense`] says.
fn lora_head_pattern(family: Family) -> &'static str {
    if run_protocol::lora_trains_head_dense(family) {
        r"^head\."
    } else {
        r"^head\.out\."
    }
}
