//! Opening the database and applying the migrations in `migrations/`.

use crate::config::ConfigError;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The numbered migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens (creating if needed) the SQLite database at `url` and brings its schema up to date.
pub async fn connect_and_migrate(url: &str) -> Result<SqlitePool, ConfigError> {
    let fail = |message: String| ConfigError::new("DATABASE_URL", message);
    if !url.starts_with("sqlite:") {
        return Err(fail(format!(
            "\u{201c}{}\u{201d} is not a sqlite: URL; this build stores its data in SQLite",
            redact(url)
        )));
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| fail(format!("cannot parse {}: {e}", redact(url))))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(|e| fail(format!("cannot open {}: {e}", redact(url))))?;
    MIGRATOR.run(&pool).await.map_err(|e| {
        fail(format!(
            "cannot apply the migrations to {}: {e}",
            redact(url)
        ))
    })?;
    Ok(pool)
}

/// Hides a password in a database URL before it is printed.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_apply_to_a_fresh_database_twice() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let pool = connect_and_migrate(&url).await.unwrap();
        let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lesson_checkins")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(tables, 0);
        pool.close().await;
        connect_and_migrate(&url).await.unwrap();
    }

    #[tokio::test]
    async fn other_databases_are_refused_without_leaking_the_password() {
        let error = connect_and_migrate("postgres://user:secret@localhost/db")
            .await
            .unwrap_err();
        assert_eq!(error.setting, "DATABASE_URL");
        assert!(!error.message.contains("secret"), "{}", error.message);
    }

    #[tokio::test]
    async fn an_unopenable_file_names_the_setting() {
        let error = connect_and_migrate("sqlite:///proc/nope/x.db")
            .await
            .unwrap_err();
        assert_eq!(error.setting, "DATABASE_URL");
    }
}
