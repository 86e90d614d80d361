//! The run form: what a team types (every field as text, so each bad value gets its own
//! message), its defaults, and its checks (hard limits from [`run_protocol::LIMITS`] are
//! errors; values outside the lesson's recommended ranges are hints).

use run_protocol::settings::{
    DEFAULT_LEARNING_RATE_FULL, DEFAULT_LEARNING_RATE_LORA, DEFAULT_LORA_RANK,
};
use run_protocol::{LoraSettings, Method, Precision, RunSettings};
use serde::{Deserialize, Serialize};

/// The sentence whose attention a new form offers to follow.
pub const DEFAULT_PROBE_SENTENCE: &str = "a gorgeous , witty , seductive movie .";

/// The run form as typed: every field is text, so a bad value gets its own message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunForm {
    /// Model name.
    pub model: String,
    /// "full" or "lora".
    pub method: String,
    /// LoRA rank.
    pub lora_rank: String,
    /// LoRA alpha.
    pub lora_alpha: String,
    /// Learning rate.
    pub learning_rate: String,
    /// Batch size.
    pub batch_size: String,
    /// Epochs.
    pub epochs: String,
    /// Warmup ratio.
    pub warmup_ratio: String,
    /// Longest sequence.
    pub max_len: String,
    /// Train subset (empty = all).
    pub train_subset: String,
    /// Seed.
    pub seed: String,
    /// Probe sentence.
    pub probe_sentence: String,
    /// The matrix products' number format: "fp32", "bf16" or "f16" (a form sent without
    /// it is fp32).
    #[serde(default = "fp32")]
    pub precision: String,
}

/// The precision a form sent without one asks for.
fn fp32() -> String {
    Precision::Fp32.as_str().into()
}

impl Default for RunForm {
    /// The form for [`RunSettings::default`].
    fn default() -> Self {
        Self::from(&RunSettings::default())
    }
}

impl From<&RunSettings> for RunForm {
    /// `settings` as text; for full fine-tuning, LoRA's rank and alpha are the defaults,
    /// ready for a switch.
    fn from(settings: &RunSettings) -> Self {
        let (method, rank, alpha) = match settings.method() {
            Method::Lora(lora) => ("lora", lora.rank, lora.alpha),
            Method::Full => (
                "full",
                DEFAULT_LORA_RANK,
                LoraSettings::default_alpha(DEFAULT_LORA_RANK),
            ),
        };
        Self {
            model: settings.model.clone(),
            method: method.into(),
            lora_rank: rank.to_string(),
            lora_alpha: alpha.to_string(),
            learning_rate: format_rate(settings.learning_rate),
            batch_size: settings.batch_size.to_string(),
            epochs: settings.epochs.to_string(),
            warmup_ratio: settings.warmup_ratio.to_string(),
            max_len: settings.max_len.to_string(),
            train_subset: settings
                .train_subset
                .map_or_else(String::new, |n| n.to_string()),
            seed: settings.seed.to_string(),
            probe_sentence: DEFAULT_PROBE_SENTENCE.into(),
            precision: settings.precision.as_str().into(),
        }
    }
}

/// The learning rate the form shows after the method changes to `method`: that method's
/// default when the field still holds the other method's default, else what was typed.
pub fn default_learning_rate_after_switch(current: &str, method: &str) -> String {
    let (other, own) = if method == "lora" {
        (DEFAULT_LEARNING_RATE_FULL, DEFAULT_LEARNING_RATE_LORA)
    } else {
        (DEFAULT_LEARNING_RATE_LORA, DEFAULT_LEARNING_RATE_FULL)
    };
    if current.trim().parse::<f64>() == Ok(other) {
        format_rate(own)
    } else {
        current.to_string()
    }
}

/// A learning rate as the form shows it: 5e-5, 1e-3.
pub fn format_rate(rate: f64) -> String {
    format!("{rate:e}")
}

#[cfg(feature = "ssr")]
mod check {
    //! The checks, on the server only.

    use super::RunForm;
    use crate::runs::ModelChoice;
    use run_protocol::{LIMITS, Limits, LoraSettings, Precision, RunSettings};

    /// Parses one number field, with a message naming the field.
    fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, String> {
        text.trim().parse().map_err(|_| {
            format!(
                "{field}: \u{201c}{}\u{201d} is not a number.",
                text.trim().chars().take(24).collect::<String>()
            )
        })
    }

    /// A number within `range` (above its start when `low_open`), with a message naming
    /// the field.
    fn float_in(
        field: &str,
        text: &str,
        range: &std::ops::RangeInclusive<f64>,
        low_open: bool,
    ) -> Result<f64, String> {
        Limits::check_float(field, number(field, text)?, range, low_open)
    }

    /// A whole number within `range`, with a message naming the field (a negative number
    /// gets the range, not "not a number").
    fn whole_in(
        field: &str,
        text: &str,
        range: &std::ops::RangeInclusive<usize>,
    ) -> Result<usize, String> {
        let value: i64 = number(field, text)?;
        match usize::try_from(value) {
            Ok(value) => Limits::check_whole(field, value, range),
            Err(_) => Err(format!(
                "{field} must be from {} to {}; {value} is not.",
                range.start(),
                range.end()
            )),
        }
    }

    /// Checks the form: hard limits are errors; values outside the lesson's recommended
    /// ranges come back as hints.
    pub fn check_form(
        form: &RunForm,
        models: &[ModelChoice],
    ) -> Result<(RunSettings, Vec<String>), String> {
        let model = form.model.trim();
        if !models.iter().any(|m| m.name == model) {
            return Err(format!(
                "There is no model called \u{201c}{}\u{201d} here; pick one from the list.",
                model.chars().take(40).collect::<String>()
            ));
        }
        let lora = match form.method.trim() {
            "full" => None,
            "lora" => {
                let rank = whole_in("LoRA rank", &form.lora_rank, &LIMITS.lora_rank)?;
                let alpha = if form.lora_alpha.trim().is_empty() {
                    LoraSettings::default_alpha(rank)
                } else {
                    float_in("LoRA alpha", &form.lora_alpha, &LIMITS.lora_alpha, true)?
                };
                Some((rank, alpha))
            }
            other => {
                return Err(format!(
                    "Method must be full or lora, not \u{201c}{}\u{201d}.",
                    other.chars().take(24).collect::<String>()
                ));
            }
        };
        let learning_rate = LIMITS.check_rate(number("Learning rate", &form.learning_rate)?)?;
        let batch_size = whole_in("Batch size", &form.batch_size, &LIMITS.batch_size)?;
        let epochs = whole_in("Epochs", &form.epochs, &LIMITS.epochs)?;
        let warmup_ratio = float_in(
            "Warmup ratio",
            &form.warmup_ratio,
            &LIMITS.warmup_ratio,
            false,
        )?;
        let max_len = whole_in("Max length", &form.max_len, &LIMITS.max_len)?;
        let train_subset = if form.train_subset.trim().is_empty() {
            None
        } else {
            Some(whole_in(
                "Training sentences",
                &form.train_subset,
                &LIMITS.train_subset,
            )?)
        };
        let seed: u64 = number("Seed", &form.seed)?;
        let precision = Precision::parse(&form.precision)?;
        let probe_sentence = form.probe_sentence.trim().to_string();
        if probe_sentence.chars().count() > crate::models::MAX_SENTENCE_CHARS {
            return Err(format!(
                "The attention sentence has more than {} characters.",
                crate::models::MAX_SENTENCE_CHARS
            ));
        }

        let mut hints = Vec::new();
        let (low, high) = if lora.is_some() {
            (1e-4, 1e-3)
        } else {
            (1e-5, 5e-5)
        };
        if learning_rate > high * 2.0 {
            hints.push(format!(
                "A learning rate of {learning_rate:e} is far above the recommended {low:e} to {high:e}{}; expect the loss to jump around or become NaN.",
                if lora.is_some() { " for LoRA" } else { "" }
            ));
        } else if learning_rate < low / 2.0 {
            hints.push(format!(
                "A learning rate of {learning_rate:e} is far below the recommended {low:e} to {high:e}; the model will barely change."
            ));
        }
        if !(8..=32).contains(&batch_size) {
            hints.push(format!(
                "The lesson recommends a batch size of 8, 16 or 32; {batch_size} may {}.",
                if batch_size > 32 {
                    "run out of memory"
                } else {
                    "make training noisy and slow"
                }
            ));
        }
        if !(2..=5).contains(&epochs) {
            hints.push(format!(
                "The lesson recommends 2 to 5 epochs; {epochs} may {}.",
                if epochs > 5 {
                    "overfit and keep the GPU from other teams"
                } else {
                    "undertrain"
                }
            ));
        }
        if warmup_ratio > 0.2 {
            hints.push(format!(
                "The lesson recommends a warmup ratio of 0.0 to 0.2; {warmup_ratio} spends many steps at a low learning rate."
            ));
        }
        let settings = RunSettings {
            model: model.to_string(),
            lora_rank: lora.map(|(rank, _)| rank),
            lora_alpha: lora.map(|(_, alpha)| alpha),
            lora_dropout: None,
            learning_rate,
            batch_size,
            epochs,
            warmup_ratio,
            max_len,
            train_subset,
            seed,
            probe_sentence,
            precision,
        };
        settings.check_limits()?;
        Ok((settings, hints))
    }
}

#[cfg(feature = "ssr")]
pub use check::check_form;

#[cfg(all(test, feature = "ssr"))]
mod check_tests {
    use super::*;
    use crate::runs::ModelChoice;

    fn models() -> Vec<ModelChoice> {
        vec![ModelChoice {
            name: "all-MiniLM-L6-v2".into(),
            params: 22_713_986,
            family: run_protocol::Family::Bert,
        }]
    }

    fn form() -> RunForm {
        RunForm {
            model: "all-MiniLM-L6-v2".into(),
            method: "full".into(),
            lora_rank: "16".into(),
            lora_alpha: String::new(),
            learning_rate: "2e-5".into(),
            batch_size: "32".into(),
            epochs: "3".into(),
            warmup_ratio: "0.1".into(),
            max_len: "64".into(),
            train_subset: String::new(),
            seed: "42".into(),
            probe_sentence: "the movie was not good .".into(),
            precision: "fp32".into(),
        }
    }

    #[test]
    fn precision_is_read_by_name() {
        let (settings, hints) = check_form(
            &RunForm {
                precision: " bf16 ".into(),
                ..form()
            },
            &models(),
        )
        .unwrap();
        assert_eq!(settings.precision, Precision::Bf16);
        assert!(hints.is_empty(), "{hints:?}");
        let error = check_form(
            &RunForm {
                precision: "fp64".into(),
                ..form()
            },
            &models(),
        )
        .unwrap_err();
        assert!(
            error.starts_with("Precision must be fp32, bf16 or f16"),
            "{error}"
        );
        // A form sent without the field (an older page) asks for fp32.
        let mut json = serde_json::to_value(form()).unwrap();
        json.as_object_mut().unwrap().remove("precision");
        let older: RunForm = serde_json::from_value(json).unwrap();
        assert_eq!(older.precision, "fp32");
    }

    #[test]
    fn the_default_form_gives_the_default_settings_without_hints() {
        let (settings, hints) = check_form(&RunForm::default(), &models()).unwrap();
        assert!(hints.is_empty(), "{hints:?}");
        assert_eq!(
            settings,
            RunSettings {
                probe_sentence: DEFAULT_PROBE_SENTENCE.into(),
                ..RunSettings::default()
            }
        );
    }

    #[test]
    fn recommended_settings_pass_without_hints() {
        let (settings, hints) = check_form(&form(), &models()).unwrap();
        assert!(hints.is_empty(), "{hints:?}");
        assert_eq!(settings.lora_rank, None);
        assert_eq!(settings.train_subset, None);
    }

    #[test]
    fn a_huge_learning_rate_is_a_hint_not_an_error() {
        let (_, hints) = check_form(
            &RunForm {
                learning_rate: "1e-3".into(),
                ..form()
            },
            &models(),
        )
        .unwrap();
        assert_eq!(hints.len(), 1);
        assert!(hints[0].contains("far above"), "{}", hints[0]);
    }

    #[test]
    fn hard_limits_are_errors_naming_the_field() {
        let cases = [
            (
                RunForm {
                    learning_rate: "NaN".into(),
                    ..form()
                },
                "Learning rate",
            ),
            (
                RunForm {
                    learning_rate: "-1".into(),
                    ..form()
                },
                "Learning rate",
            ),
            (
                RunForm {
                    learning_rate: "fast".into(),
                    ..form()
                },
                "not a number",
            ),
            (
                RunForm {
                    batch_size: "0".into(),
                    ..form()
                },
                "Batch size",
            ),
            (
                RunForm {
                    batch_size: "100000".into(),
                    ..form()
                },
                "Batch size",
            ),
            (
                RunForm {
                    epochs: "2.5".into(),
                    ..form()
                },
                "Epochs",
            ),
            (
                RunForm {
                    max_len: "4".into(),
                    ..form()
                },
                "Max length",
            ),
            (
                RunForm {
                    model: "gpt-9".into(),
                    ..form()
                },
                "no model",
            ),
            (
                RunForm {
                    method: "magic".into(),
                    ..form()
                },
                "Method",
            ),
            (
                RunForm {
                    method: "lora".into(),
                    lora_rank: "0".into(),
                    ..form()
                },
                "LoRA rank",
            ),
        ];
        for (bad, expected) in cases {
            let error = check_form(&bad, &models()).unwrap_err();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn lora_gets_alpha_twice_the_rank_by_default() {
        let (settings, hints) = check_form(
            &RunForm {
                method: "lora".into(),
                learning_rate: "5e-4".into(),
                ..form()
            },
            &models(),
        )
        .unwrap();
        assert_eq!(settings.lora_rank, Some(16));
        assert_eq!(settings.lora_alpha, Some(32.0));
        assert!(hints.is_empty(), "{hints:?}");
    }
}

#[cfg(test)]
mod default_tests {
    use super::*;

    #[test]
    fn switching_method_swaps_an_untouched_default_learning_rate_only() {
        let full = format_rate(DEFAULT_LEARNING_RATE_FULL);
        let lora = format_rate(DEFAULT_LEARNING_RATE_LORA);
        assert_eq!((full.as_str(), lora.as_str()), ("5e-5", "1e-3"));
        assert_eq!(default_learning_rate_after_switch(&full, "lora"), lora);
        assert_eq!(default_learning_rate_after_switch(&lora, "full"), full);
        // The same number typed another way is still the untouched default.
        assert_eq!(default_learning_rate_after_switch("0.00005", "lora"), lora);
        assert_eq!(default_learning_rate_after_switch("3e-5", "lora"), "3e-5");
        assert_eq!(default_learning_rate_after_switch("2e-3", "full"), "2e-3");
        assert_eq!(default_learning_rate_after_switch("5e-5", "full"), "5e-5");
    }
}
