//! Login sessions kept in the app's own database, so a restart signs nobody out.
//!
//! tower-sessions makes the session ids (random, 128 bits) and the cookies; this store only
//! keeps each session's record as JSON in the `sessions` table. Expired rows are deleted
//! when read and swept every hour.

use app::db::DbPool;
use async_trait::async_trait;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Duration;
use time::OffsetDateTime;
use tower_sessions::Session;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// The session key holding the day (days since 1970-01-01, UTC) its expiry was last renewed.
const RENEWED_ON_DAY: &str = "renewed_on_day";

/// Renews a signed-in session's expiry (14 days of inactivity) at most once a day.
/// tower-sessions saves a session, and so moves its expiry, only when its data changed; this
/// changes the renewal day on the first request of each day, so a session expires after 14
/// days without use rather than 14 days after sign-in, with one write a day at most.
pub async fn renew_daily(request: Request, next: Next) -> Response {
    if let Some(session) = request.extensions().get::<Session>().cloned() {
        renew(&session).await;
    }
    next.run(request).await
}

async fn renew(session: &Session) {
    let signed_in = session
        .get::<serde_json::Value>(app::auth::ssr::SESSION_USER)
        .await
        .is_ok_and(|user| user.is_some());
    if !signed_in {
        return;
    }
    let today = OffsetDateTime::now_utc()
        .unix_timestamp()
        .div_euclid(86_400);
    if session.get::<i64>(RENEWED_ON_DAY).await.ok().flatten() != Some(today)
        && let Err(error) = session.insert(RENEWED_ON_DAY, today).await
    {
        tracing::warn!(%error, "could not renew a session");
    }
}

/// A tower-sessions store on the `sessions` table.
#[derive(Debug, Clone)]
pub struct SqlSessionStore {
    pool: DbPool,
}

impl SqlSessionStore {
    /// A store on `pool`, whose schema the migrations created.
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    /// Deletes expired sessions now and then every `period`, for as long as the runtime runs.
    pub fn sweep_every(&self, period: Duration) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                if let Err(error) = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
                    .bind(OffsetDateTime::now_utc().unix_timestamp())
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(%error, "could not sweep expired sessions");
                }
            }
        });
    }
}

fn backend(error: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(error.to_string())
}

#[async_trait]
impl SessionStore for SqlSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A fresh id that collides with a stored one (vanishingly rare) is drawn again.
        loop {
            let json = serde_json::to_string(&*record)
                .map_err(|e| session_store::Error::Encode(e.to_string()))?;
            let inserted = sqlx::query(
                "INSERT INTO sessions (id, record, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(record.id.to_string())
            .bind(json)
            .bind(record.expiry_date.unix_timestamp())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let json = serde_json::to_string(record)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        sqlx::query(
            "INSERT INTO sessions (id, record, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET record = excluded.record, expires_at = excluded.expires_at",
        )
        .bind(record.id.to_string())
        .bind(json)
        .bind(record.expiry_date.unix_timestamp())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT record, expires_at FROM sessions WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        match row {
            None => Ok(None),
            Some((_, expires_at)) if expires_at < OffsetDateTime::now_utc().unix_timestamp() => {
                self.delete(id).await?;
                Ok(None)
            }
            // A record that no longer reads (damaged, or from an incompatible version) is
            // a signed-out session, not an error on every request of its browser.
            Some((json, _)) => match serde_json::from_str(&json) {
                Ok(record) => Ok(Some(record)),
                Err(error) => {
                    tracing::warn!(%error, "dropping a session record that does not read");
                    self.delete(id).await?;
                    Ok(None)
                }
            },
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_round_trip_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let pool = crate::db::connect_and_migrate(&url).await.unwrap();
        let store = SqlSessionStore::new(pool);
        let mut record = Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        record
            .data
            .insert("user".into(), serde_json::json!({"Student": 7}));
        store.create(&mut record).await.unwrap();
        assert_eq!(store.load(&record.id).await.unwrap(), Some(record.clone()));

        record.expiry_date = OffsetDateTime::now_utc() - time::Duration::hours(1);
        store.save(&record).await.unwrap();
        assert_eq!(store.load(&record.id).await.unwrap(), None);

        store.delete(&record.id).await.unwrap();
    }

    #[tokio::test]
    async fn a_damaged_record_is_a_signed_out_session() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let pool = crate::db::connect_and_migrate(&url).await.unwrap();
        let store = SqlSessionStore::new(pool.clone());
        let id = Id::default();
        sqlx::query("INSERT INTO sessions (id, record, expires_at) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind("{\"id\": broken")
            .bind(OffsetDateTime::now_utc().unix_timestamp() + 3600)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(store.load(&id).await.unwrap(), None);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0, "the damaged record is gone");
    }
}
