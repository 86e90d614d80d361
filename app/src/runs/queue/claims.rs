//! The queue's claim runs: the runs an instructor queues to test a lesson's claim, one per
//! arm of the test, marked with the claim and the arm.

use super::{NewRun, RunQueue, insert_run, lock_team, parse_settings};
use crate::error::AppError;
use crate::runs::RunStatus;
use run_protocol::RunSettings;

/// One run of a claim's test, to queue.
#[derive(Debug, Clone)]
pub struct NewClaimRun {
    /// The arm of the test it is.
    pub arm: String,
    /// Its settings.
    pub settings: RunSettings,
    /// How long it should take on this machine, in seconds, when that can be estimated.
    pub estimated_seconds: Option<f64>,
}

/// The latest run of one arm of a claim in a class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRunRow {
    /// The run.
    pub id: i64,
    /// The claim it tests.
    pub claim: String,
    /// Its arm of the test.
    pub arm: String,
    /// Where it is.
    pub status: RunStatus,
    /// Its best validation accuracy so far, 0..1.
    pub validation_accuracy: Option<f64>,
    /// Its settings.
    pub settings: RunSettings,
}

/// A stored claim run.
struct Row {
    id: i64,
    claim: String,
    claim_arm: String,
    status: RunStatus,
    validation_accuracy: Option<f64>,
    settings: String,
}

crate::db::from_row!(Row { id, claim, claim_arm, validation_accuracy, settings } parsed { status });

impl RunQueue {
    /// Queues the runs of claim `claim`'s test for class `class_id` under team `team_id`,
    /// all or none; `None` (and nothing queued) while a run of that claim in the class is
    /// still waiting or training.
    pub async fn insert_claim(
        &self,
        class_id: i64,
        team_id: i64,
        submitted_by: &str,
        claim: &str,
        runs: &[NewClaimRun],
    ) -> Result<Option<Vec<i64>>, AppError> {
        let mut transaction = self.pool.begin().await?;
        lock_team(&mut transaction, team_id).await?;
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM runs WHERE class_id = $1 AND claim = $2 AND status IN ($3, $4)",
        )
        .bind(class_id)
        .bind(claim)
        .bind(RunStatus::Queued.as_str())
        .bind(RunStatus::Running.as_str())
        .fetch_one(&mut *transaction)
        .await?;
        if active > 0 {
            return Ok(None);
        }
        let mut ids = Vec::with_capacity(runs.len());
        for run in runs {
            let new_run = NewRun {
                class_id,
                team_id,
                submitted_by,
                settings: &run.settings,
                estimated_seconds: run.estimated_seconds,
            };
            ids.push(insert_run(&mut transaction, &new_run, Some((claim, &run.arm))).await?);
        }
        transaction.commit().await?;
        Ok(Some(ids))
    }

    /// The latest run of each arm of each claim tested in class `class_id`.
    pub async fn claim_runs(&self, class_id: i64) -> Result<Vec<ClaimRunRow>, AppError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT r.id, r.claim, r.claim_arm, r.status, r.validation_accuracy, r.settings \
             FROM runs r WHERE r.class_id = $1 AND r.claim IS NOT NULL AND r.id = \
             (SELECT MAX(l.id) FROM runs l WHERE l.class_id = r.class_id \
              AND l.claim = r.claim AND l.claim_arm = r.claim_arm) \
             ORDER BY r.id",
        )
        .bind(class_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let settings = parse_settings(row.id, &row.settings).map_err(AppError::internal)?;
                Ok(ClaimRunRow {
                    id: row.id,
                    claim: row.claim,
                    arm: row.claim_arm,
                    status: row.status,
                    validation_accuracy: row.validation_accuracy,
                    settings,
                })
            })
            .collect()
    }
}
