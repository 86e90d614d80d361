//! The run queue: every SQL statement on the `runs` table, with typed rows. The server
//! functions submit, cancel and list runs through it; the worker claims, renews, finishes
//! and releases them through it. Statuses are [`RunStatus`] everywhere, never literals.

use super::RunStatus;
use crate::db::DbPool;
use crate::error::AppError;
use run_protocol::RunSettings;

mod claims;
mod reads;

pub use claims::{ClaimRunRow, NewClaimRun};
pub use reads::{Board, ModelRun, RecentRuns, RunFilter};

/// How many times a run's worker may die while training it (its lease expiring, as after
/// an out-of-memory kill) before the run is failed instead of queued again.
pub const MAX_CRASHES: i64 = 3;

/// The PostgreSQL advisory lock that claims take turns on ("jigsaw" in ASCII).
const CLAIM_LOCK: i64 = 0x6a69_6773_6177;

/// The queue over one database.
#[derive(Debug, Clone)]
pub struct RunQueue {
    pool: DbPool,
}

/// A run to queue.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The team's class.
    pub class_id: i64,
    /// The team.
    pub team_id: i64,
    /// The student who submitted it.
    pub submitted_by: &'a str,
    /// Its checked settings.
    pub settings: &'a RunSettings,
    /// How long it should take on this machine, in seconds, when that can be estimated.
    pub estimated_seconds: Option<f64>,
}

/// What [`RunQueue::insert_within_limits`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Queued with this id.
    Queued(i64),
    /// Not queued: the team already has this many runs waiting.
    TooManyWaiting(i64),
    /// Not queued: the team used its runs for today.
    DailyLimitReached,
}

/// Whose run it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOwner {
    /// Its class.
    pub class_id: i64,
    /// Its team.
    pub team_id: i64,
    /// The claim it tests, for a claim test's run.
    pub claim: Option<String>,
}

crate::db::from_row!(RunOwner {
    class_id,
    team_id,
    claim
});

/// What cancelling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was waiting and is now cancelled.
    BeforeStart,
    /// It is training; the worker stops it at its next step.
    Requested,
    /// It had already ended.
    AlreadyEnded,
}

/// A run a worker claimed.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    /// The run.
    pub id: i64,
    /// Its stored settings.
    pub settings: RunSettings,
    /// The longest it may train, in minutes (its class's limit).
    pub minutes_limit: i64,
}

/// How a run ended, as the worker records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnding {
    /// Succeeded, failed, diverged or cancelled.
    pub status: RunStatus,
    /// What to tell the team.
    pub message: Option<String>,
    /// (validation, private test) accuracy of a run that succeeded.
    pub accuracies: Option<(f64, f64)>,
    /// How long it trained and the speed that measured, when it finished.
    pub timing: Option<MeasuredTiming>,
}

/// What a finished run measured about the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredTiming {
    /// Seconds from its start to its end.
    pub trained_seconds: f64,
    /// The default model's training speed it implies (sentences per second), when the run
    /// trained its whole plan in one go (not resumed, not stopped at the time limit).
    pub reference_speed: Option<f64>,
    /// The device it trained on.
    pub device: String,
}

/// Reads stored settings; they were written from a [`RunSettings`], so a failure means the
/// row was changed by hand or by an incompatible version.
fn parse_settings(run_id: i64, text: &str) -> Result<RunSettings, String> {
    serde_json::from_str(text).map_err(|e| format!("run {run_id}'s settings do not read: {e}"))
}

/// Takes team `team_id`'s lock for the rest of `connection`'s transaction: a write that
/// changes nothing locks the team's row (PostgreSQL) or the database (SQLite), so what the
/// transaction counts after it stays true until it commits.
async fn lock_team(connection: &mut sqlx::AnyConnection, team_id: i64) -> Result<(), AppError> {
    sqlx::query("UPDATE teams SET name = name WHERE id = $1")
        .bind(team_id)
        .execute(connection)
        .await?;
    Ok(())
}

/// Inserts `run`, marked with `(claim, arm)` for a claim test's run, and returns its id.
async fn insert_run(
    connection: &mut sqlx::AnyConnection,
    run: &NewRun<'_>,
    claim: Option<(&str, &str)>,
) -> Result<i64, AppError> {
    let settings = serde_json::to_string(run.settings).map_err(AppError::internal)?;
    let id = sqlx::query_scalar(
        "INSERT INTO runs (class_id, team_id, submitted_by, settings, estimated_seconds, \
         claim, claim_arm) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(run.class_id)
    .bind(run.team_id)
    .bind(run.submitted_by)
    .bind(settings)
    .bind(run.estimated_seconds)
    .bind(claim.map(|(claim, _)| claim))
    .bind(claim.map(|(_, arm)| arm))
    .persistent(false) // the estimate and the claim may be NULL: see `crate::db`
    .fetch_one(connection)
    .await?;
    Ok(id)
}

impl RunQueue {
    /// The queue in `pool`.
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    /// Queues a run if its team is within both limits: fewer than `max_waiting` of its runs
    /// waiting, and fewer than `max_per_day` scored runs since `today` (a date). The counts
    /// and the insert are one transaction that first locks the team's row (PostgreSQL) or
    /// the database (SQLite), so simultaneous submissions cannot slip past the limits.
    pub async fn insert_within_limits(
        &self,
        run: &NewRun<'_>,
        max_waiting: i64,
        max_per_day: i64,
        today: &str,
    ) -> Result<Admission, AppError> {
        let mut transaction = self.pool.begin().await?;
        lock_team(&mut transaction, run.team_id).await?;
        let waiting: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE team_id = $1 AND status = $2")
                .bind(run.team_id)
                .bind(RunStatus::Queued.as_str())
                .fetch_one(&mut *transaction)
                .await?;
        if waiting >= max_waiting {
            return Ok(Admission::TooManyWaiting(waiting));
        }
        let scored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM runs WHERE team_id = $1 AND status <> $2 AND created_at >= $3",
        )
        .bind(run.team_id)
        .bind(RunStatus::Cancelled.as_str())
        .bind(today)
        .fetch_one(&mut *transaction)
        .await?;
        if scored >= max_per_day {
            return Ok(Admission::DailyLimitReached);
        }
        let id = insert_run(&mut transaction, run, None).await?;
        transaction.commit().await?;
        Ok(Admission::Queued(id))
    }

    /// A run's status, if the run exists.
    pub async fn status(&self, run_id: i64) -> Result<Option<RunStatus>, AppError> {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        status
            .map(|s| RunStatus::try_from(s).map_err(AppError::internal))
            .transpose()
    }

    /// A run's class and team, if the run exists.
    pub async fn owner(&self, run_id: i64) -> Result<Option<RunOwner>, sqlx::Error> {
        sqlx::query_as("SELECT class_id, team_id, claim FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// A run's settings.
    pub async fn settings(&self, run_id: i64) -> Result<RunSettings, AppError> {
        let text: String = sqlx::query_scalar("SELECT settings FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(&self.pool)
            .await?;
        parse_settings(run_id, &text).map_err(AppError::internal)
    }

    /// Moves a waiting run to the front of the queue; false when it is not waiting.
    pub async fn prioritize(&self, run_id: i64) -> Result<bool, sqlx::Error> {
        let moved = sqlx::query(
            "UPDATE runs SET priority = (SELECT COALESCE(MAX(priority), 0) + 1 FROM runs) \
             WHERE id = $1 AND status = $2",
        )
        .bind(run_id)
        .bind(RunStatus::Queued.as_str())
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() > 0)
    }

    /// Cancels a waiting run at once, or asks the worker to stop a running one.
    pub async fn cancel(&self, run_id: i64) -> Result<Cancelled, sqlx::Error> {
        let waiting = sqlx::query(
            "UPDATE runs SET status = $1, finished_at = $2, \
             message = 'Cancelled before it started.' WHERE id = $3 AND status = $4",
        )
        .bind(RunStatus::Cancelled.as_str())
        .bind(crate::db::now())
        .bind(run_id)
        .bind(RunStatus::Queued.as_str())
        .execute(&self.pool)
        .await?;
        if waiting.rows_affected() > 0 {
            return Ok(Cancelled::BeforeStart);
        }
        let running =
            sqlx::query("UPDATE runs SET cancel_requested = TRUE WHERE id = $1 AND status = $2")
                .bind(run_id)
                .bind(RunStatus::Running.as_str())
                .execute(&self.pool)
                .await?;
        Ok(if running.rows_affected() > 0 {
            Cancelled::Requested
        } else {
            Cancelled::AlreadyEnded
        })
    }

    /// Whether someone asked to cancel the run.
    pub async fn cancel_requested(&self, run_id: i64) -> Result<bool, sqlx::Error> {
        let requested: i64 =
            sqlx::query_scalar("SELECT CAST(cancel_requested AS INTEGER) FROM runs WHERE id = $1")
                .bind(run_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(requested != 0)
    }

    /// Puts running runs whose lease expired before `now` (seconds since the epoch) back
    /// in the queue, counting the crash; a run whose worker died [`MAX_CRASHES`] times is
    /// failed with an explanation instead. Returns how many went back to the queue.
    pub async fn requeue_expired(&self, now: i64) -> Result<u64, sqlx::Error> {
        sqlx::query(
            "UPDATE runs SET status = $1, message = $2, finished_at = $3, lease_owner = NULL, \
             lease_expires_at = NULL, crashes = crashes + 1 \
             WHERE status = $4 AND lease_expires_at < $5 AND crashes + 1 >= $6",
        )
        .bind(RunStatus::Failed.as_str())
        .bind(format!(
            "The server stopped while training this run {MAX_CRASHES} times (most often it ran \
             out of memory), so it was not started again. Try a smaller batch size or max length."
        ))
        .bind(crate::db::now())
        .bind(RunStatus::Running.as_str())
        .bind(now)
        .bind(MAX_CRASHES)
        .execute(&self.pool)
        .await?;
        let requeued = sqlx::query(
            "UPDATE runs SET status = $1, lease_owner = NULL, lease_expires_at = NULL, \
             crashes = crashes + 1 WHERE status = $2 AND lease_expires_at < $3",
        )
        .bind(RunStatus::Queued.as_str())
        .bind(RunStatus::Running.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(requeued.rows_affected())
    }

    /// Claims the next run for `owner` with a lease until `lease_until` (seconds since the
    /// epoch): one the instructor moved up first, then from the team that trained least
    /// recently, its oldest run. A claimed run whose settings do not read is marked failed
    /// with the reason, and the next one is tried.
    pub async fn claim(
        &self,
        owner: &str,
        lease_until: i64,
    ) -> Result<Option<ClaimedRun>, sqlx::Error> {
        // On PostgreSQL, workers on several machines claim at once. Each claim holds one
        // advisory lock for its transaction (a few milliseconds), so claims take turns and
        // each sees the ones before it: never the same run twice, and a strict round robin
        // between teams with unique claim numbers. SQLite has one writer at a time; its
        // claim is the conditional update below.
        let postgres = crate::db::is_postgres(&self.pool);
        let choose = "SELECT r.id, r.settings, c.run_minutes FROM runs r \
                      JOIN classes c ON c.id = r.class_id \
                      WHERE r.status = $1 \
                      ORDER BY r.priority DESC, \
                      COALESCE((SELECT MAX(p.claim_order) FROM runs p WHERE p.team_id = r.team_id), 0), r.id \
                      LIMIT 1";
        let select =
            || sqlx::query_as::<_, (i64, String, i64)>(choose).bind(RunStatus::Queued.as_str());
        let update = |id: i64| {
            sqlx::query(
                "UPDATE runs SET status = $1, lease_owner = $2, lease_expires_at = $3, \
                 claim_order = (SELECT COALESCE(MAX(claim_order), 0) + 1 FROM runs), \
                 started_at = COALESCE(started_at, $4) \
                 WHERE id = $5 AND status = $6",
            )
            .bind(RunStatus::Running.as_str())
            .bind(owner)
            .bind(lease_until)
            .bind(crate::db::now())
            .bind(id)
            .bind(RunStatus::Queued.as_str())
        };
        loop {
            let (next, claimed) = if postgres {
                let mut transaction = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CLAIM_LOCK)
                    .execute(&mut *transaction)
                    .await?;
                let next = select().fetch_optional(&mut *transaction).await?;
                let claimed = match &next {
                    Some((id, _, _)) => update(*id)
                        .execute(&mut *transaction)
                        .await?
                        .rows_affected(),
                    None => 0,
                };
                transaction.commit().await?;
                (next, claimed)
            } else {
                let next = select().fetch_optional(&self.pool).await?;
                let claimed = match &next {
                    Some((id, _, _)) => update(*id).execute(&self.pool).await?.rows_affected(),
                    None => 0,
                };
                (next, claimed)
            };
            let Some((id, settings, minutes_limit)) = next else {
                return Ok(None);
            };
            if claimed == 0 {
                continue; // cancelled, or (on SQLite) taken by another slot, meanwhile
            }
            match parse_settings(id, &settings) {
                Ok(settings) => {
                    return Ok(Some(ClaimedRun {
                        id,
                        settings,
                        minutes_limit,
                    }));
                }
                Err(reason) => {
                    tracing::error!(run = id, %reason, "a claimed run cannot start");
                    let ending = RunEnding {
                        status: RunStatus::Failed,
                        message: Some(format!("Its settings could not be read: {reason}")),
                        accuracies: None,
                        timing: None,
                    };
                    self.finish(id, owner, &ending).await?;
                }
            }
        }
    }

    /// Extends `owner`'s lease on a running run; false when the lease is no longer its.
    pub async fn renew(
        &self,
        run_id: i64,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, sqlx::Error> {
        let renewed = sqlx::query(
            "UPDATE runs SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 AND status = $4",
        )
        .bind(lease_until)
        .bind(run_id)
        .bind(owner)
        .bind(RunStatus::Running.as_str())
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() > 0)
    }

    /// Records a run's end, if `owner` still holds it.
    pub async fn finish(
        &self,
        run_id: i64,
        owner: &str,
        ending: &RunEnding,
    ) -> Result<(), sqlx::Error> {
        let timing = ending.timing.as_ref();
        sqlx::query(
            "UPDATE runs SET status = $1, message = $2, validation_accuracy = $3, private_accuracy = $4, \
             finished_at = $5, lease_owner = NULL, lease_expires_at = NULL, \
             trained_seconds = $6, reference_speed = $7, device = $8 \
             WHERE id = $9 AND lease_owner = $10",
        )
        .bind(ending.status.as_str())
        .bind(ending.message.as_deref())
        .bind(ending.accuracies.map(|a| a.0))
        .bind(ending.accuracies.map(|a| a.1))
        .bind(crate::db::now())
        .bind(timing.map(|t| t.trained_seconds))
        .bind(timing.and_then(|t| t.reference_speed))
        .bind(timing.map(|t| t.device.clone()))
        .bind(run_id)
        .bind(owner)
        .persistent(false) // the accuracies may be NULL: see `crate::db`
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives an unfinished run back to the queue, if `owner` still holds it (it resumes
    /// from its checkpoint).
    pub async fn release(&self, run_id: i64, owner: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE runs SET status = $1, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $2 AND lease_owner = $3",
        )
        .bind(RunStatus::Queued.as_str())
        .bind(run_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The UTC calendar date of `time` as `YYYY-MM-DD`, which compares as that day's first
/// [`crate::db::timestamp`].
pub fn utc_date(time: std::time::SystemTime) -> String {
    let mut date = crate::db::timestamp(time);
    date.truncate(10);
    date
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn dates_are_utc_calendar_days() {
        let at = |secs: u64| utc_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29");
        assert_eq!(at(1_795_651_200), "2026-11-26");
        assert_eq!(at(1_795_737_599), "2026-11-26");
    }
}
