//! The typed stream a training run emits: the engine writes it, the server stores and
//! broadcasts it, and the browser parses the same type from the live stream.

use serde::{Deserialize, Serialize};

/// The longest sentence, in tokens, whose attention is drawn: the attention viewer, the
/// [CLS] demo, "try your model" and a run's probe sentences cut longer ones here (and say
/// so). 64 covers every SST-2 sentence but a handful, and keeps one map of every layer and
/// head small enough to send and draw.
pub const VIEWER_MAX_TOKENS: usize = 64;

/// Which data an evaluation ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSplit {
    /// Carved out of train; public.
    Validation,
    /// The official SST-2 dev set; private until the instructor reveals it.
    PrivateTest,
}

/// Final numbers of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Accuracy on the validation split, 0..1.
    pub validation_accuracy: f64,
    /// Mean loss on the validation split.
    pub validation_loss: f64,
    /// Accuracy on the private test set (SST-2 dev), 0..1.
    pub private_test_accuracy: f64,
    /// The step whose model the run kept because it had the best validation accuracy,
    /// when that was not the last step (the engine's keep-best option); the accuracies above
    /// are that model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_step: Option<usize>,
    /// The run's time limit in seconds, when the run stopped there before its last planned
    /// step (it finished with the model it had, its best when it keeps the best).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at_time_limit: Option<u64>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The run has loaded its model and data.
    Started {
        /// The compute device, e.g. "CPU: 2 threads (burn flex)".
        device: String,
        /// "cpu" or "gpu".
        backend: String,
        /// All parameters, adapters included.
        params_total: usize,
        /// Parameters the optimizer updates.
        params_trainable: usize,
        /// Optimizer steps the run will take.
        steps_planned: usize,
        /// Training sentences.
        train_examples: usize,
        /// The step of the checkpoint this run resumed from, if it resumed.
        resumed_from_step: Option<usize>,
    },
    /// One optimizer step.
    Step {
        /// 1-based step number.
        step: usize,
        /// 1-based epoch number.
        epoch: usize,
        /// Training loss of this batch.
        loss: f64,
        /// Learning rate used for this step.
        lr: f64,
        /// Global gradient norm before clipping.
        grad_norm: f64,
        /// Training throughput over this step.
        examples_per_sec: f64,
    },
    /// An evaluation.
    Eval {
        /// Step after which it ran.
        step: usize,
        /// The data it ran on.
        split: EvalSplit,
        /// Mean cross-entropy.
        loss: f64,
        /// Fraction correct, 0..1.
        accuracy: f64,
    },
    /// Attention probabilities for one sentence (cut to [`VIEWER_MAX_TOKENS`] tokens).
    Attention {
        /// Step after which they were taken (0 = before training).
        step: usize,
        /// The sentence.
        sentence: String,
        /// Its tokens.
        tokens: Vec<String>,
        /// `[layer][head][query * tokens + key]`.
        matrices: Vec<Vec<Vec<f32>>>,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Step it holds.
        step: usize,
    },
    /// The run ended normally.
    Finished {
        /// Its final numbers.
        metrics: Metrics,
    },
    /// The loss became NaN/infinite or exploded; the run stopped at once.
    Diverged {
        /// The step at which it happened.
        step: usize,
        /// The loss seen (may be NaN, serialised as null).
        loss: Option<f64>,
    },
    /// The run could not go on.
    Failed {
        /// Why, with what to do about it.
        reason: String,
    },
    /// The run was cancelled.
    Cancelled {
        /// The last completed step.
        step: usize,
    },
}

/// What kind of event a stored row holds: the `type` tag of its JSON, kept in a column of
/// its own so that queries select events by kind without reading the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// [`Event::Started`].
    Started,
    /// [`Event::Step`].
    Step,
    /// [`Event::Eval`].
    Eval,
    /// [`Event::Attention`].
    Attention,
    /// [`Event::Checkpoint`].
    Checkpoint,
    /// [`Event::Finished`].
    Finished,
    /// [`Event::Diverged`].
    Diverged,
    /// [`Event::Failed`].
    Failed,
    /// [`Event::Cancelled`].
    Cancelled,
}

impl EventKind {
    /// The stored name: the event's `type` tag.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Step => "step",
            EventKind::Eval => "eval",
            EventKind::Attention => "attention",
            EventKind::Checkpoint => "checkpoint",
            EventKind::Finished => "finished",
            EventKind::Diverged => "diverged",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
        }
    }
}

impl Event {
    /// Its kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Started { .. } => EventKind::Started,
            Event::Step { .. } => EventKind::Step,
            Event::Eval { .. } => EventKind::Eval,
            Event::Attention { .. } => EventKind::Attention,
            Event::Checkpoint { .. } => EventKind::Checkpoint,
            Event::Finished { .. } => EventKind::Finished,
            Event::Diverged { .. } => EventKind::Diverged,
            Event::Failed { .. } => EventKind::Failed,
            Event::Cancelled { .. } => EventKind::Cancelled,
        }
    }

    /// Whether the run ends with this event.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.kind(),
            EventKind::Finished | EventKind::Diverged | EventKind::Failed | EventKind::Cancelled
        )
    }

    /// The event as a run page keeps it: an attention event's maps reduced to what the page
    /// draws, the last layer averaged over its heads (one layer of one "head"), so a stored
    /// event is tens of kilobytes instead of megabytes. Other events are unchanged.
    pub fn summarized(self) -> Event {
        match self {
            Event::Attention {
                step,
                sentence,
                tokens,
                matrices,
            } => {
                let mean = matrices
                    .last()
                    .map(|heads| mean_of(heads))
                    .unwrap_or_default();
                Event::Attention {
                    step,
                    sentence,
                    tokens,
                    matrices: vec![vec![mean]],
                }
            }
            other => other,
        }
    }
}

/// The element-wise mean of equally long rows (empty when there are none).
pub fn mean_of(rows: &[Vec<f32>]) -> Vec<f32> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let mut sum = vec![0.0_f32; first.len()];
    for row in rows {
        for (total, value) in sum.iter_mut().zip(row) {
            *total += value;
        }
    }
    let count = rows.len() as f32;
    sum.iter().map(|total| total / count).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summarized_attention_event_keeps_the_last_layers_head_mean() {
        let event = Event::Attention {
            step: 3,
            sentence: "a b".into(),
            tokens: vec!["a".into(), "b".into()],
            matrices: vec![
                vec![vec![9.0; 4], vec![9.0; 4]],
                vec![vec![1.0, 0.0, 0.5, 0.5], vec![0.0, 1.0, 0.5, 0.5]],
            ],
        };
        let Event::Attention { step, matrices, .. } = event.summarized() else {
            panic!("still an attention event");
        };
        assert_eq!(step, 3);
        assert_eq!(matrices, vec![vec![vec![0.5, 0.5, 0.5, 0.5]]]);
        let step = Event::Checkpoint { step: 1 };
        assert_eq!(step.clone().summarized(), step);
        assert!(mean_of(&[]).is_empty());
    }

    /// One event of every kind, with every optional field set.
    fn every_kind() -> Vec<Event> {
        vec![
            Event::Started {
                device: "CPU: 2 threads (burn flex)".into(),
                backend: "cpu".into(),
                params_total: 22_713_986,
                params_trainable: 22_713_986,
                steps_planned: 4_148,
                train_examples: 65_349,
                resumed_from_step: Some(400),
            },
            Event::Step {
                step: 1,
                epoch: 1,
                loss: 0.69,
                lr: 1e-6,
                grad_norm: 2.5,
                examples_per_sec: 150.0,
            },
            Event::Eval {
                step: 400,
                split: EvalSplit::Validation,
                loss: 0.3,
                accuracy: 0.88,
            },
            Event::Eval {
                step: 4148,
                split: EvalSplit::PrivateTest,
                loss: 0.28,
                accuracy: 0.9,
            },
            Event::Attention {
                step: 0,
                sentence: "a film .".into(),
                tokens: vec!["[CLS]".into(), "a".into(), "film".into()],
                matrices: vec![vec![vec![0.5, 0.25, 0.25]]],
            },
            Event::Checkpoint { step: 400 },
            Event::Finished {
                metrics: Metrics {
                    steps: 4148,
                    validation_accuracy: 0.9,
                    validation_loss: 0.27,
                    private_test_accuracy: 0.9094,
                    kept_step: Some(3600),
                    stopped_at_time_limit: Some(3600),
                    seconds: 61.5,
                },
            },
            Event::Diverged {
                step: 7,
                loss: None,
            },
            Event::Failed {
                reason: "out of memory".into(),
            },
            Event::Cancelled { step: 12 },
        ]
    }

    #[test]
    fn kind_is_the_json_type_tag() {
        for event in every_kind() {
            let json: serde_json::Value = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.kind().as_str(), "{event:?}");
            let kind: EventKind = serde_json::from_value(json["type"].clone()).unwrap();
            assert_eq!(kind, event.kind());
        }
    }

    #[test]
    fn every_event_round_trips_through_json() {
        for event in every_kind() {
            let text = serde_json::to_string(&event).unwrap();
            let back: Event = serde_json::from_str(&text).unwrap();
            assert_eq!(back, event, "{text}");
        }
    }

    #[test]
    fn only_endings_are_terminal() {
        let terminal: Vec<EventKind> = every_kind()
            .iter()
            .filter(|e| e.is_terminal())
            .map(Event::kind)
            .collect();
        assert_eq!(
            terminal,
            [
                EventKind::Finished,
                EventKind::Diverged,
                EventKind::Failed,
                EventKind::Cancelled
            ]
        );
    }
}
