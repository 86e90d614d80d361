//! The progress of a `jigsaw-lab train` run on standard error.

use run_protocol::{EvalSplit, Event};
use std::io::Write;
use std::time::Instant;

/// The `train` progress bar on standard error: redrawn in place on a terminal, a line every
/// 5% of the steps otherwise (a log file).
pub(super) struct Progress {
    /// Redraw in place (a terminal) rather than print lines.
    terminal: bool,
    /// When the run (or its resumption) started, for the ETA.
    started: Instant,
    /// Steps the run will take.
    steps_planned: usize,
    /// The step the run resumed after (0 when it started afresh).
    first_step: usize,
    /// The step of the last line printed.
    last_line: usize,
}

impl Progress {
    /// A progress bar redrawn in place when `terminal`, else printed line by line.
    pub(super) fn new(terminal: bool) -> Self {
        Self {
            terminal,
            started: Instant::now(),
            steps_planned: 0,
            first_step: 0,
            last_line: 0,
        }
    }

    /// Shows what `event` says about the run.
    pub(super) fn show(&mut self, event: &Event) {
        let mut err = std::io::stderr().lock();
        let line_end = if self.terminal { "\r\x1b[K" } else { "" };
        match event {
            Event::Started {
                device,
                params_total,
                params_trainable,
                steps_planned,
                train_examples,
                resumed_from_step,
                ..
            } => {
                self.steps_planned = *steps_planned;
                self.first_step = resumed_from_step.unwrap_or(0);
                self.started = Instant::now();
                let _ = writeln!(
                    err,
                    "Training on {device}: {train_examples} sentences, {steps_planned} steps, \
                     {params_trainable} of {params_total} parameters trained{}",
                    resumed_from_step
                        .map(|s| format!(", resuming after step {s}"))
                        .unwrap_or_default()
                );
            }
            Event::Step {
                step,
                epoch,
                loss,
                lr,
                examples_per_sec,
                ..
            } => {
                let every = (self.steps_planned / 20).max(1);
                if !self.terminal && *step != self.steps_planned && step - self.last_line < every {
                    return;
                }
                self.last_line = *step;
                let done = step.saturating_sub(self.first_step).max(1) as f64;
                let left = self.steps_planned.saturating_sub(*step) as f64;
                let eta = self.started.elapsed().as_secs_f64() / done * left;
                let width = 24;
                let filled = (step * width / self.steps_planned.max(1)).min(width);
                let _ = write!(
                    err,
                    "{line_end}[{}{}] {step}/{} epoch {epoch} loss {loss:.4} lr {lr:.1e} \
                     {examples_per_sec:.0} ex/s ETA {}{}",
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    self.steps_planned,
                    clock(eta),
                    if self.terminal { "" } else { "\n" }
                );
            }
            Event::Eval {
                step,
                split,
                loss,
                accuracy,
            } => {
                let name = match split {
                    EvalSplit::Validation => "validation",
                    EvalSplit::PrivateTest => "SST-2 dev",
                };
                let _ = writeln!(
                    err,
                    "{line_end}step {step}: {name} loss {loss:.4}, accuracy {:.2}%",
                    accuracy * 100.0
                );
            }
            Event::Checkpoint { step } => {
                let _ = writeln!(err, "{line_end}checkpoint saved at step {step}");
            }
            Event::Finished { metrics } => {
                let kept = metrics.kept_step.map_or(String::new(), |step| {
                    format!(" (the model of step {step}, the best on validation)")
                });
                let _ = writeln!(
                    err,
                    "{line_end}finished in {}: validation accuracy {:.2}%, SST-2 dev accuracy {:.2}%{kept}",
                    clock(metrics.seconds),
                    metrics.validation_accuracy * 100.0,
                    metrics.private_test_accuracy * 100.0
                );
            }
            Event::Diverged { step, loss } => {
                let loss = loss.map_or("not a number".to_string(), |l| format!("{l:.3e}"));
                let _ = writeln!(
                    err,
                    "{line_end}diverged at step {step} (loss {loss}): lower the learning rate"
                );
            }
            Event::Failed { reason } => {
                let _ = writeln!(err, "{line_end}failed: {reason}");
            }
            Event::Cancelled { step } => {
                let _ = writeln!(err, "{line_end}cancelled after step {step}");
            }
            Event::Attention { .. } => {}
        }
    }
}

/// Seconds as m:ss (or h:mm:ss).
fn clock(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}
