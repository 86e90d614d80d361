//! The queue's read side: run lists, the latest runs of a team or an instructor, the
//! class boards and every run's model for the Models page.

use super::{RunQueue, parse_settings};
use crate::error::AppError;
use crate::runs::{BoardLine, RunStatus, RunSummary};

/// Which runs [`RunQueue::summaries`] lists.
#[derive(Debug, Clone, Copy)]
pub enum RunFilter {
    /// A team's runs.
    Team(i64),
    /// A class's runs.
    Class(i64),
    /// One run.
    Run(i64),
}

/// Which run board.
#[derive(Debug, Clone, Copy)]
pub enum Board {
    /// Validation accuracy (public).
    Public,
    /// SST-2 dev accuracy (private until revealed).
    Private,
}

/// Whose finished runs [`RunQueue::latest_succeeded`] lists.
#[derive(Debug, Clone, Copy)]
pub enum RecentRuns {
    /// A team's.
    Team(i64),
    /// Those of every class of an instructor.
    Instructor(i64),
}

/// One row of a run list.
struct SummaryRow {
    id: i64,
    team: String,
    submitted_by: String,
    status: RunStatus,
    settings: String,
    created_at: String,
    position: i64,
    validation_accuracy: Option<f64>,
    message: Option<String>,
    claim: Option<String>,
}

crate::db::from_row!(SummaryRow {
    id, team, submitted_by, settings, created_at, position, validation_accuracy, message, claim
} parsed { status });

/// One row of a board.
struct BoardRow {
    team: String,
    accuracy: f64,
    run_id: i64,
}

crate::db::from_row!(BoardRow {
    team,
    accuracy,
    run_id
});

/// The summary query for one filter.
macro_rules! summary_sql {
    ($filter:literal) => {
        concat!(
            "SELECT r.id, t.name AS team, r.submitted_by, r.status, r.settings, r.created_at, ",
            "(SELECT COUNT(*) FROM runs q WHERE q.status = 'queued' AND q.id <= r.id) AS position, ",
            "r.validation_accuracy, r.message, r.claim ",
            "FROM runs r JOIN teams t ON t.id = r.team_id WHERE ",
            $filter,
            " ORDER BY r.id DESC"
        )
    };
}

impl RunQueue {
    /// Run summaries, newest first. The queue position counts queued runs submitted
    /// earlier (the worker also rotates between teams, so it is an upper bound).
    pub async fn summaries(&self, filter: RunFilter) -> Result<Vec<RunSummary>, AppError> {
        let (sql, value) = match filter {
            RunFilter::Team(id) => (summary_sql!("r.team_id = $1"), id),
            RunFilter::Class(id) => (summary_sql!("r.class_id = $1"), id),
            RunFilter::Run(id) => (summary_sql!("r.id = $1"), id),
        };
        let rows: Vec<SummaryRow> = sqlx::query_as(sql)
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(RunSummary {
                    id: row.id,
                    team: row.team,
                    submitted_by: row.submitted_by,
                    status: row.status,
                    settings: parse_settings(row.id, &row.settings).map_err(AppError::internal)?,
                    created_at: row.created_at,
                    queue_position: (row.status == RunStatus::Queued).then_some(row.position),
                    validation_accuracy: row.validation_accuracy,
                    message: row.message,
                    claim: row.claim,
                    held_by: None,
                })
            })
            .collect()
    }

    /// The ids of the team's latest `limit` runs that have started, oldest first.
    pub async fn latest_started(&self, team_id: i64, limit: i64) -> Result<Vec<i64>, sqlx::Error> {
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE team_id = $1 AND status <> $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(team_id)
        .bind(RunStatus::Queued.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        ids.reverse();
        Ok(ids)
    }

    /// The ids of the latest `limit` runs that succeeded, newest first.
    pub async fn latest_succeeded(
        &self,
        whose: RecentRuns,
        limit: i64,
    ) -> Result<Vec<i64>, sqlx::Error> {
        let (sql, owner) = match whose {
            RecentRuns::Team(team_id) => (
                "SELECT id FROM runs WHERE team_id = $1 AND status = $2 ORDER BY id DESC LIMIT $3",
                team_id,
            ),
            RecentRuns::Instructor(instructor_id) => (
                "SELECT runs.id FROM runs JOIN classes ON classes.id = runs.class_id \
                 WHERE classes.instructor_id = $1 AND runs.status = $2 \
                 ORDER BY runs.id DESC LIMIT $3",
                instructor_id,
            ),
        };
        sqlx::query_scalar(sql)
            .bind(owner)
            .bind(RunStatus::Succeeded.as_str())
            .bind(limit)
            .fetch_all(&self.pool)
            .await
    }

    /// A class's run board: the best accuracy per team, best first (ties: the earlier run).
    pub async fn board(&self, class_id: i64, which: Board) -> Result<Vec<BoardLine>, sqlx::Error> {
        let sql = match which {
            Board::Public => {
                "SELECT t.name AS team, r.validation_accuracy AS accuracy, r.id AS run_id \
                 FROM runs r JOIN teams t ON t.id = r.team_id \
                 WHERE r.class_id = $1 AND r.status = $2 AND r.claim IS NULL AND r.validation_accuracy IS NOT NULL \
                 ORDER BY r.validation_accuracy DESC, r.id"
            }
            Board::Private => {
                "SELECT t.name AS team, r.private_accuracy AS accuracy, r.id AS run_id \
                 FROM runs r JOIN teams t ON t.id = r.team_id \
                 WHERE r.class_id = $1 AND r.status = $2 AND r.claim IS NULL AND r.private_accuracy IS NOT NULL \
                 ORDER BY r.private_accuracy DESC, r.id"
            }
        };
        let rows: Vec<BoardRow> = sqlx::query_as(sql)
            .bind(class_id)
            .bind(RunStatus::Succeeded.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut lines: Vec<BoardLine> = Vec::new();
        for row in rows {
            if !lines.iter().any(|line| line.team == row.team) {
                lines.push(BoardLine {
                    team: row.team,
                    accuracy: row.accuracy,
                    run_id: row.run_id,
                });
            }
        }
        Ok(lines)
    }

    /// Runs waiting or training now, across every class.
    pub async fn active_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status IN ($1, $2)")
            .bind(RunStatus::Queued.as_str())
            .bind(RunStatus::Running.as_str())
            .fetch_one(&self.pool)
            .await
    }

    /// Every run's model, status and measurements, newest finished first: what the Models
    /// page reports per model.
    pub async fn model_history(&self) -> Result<Vec<ModelRun>, AppError> {
        let rows: Vec<ModelRunRow> = sqlx::query_as(
            "SELECT id, settings, status, validation_accuracy, reference_speed, device FROM runs \
             ORDER BY finished_at DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match parse_settings(row.id, &row.settings) {
                Ok(settings) => Some(ModelRun {
                    model: settings.model,
                    status: row.status,
                    validation_accuracy: row.validation_accuracy,
                    reference_speed: row.reference_speed,
                    device: row.device,
                }),
                Err(error) => {
                    tracing::warn!("{error}");
                    None
                }
            })
            .collect())
    }
}

/// One row of [`RunQueue::model_history`] as stored.
struct ModelRunRow {
    id: i64,
    settings: String,
    status: RunStatus,
    validation_accuracy: Option<f64>,
    reference_speed: Option<f64>,
    device: Option<String>,
}

crate::db::from_row!(ModelRunRow {
    id, settings, validation_accuracy, reference_speed, device
} parsed { status });

/// One run as the Models page counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRun {
    /// The model it fine-tunes.
    pub model: String,
    /// Where it is.
    pub status: RunStatus,
    /// Its best validation accuracy, once finished.
    pub validation_accuracy: Option<f64>,
    /// The default model's speed it measured, once finished.
    pub reference_speed: Option<f64>,
    /// The device it trained on.
    pub device: Option<String>,
}
