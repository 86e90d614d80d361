//! How long a run takes: the run form's estimate before a run, the speed measured from a
//! finished run, and the settings that fit a class's time per run on the class machine.
//!
//! A run reads its training sentences once per epoch, evaluates the validation split at
//! each epoch's end and every [`VALIDATE_EVERY`] steps, and evaluates SST-2 dev once at the
//! end; an evaluated sentence costs about a third of a trained one (a forward pass only).
//! Time scales with the model's parameter count, and for DeBERTa with its disentangled
//! attention too ([`relative_cost`]), so speeds are kept for the default model
//! ([`REFERENCE_PARAMS`]) and scaled to others.

use crate::params::Family;
use crate::plan::StepPlan;
use crate::settings::RunSettings;

/// Parameters of all-MiniLM-L6-v2 with its 384-by-2 classifier: speeds are quoted for it.
pub const REFERENCE_PARAMS: usize = 22_713_986;
/// The worker evaluates the validation split every this many steps, besides each epoch's
/// end: five points per epoch of full SST-2 at batch 32 for the validation curve, and the
/// candidates a run keeps its best model from (measured in docs/benchmarks.md).
pub const VALIDATE_EVERY: usize = 400;
/// SST-2 dev, evaluated once when a run ends.
pub const DEV_SENTENCES: usize = 872;
/// Seconds a run spends before its first step: loading the model, reading and
/// tokenizing SST-2.
pub const START_SECONDS: f64 = 15.0;
/// How many times faster an evaluated sentence goes than a trained one.
pub const EVALUATION_SPEEDUP: f64 = 3.0;
/// Training sentences per second of the default model on a 2-core CPU, until the class
/// machine has measured its own (docs/benchmarks.md: 14 to 33 on such machines).
pub const CPU_EXAMPLES_PER_SECOND: f64 = 16.0;
/// The same on a GPU (docs/benchmarks.md: 787 to 842 on an NVIDIA H200).
pub const GPU_EXAMPLES_PER_SECOND: f64 = 800.0;

/// The share of a class's time per run that the suggested settings fill, leaving room for
/// a slower-than-measured machine.
pub const BUDGET_SHARE: f64 = 0.8;

/// The quick recipe for a CPU: full fine-tuning of the default model for one epoch of
/// batch 16 at a peak learning rate of 1e-4. On real SST-2 it reaches at least 75% on SST-2
/// dev from about a thousand training sentences (the trainer's test
/// `the_budget_sized_cpu_form_reaches_the_accuracy_it_promises` trains what a three-minute
/// budget gets; docs/benchmarks.md has the earlier 1,000-sentence measurements).
pub const QUICK_LEARNING_RATE: f64 = 1e-4;
/// The quick recipe's batch size.
pub const QUICK_BATCH_SIZE: usize = 16;
/// The fewest training sentences the quick recipe is measured to learn from.
pub const QUICK_MIN_SENTENCES: usize = 1_000;
/// SST-2 dev accuracy (percent) the quick recipe reaches from [`QUICK_MIN_SENTENCES`] up.
pub const QUICK_DEV_ACCURACY: f64 = 75.0;
/// SST-2 dev accuracy (percent) the form's full defaults reach: 90.48% with two seeds
/// on an NVIDIA H200 (docs/benchmarks.md).
pub const DEFAULT_DEV_ACCURACY: f64 = 90.0;

/// What a run reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Training sentences over all epochs.
    pub trained: f64,
    /// Sentences evaluated: validation evaluations and SST-2 dev.
    pub evaluated: f64,
}

impl Workload {
    /// The workload of `epochs` over `examples` sentences in batches of `batch_size`, with a
    /// validation split of `validation` sentences; `None` for inputs that plan no steps.
    pub fn of(
        examples: usize,
        batch_size: usize,
        epochs: usize,
        validation: usize,
    ) -> Option<Self> {
        let plan = StepPlan::checked(examples, batch_size, epochs, 0.0)?;
        let evaluations = epochs + plan.total_steps / VALIDATE_EVERY;
        Some(Self {
            trained: (examples * epochs) as f64,
            evaluated: (evaluations * validation + DEV_SENTENCES) as f64,
        })
    }

    /// Training sentences the workload is worth.
    fn weight(&self) -> f64 {
        self.trained + self.evaluated / EVALUATION_SPEEDUP
    }

    /// Seconds the run takes at `speed` training sentences per second (of its model).
    pub fn seconds(&self, speed: f64) -> f64 {
        START_SECONDS + self.weight() / speed.max(f64::MIN_POSITIVE)
    }

    /// The speed, in training sentences per second, of a run of this workload that took
    /// `seconds`; `None` when it was too short to tell.
    pub fn speed_from(&self, seconds: f64) -> Option<f64> {
        let busy = seconds - START_SECONDS;
        (busy >= 1.0 && self.weight() > 0.0).then(|| self.weight() / busy)
    }
}

/// A training step's cost per parameter in `family`, relative to BERT's. DeBERTa's
/// attention adds the content-to-position and position-to-content terms, which have no
/// parameters of their own: the CPU bench of docs/benchmarks.md (2026-12-05, 64x16, fp32)
/// measured a DeBERTa-v3-base step at 2.250x a BERT-base step where the parameter counts
/// are 1.684x apart, so 1.336; ELECTRA-base measured 0.99x BERT-base at equal size.
pub fn relative_cost(family: Family) -> f64 {
    match family {
        Family::DebertaV2 => 2.250 / 1.684,
        Family::Bert | Family::DistilBert | Family::Roberta | Family::Electra => 1.0,
    }
}

/// The cost of a model's step in default-model parameters.
fn cost(params: usize, family: Family) -> f64 {
    params.max(1) as f64 * relative_cost(family)
}

/// The speed of a `family` model of `params` parameters, from the default model's
/// `reference_speed`.
pub fn speed_of_model(reference_speed: f64, params: usize, family: Family) -> f64 {
    reference_speed * REFERENCE_PARAMS as f64 / cost(params, family)
}

/// The default model's speed, from a `family` model of `params` parameters measured at
/// `speed`.
pub fn reference_speed(speed: f64, params: usize, family: Family) -> f64 {
    speed * cost(params, family) / REFERENCE_PARAMS as f64
}

/// Settings that fit a class's time per run, with what they are measured to reach.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// The settings the run form opens on.
    pub settings: RunSettings,
    /// Their estimated duration on the machine, in seconds.
    pub seconds: f64,
    /// SST-2 dev accuracy (percent) these settings are measured to reach.
    pub dev_accuracy: f64,
    /// True when even the smallest run measured to learn does not fit the time per run.
    pub over_budget: bool,
}

/// The settings a run form opens on for a class with `budget_seconds` per run, on a
/// machine that trains the default model at `reference_speed` sentences per second, with
/// `train_examples` training sentences and a `validation` split: the form's defaults when
/// they fit in [`BUDGET_SHARE`] of the budget, else the quick recipe on as many sentences
/// as fit (at least [`QUICK_MIN_SENTENCES`]).
pub fn sized_to_budget(
    budget_seconds: f64,
    reference_speed: f64,
    train_examples: usize,
    validation: usize,
) -> Suggestion {
    let room = budget_seconds * BUDGET_SHARE;
    let defaults = RunSettings::default();
    let full = Workload::of(
        train_examples,
        defaults.batch_size,
        defaults.epochs,
        validation,
    );
    if let Some(full) = full.filter(|w| w.seconds(reference_speed) <= room) {
        return Suggestion {
            seconds: full.seconds(reference_speed),
            settings: defaults,
            dev_accuracy: DEFAULT_DEV_ACCURACY,
            over_budget: false,
        };
    }
    let quick = |sentences: usize| {
        Workload::of(sentences, QUICK_BATCH_SIZE, 1, validation)
            .map_or(f64::INFINITY, |w| w.seconds(reference_speed))
    };
    // The most sentences, in hundreds, that fit.
    let most = train_examples.max(QUICK_MIN_SENTENCES);
    let (mut low, mut high) = (QUICK_MIN_SENTENCES / 100, most / 100);
    while low < high {
        let middle = (low + high).div_ceil(2);
        if quick(middle * 100) <= room {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    let sentences = (low * 100).min(most);
    Suggestion {
        settings: RunSettings {
            learning_rate: QUICK_LEARNING_RATE,
            batch_size: QUICK_BATCH_SIZE,
            epochs: 1,
            train_subset: (sentences < train_examples).then_some(sentences),
            ..defaults
        },
        seconds: quick(sentences),
        dev_accuracy: QUICK_DEV_ACCURACY,
        over_budget: quick(sentences) > room,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_run_gives_back_the_speed_it_ran_at() {
        let work = Workload::of(1_000, 16, 1, 2_000).unwrap();
        // 1 epoch of 63 steps: one validation evaluation, then SST-2 dev.
        assert_eq!(work.evaluated, (2_000 + DEV_SENTENCES) as f64);
        let seconds = work.seconds(16.0);
        assert!((work.speed_from(seconds).unwrap() - 16.0).abs() < 1e-9);
        assert_eq!(work.speed_from(START_SECONDS), None);
        assert_eq!(Workload::of(0, 16, 1, 2_000), None);
    }

    #[test]
    fn speeds_scale_with_the_parameter_count_and_deberta_attention() {
        let bert_base = 109_483_778;
        let speed = speed_of_model(16.0, bert_base, Family::Bert);
        assert!(speed < 16.0 / 4.0);
        assert!((reference_speed(speed, bert_base, Family::Bert) - 16.0).abs() < 1e-9);
        // The bench's step-time ratio of DeBERTa-v3-base to BERT-base comes back.
        let deberta = speed_of_model(16.0, 184_423_682, Family::DebertaV2);
        assert!((speed / deberta - 2.25).abs() < 0.01, "{}", speed / deberta);
        assert!((reference_speed(deberta, 184_423_682, Family::DebertaV2) - 16.0).abs() < 1e-9);
    }

    #[test]
    fn a_fast_machine_keeps_the_full_defaults() {
        let suggestion = sized_to_budget(60.0 * 60.0, GPU_EXAMPLES_PER_SECOND, 65_349, 2_000);
        assert_eq!(suggestion.settings, RunSettings::default());
        assert!(!suggestion.over_budget);
        assert!(suggestion.seconds <= 60.0 * 60.0 * BUDGET_SHARE);
    }

    #[test]
    fn a_cpu_gets_the_quick_recipe_on_as_many_sentences_as_fit() {
        let budget = 8.0 * 60.0;
        let suggestion = sized_to_budget(budget, CPU_EXAMPLES_PER_SECOND, 65_349, 2_000);
        let s = &suggestion.settings;
        assert_eq!((s.learning_rate, s.batch_size, s.epochs), (1e-4, 16, 1));
        let sentences = s.train_subset.unwrap();
        assert!(sentences >= QUICK_MIN_SENTENCES && sentences.is_multiple_of(100));
        assert!(
            suggestion.seconds <= budget * BUDGET_SHARE,
            "{suggestion:?}"
        );
        let one_more = Workload::of(sentences + 100, 16, 1, 2_000).unwrap();
        assert!(one_more.seconds(CPU_EXAMPLES_PER_SECOND) > budget * BUDGET_SHARE);
        assert!(!suggestion.over_budget);
        assert_eq!(suggestion.dev_accuracy, QUICK_DEV_ACCURACY);
    }

    #[test]
    fn a_budget_too_short_to_learn_says_so() {
        let suggestion = sized_to_budget(60.0, CPU_EXAMPLES_PER_SECOND, 65_349, 2_000);
        assert_eq!(suggestion.settings.train_subset, Some(QUICK_MIN_SENTENCES));
        assert!(suggestion.over_budget);
    }
}
