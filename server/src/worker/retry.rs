//! Database writes the worker retries while the database is away.

use app::runs::event_log::EventLog;
use run_protocol::EventKind;
use std::time::Duration;

/// How long the worker keeps trying a database write while the database is away (a
/// PostgreSQL restart, a dropped connection, an SQLite file locked by another program):
/// waits of 0.25 s doubling to 8 s, about 24 s in all.
const RETRY_WAITS_MS: [u64; 7] = [250, 500, 1_000, 2_000, 4_000, 8_000, 8_000];

/// Runs the database write `write` until it succeeds, retrying with [`RETRY_WAITS_MS`]
/// while it fails; `what` names it in the log.
pub(super) async fn retrying<F, Fut>(
    what: &str,
    run_id: i64,
    mut write: F,
) -> Result<(), sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>>,
{
    let mut waits = RETRY_WAITS_MS.iter();
    loop {
        match write().await {
            Ok(()) => return Ok(()),
            Err(error) => match waits.next() {
                Some(wait) => {
                    tracing::warn!(%error, run = run_id, "{what} failed; retrying");
                    tokio::time::sleep(Duration::from_millis(*wait)).await;
                }
                None => return Err(error),
            },
        }
    }
}

/// Appends one event, retrying while the database fails. An insert that reached the
/// database before its connection dropped is found on the retry (the same sequence
/// number is already there) and counts as stored.
pub(super) async fn append_retrying(
    log: &EventLog,
    run_id: i64,
    seq: i64,
    kind: EventKind,
    payload: &str,
) -> Result<(), sqlx::Error> {
    retrying("storing a run event", run_id, || async move {
        match log.append(run_id, seq, kind, payload).await {
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Ok(()),
            other => other,
        }
    })
    .await
}
