//! The run server functions: the run form, submitting, the team's runs and curves,
//! cancelling and prioritizing, and trying a finished run's model. Their SQL is the
//! queue's ([`super::queue::RunQueue`]).

use super::form::RunForm;
use super::{ModelReading, QueueWait, RunCurves, RunFormInfo, RunSummary, SubmitOutcome};
use crate::error::AppError;
use leptos::prelude::*;
#[cfg(feature = "ssr")]
use {
    super::access::{Viewpoint, check_run_access, check_run_control, viewpoint},
    super::environment::{RunEnvironment, announce_run},
    super::queue::{Admission, Cancelled, NewRun, RunFilter, RunQueue, utc_date},
    super::{COMPARED_RUNS, RunStatus},
};

/// The queue over the request's database.
#[cfg(feature = "ssr")]
fn queue() -> Result<RunQueue, AppError> {
    Ok(RunQueue::new(crate::db::pool()?))
}

/// Runs a finished run's fine-tuned model on a sentence ("try your model").
#[server(prefix = "/api", endpoint = "try-model")]
pub async fn try_run_model(run_id: i64, text: String) -> Result<ModelReading, AppError> {
    let pool = crate::db::pool()?;
    check_run_access(&pool, run_id).await?;
    crate::models::check_sentence(&text)?;
    if RunQueue::new(pool).status(run_id).await? != Some(RunStatus::Succeeded) {
        return Err(AppError::bad_request(
            "Only a finished run has a model to try.",
        ));
    }
    let env: RunEnvironment = AppError::from_context("run environment")?;
    let models: crate::models::ModelService = AppError::from_context("models")?;
    models
        .with_trained(run_id, env.model_dir(run_id), move |predictor| {
            let prediction = predictor
                .predict(&text)
                .map_err(|e| AppError::bad_request(e.to_string()))?;
            Ok(ModelReading {
                tokens: prediction.tokens,
                label: prediction.label,
                probabilities: crate::models::labelled(prediction.probs),
                truncated: prediction.truncated,
            })
        })
        .await
}

/// The run form's choices and the team's queue allowance.
#[server(prefix = "/api", endpoint = "run-form")]
pub async fn load_run_form() -> Result<RunFormInfo, AppError> {
    let pool = crate::db::pool()?;
    let student = crate::auth::ssr::require_student(&pool).await?;
    let env: RunEnvironment = AppError::from_context("run environment")?;
    let (runs_open, run_minutes) = runs_open(&pool, student.class_id).await?;
    let nodes = super::timing::live_nodes(&pool).await?;
    let machine = machine(&pool, &env, &nodes, run_minutes).await?;
    let suggestion = machine.map(|m| {
        run_protocol::estimate::sized_to_budget(
            m.limit_seconds,
            m.reference_speed,
            m.train_examples,
            m.validation,
        )
    });
    let models = env.models();
    let model = models
        .iter()
        .find(|m| m.name == run_protocol::settings::DEFAULT_MODEL)
        .or(models.first())
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let suggested = RunForm {
        model,
        ..suggestion
            .as_ref()
            .map_or_else(RunForm::default, |s| RunForm::from(&s.settings))
    };
    let queue = queue_wait(&pool, &nodes).await?;
    Ok(RunFormInfo {
        models,
        max_queued: env.max_queued_per_team,
        device: describe_nodes(&nodes),
        machine,
        suggested,
        suggested_accuracy: suggestion
            .as_ref()
            .map_or(run_protocol::estimate::DEFAULT_DEV_ACCURACY, |s| {
                s.dev_accuracy
            }),
        over_budget: suggestion.is_some_and(|s| s.over_budget),
        queue,
        runs_open,
        run_minutes,
        data_missing: crate::runs::dataset::ssr::missing_for_training(&pool, &env.data)
            .await?
            .map(|_| crate::runs::dataset::ssr::MISSING_FOR_STUDENTS.to_string()),
    })
}

/// Where the queue stands for a run queued now (students; the run form asks every few
/// seconds).
#[server(prefix = "/api", endpoint = "queue-wait")]
pub async fn load_queue_wait() -> Result<QueueWait, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_student(&pool).await?;
    queue_wait(&pool, &super::timing::live_nodes(&pool).await?).await
}

/// Where the queue stands with the live training `nodes`: the runs ahead shared over their
/// slots, and what else holds it.
#[cfg(feature = "ssr")]
async fn queue_wait(
    pool: &crate::db::DbPool,
    nodes: &[super::timing::TrainingNode],
) -> Result<QueueWait, AppError> {
    let slots = nodes.iter().map(|node| node.slots as usize).sum::<usize>();
    let (runs_ahead, wait_seconds) = super::timing::queue_ahead(pool, slots).await?;
    Ok(QueueWait {
        runs_ahead,
        wait_seconds,
        held_by: super::timing::queue_hold(nodes),
    })
}

/// The class machine as duration estimates see it, for a class with `run_minutes` per
/// run trained by the live training `nodes`: their measured speed (or their devices'
/// typical one), the data and the time limit. `None` when SST-2 is missing.
#[cfg(feature = "ssr")]
pub(crate) async fn machine(
    pool: &crate::db::DbPool,
    env: &RunEnvironment,
    nodes: &[super::timing::TrainingNode],
    run_minutes: i64,
) -> Result<Option<super::timing::Machine>, AppError> {
    let Some(train_examples) =
        crate::runs::dataset::ssr::train_examples_for_runs(pool, &env.data).await?
    else {
        return Ok(None);
    };
    // The speed of the nodes that will train the run: each device's measured speed (or
    // its kind's typical one), weighted by its training slots.
    let (mut weighted, mut slots, mut measured) = (0.0, 0, false);
    for node in nodes {
        let speed = match super::timing::measured_speed(pool, &node.device).await? {
            Some(speed) => {
                measured = true;
                speed
            }
            None => typical_speed(&node.device),
        };
        weighted += speed * node.slots as f64;
        slots += node.slots;
    }
    Ok(Some(super::timing::Machine {
        reference_speed: if slots > 0 {
            weighted / slots as f64
        } else {
            env.examples_per_second
        },
        measured,
        train_examples,
        validation: env.validation_size,
        limit_seconds: run_minutes as f64 * 60.0,
    }))
}

/// The typical training speed of the default model on a device described as `device`
/// ("CPU: 2 threads (burn flex)", "GPU: …"), until one has been measured.
#[cfg(feature = "ssr")]
fn typical_speed(device: &str) -> f64 {
    if device.starts_with("CPU") {
        run_protocol::estimate::CPU_EXAMPLES_PER_SECOND
    } else {
        run_protocol::estimate::GPU_EXAMPLES_PER_SECOND
    }
}

/// The training nodes as the run form names them: "CPU: 2 threads (burn flex), 1 slot".
#[cfg(feature = "ssr")]
fn describe_nodes(nodes: &[super::timing::TrainingNode]) -> String {
    if nodes.is_empty() {
        return "no training node is running now".into();
    }
    nodes
        .iter()
        .map(|node| {
            format!(
                "{}, {} slot{}{}",
                node.device,
                node.slots,
                if node.slots == 1 { "" } else { "s" },
                if node.warming_up_since.is_some() {
                    " (getting ready: compiling its GPU kernels)"
                } else {
                    ""
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether class `class_id` takes runs now (the competition phase), and its run time limit
/// in minutes.
#[cfg(feature = "ssr")]
pub(crate) async fn runs_open(
    pool: &crate::db::DbPool,
    class_id: i64,
) -> Result<(bool, i64), AppError> {
    let (phase, minutes): (String, i64) =
        sqlx::query_as("SELECT phase, run_minutes FROM classes WHERE id = $1")
            .bind(class_id)
            .fetch_one(pool)
            .await?;
    Ok((
        crate::phase::Phase::parse(&phase) == Some(crate::phase::Phase::Competition),
        minutes,
    ))
}

/// Why a run cannot be queued outside the competition phase.
pub const RUNS_CLOSED: &str =
    "Runs open in the competition phase. Your teacher moves the class there when the quiz is done.";

/// Checks the run form and queues the run for the caller's team. Values outside the
/// recommended ranges come back as hints first; `confirmed` queues the run anyway.
#[server(prefix = "/api", endpoint = "submit-run")]
pub async fn submit_run(form: RunForm, confirmed: bool) -> Result<SubmitOutcome, AppError> {
    let pool = crate::db::pool()?;
    let student = crate::auth::ssr::require_student(&pool).await?;
    let env: RunEnvironment = AppError::from_context("run environment")?;
    let (settings, hints) =
        super::form::check_form(&form, &env.models()).map_err(AppError::bad_request)?;
    if !hints.is_empty() && !confirmed {
        return Ok(SubmitOutcome::NeedsConfirmation(hints));
    }
    let (open, run_minutes) = runs_open(&pool, student.class_id).await?;
    if !open {
        return Err(AppError::bad_request(RUNS_CLOSED));
    }
    if let Some(problem) = crate::runs::dataset::ssr::missing_for_training(&pool, &env.data).await?
    {
        tracing::warn!("a run was refused: the training data is missing ({problem})");
        return Err(AppError::bad_request(
            crate::runs::dataset::ssr::MISSING_FOR_STUDENTS,
        ));
    }
    let model = env.models().into_iter().find(|m| m.name == settings.model);
    let nodes = super::timing::live_nodes(&pool).await?;
    let estimated_seconds = machine(&pool, &env, &nodes, run_minutes)
        .await?
        .zip(model)
        .and_then(|(machine, model)| machine.estimate(&settings, &model));
    let queue = RunQueue::new(pool);
    let today = utc_date(std::time::SystemTime::now());
    let admission = queue
        .insert_within_limits(
            &NewRun {
                class_id: student.class_id,
                team_id: student.team_id,
                submitted_by: &student.name,
                settings: &settings,
                estimated_seconds,
            },
            env.max_queued_per_team,
            env.max_runs_per_day,
            &today,
        )
        .await?;
    let id = match admission {
        Admission::Queued(id) => id,
        Admission::TooManyWaiting(waiting) => {
            return Err(AppError::bad_request(format!(
                "Your team already has {waiting} runs waiting; at most {} may wait at once. \
                 Cancel one or wait for it to start.",
                env.max_queued_per_team
            )));
        }
        Admission::DailyLimitReached => {
            return Err(AppError::bad_request(format!(
                "Your team has used its {} runs for today (cancelled runs do not count). \
                 Pick your next settings carefully: more runs tomorrow.",
                env.max_runs_per_day
            )));
        }
    };
    env.wake_worker();
    env.announce(id);
    Ok(SubmitOutcome::Queued(id))
}

/// Moves a queued run to the front of the queue (instructors).
#[server(prefix = "/api", endpoint = "prioritize-run")]
pub async fn prioritize_run(run_id: i64) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    let instructor = crate::auth::ssr::require_instructor(&pool).await?;
    let queue = RunQueue::new(pool.clone());
    let owner = queue
        .owner(run_id)
        .await?
        .ok_or_else(|| AppError::not_found("There is no such run."))?;
    if !crate::auth::ssr::owns_class(&pool, &instructor, owner.class_id).await? {
        return Err(AppError::not_found("There is no such run."));
    }
    if !queue.prioritize(run_id).await? {
        return Err(AppError::bad_request("Only a waiting run can be moved up."));
    }
    announce_run(run_id);
    Ok(())
}

/// The team's latest runs' loss and validation curves, for comparing them in one chart.
#[server(prefix = "/api", endpoint = "team-curves")]
pub async fn team_curves() -> Result<Vec<RunCurves>, AppError> {
    let pool = crate::db::pool()?;
    let student = crate::auth::ssr::require_student(&pool).await?;
    let queue = RunQueue::new(pool.clone());
    let mut curves = Vec::new();
    for run_id in queue.latest_started(student.team_id, COMPARED_RUNS).await? {
        let run = super::curves::loss_curves(&pool, run_id).await?;
        curves.push(RunCurves {
            run_id,
            label: queue.settings(run_id).await?.summary(),
            loss: run.loss,
            validation_accuracy: run.validation_accuracy,
        });
    }
    Ok(curves)
}

/// The caller's team's runs, newest first (students), or a class's (instructors).
#[server(prefix = "/api", endpoint = "team-runs")]
pub async fn team_runs(class_id: Option<i64>) -> Result<Vec<RunSummary>, AppError> {
    let pool = crate::db::pool()?;
    let filter = match viewpoint(&pool, class_id).await? {
        Viewpoint::Team { team_id, .. } => RunFilter::Team(team_id),
        Viewpoint::Instructor { class_id } => RunFilter::Class(class_id),
    };
    let mut runs = RunQueue::new(pool.clone()).summaries(filter).await?;
    mark_held(&pool, &mut runs).await?;
    Ok(runs)
}

/// Notes on each queued run of `runs` what holds the queue, when something other than the
/// runs ahead does.
#[cfg(feature = "ssr")]
async fn mark_held(pool: &crate::db::DbPool, runs: &mut [RunSummary]) -> Result<(), AppError> {
    if runs.iter().any(|run| run.status == RunStatus::Queued) {
        let hold = super::timing::queue_hold(&super::timing::live_nodes(pool).await?);
        for run in runs
            .iter_mut()
            .filter(|run| run.status == RunStatus::Queued)
        {
            run.held_by = hold;
        }
    }
    Ok(())
}

/// One run, for its team or its class's instructor; a queued one with what holds the queue
/// when something other than the runs ahead does.
#[server(prefix = "/api", endpoint = "run")]
pub async fn run_detail(run_id: i64) -> Result<RunSummary, AppError> {
    let pool = crate::db::pool()?;
    check_run_access(&pool, run_id).await?;
    let mut runs = queue()?.summaries(RunFilter::Run(run_id)).await?;
    mark_held(&pool, &mut runs).await?;
    runs.pop()
        .ok_or_else(|| AppError::not_found("There is no such run."))
}

/// Cancels a queued or running run (its team or the instructor).
#[server(prefix = "/api", endpoint = "cancel-run")]
pub async fn cancel_run(run_id: i64) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    check_run_control(&pool, run_id).await?;
    if queue()?.cancel(run_id).await? == Cancelled::AlreadyEnded {
        return Err(AppError::bad_request("That run has already ended."));
    }
    announce_run(run_id);
    Ok(())
}
