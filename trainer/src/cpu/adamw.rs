//! The arithmetic of AdamW's step on the CPU, on plain `f32` slices, split across rayon's
//! threads ([`super::adamw_step`] runs it over the tensors' own buffers).

use rayon::prelude::*;

/// Parameters per rayon task of an AdamW step.
const ADAMW_CHUNK: usize = 1 << 15;

/// The scalars of one AdamW step, shared by every parameter it updates: `m ← β₁m + (1−β₁)g`,
/// `v ← β₂v + (1−β₂)g²`, `p ← p·decay − lr·(m/c₁)/(√(v/c₂) + ε)`, where `c₁`, `c₂` are the
/// bias corrections `1 − βᵗ` and `decay` is `1 − lr·λ`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWUpdate {
    /// First-moment decay β₁.
    pub beta_1: f32,
    /// Second-moment decay β₂.
    pub beta_2: f32,
    /// `1 − β₁ᵗ` at step `t`.
    pub correction_1: f32,
    /// `1 − β₂ᵗ` at step `t`.
    pub correction_2: f32,
    /// `1 − lr·λ`, the decoupled weight decay.
    pub decay: f32,
    /// The learning rate.
    pub lr: f32,
    /// ε.
    pub epsilon: f32,
}

impl AdamWUpdate {
    /// Updates `param` and its moments in place from `grad` (four slices of one length),
    /// split across rayon's threads.
    pub fn apply(
        &self,
        param: &mut [f32],
        grad: &[f32],
        moment_1: &mut [f32],
        moment_2: &mut [f32],
    ) {
        param
            .par_chunks_mut(ADAMW_CHUNK)
            .zip(grad.par_chunks(ADAMW_CHUNK))
            .zip(moment_1.par_chunks_mut(ADAMW_CHUNK))
            .zip(moment_2.par_chunks_mut(ADAMW_CHUNK))
            .for_each(|(((p, g), m), v)| self.apply_chunk(p, g, m, v));
    }

    /// [`Self::apply`] on one thread.
    fn apply_chunk(
        &self,
        param: &mut [f32],
        grad: &[f32],
        moment_1: &mut [f32],
        moment_2: &mut [f32],
    ) {
        let (beta_1, beta_2) = (self.beta_1, self.beta_2);
        for (((p, &g), m), v) in param
            .iter_mut()
            .zip(grad)
            .zip(moment_1.iter_mut())
            .zip(moment_2.iter_mut())
        {
            *m = beta_1 * *m + (1.0 - beta_1) * g;
            *v = beta_2 * *v + (1.0 - beta_2) * (g * g);
            let step = (*m / self.correction_1) / ((*v / self.correction_2).sqrt() + self.epsilon);
            *p = *p * self.decay - step * self.lr;
        }
    }
}
