//! What a run's events mean for its row: the ending a final event records, the timing a
//! finished run measured, and a failure's reason without the server's paths.

use app::runs::RunStatus;
use app::runs::queue::{ClaimedRun, MeasuredTiming, RunEnding};
use run_protocol::Event;
use run_protocol::estimate::Workload;

/// `event` as students may see it: a failure's reason names files, not the server's paths
/// (the log keeps the full reason for the instructor).
pub(super) fn without_server_paths(event: Event, run_id: i64) -> Event {
    match event {
        Event::Failed { reason } => {
            let shown = hide_paths(&reason);
            if shown != reason {
                tracing::warn!(run = run_id, %reason, "run failed");
            }
            Event::Failed { reason: shown }
        }
        other => other,
    }
}

/// `text` with every absolute file path cut to its file name.
fn hide_paths(text: &str) -> String {
    text.split(' ')
        .map(|word| match word.find('/') {
            Some(start)
                if word[start..].matches('/').count() >= 2
                    && !word[..start].chars().any(char::is_alphanumeric) =>
            {
                let (before, path) = word.split_at(start);
                let trimmed = path.trim_end_matches(|c: char| {
                    matches!(c, ',' | '.' | ':' | ';' | ')' | '"' | '\'' | '\u{201d}')
                });
                let name = trimmed
                    .rsplit('/')
                    .find(|part| !part.is_empty())
                    .unwrap_or("");
                format!("{before}{name}{}", &path[trimmed.len()..])
            }
            _ => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a run's events say about its timing: its size when it started, and its time when
/// it finished.
#[derive(Debug, Default)]
pub(super) struct TimingNotes {
    /// Parameters and training sentences, when it started from step 0 (a resumed run's
    /// time covers only part of its work).
    started_afresh: Option<(usize, usize)>,
    /// Seconds it ran, and whether it stopped at the time limit, when it finished.
    finished: Option<(f64, bool)>,
}

impl TimingNotes {
    /// Notes what `event` says about the run's size or time.
    pub(super) fn note(&mut self, event: &Event) {
        match event {
            Event::Started {
                params_total,
                train_examples,
                resumed_from_step,
                ..
            } => {
                self.started_afresh = resumed_from_step
                    .is_none()
                    .then_some((*params_total, *train_examples));
            }
            Event::Finished { metrics } => {
                self.finished = Some((metrics.seconds, metrics.stopped_at_time_limit.is_some()));
            }
            _ => {}
        }
    }

    /// The finished run's time, and the default model's speed it measured when it did its
    /// whole plan in one go as full fine-tuning (LoRA steps cost less than full ones) of a
    /// model of a realistic size whose `family` is known.
    pub(super) fn measured(
        &self,
        run: &ClaimedRun,
        family: Option<run_protocol::Family>,
        validation: usize,
        device: &str,
    ) -> Option<MeasuredTiming> {
        let (seconds, stopped_early) = self.finished?;
        let s = &run.settings;
        let reference_speed = self
            .started_afresh
            .filter(|(params, _)| {
                // Tiny test models spend their time on fixed costs, not on their weights.
                !stopped_early
                    && s.lora_rank.is_none()
                    && *params >= run_protocol::estimate::REFERENCE_PARAMS / 10
            })
            .and_then(|(params, examples)| {
                let speed = Workload::of(examples, s.batch_size, s.epochs, validation)?
                    .speed_from(seconds)?;
                Some(run_protocol::estimate::reference_speed(
                    speed, params, family?,
                ))
            });
        Some(MeasuredTiming {
            trained_seconds: seconds,
            reference_speed,
            device: device.to_string(),
        })
    }
}

/// The ending a final event means.
pub(super) fn ending_of(event: &Event) -> Option<RunEnding> {
    let ending = |status, message, accuracies| RunEnding {
        status,
        message,
        accuracies,
        timing: None,
    };
    match event {
        Event::Finished { metrics } => {
            let time_limit = metrics.stopped_at_time_limit.map(|seconds| {
                format!(
                    "Stopped at the class's time limit of {} min per run, after step {}.",
                    seconds.div_ceil(60),
                    metrics.steps
                )
            });
            let kept = metrics.kept_step.map(|step| {
                format!(
                    "Kept the model of step {step}: its validation accuracy, {:.2}%, was the \
                     run's best (early stopping).",
                    metrics.validation_accuracy * 100.0
                )
            });
            let message = match (time_limit, kept) {
                (Some(limit), Some(kept)) => Some(format!("{limit} {kept}")),
                (limit, kept) => limit.or(kept),
            };
            Some(ending(
                RunStatus::Succeeded,
                message,
                Some((metrics.validation_accuracy, metrics.private_test_accuracy)),
            ))
        }
        Event::Diverged { step, loss } => Some(ending(
            RunStatus::Diverged,
            Some(match loss {
                Some(loss) => format!("The loss exploded to {loss:.3e} at step {step}."),
                None => format!("The loss became NaN (not a number) at step {step}."),
            }),
            None,
        )),
        Event::Failed { reason } => Some(ending(RunStatus::Failed, Some(reason.clone()), None)),
        Event::Cancelled { step } => Some(ending(
            RunStatus::Cancelled,
            Some(format!("Cancelled after step {step}.")),
            None,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::runs::RunStatus;

    #[test]
    fn failure_reasons_shown_to_students_name_files_not_server_paths() {
        assert_eq!(
            hide_paths("cannot read /srv/lab/data/sst2/train.tsv: No such file or directory"),
            "cannot read train.tsv: No such file or directory"
        );
        assert_eq!(
            hide_paths("model \u{201c}/home/t/models/tiny/\u{201d} has no config.json."),
            "model \u{201c}tiny\u{201d} has no config.json."
        );
        for kept in [
            "see http://127.0.0.1:3000/runs/4",
            "a ratio of 1/2/3",
            "plain words",
        ] {
            assert_eq!(hide_paths(kept), kept);
        }
    }
    use run_protocol::Metrics;

    fn finished(kept_step: Option<usize>) -> Event {
        Event::Finished {
            metrics: Metrics {
                steps: 4086,
                validation_accuracy: 0.9395,
                validation_loss: 0.199,
                private_test_accuracy: 0.9048,
                kept_step,
                stopped_at_time_limit: None,
                seconds: 130.1,
            },
        }
    }

    #[test]
    fn a_run_that_kept_an_earlier_model_says_which_step() {
        let ending = ending_of(&finished(Some(3600))).unwrap();
        assert_eq!(ending.status, RunStatus::Succeeded);
        assert_eq!(ending.accuracies, Some((0.9395, 0.9048)));
        let message = ending
            .message
            .expect("the run page explains the kept model");
        assert!(
            message.contains("step 3600") && message.contains("93.95%"),
            "{message}"
        );

        let ending = ending_of(&finished(None)).unwrap();
        assert_eq!(
            (ending.status, ending.message),
            (RunStatus::Succeeded, None)
        );
    }

    #[test]
    fn a_run_stopped_at_the_time_limit_says_so() {
        let Event::Finished { mut metrics } = finished(Some(3600)) else {
            unreachable!()
        };
        metrics.stopped_at_time_limit = Some(45 * 60);
        let message = ending_of(&Event::Finished { metrics })
            .unwrap()
            .message
            .unwrap();
        assert!(
            message.starts_with(
                "Stopped at the class's time limit of 45 min per run, after step 4086."
            ) && message.contains("step 3600"),
            "{message}"
        );
    }
}
