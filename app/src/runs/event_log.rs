//! Every SQL statement on the `run_events` table: a run's events in order, each with its
//! sequence number (the live stream's event id) and its kind.

use crate::db::DbPool;
use run_protocol::EventKind;

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// 1, 2, 3, … per run, with no gaps.
    pub seq: i64,
    /// The event as JSON ([`run_protocol::Event`]).
    pub payload: String,
}

crate::db::from_row!(StoredEvent { seq, payload });

/// The stored events of every run.
#[derive(Debug, Clone)]
pub struct EventLog {
    pool: DbPool,
}

impl EventLog {
    /// The log in `pool`.
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    /// Run `run_id`'s events after sequence number `after`, in order.
    pub async fn after(&self, run_id: i64, after: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
        sqlx::query_as(
            "SELECT seq, payload FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(run_id)
        .bind(after)
        .fetch_all(&self.pool)
        .await
    }

    /// At most `limit` of run `run_id`'s events after sequence number `after`, in order.
    pub async fn page(
        &self,
        run_id: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        sqlx::query_as(
            "SELECT seq, payload FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
    }

    /// Run `run_id`'s events of the given kinds, in order.
    pub async fn of_kinds(
        &self,
        run_id: i64,
        kinds: &[EventKind],
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (2..kinds.len() + 2).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT seq, payload FROM run_events WHERE run_id = $1 AND kind IN ({}) ORDER BY seq",
            placeholders.join(", ")
        );
        // Only numbered placeholders are formatted in; the kinds are bound.
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(run_id);
        for kind in kinds {
            query = query.bind(kind.as_str());
        }
        query.fetch_all(&self.pool).await
    }

    /// Run `run_id`'s latest event of `kind`, if it has one.
    pub async fn last_of_kind(
        &self,
        run_id: i64,
        kind: EventKind,
    ) -> Result<Option<StoredEvent>, sqlx::Error> {
        sqlx::query_as(
            "SELECT seq, payload FROM run_events WHERE run_id = $1 AND kind = $2 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(run_id)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await
    }

    /// Stores one event of run `run_id`.
    pub async fn append(
        &self,
        run_id: i64,
        seq: i64,
        kind: EventKind,
        payload: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO run_events (run_id, seq, kind, payload) VALUES ($1, $2, $3, $4)")
            .bind(run_id)
            .bind(seq)
            .bind(kind.as_str())
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
