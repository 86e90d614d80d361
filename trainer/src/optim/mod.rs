//! AdamW with decoupled weight decay, the optimizer of every run and of the benchmark.
//!
//! It computes exactly what `burn::optim::AdamW` computes (and PyTorch's `AdamW`):
//! `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `p ← p(1 − lr·λ) − lr·m̂/(√v̂ + ε)` with the
//! bias-corrected `m̂`, `v̂`. On the CPU backend it does so in one pass over each parameter,
//! split across the cores and written over the parameter's and moments' own buffers
//! ([`cpu::adamw_step`]), where burn's version runs about fifteen whole-tensor operations
//! (each a fresh sweep over memory: for MiniLM that is 22.7M parameters, half of them the
//! word embeddings, every step). On a GPU it hands the step to burn's AdamW, whose
//! operations the GPU backend fuses itself. The state has burn's AdamW layout, so
//! checkpoints stay interchangeable with it.
//!
//! [`FlatAdamW`] computes the same step over all parameters at once, in one flat buffer,
//! which saves a GPU most of the per-tensor operations' host cost; [`OptimizerChoice`]
//! picks between the two. [`clip_global_norm`] clips the gradients for the per-tensor
//! step (the flat one clips in its buffer); both undo an f16 run's loss scale in the same
//! multiplication ([`StepGradients`]).

mod clip;
mod flat;

pub use clip::{ScaledNorm, StepGradients, clip_global_norm, clip_scale, global_norm};
pub use flat::FlatAdamW;

use crate::cpu::{self, AdamWUpdate};
use burn::optim::{AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{Device, Tensor};
use std::str::FromStr;

/// First-moment decay (PyTorch's default).
const BETA_1: f32 = 0.9;
/// Second-moment decay (PyTorch's default).
const BETA_2: f32 = 0.999;

/// Which AdamW implementation steps a run or a benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizerChoice {
    /// [`FlatAdamW`] for full fine-tuning on a GPU, [`AdamW`] otherwise.
    #[default]
    Auto,
    /// [`AdamW`], one parameter tensor at a time.
    PerTensor,
    /// [`FlatAdamW`], all parameters at once (full fine-tuning only).
    Flat,
}

impl OptimizerChoice {
    /// Whether to step with [`FlatAdamW`] on a GPU (`on_gpu`) or not, for full fine-tuning
    /// (`full`) or not.
    pub fn flat(self, on_gpu: bool, full: bool) -> bool {
        match self {
            Self::Auto => on_gpu && full,
            Self::PerTensor => false,
            Self::Flat => true,
        }
    }

    /// The name used in options and records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::PerTensor => "per-tensor",
            Self::Flat => "flat",
        }
    }
}

impl FromStr for OptimizerChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "per-tensor" => Ok(Self::PerTensor),
            "flat" => Ok(Self::Flat),
            other => Err(format!(
                "\u{201c}{other}\u{201d} is not an optimizer; use auto, per-tensor or flat"
            )),
        }
    }
}

/// AdamW; see the module documentation.
#[derive(Clone)]
pub struct AdamW {
    reference: burn::optim::AdamW,
    epsilon: f32,
    weight_decay: f32,
}

impl AdamW {
    /// AdamW with β = (0.9, 0.999), the given ε and decoupled weight decay λ.
    pub fn new(epsilon: f32, weight_decay: f32) -> Self {
        Self {
            reference: AdamWConfig::new()
                .with_beta_1(BETA_1)
                .with_beta_2(BETA_2)
                .with_epsilon(epsilon)
                .with_weight_decay(weight_decay)
                .build(),
            epsilon,
            weight_decay,
        }
    }
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let fusable = cpu::adamw_applies(&tensor, &grad)
            && state
                .as_ref()
                .is_none_or(|s| s.momentum.max_moment_2.is_none());
        if !fusable {
            return self.reference.step(lr, tensor, grad, state);
        }
        let (time, moments) = match state {
            Some(state) => (
                state.momentum.time + 1,
                Some((state.momentum.moment_1, state.momentum.moment_2)),
            ),
            None => (1, None),
        };
        let update = AdamWUpdate {
            beta_1: BETA_1,
            beta_2: BETA_2,
            correction_1: 1.0 - BETA_1.powi(time as i32),
            correction_2: 1.0 - BETA_2.powi(time as i32),
            decay: (1.0 - lr * self.weight_decay as f64) as f32,
            lr: lr as f32,
            epsilon: self.epsilon,
        };
        let (param, moment_1, moment_2) = cpu::adamw_step(tensor, grad, moments, update);
        let state = AdamWState::new(AdaptiveMomentumState {
            time,
            moment_1,
            moment_2,
            max_moment_2: None,
        });
        (param, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::optim::ModuleOptimizer;

    /// Trains two copies of one layer for a few steps, one with burn's AdamW and one with
    /// ours, and returns both layers' weights.
    fn train_both(weight_decay: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let device = Device::flex().autodiff();
        device.seed(3);
        let layer: Linear = LinearConfig::new(40, 24).init(&device);
        let input = Tensor::<2>::random(
            [8, 40],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |mut optimizer: ModuleOptimizer| {
            let mut layer = layer.clone();
            for step in 0..5 {
                let loss = layer.forward(input.clone()).powi_scalar(2).mean();
                let grads = GradientsParams::from_grads(loss.backward(), &layer);
                layer = optimizer.step(1e-2 / (step + 1) as f64, layer, grads);
            }
            to_vec(layer.weight.val())
        };
        let burns = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(weight_decay)
            .init();
        let ours = ModuleOptimizer::from(AdamW::new(1e-8, weight_decay));
        let initial = to_vec(layer.weight.val());
        (initial, run(burns), run(ours))
    }

    /// The largest absolute difference between two equally long slices.
    pub(super) fn max_difference(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn the_fused_step_matches_burns_adamw() {
        for weight_decay in [0.0, 0.01, 0.5] {
            let (initial, expected, actual) = train_both(weight_decay);
            let worst = max_difference(&expected, &actual);
            assert!(
                worst < 1e-6,
                "weight decay {weight_decay}: max difference {worst}"
            );
            // The weights moved, so the comparison is not between two untouched copies.
            let moved = max_difference(&initial, &expected);
            assert!(
                moved > 1e-3,
                "weight decay {weight_decay}: moved only {moved}"
            );
        }
    }

    /// The values of an f32 tensor.
    fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor
            .into_data()
            .try_into_vec::<f32>()
            .expect("an f32 tensor")
    }
}
