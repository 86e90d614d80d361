//! How a claim's finished runs decide it: each rule reads the runs' validation evaluations
//! and says whether the class's result agrees with the claim, in words.

use super::{Finding, Verdict};
use crate::runs::RunStatus;
use serde::Deserialize;

/// How a claim's runs decide it (the `rule` of a claim in `claims.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Rule {
    /// `arm` reaches at least `share` of `against`'s best validation accuracy while
    /// training under `max_trainable` of the parameters.
    KeepsAccuracy {
        /// The cheaper run (LoRA).
        arm: String,
        /// The run it is held to (full fine-tuning).
        against: String,
        /// The least share of `against`'s accuracy that counts as keeping it.
        share: f64,
        /// The largest share of trainable parameters that counts as cheap.
        max_trainable: f64,
    },
    /// `arm` diverges, or its best validation accuracy stays below `below`.
    FailsToLearn {
        /// The run.
        arm: String,
        /// Accuracy (0..1) under which it has not learned.
        below: f64,
    },
    /// `arm`'s last validation loss is at least `rise` times its lowest.
    Overfits {
        /// The run.
        arm: String,
        /// How far above its lowest the last validation loss must end.
        rise: f64,
    },
    /// `arm`'s third epoch adds less than `below_points` percentage points of validation
    /// accuracy to its second.
    LastEpochGain {
        /// The run (of three epochs).
        arm: String,
        /// The gain, in percentage points, under which the third epoch is not needed.
        below_points: f64,
    },
}

/// One validation evaluation of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// The step after which it ran.
    pub step: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction correct, 0..1.
    pub accuracy: f64,
}

/// What one of a claim's runs did.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmEvidence {
    /// The arm's name.
    pub arm: String,
    /// The arm's label, for the finding's words.
    pub label: String,
    /// The run.
    pub run_id: i64,
    /// How it ended.
    pub status: RunStatus,
    /// Its validation evaluations, in order.
    pub validation: Vec<Evaluation>,
    /// Optimizer steps per epoch, once the run started.
    pub steps_per_epoch: Option<usize>,
    /// Trainable parameters as a share of all, once the run started.
    pub trainable_share: Option<f64>,
    /// Whether it stopped at the class's time limit before its last planned step.
    pub stopped_early: bool,
}

impl ArmEvidence {
    /// Its best validation accuracy, 0..1.
    fn best_accuracy(&self) -> Option<f64> {
        self.validation.iter().map(|e| e.accuracy).reduce(f64::max)
    }

    /// The validation evaluation at the end of `epoch` (1-based).
    fn at_end_of_epoch(&self, epoch: usize) -> Option<&Evaluation> {
        let per_epoch = self.steps_per_epoch?;
        self.validation.iter().find(|e| e.step == epoch * per_epoch)
    }

    /// Why the run cannot decide the claim, when it did not finish normally.
    fn unfinished(&self) -> Option<Finding> {
        let how = match self.status {
            RunStatus::Succeeded if self.stopped_early => {
                return Some(inconclusive(format!(
                    "Run #{} ({}) stopped at the class's time limit before its last step, so it \
                     cannot decide the claim. Raise the longest run on the class page, or test \
                     it on a faster machine.",
                    self.run_id, self.label
                )));
            }
            RunStatus::Succeeded => return None,
            RunStatus::Queued | RunStatus::Running => return Some(waiting()),
            RunStatus::Failed => "failed",
            RunStatus::Diverged => "diverged",
            RunStatus::Cancelled => "was cancelled",
        };
        Some(inconclusive(format!(
            "Run #{} ({}) {how}, so it cannot decide the claim. Queue the test again.",
            self.run_id, self.label
        )))
    }
}

/// The finding while runs are still to come.
fn waiting() -> Finding {
    Finding {
        verdict: Verdict::Waiting,
        text: "The runs are waiting or training: the result comes when they finish.".into(),
    }
}

fn inconclusive(text: String) -> Finding {
    Finding {
        verdict: Verdict::Inconclusive,
        text,
    }
}

/// `agrees` as a verdict with its sentence.
fn decided(agrees: bool, numbers: String) -> Finding {
    Finding {
        verdict: if agrees {
            Verdict::Agrees
        } else {
            Verdict::Disagrees
        },
        text: format!(
            "{numbers} {}",
            if agrees {
                "The class's result agrees with the claim."
            } else {
                "The class's result disagrees with the claim."
            }
        ),
    }
}

fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

impl Rule {
    /// The arms the rule reads.
    pub fn arms(&self) -> Vec<&str> {
        match self {
            Rule::KeepsAccuracy { arm, against, .. } => vec![arm.as_str(), against.as_str()],
            Rule::FailsToLearn { arm, .. }
            | Rule::Overfits { arm, .. }
            | Rule::LastEpochGain { arm, .. } => vec![arm.as_str()],
        }
    }

    /// Decides the claim from its runs' evidence (the latest run of each arm).
    pub fn decide(&self, evidence: &[ArmEvidence]) -> Finding {
        let mut runs = Vec::new();
        for name in self.arms() {
            match evidence.iter().find(|e| e.arm == name) {
                Some(run) => runs.push(run),
                None => {
                    return inconclusive(format!(
                        "The run \u{201c}{name}\u{201d} is missing. Queue the test again."
                    ));
                }
            }
        }
        if runs.iter().any(|r| r.status.is_active()) {
            return waiting();
        }
        match self {
            Rule::FailsToLearn { below, .. } => {
                let run = runs[0];
                if run.status == RunStatus::Diverged {
                    return decided(
                        true,
                        format!("Run #{} diverged: its loss blew up.", run.run_id),
                    );
                }
                if let Some(finding) = run.unfinished() {
                    return finding;
                }
                let Some(best) = run.best_accuracy() else {
                    return inconclusive(format!(
                        "Run #{} has no validation evaluation.",
                        run.run_id
                    ));
                };
                decided(
                    best < *below,
                    format!(
                        "Its best validation accuracy was {} (the claim needs below {}).",
                        percent(best),
                        percent(*below)
                    ),
                )
            }
            Rule::KeepsAccuracy {
                share,
                max_trainable,
                ..
            } => {
                let (cheap, reference) = (runs[0], runs[1]);
                if let Some(finding) = cheap.unfinished().or_else(|| reference.unfinished()) {
                    return finding;
                }
                let (Some(cheap_best), Some(reference_best)) =
                    (cheap.best_accuracy(), reference.best_accuracy())
                else {
                    return inconclusive("A run has no validation evaluation.".into());
                };
                let Some(trainable) = cheap.trainable_share else {
                    return inconclusive(format!(
                        "Run #{} did not record how many parameters it trained.",
                        cheap.run_id
                    ));
                };
                let kept = cheap_best / reference_best.max(f64::MIN_POSITIVE);
                let trained = format!("{:.2}%", 100.0 * trainable);
                decided(
                    kept >= *share && trainable < *max_trainable,
                    format!(
                        "{} reached {} validation accuracy, {} of {}'s {} (the claim needs at least {}), \
                         training {} of the parameters (the claim needs under {}).",
                        cheap.label,
                        percent(cheap_best),
                        percent(kept),
                        reference.label.to_lowercase(),
                        percent(reference_best),
                        percent(*share),
                        trained,
                        percent(*max_trainable),
                    ),
                )
            }
            Rule::Overfits { rise, .. } => {
                let run = runs[0];
                if let Some(finding) = run.unfinished() {
                    return finding;
                }
                let (Some(lowest), Some(last)) = (
                    run.validation
                        .iter()
                        .min_by(|a, b| a.loss.total_cmp(&b.loss)),
                    run.validation.last(),
                ) else {
                    return inconclusive(format!(
                        "Run #{} has no validation evaluation.",
                        run.run_id
                    ));
                };
                if run.validation.len() < 3 {
                    return inconclusive(format!(
                        "Run #{} was evaluated {} times; a turn in the curve needs at least 3. \
                         It may have stopped at the class's time limit.",
                        run.run_id,
                        run.validation.len()
                    ));
                }
                let ratio = last.loss / lowest.loss.max(f64::MIN_POSITIVE);
                decided(
                    ratio >= *rise,
                    format!(
                        "The validation loss fell to {:.3} at step {} and ended at {:.3} at step {}, \
                         {} of its lowest (the claim needs at least {}).",
                        lowest.loss,
                        lowest.step,
                        last.loss,
                        last.step,
                        percent(ratio),
                        percent(*rise),
                    ),
                )
            }
            Rule::LastEpochGain { below_points, .. } => {
                let run = runs[0];
                if let Some(finding) = run.unfinished() {
                    return finding;
                }
                let (Some(second), Some(third)) = (run.at_end_of_epoch(2), run.at_end_of_epoch(3))
                else {
                    return inconclusive(format!(
                        "Run #{} has no validation evaluation at the end of epoch 2 and of epoch 3. \
                         It may have stopped at the class's time limit.",
                        run.run_id
                    ));
                };
                let gain = 100.0 * (third.accuracy - second.accuracy);
                decided(
                    gain < *below_points,
                    format!(
                        "Validation accuracy was {} after epoch 2 and {} after epoch 3: \
                         {gain:+.1} points (the claim needs under {below_points:+.1}).",
                        percent(second.accuracy),
                        percent(third.accuracy),
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(arm: &str, status: RunStatus, points: &[(usize, f64, f64)]) -> ArmEvidence {
        ArmEvidence {
            arm: arm.into(),
            label: arm.to_uppercase(),
            run_id: 7,
            status,
            validation: points
                .iter()
                .map(|&(step, loss, accuracy)| Evaluation {
                    step,
                    loss,
                    accuracy,
                })
                .collect(),
            steps_per_epoch: Some(10),
            trainable_share: Some(0.0065),
            stopped_early: false,
        }
    }

    #[test]
    fn lora_keeps_accuracy_when_within_the_share_and_cheap() {
        let rule = Rule::KeepsAccuracy {
            arm: "lora".into(),
            against: "full".into(),
            share: 0.95,
            max_trainable: 0.01,
        };
        let full = run(
            "full",
            RunStatus::Succeeded,
            &[(10, 0.4, 0.80), (20, 0.3, 0.90)],
        );
        let lora = run("lora", RunStatus::Succeeded, &[(10, 0.4, 0.87)]);
        let finding = rule.decide(&[full.clone(), lora.clone()]);
        assert_eq!(finding.verdict, Verdict::Agrees, "{}", finding.text);
        assert!(finding.text.contains("87.0%"), "{}", finding.text);
        assert!(finding.text.contains("96.7%"), "{}", finding.text);
        let weak = run("lora", RunStatus::Succeeded, &[(10, 0.6, 0.70)]);
        assert_eq!(
            rule.decide(&[full.clone(), weak]).verdict,
            Verdict::Disagrees
        );
        let costly = ArmEvidence {
            trainable_share: Some(0.2),
            ..lora.clone()
        };
        assert_eq!(
            rule.decide(&[full.clone(), costly]).verdict,
            Verdict::Disagrees
        );
        let queued = run("full", RunStatus::Queued, &[]);
        assert_eq!(
            rule.decide(&[queued, lora.clone()]).verdict,
            Verdict::Waiting
        );
        let failed = run("full", RunStatus::Failed, &[]);
        assert_eq!(rule.decide(&[failed, lora]).verdict, Verdict::Inconclusive);
        assert_eq!(rule.decide(&[full]).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn a_high_rate_fails_when_it_diverges_or_stays_near_chance() {
        let rule = Rule::FailsToLearn {
            arm: "high".into(),
            below: 0.6,
        };
        let chance = run("high", RunStatus::Succeeded, &[(10, 0.7, 0.55)]);
        assert_eq!(rule.decide(&[chance]).verdict, Verdict::Agrees);
        assert_eq!(
            rule.decide(&[run("high", RunStatus::Diverged, &[])])
                .verdict,
            Verdict::Agrees
        );
        let learned = run("high", RunStatus::Succeeded, &[(10, 0.3, 0.85)]);
        let finding = rule.decide(&[learned]);
        assert_eq!(finding.verdict, Verdict::Disagrees);
        assert!(finding.text.contains("85.0%"), "{}", finding.text);
        assert_eq!(
            rule.decide(&[run("high", RunStatus::Cancelled, &[])])
                .verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn overfitting_is_a_last_validation_loss_well_above_the_lowest() {
        let rule = Rule::Overfits {
            arm: "small".into(),
            rise: 1.1,
        };
        let turned = run(
            "small",
            RunStatus::Succeeded,
            &[(10, 0.60, 0.7), (20, 0.45, 0.8), (30, 0.55, 0.8)],
        );
        let finding = rule.decide(&[turned]);
        assert_eq!(finding.verdict, Verdict::Agrees, "{}", finding.text);
        assert!(
            finding.text.contains("0.450 at step 20"),
            "{}",
            finding.text
        );
        let falling = run(
            "small",
            RunStatus::Succeeded,
            &[(10, 0.60, 0.7), (20, 0.45, 0.8), (30, 0.44, 0.8)],
        );
        assert_eq!(rule.decide(&[falling]).verdict, Verdict::Disagrees);
        let short = run("small", RunStatus::Succeeded, &[(10, 0.60, 0.7)]);
        assert_eq!(rule.decide(&[short]).verdict, Verdict::Inconclusive);
        let stopped = ArmEvidence {
            stopped_early: true,
            ..run(
                "small",
                RunStatus::Succeeded,
                &[(10, 0.60, 0.7), (20, 0.45, 0.8), (30, 0.55, 0.8)],
            )
        };
        let finding = rule.decide(&[stopped]);
        assert_eq!(finding.verdict, Verdict::Inconclusive);
        assert!(finding.text.contains("time limit"), "{}", finding.text);
    }

    #[test]
    fn the_third_epoch_gain_is_read_at_the_ends_of_epochs_two_and_three() {
        let rule = Rule::LastEpochGain {
            arm: "three".into(),
            below_points: 1.0,
        };
        // Step 25 is a mid-epoch evaluation and is not an epoch's end.
        let flat = run(
            "three",
            RunStatus::Succeeded,
            &[
                (10, 0.5, 0.80),
                (20, 0.4, 0.85),
                (25, 0.4, 0.95),
                (30, 0.4, 0.855),
            ],
        );
        let finding = rule.decide(&[flat]);
        assert_eq!(finding.verdict, Verdict::Agrees, "{}", finding.text);
        assert!(finding.text.contains("+0.5 points"), "{}", finding.text);
        let rising = run(
            "three",
            RunStatus::Succeeded,
            &[(10, 0.5, 0.70), (20, 0.4, 0.75), (30, 0.4, 0.80)],
        );
        assert_eq!(rule.decide(&[rising]).verdict, Verdict::Disagrees);
        let stopped = run("three", RunStatus::Succeeded, &[(10, 0.5, 0.70)]);
        assert_eq!(rule.decide(&[stopped]).verdict, Verdict::Inconclusive);
    }
}
