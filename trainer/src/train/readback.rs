//! Reading steps' losses and gradient norms back from the device: on a GPU each read waits
//! for the queue, so steps wait on the device and are read together in one transfer, then
//! reported in order, ending the run at the first step that diverged.

use burn::tensor::Tensor;
use run_protocol::Event;
use std::time::Instant;

/// A loss above this is treated as divergence (ln 2 ≈ 0.69 is chance for two labels).
const EXPLODED_LOSS: f64 = 1e3;

/// A step whose loss and gradient norm are still on the device.
pub(super) struct PendingStep {
    /// The step's number, from 1.
    pub(super) step: usize,
    /// The epoch it belongs to, from 1.
    pub(super) epoch: usize,
    /// Its mean loss over the batch.
    pub(super) loss: Tensor<1>,
    /// Its gradients' global norm before clipping (`None` when nothing is trainable).
    pub(super) grad_norm: Option<Tensor<1>>,
    /// The learning rate it stepped with.
    pub(super) lr: f64,
    /// Sentences in its batch.
    pub(super) examples: usize,
}

/// Steps not yet reported, read back from the device together in one transfer.
pub(super) struct PendingSteps {
    steps: Vec<PendingStep>,
    /// When the first of them started: throughput is measured over the window.
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
pub(super) struct DivergedRun;

impl PendingSteps {
    /// Marks the start of a step's work, which starts the throughput clock of a new window.
    pub(super) fn start_step(&mut self) {
        if self.steps.is_empty() {
            self.since = Instant::now();
        }
    }

    /// Adds a step to the window.
    pub(super) fn push(&mut self, step: PendingStep) {
        self.steps.push(step);
    }

    /// Steps in the window.
    pub(super) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Reads the pending steps' numbers back and emits their [`Event::Step`]s, or
    /// [`Event::Diverged`] at the first step whose loss or gradient norm is not finite or
    /// whose loss exploded. Throughput is averaged over the steps read together.
    pub(super) fn report(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(), DivergedRun> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

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
}
