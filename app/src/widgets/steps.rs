//! The steps calculator: examples, batch size, epochs and warmup ratio to the number of
//! optimizer steps, computed in the browser by the trainer's own arithmetic
//! ([`run_protocol::StepPlan`]).

use leptos::prelude::*;
use run_protocol::StepPlan;

/// Four inputs and the step counts they give, updated as you type.
#[component]
pub fn StepsCalculator() -> impl IntoView {
    let examples = RwSignal::new("1000".to_string());
    let batch_size = RwSignal::new("10".to_string());
    let epochs = RwSignal::new("3".to_string());
    let warmup = RwSignal::new("0.1".to_string());
    let plan = move || {
        let whole = |s: RwSignal<String>| s.get().trim().parse::<usize>().ok();
        StepPlan::checked(
            whole(examples)?,
            whole(batch_size)?,
            whole(epochs)?,
            warmup.get().trim().parse::<f64>().ok()?,
        )
    };
    let field = move |label: &'static str,
                      name: &'static str,
                      value: RwSignal<String>,
                      step: &'static str| {
        view! {
            <label class="field">
                <span>{label}</span>
                <input
                    type="number"
                    name=name
                    min="0"
                    step=step
                    // Only the first value: writing the signal back would clear what the
                    // browser shows while "0." is typed on the way to "0.05".
                    value=value.get_untracked()
                    on:input=move |ev| value.set(event_target_value(&ev))
                />
            </label>
        }
    };
    view! {
        <section class="widget steps-calculator">
            <h2>"Try it: the steps calculator"</h2>
            <div class="fields">
                {field("Training examples", "examples", examples, "1")}
                {field("Batch size", "batch_size", batch_size, "1")}
                {field("Epochs", "epochs", epochs, "1")}
                {field("Warmup ratio (0 to 1)", "warmup_ratio", warmup, "0.05")}
            </div>
            {move || match plan() {
                Some(plan) => view! {
                    <dl class="results" data-testid="steps-results">
                        <div><dt>"Steps per epoch"</dt><dd data-testid="steps-per-epoch">{plan.steps_per_epoch}</dd></div>
                        <div><dt>"Total steps"</dt><dd data-testid="total-steps">{plan.total_steps}</dd></div>
                        <div><dt>"Warmup steps"</dt><dd data-testid="warmup-steps">{plan.warmup_steps}</dd></div>
                    </dl>
                }.into_any(),
                None => view! {
                    <p class="error-box" role="alert">
                        "Use whole numbers above 0 for examples, batch size and epochs, and a warmup ratio from 0 up to (not including) 1."
                    </p>
                }.into_any(),
            }}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lesson_example_gives_100_steps_per_epoch() {
        let plan = StepPlan::checked(1_000, 10, 3, 0.1).unwrap();
        assert_eq!(
            (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps),
            (100, 300, 30)
        );
        assert_eq!(
            StepPlan::checked(1_001, 10, 1, 0.0)
                .unwrap()
                .steps_per_epoch,
            101
        );
    }

    #[test]
    fn impossible_inputs_give_no_plan() {
        assert_eq!(StepPlan::checked(0, 10, 3, 0.1), None);
        assert_eq!(StepPlan::checked(100, 0, 3, 0.1), None);
        assert_eq!(StepPlan::checked(100, 10, 3, 1.5), None);
        assert_eq!(StepPlan::checked(100, 10, 3, f64::NAN), None);
        assert_eq!(StepPlan::checked(usize::MAX, 1, 2, 0.1), None);
    }
}
