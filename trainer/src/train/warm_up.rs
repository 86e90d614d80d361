//! Kernel warm-up: a GPU compiles each kernel the first time a process launches it and
//! autotunes the matrix products and fused kernels for each new shape, which kept a
//! class's first run after a server start waiting about 15 s for its first loss point.
//! [`warm_up`] pays that wait before any run needs it: it prepares a run exactly as
//! [`super::train`] does and takes one real optimizer step at every sequence length a batch
//! can be padded to, reads the losses back, draws the probes' attention maps and evaluates
//! on the validation split, then drops everything it made. The kernels stay compiled in the
//! process and the autotune results in the device's persistent cache
//! ([`crate::device::ComputeDevice`]), so runs with the same model and settings meet no
//! new kernel.

use super::run::Run;
use super::{CancelToken, TrainConfig, TrainError, failure_reason, panic_message};
use crate::device::{BackendKind, ComputeDevice};
use std::time::Instant;

/// What a warm-up did.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmUp {
    /// The batches it stepped, as (columns, sentences), in the order taken.
    pub batches: Vec<(usize, usize)>,
    /// Whether it went through to the evaluation (it was not cancelled).
    pub complete: bool,
    /// Seconds it took.
    pub seconds: f64,
}

/// Compiles and autotunes the kernels that a run with `config`'s model and settings uses
/// on `compute`, and keeps nothing else: no event, checkpoint or export. The CPU compiles
/// nothing at run time, so there it returns at once with no batch stepped. `cancel` stops
/// it between steps. Never panics: an engine failure comes back as its reason.
pub fn warm_up(
    config: &TrainConfig,
    compute: &ComputeDevice,
    cancel: &CancelToken,
) -> Result<WarmUp, String> {
    let started = Instant::now();
    if compute.kind() == BackendKind::Cpu {
        return Ok(WarmUp {
            batches: Vec::new(),
            complete: true,
            seconds: 0.0,
        });
    }
    let config = TrainConfig {
        checkpoint_dir: None,
        export_dir: None,
        keep_best: false,
        ..config.clone()
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        step_every_length(&config, compute, cancel)
    }));
    let (batches, complete) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(panic) => return Err(failure_reason(&panic_message(&*panic))),
    };
    Ok(WarmUp {
        batches,
        complete,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The warm-up's work: the batches stepped, and whether it got to the evaluation.
fn step_every_length(
    config: &TrainConfig,
    compute: &ComputeDevice,
    cancel: &CancelToken,
) -> Result<(Vec<(usize, usize)>, bool), TrainError> {
    config.validate()?;
    let mut discard = |_| {};
    let (mut run, mut model) = Run::prepare(config, compute, &mut discard)?;
    let mut stepped = Vec::new();
    for (columns, batch) in run.one_batch_per_length()? {
        if cancel.is_cancelled() {
            return Ok((stepped, false));
        }
        model = run.step(model, 1, &batch)?;
        // Each step is read back on its own, as a run's first step is; a warm-up step that
        // diverges has still compiled what it ran.
        let _ = run.report_pending();
        run.draw_untrained_attention();
        stepped.push((columns, batch.len()));
    }
    if cancel.is_cancelled() {
        return Ok((stepped, false));
    }
    run.evaluate_and_keep_best(&model, 1, false);
    Ok((stepped, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{DeviceChoice, select};

    #[test]
    fn the_cpu_has_nothing_to_warm_up_and_loads_nothing() {
        let cpu = select(DeviceChoice::Cpu).unwrap();
        let config = TrainConfig {
            model_dir: "/no/such/model".into(),
            ..TrainConfig::default()
        };
        let done = warm_up(&config, &cpu, &CancelToken::default()).unwrap();
        assert!(done.complete);
        assert!(done.batches.is_empty());
    }
}
