//! The optimizer of a run: AdamW with the run's hyperparameters, one tensor at a time or
//! all parameters at once (see [`crate::optim`]), and its state in checkpoints.

use super::TrainError;
use crate::checkpoint;
use crate::model::SequenceClassifier;
use crate::optim::{AdamW, FlatAdamW, StepGradients, clip_global_norm};
use burn::module::ParamGroup;
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;
use std::path::Path;

/// Weight decay for every weight matrix; biases and LayerNorm parameters get none.
const WEIGHT_DECAY: f32 = 0.01;
/// AdamW epsilon (as PyTorch's AdamW).
const ADAM_EPSILON: f32 = 1e-8;
/// Parameters that take no weight decay, by module path.
const NO_DECAY: &str = r"(\.bias$|norm\.(gamma|beta)$)";
/// Global gradient-norm clipping threshold.
const MAX_GRAD_NORM: f64 = 1.0;

/// The optimizer of a run: [`AdamW`] one tensor at a time after [`clip_global_norm`], or
/// [`FlatAdamW`], which clips and steps all parameters at once.
pub(super) enum RunOptimizer {
    /// [`AdamW`] per parameter tensor, without decay on the no-decay group.
    PerTensor(ModuleOptimizer),
    /// [`FlatAdamW`] over one flat buffer.
    Flat(Box<FlatAdamW>),
}

impl RunOptimizer {
    /// A fresh optimizer, [`FlatAdamW`] when `flat`.
    pub(super) fn new(flat: bool) -> Result<Self, TrainError> {
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

    /// Undoes the gradients' loss scale if they carry one, clips them to [`MAX_GRAD_NORM`]
    /// and steps; returns the updated model and the gradient norm before clipping, still on
    /// the device.
    pub(super) fn step(
        &mut self,
        lr: f64,
        model: SequenceClassifier,
        gradients: StepGradients,
    ) -> (SequenceClassifier, Option<Tensor<1>>) {
        match self {
            Self::PerTensor(optimizer) => {
                let (grads, norm) = clip_global_norm(&model, gradients, MAX_GRAD_NORM);
                (optimizer.step(lr, model, grads), norm)
            }
            Self::Flat(optimizer) => optimizer.step(lr, model, gradients),
        }
    }

    /// Writes the state into a checkpoint's directory.
    pub(super) fn save(&self, dir: &Path) -> Result<(), String> {
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
    pub(super) fn load(
        self,
        saved: &checkpoint::Saved,
        model: &SequenceClassifier,
    ) -> Result<Self, String> {
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
