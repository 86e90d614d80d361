//! The database as the app sees it: one pool type for SQLite and PostgreSQL, and the
//! rules that keep every query meaning the same on both.
//!
//! The pool is sqlx's `Any` driver, so the SQL must be portable and its results must
//! decode alike:
//! - placeholders are `$1, $2, …`, numbered in order of first appearance;
//! - no dialect-only syntax or functions (`ON CONFLICT … DO NOTHING`, `RETURNING id`, `TRUE`
//!   and `FALSE` work on both);
//! - timestamps are text in one format (see [`timestamp`]), bound from Rust rather than
//!   written as `CURRENT_TIMESTAMP`, whose text differs between the two;
//! - a boolean column is read as `CAST(column AS INTEGER)` and compared with 0: SQLite
//!   stores booleans as 0 and 1, and the `Any` driver decodes `bool` only from a boolean;
//! - `COUNT(…)` is read as `i64`; a `SUM` of integers needs `CAST(… AS BIGINT)` (Postgres
//!   makes it NUMERIC, which the `Any` driver cannot read), a computed float
//!   `CAST(… AS DOUBLE PRECISION)`;
//! - a query that may bind a NULL `f64` runs with `.persistent(false)`: sqlx 0.9.0's `Any`
//!   driver types that NULL as a 4-byte REAL (sqlx issue #4284), and a statement Postgres
//!   prepared and cached with that type rejects a later 8-byte value.
//!
//! Opening the database, connection settings and the two migration folders live in the
//! server's `db` module.

use crate::error::AppError;
use std::time::{SystemTime, UNIX_EPOCH};

/// The connection pool: SQLite or PostgreSQL, as `DATABASE_URL` says.
pub type DbPool = sqlx::AnyPool;

/// The database pool the server put into the request context.
pub fn pool() -> Result<DbPool, AppError> {
    AppError::from_context("database pool")
}

/// Whether `pool` is PostgreSQL (else SQLite).
pub fn is_postgres(pool: &DbPool) -> bool {
    pool.connect_options()
        .database_url
        .scheme()
        .starts_with("postgres")
}

/// `time` in the database's timestamp format, UTC `YYYY-MM-DD HH:MM:SS`: SQLite's
/// `CURRENT_TIMESTAMP` text (the SQLite column defaults) and the Postgres column defaults'.
/// It sorts as text, and a date `YYYY-MM-DD` compares as that day's first second.
pub fn timestamp(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        second_of_day / 3_600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// The current time as a [`timestamp`].
pub fn now() -> String {
    timestamp(SystemTime::now())
}

/// Column `column` of `row`, stored as text, converted with `T`'s `TryFrom<String>`; a value
/// it refuses is a decoding error that names the column.
pub fn parsed_column<T>(row: &sqlx::any::AnyRow, column: &str) -> Result<T, sqlx::Error>
where
    T: TryFrom<String, Error = String>,
{
    use sqlx::Row as _;
    let text: String = row.try_get(column)?;
    T::try_from(text).map_err(|message| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: message.into(),
    })
}

/// Implements sqlx's `FromRow` for a struct, each field read from the column of its name:
/// `from_row!(Row { id, name } parsed { status })`, where the fields after `parsed` are
/// stored as text and read with [`parsed_column`]. (sqlx's derive would build sqlx and
/// SQLite a second time for the compiler.)
macro_rules! from_row {
    ($row:ident { $($field:ident),* $(,)? } $(parsed { $($parsed:ident),* $(,)? })?) => {
        impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for $row {
            fn from_row(row: &'r sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok(Self {
                    $($field: row.try_get(stringify!($field))?,)*
                    $($($parsed: $crate::db::parsed_column(row, stringify!($parsed))?,)*)?
                })
            }
        }
    };
}
pub(crate) use from_row;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_and_sort_as_text() {
        let at = |secs: u64| timestamp(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01 00:00:00");
        assert_eq!(at(951_782_400 + 3_723), "2000-02-29 01:02:03");
        assert_eq!(at(1_795_737_599), "2026-11-26 23:59:59");
        assert!(at(1_795_737_599) < at(1_795_737_600));
        assert!("2026-11-26" <= at(1_795_651_200).as_str());
    }
}
