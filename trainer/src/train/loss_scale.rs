//! Dynamic loss scaling for runs whose matrix products are f16, as PyTorch's `GradScaler`
//! does it: the loss is multiplied by a large factor before the backward pass, so that
//! gradients too small for f16's range survive the products; the gradients are divided by
//! it again in the multiplication that clips them, before AdamW. A step whose scaled
//! gradients overflowed is skipped and the factor halved; after a long enough streak of
//! good steps it doubles.

use crate::model::SequenceClassifier;
use crate::optim::{ScaledNorm, StepGradients, global_norm};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use run_protocol::Precision;

/// The factor a run starts with (2^16, `GradScaler`'s).
const INITIAL_FACTOR: f64 = 65_536.0;
/// Good steps in a row after which the factor doubles (`GradScaler`'s growth interval).
const GROWTH_INTERVAL: usize = 2_000;
/// The factor never grows past this (2^24), where f16's largest gradients would overflow
/// at once.
const MAX_FACTOR: f64 = 16_777_216.0;

/// The loss scale of an f16 run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LossScale {
    /// What the loss is multiplied by before the backward pass.
    factor: f64,
    /// Good steps since the last overflow or doubling.
    good_steps: usize,
}

/// What to do with a step whose scaled gradients were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// They were finite: unscale them and step.
    Step,
    /// They overflowed at a factor above 1: skip the step (the factor has been halved).
    Skip,
    /// They overflowed even unscaled: the gradients themselves are not finite, so the step
    /// goes ahead and the read-back reports the run as diverged.
    NotFinite,
}

impl LossScale {
    /// The loss scale `precision` needs: one for f16, none for f32 and bf16 (which has f32's
    /// range).
    pub(super) fn for_precision(precision: Precision) -> Option<Self> {
        (precision == Precision::F16).then_some(Self {
            factor: INITIAL_FACTOR,
            good_steps: 0,
        })
    }

    /// The gradients of `loss` for `model`'s parameters, computed with the loss scaled,
    /// with the scale and their global norm for the optimizer to undo it; `None` when they
    /// overflowed and the step is to be skipped. Whether they overflowed decides the step,
    /// so the norm is read back from the device now (as GradScaler does), whatever the
    /// run's read-back window.
    pub(super) fn gradients(
        &mut self,
        loss: Tensor<1>,
        model: &SequenceClassifier,
    ) -> Option<StepGradients> {
        let factor = self.factor;
        let grads = GradientsParams::from_grads(loss.mul_scalar(factor).backward(), model);
        let Some(norm) = global_norm(model, &grads) else {
            // Nothing trainable has a gradient: nothing to unscale either.
            return Some(grads.into());
        };
        let read = norm.clone().try_into_scalar::<f32>();
        match self.check(read.map_or(f64::NAN, f64::from)) {
            Checked::Skip => {
                tracing::debug!(factor, "f16 gradients overflowed; step skipped");
                None
            }
            Checked::Step | Checked::NotFinite => Some(StepGradients {
                grads,
                scaled: Some(ScaledNorm { factor, norm }),
            }),
        }
    }

    /// Records the check of a step's scaled gradients, whose global norm was
    /// `scaled_norm`, and says what to do with the step.
    fn check(&mut self, scaled_norm: f64) -> Checked {
        if scaled_norm.is_finite() {
            self.good_steps += 1;
            if self.good_steps == GROWTH_INTERVAL {
                self.good_steps = 0;
                self.factor = (self.factor * 2.0).min(MAX_FACTOR);
            }
            Checked::Step
        } else if self.factor > 1.0 {
            self.good_steps = 0;
            self.factor = (self.factor / 2.0).max(1.0);
            Checked::Skip
        } else {
            Checked::NotFinite
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_f16_is_scaled() {
        assert_eq!(LossScale::for_precision(Precision::Fp32), None);
        assert_eq!(LossScale::for_precision(Precision::Bf16), None);
        let scale = LossScale::for_precision(Precision::F16).unwrap();
        assert_eq!(scale.factor, INITIAL_FACTOR);
    }

    #[test]
    fn overflow_halves_and_skips_a_streak_doubles() {
        let mut scale = LossScale::for_precision(Precision::F16).unwrap();
        assert_eq!(scale.check(f64::INFINITY), Checked::Skip);
        assert_eq!(scale.factor, INITIAL_FACTOR / 2.0);
        assert_eq!(scale.check(f64::NAN), Checked::Skip);
        assert_eq!(scale.factor, INITIAL_FACTOR / 4.0);
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert_eq!(scale.check(3.0), Checked::Step);
        }
        assert_eq!(scale.factor, INITIAL_FACTOR / 4.0);
        assert_eq!(scale.check(3.0), Checked::Step);
        assert_eq!(scale.factor, INITIAL_FACTOR / 2.0);
        // An overflow restarts the streak.
        for _ in 0..GROWTH_INTERVAL - 1 {
            scale.check(3.0);
        }
        scale.check(f64::INFINITY);
        scale.check(3.0);
        assert_eq!(scale.factor, INITIAL_FACTOR / 4.0);
    }

    #[test]
    fn the_factor_stays_between_one_and_its_cap() {
        let mut scale = LossScale::for_precision(Precision::F16).unwrap();
        while scale.factor > 1.0 {
            assert_eq!(scale.check(f64::INFINITY), Checked::Skip);
        }
        assert_eq!(scale.factor, 1.0);
        assert_eq!(scale.check(f64::INFINITY), Checked::NotFinite);
        assert_eq!(scale.factor, 1.0);
        for _ in 0..GROWTH_INTERVAL * 40 {
            scale.check(1.0);
        }
        assert_eq!(scale.factor, MAX_FACTOR);
    }
}
