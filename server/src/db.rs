//! Opening the database and applying its migrations: the one place that knows which
//! database is behind the app's [`DbPool`].
//!
//! `DATABASE_URL` names SQLite (`sqlite:…`, the embedded default) or PostgreSQL
//! (`postgres://…`). SQLite files are created when missing and use WAL, foreign keys and a
//! busy timeout; each database has its own numbered migrations, `migrations/` for SQLite
//! and `migrations/postgres/` for PostgreSQL, with the same numbers and names.

use crate::config::ConfigError;
use app::db::DbPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Executor, SqlSafeStr};
use std::borrow::Cow;
use std::str::FromStr;
use std::sync::LazyLock;

// SQLITE_MIGRATIONS and POSTGRES_MIGRATIONS, `(version, description, SQL)`, written by
// build.rs from the two migration folders.
include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The SQLite migrations, embedded at build time.
static SQLITE_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| embedded_migrator(SQLITE_MIGRATIONS));

/// The PostgreSQL migrations, embedded at build time.
static POSTGRES_MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| embedded_migrator(POSTGRES_MIGRATIONS));

/// A migrator for embedded migrations, built as sqlx builds one from a folder (a file that
/// starts with `-- no-transaction` runs outside a transaction), so the checksums match
/// those recorded by earlier builds, which used `sqlx::migrate!`.
fn embedded_migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

/// Connections per server process.
const MAX_CONNECTIONS: u32 = 8;
/// What every SQLite connection sets: enforced foreign keys, and up to 5 s of waiting for
/// another connection's write lock. (The file itself remembers write-ahead logging.)
const SQLITE_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000";

/// The databases a `DATABASE_URL` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATOR,
            Self::Postgres => &POSTGRES_MIGRATOR,
        }
    }
}

/// Runs `work` on the database of `config`'s settings, migrated (its data directory
/// created when missing), on a runtime of its own: for the terminal commands. Errors come
/// back as one line.
pub fn with_database<T, E, F>(
    config: &crate::config::Config,
    work: impl FnOnce(DbPool) -> F,
) -> Result<T, String>
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        let pool = connect_and_migrate(&config.database_url)
            .await
            .map_err(|e| e.to_string())?;
        let result = work(pool.clone()).await.map_err(|e| e.to_string());
        pool.close().await;
        result
    })
}

/// Opens the database at `url` (creating a missing SQLite file) and brings its schema up
/// to date.
pub async fn connect_and_migrate(url: &str) -> Result<DbPool, ConfigError> {
    let fail = |message: String| ConfigError::new("DATABASE_URL", message);
    let backend = Backend::of(url).ok_or_else(|| {
        fail(format!(
            "\u{201c}{}\u{201d} is neither a sqlite: nor a postgres:// URL",
            redact(url)
        ))
    })?;
    sqlx::any::install_default_drivers();
    let mut options = AnyPoolOptions::new().max_connections(MAX_CONNECTIONS);
    if backend == Backend::Sqlite {
        prepare_sqlite_file(url)
            .await
            .map_err(|e| fail(format!("cannot open {}: {e}", redact(url))))?;
        options = options.after_connect(|connection, _| {
            Box::pin(async move { connection.execute(SQLITE_PRAGMAS).await.map(|_| ()) })
        });
    }
    let pool = options
        .connect(url)
        .await
        .map_err(|e| fail(format!("cannot open {}: {e}", redact(url))))?;
    backend.migrator().run(&pool).await.map_err(|e| {
        fail(format!(
            "cannot apply the migrations to {}: {e}",
            redact(url)
        ))
    })?;
    Ok(pool)
}

/// Creates the SQLite file if it is missing and switches it to write-ahead logging, which
/// the file remembers for every later connection.
async fn prepare_sqlite_file(url: &str) -> Result<(), sqlx::Error> {
    let connection = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await?;
    connection.close().await
}

/// Hides a password in a database URL before it is printed.
pub(crate) fn redact(url: &str) -> String {
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
    async fn sqlite_connections_use_wal_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let pool = connect_and_migrate(&url).await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        let orphan = sqlx::query("INSERT INTO teams (class_id, name) VALUES ($1, $2)")
            .bind(999_i64)
            .bind("Red")
            .execute(&pool)
            .await;
        assert!(orphan.is_err(), "a team needs its class");
    }

    #[tokio::test]
    async fn embedded_migrations_equal_what_sqlx_reads_from_the_folders() {
        for (embedded, folder) in [
            (&*SQLITE_MIGRATOR, "../migrations"),
            (&*POSTGRES_MIGRATOR, "../migrations/postgres"),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
            let read = Migrator::new(path).await.unwrap();
            let fields = |migrator: &Migrator| {
                migrator
                    .iter()
                    .map(|m| {
                        (
                            m.version,
                            m.description.to_string(),
                            m.migration_type,
                            m.checksum.to_vec(),
                            m.no_tx,
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(fields(embedded), fields(&read), "{folder}");
        }
    }

    #[test]
    fn the_migration_folders_have_the_same_numbers_and_names() {
        let names = |migrator: &Migrator| {
            migrator
                .iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&SQLITE_MIGRATOR), names(&POSTGRES_MIGRATOR));
        assert_eq!(SQLITE_MIGRATOR.iter().count(), 13);
    }

    #[tokio::test]
    async fn other_databases_are_refused_without_leaking_the_password() {
        let error = connect_and_migrate("mysql://user:secret@localhost/db")
            .await
            .unwrap_err();
        assert_eq!(error.setting, "DATABASE_URL");
        assert!(
            error.message.contains("mysql://***@localhost/db"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("secret"), "{}", error.message);
    }

    #[tokio::test]
    async fn a_bad_postgres_url_names_the_setting_without_the_password() {
        let error = connect_and_migrate("postgres://user:secret@localhost:99999/db")
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
