//! The server side of claims: the class's hidden team that owns claim runs, queueing a
//! claim's runs sized to the device, and reading their results back.

use super::catalog::{self, Claim, DeviceKind};
use super::verdict::{ArmEvidence, Evaluation};
use super::{ArmView, ClaimRun, ClaimView};
use crate::db::DbPool;
use crate::error::AppError;
use crate::runs::ModelChoice;
use crate::runs::environment::RunEnvironment;
use crate::runs::event_log::EventLog;
use crate::runs::queue::{ClaimRunRow, NewClaimRun, RunQueue};
use crate::runs::timing::{TrainingNode, live_nodes};
use run_protocol::{EvalSplit, Event, EventKind};

/// The name of the hidden team that owns a class's claim runs (on run lists it names
/// whose runs they are).
pub const CLAIM_TEAM: &str = "Teacher (claim tests)";

/// Who claim runs name as their submitter (not the instructor's sign-in name, which
/// students would see).
const SUBMITTED_BY: &str = "Teacher";

/// The device the class's claim runs would train on now, on the live training `nodes`: a
/// GPU when one of them has one, else the CPU; `None` while no training node is running.
fn device_kind(nodes: &[TrainingNode]) -> Option<DeviceKind> {
    if nodes.is_empty() {
        None
    } else if nodes.iter().any(|node| node.device.starts_with("GPU")) {
        Some(DeviceKind::Gpu)
    } else {
        Some(DeviceKind::Cpu)
    }
}

/// The model a claim's runs train, of the `models` installed: `requested`, or the default
/// model when none is requested (or, without it, the first one). `None` without models.
fn claim_model<'a>(
    models: &'a [ModelChoice],
    requested: Option<&str>,
) -> Result<Option<&'a ModelChoice>, AppError> {
    match requested.map(str::trim).filter(|name| !name.is_empty()) {
        Some(name) => models
            .iter()
            .find(|m| m.name == name)
            .map(Some)
            .ok_or_else(|| {
                AppError::bad_request(format!(
                    "There is no model called \u{201c}{name}\u{201d} in the models folder."
                ))
            }),
        None => Ok(models
            .iter()
            .find(|m| m.name == run_protocol::settings::DEFAULT_MODEL)
            .or(models.first())),
    }
}

/// The claims class `class_id` can test on `model` (empty: the default model).
pub async fn claim_tests(
    pool: &DbPool,
    class_id: i64,
    model: &str,
) -> Result<super::ClaimTests, AppError> {
    let env: RunEnvironment = AppError::from_context("run environment")?;
    let models = env.models();
    let chosen = claim_model(&models, Some(model))?.map_or_else(
        || run_protocol::settings::DEFAULT_MODEL.to_string(),
        |m| m.name.clone(),
    );
    Ok(super::ClaimTests {
        claims: claim_views(pool, Some(class_id), Some(&chosen), |_| true).await?,
        models: models.into_iter().map(|m| m.name).collect(),
        model: chosen,
    })
}

/// The claims `wanted` picks, with class `class_id`'s latest runs of each and their
/// verdicts (no runs without a class); a claim not tested yet shows its runs on `model`
/// (`None`: the default model).
pub async fn claim_views(
    pool: &DbPool,
    class_id: Option<i64>,
    model: Option<&str>,
    wanted: impl Fn(&Claim) -> bool,
) -> Result<Vec<ClaimView>, AppError> {
    let env: RunEnvironment = AppError::from_context("run environment")?;
    // Sized for a CPU while no training node runs; queueing waits for one.
    let nodes = live_nodes(pool).await?;
    let device = device_kind(&nodes).unwrap_or(DeviceKind::Cpu);
    let models = env.models();
    let model = claim_model(&models, model)?;
    let machine = match class_id {
        Some(class_id) => {
            let minutes = run_minutes(pool, class_id).await?;
            crate::runs::server_fns::machine(pool, &env, &nodes, minutes).await?
        }
        None => None,
    };
    let runs = match class_id {
        Some(class_id) => RunQueue::new(pool.clone()).claim_runs(class_id).await?,
        None => Vec::new(),
    };
    let mut views = Vec::new();
    for claim in catalog::claims().iter().filter(|claim| wanted(claim)) {
        let mut arms = Vec::new();
        let mut evidence = Vec::new();
        // What the class's runs were sized for, once it tested the claim; else this machine.
        let mut sized_for = device;
        for arm in &claim.arms {
            let model_name =
                model.map_or(run_protocol::settings::DEFAULT_MODEL, |m| m.name.as_str());
            let latest = runs
                .iter()
                .find(|run| run.claim == claim.slug && run.arm == arm.name);
            let settings = match latest {
                Some(run) => {
                    evidence.push(arm_evidence(pool, &arm.name, &arm.label, run).await?);
                    sized_for =
                        if run.settings == arm.settings(DeviceKind::Cpu, &run.settings.model) {
                            DeviceKind::Cpu
                        } else {
                            DeviceKind::Gpu
                        };
                    run.settings.clone()
                }
                None => arm.settings(device, model_name),
            };
            arms.push(ArmView {
                label: arm.label.clone(),
                settings: settings.summary()
                    + &settings
                        .train_subset
                        .map_or(String::new(), |n| format!(" · {n} sentences")),
                estimated_seconds: machine
                    .zip(models.iter().find(|m| m.name == settings.model))
                    .and_then(|(machine, model)| machine.estimate(&settings, model)),
                run: latest.map(|run| ClaimRun {
                    id: run.id,
                    status: run.status,
                    validation_accuracy: run.validation_accuracy,
                }),
            });
        }
        views.push(ClaimView {
            slug: claim.slug.clone(),
            lesson: claim.lesson.clone(),
            title: claim.title.clone(),
            claim: claim.claim.clone(),
            test: claim.test.clone(),
            device_note: (sized_for == DeviceKind::Cpu).then(|| claim.cpu_note.clone()),
            finding: (!evidence.is_empty()).then(|| claim.rule.decide(&evidence)),
            arms,
        });
    }
    Ok(views)
}

/// The class's longest run, in minutes.
async fn run_minutes(pool: &DbPool, class_id: i64) -> Result<i64, AppError> {
    Ok(crate::runs::server_fns::runs_open(pool, class_id).await?.1)
}

/// What a claim run did: its validation evaluations, steps per epoch, trainable share and
/// whether it stopped at the time limit, read from its stored events.
async fn arm_evidence(
    pool: &DbPool,
    arm: &str,
    label: &str,
    run: &ClaimRunRow,
) -> Result<ArmEvidence, AppError> {
    let mut evidence = ArmEvidence {
        arm: arm.to_string(),
        label: label.to_string(),
        run_id: run.id,
        status: run.status,
        validation: Vec::new(),
        steps_per_epoch: None,
        trainable_share: None,
        stopped_early: false,
    };
    if run.status.is_active() {
        return Ok(evidence);
    }
    let log = EventLog::new(pool.clone());
    for stored in log.of_kinds(run.id, &[EventKind::Eval]).await? {
        match serde_json::from_str::<Event>(&stored.payload) {
            Ok(Event::Eval {
                step,
                split: EvalSplit::Validation,
                loss,
                accuracy,
            }) => evidence.validation.push(Evaluation {
                step,
                loss,
                accuracy,
            }),
            Ok(_) => {}
            Err(error) => tracing::warn!(
                run = run.id,
                seq = stored.seq,
                %error,
                "a stored evaluation does not parse; the claim's verdict leaves it out"
            ),
        }
    }
    // A resumed run starts again with the same plan: the last start is as good as any.
    let started = log.last_of_kind(run.id, EventKind::Started).await?;
    if let Some(Ok(Event::Started {
        steps_planned,
        params_total,
        params_trainable,
        ..
    })) = started.map(|stored| serde_json::from_str::<Event>(&stored.payload))
    {
        evidence.steps_per_epoch = Some(steps_planned / run.settings.epochs.max(1));
        evidence.trainable_share = Some(params_trainable as f64 / params_total.max(1) as f64);
    }
    let finished = log.last_of_kind(run.id, EventKind::Finished).await?;
    if let Some(Ok(Event::Finished { metrics })) =
        finished.map(|stored| serde_json::from_str::<Event>(&stored.payload))
    {
        evidence.stopped_early = metrics.stopped_at_time_limit.is_some();
    }
    Ok(evidence)
}

/// The hidden team that owns class `class_id`'s claim runs, made on first use.
async fn claim_team(pool: &DbPool, class_id: i64) -> Result<i64, AppError> {
    sqlx::query(
        "INSERT INTO teams (class_id, name, hidden) VALUES ($1, $2, TRUE) \
         ON CONFLICT (class_id, name) DO NOTHING",
    )
    .bind(class_id)
    .bind(CLAIM_TEAM)
    .execute(pool)
    .await?;
    let team: Option<i64> =
        sqlx::query_scalar("SELECT id FROM teams WHERE class_id = $1 AND name = $2 AND hidden")
            .bind(class_id)
            .bind(CLAIM_TEAM)
            .fetch_optional(pool)
            .await?;
    team.ok_or_else(|| {
        AppError::bad_request(format!(
            "A team of this class is called \u{201c}{CLAIM_TEAM}\u{201d}, the name claim tests \
             run under. Rename that team first."
        ))
    })
}

/// Queues claim `slug`'s runs for class `class_id` on `model` (empty: the default model).
pub async fn queue_claim(
    pool: &DbPool,
    class_id: i64,
    slug: &str,
    model: &str,
) -> Result<Vec<i64>, AppError> {
    let claim = catalog::claim(slug)
        .ok_or_else(|| AppError::bad_request("There is no such claim to test."))?;
    let env: RunEnvironment = AppError::from_context("run environment")?;
    if let Some(problem) = crate::runs::dataset::ssr::missing_for_training(pool, &env.data).await? {
        tracing::warn!("a claim test was refused: the training data is missing ({problem})");
        return Err(AppError::bad_request(
            "There is no training data yet: upload SST-2 on the Training data page first.",
        ));
    }
    let models = env.models();
    let model = claim_model(&models, Some(model))?.ok_or_else(|| {
        AppError::bad_request("There is no model to train: add one on the Models page first.")
    })?;
    let nodes = live_nodes(pool).await?;
    let device = device_kind(&nodes).ok_or_else(|| {
        AppError::bad_request(
            "No training node is running now, so the test cannot be sized to its device. \
             Start the server's training worker (or a training node) and try again.",
        )
    })?;
    let minutes = run_minutes(pool, class_id).await?;
    let machine = crate::runs::server_fns::machine(pool, &env, &nodes, minutes).await?;
    let team_id = claim_team(pool, class_id).await?;
    let arms: Vec<NewClaimRun> = claim
        .arms
        .iter()
        .map(|arm| {
            let settings = arm.settings(device, &model.name);
            NewClaimRun {
                arm: arm.name.clone(),
                estimated_seconds: machine.and_then(|m| m.estimate(&settings, model)),
                settings,
            }
        })
        .collect();
    let queue = RunQueue::new(pool.clone());
    let ids = queue
        .insert_claim(class_id, team_id, SUBMITTED_BY, &claim.slug, &arms)
        .await?
        .ok_or_else(|| {
            AppError::bad_request(format!(
                "The test of \u{201c}{}\u{201d} is already waiting or training.",
                claim.title
            ))
        })?;
    env.wake_worker();
    for id in &ids {
        env.announce(*id);
    }
    Ok(ids)
}
