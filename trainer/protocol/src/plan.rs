//! How many optimizer steps a run takes and its learning-rate schedule.

/// The step plan of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPlan {
    /// Steps per epoch: ceil(examples / batch size).
    pub steps_per_epoch: usize,
    /// All steps.
    pub total_steps: usize,
    /// Steps of linear warmup: ceil(warmup ratio × total).
    pub warmup_steps: usize,
}

impl StepPlan {
    /// Plans `epochs` passes over `examples` sentences (a batch size of 0 counts as 1).
    pub fn new(examples: usize, batch_size: usize, epochs: usize, warmup_ratio: f64) -> Self {
        let steps_per_epoch = examples.div_ceil(batch_size.max(1));
        let total_steps = steps_per_epoch * epochs;
        let warmup_steps = (warmup_ratio * total_steps as f64).ceil() as usize;
        Self {
            steps_per_epoch,
            total_steps,
            warmup_steps,
        }
    }

    /// The same plan for numbers typed into a form: `None` when an input is zero, the
    /// warmup ratio is outside 0..1, or the step count overflows.
    pub fn checked(
        examples: usize,
        batch_size: usize,
        epochs: usize,
        warmup_ratio: f64,
    ) -> Option<Self> {
        if examples == 0 || batch_size == 0 || epochs == 0 || !(0.0..1.0).contains(&warmup_ratio) {
            return None;
        }
        examples.div_ceil(batch_size).checked_mul(epochs)?;
        Some(Self::new(examples, batch_size, epochs, warmup_ratio))
    }

    /// The learning rate for 0-based step `step`, as HF's linear schedule with warmup.
    pub fn learning_rate(&self, peak: f64, step: usize) -> f64 {
        let factor = if step < self.warmup_steps {
            step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let remaining = self.total_steps.saturating_sub(step) as f64;
            remaining / self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64
        };
        peak * factor.max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::StepPlan;

    /// The browser's steps calculator calls `checked`, the engine `new`: on every input
    /// the calculator accepts they agree.
    #[test]
    fn the_browser_calculator_plans_as_the_engine_does() {
        for examples in [1, 7, 999, 1_000, 67_349] {
            for batch in [1, 8, 10, 32] {
                for ratio in [0.0, 0.06, 0.1, 0.2] {
                    assert_eq!(
                        StepPlan::checked(examples, batch, 3, ratio),
                        Some(StepPlan::new(examples, batch, 3, ratio))
                    );
                }
            }
        }
    }

    #[test]
    fn checked_refuses_what_new_would_plan_wrongly() {
        assert_eq!(StepPlan::checked(0, 8, 1, 0.1), None);
        assert_eq!(StepPlan::checked(10, 0, 1, 0.1), None);
        assert_eq!(StepPlan::checked(10, 8, 1, 1.0), None);
        assert_eq!(StepPlan::checked(usize::MAX, 1, 2, 0.0), None);
        let plan = StepPlan::checked(1000, 10, 3, 0.1).unwrap();
        assert_eq!(plan, StepPlan::new(1000, 10, 3, 0.1));
        assert_eq!(
            (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps),
            (100, 300, 30)
        );
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let plan = StepPlan::new(100, 10, 1, 0.2);
        assert_eq!(plan.learning_rate(1.0, 0), 0.0);
        assert_eq!(plan.learning_rate(1.0, 1), 0.5);
        assert_eq!(plan.learning_rate(1.0, 2), 1.0);
        assert_eq!(plan.learning_rate(1.0, 10), 0.0);
    }

    #[test]
    fn the_schedule_warms_up_then_decays_linearly_like_hf() {
        let plan = StepPlan::new(1_000, 10, 2, 0.1);
        assert_eq!(
            (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps),
            (100, 200, 20)
        );
        assert_eq!(plan.learning_rate(2e-5, 0), 0.0);
        assert!((plan.learning_rate(2e-5, 10) - 1e-5).abs() < 1e-12);
        assert!((plan.learning_rate(2e-5, 20) - 2e-5).abs() < 1e-12);
        assert!((plan.learning_rate(2e-5, 110) - 1e-5).abs() < 1e-12);
        assert_eq!(plan.learning_rate(2e-5, 200), 0.0);
        let no_warmup = StepPlan::new(10, 3, 1, 0.0);
        assert_eq!((no_warmup.total_steps, no_warmup.warmup_steps), (4, 0));
        assert_eq!(no_warmup.learning_rate(1.0, 0), 1.0);
    }
}
