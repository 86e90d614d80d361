//! The overfitting lesson's real example: training loss against validation loss from one of
//! the viewer's own finished runs (the team's for a student, their classes' for an
//! instructor), picking the run whose validation loss rose most after its best point.

use crate::charts::{LineChart, ema};
use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// A finished run's training and validation loss curves, with where validation was best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverfittingExample {
    /// The run.
    pub run_id: i64,
    /// Its settings in one line.
    pub label: String,
    /// (step, training loss), downsampled.
    pub train_loss: Vec<(f64, f64)>,
    /// (step, validation loss) at each evaluation.
    pub validation_loss: Vec<(f64, f64)>,
    /// The evaluation with the lowest validation loss.
    pub best: (f64, f64),
    /// How many of the viewer's finished runs had at least two evaluations to compare.
    pub runs_considered: usize,
}

impl OverfittingExample {
    /// How much the validation loss rose from its best point to the end.
    pub fn rise(&self) -> f64 {
        self.validation_loss
            .last()
            .map_or(0.0, |&(_, last)| last - self.best.1)
    }
}

/// The clearest overfitting among the viewer's finished runs, or `None` when there is no
/// finished run with two or more validation points yet (or the visitor has not joined a
/// class: the lesson itself is public).
#[server(prefix = "/api", endpoint = "overfitting-curves")]
pub async fn overfitting_curves() -> Result<Option<OverfittingExample>, AppError> {
    use crate::auth::ssr::Caller;
    use crate::runs::curves::loss_curves;
    use crate::runs::queue::{RecentRuns, RunQueue};
    /// How many recent finished runs are compared.
    const RECENT_RUNS: i64 = 30;
    let pool = crate::db::pool()?;
    let queue = RunQueue::new(pool.clone());
    let whose = match crate::auth::ssr::caller(&pool).await? {
        Caller::Student(student) => RecentRuns::Team(student.team_id),
        Caller::Instructor(instructor) => RecentRuns::Instructor(instructor.id),
        Caller::Anonymous => return Ok(None),
    };
    let run_ids = queue.latest_succeeded(whose, RECENT_RUNS).await?;
    let mut best: Option<OverfittingExample> = None;
    let mut considered = 0;
    for run_id in run_ids {
        let curves = loss_curves(&pool, run_id).await?;
        let Some(&lowest) = curves
            .validation_loss
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
        else {
            continue;
        };
        if curves.validation_loss.len() < 2 {
            continue;
        }
        considered += 1;
        let candidate = OverfittingExample {
            run_id,
            label: queue.settings(run_id).await?.summary(),
            train_loss: curves.loss,
            validation_loss: curves.validation_loss,
            best: lowest,
            runs_considered: 0,
        };
        if best.as_ref().is_none_or(|b| candidate.rise() > b.rise()) {
            best = Some(candidate);
        }
    }
    Ok(best.map(|example| OverfittingExample {
        runs_considered: considered,
        ..example
    }))
}

/// The overfitting lesson's widget: a real run's training vs validation loss.
#[component]
pub fn RunCurves() -> impl IntoView {
    let example = Resource::new(|| (), |_| overfitting_curves());
    view! {
        <section class="widget run-curves" data-testid="run-curves">
            <h2>"Your own curves"</h2>
            <Transition fallback=|| view! { <p class="hint">"Loading your runs…"</p> }>
                {move || example.get().map(|result| match result {
                    Ok(Some(example)) => view! { <Example example /> }.into_any(),
                    Ok(None) => view! {
                        <p class="hint">
                            "When one of your team's runs has finished with two or more "
                            "evaluations (train for 2 epochs or more), its training and "
                            "validation loss appear here, and you can check it for overfitting. "
                            "(Join your class with your team to see your own runs.)"
                        </p>
                    }.into_any(),
                    Err(error) => view! {
                        <p class="hint">{error.to_string()}</p>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}

/// One run's two curves and what they say.
#[component]
fn Example(example: OverfittingExample) -> impl IntoView {
    let (best_step, best_loss) = example.best;
    let last = example
        .validation_loss
        .last()
        .copied()
        .unwrap_or(example.best);
    let rise = example.rise();
    let verdict = if rise > 0.02 {
        format!(
            "Validation loss was lowest after step {best_step} ({best_loss:.3}) and rose to \
             {:.3} by step {}, while training loss kept falling: the model started to \
             memorize its training sentences. Stopping at step {best_step} (early stopping) \
             would have kept the better model.",
            last.1, last.0
        )
    } else {
        format!(
            "Validation loss ended at {:.3}, within 0.02 of its best ({best_loss:.3} after \
             step {best_step}): no clear sign of overfitting in this run. Try more epochs or \
             a higher learning rate, and compare.",
            last.1
        )
    };
    let series = vec![
        (
            "training loss (smoothed)".to_string(),
            ema(&example.train_loss, 0.9),
        ),
        (
            "validation loss".to_string(),
            example.validation_loss.clone(),
        ),
    ];
    view! {
        <p>
            <a href=format!("/runs/{}", example.run_id)>{format!("Run #{}", example.run_id)}</a>
            {format!(
                " · {} · the clearest case among {} finished run(s)",
                example.label,
                example.runs_considered
            )}
        </p>
        <LineChart testid="overfitting-chart" series x_label="step" y_label="loss" />
        <p data-testid="overfitting-verdict">{verdict}</p>
    }
}
