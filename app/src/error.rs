//! The one error type every server function returns.
//!
//! Messages are written for students and teachers. Internal failures are logged on the
//! server with their detail and reach the browser only as a generic sentence.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// An error a server function can return to the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// The thing asked for does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The request was understood but its input is not acceptable (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The caller must sign in (instructors) or join a class (students) first (HTTP 401).
    #[error("{0}")]
    SignInRequired(String),
    /// The caller is signed in but may not do this (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// Too many requests of this kind right now; the message says when to try again, and
    /// the response carries the same delay in `Retry-After` (HTTP 429).
    #[error("{message}")]
    Busy {
        /// What is limited and when to try again.
        message: String,
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
    },
    /// The database cannot answer right now: another program holds the SQLite file's lock,
    /// or the connection to PostgreSQL dropped (a restart). Nothing was changed; the
    /// response carries `Retry-After` (HTTP 503).
    #[error("{message}")]
    Unavailable {
        /// What happened and when to try again.
        message: String,
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
    },
    /// Something failed on the server; the detail is in the server log (HTTP 500).
    #[error(
        "Something went wrong on the server. Your teacher can find the details in the server log."
    )]
    Internal,
    /// The request could not be carried to or from the server function.
    #[error("The request could not be completed: {0}")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(detail) | ServerFnErrorErr::Deserialization(detail) => {
                AppError::BadRequest(format!("The request's fields could not be read: {detail}"))
            }
            other => AppError::Transport(other.to_string()),
        }
    }
}

#[cfg(feature = "ssr")]
pub use ssr::wait_secs;

#[cfg(feature = "ssr")]
mod ssr {
    use super::AppError;
    use http::StatusCode;
    use leptos::prelude::use_context;
    use leptos_axum::ResponseOptions;

    impl AppError {
        /// The HTTP status this error is answered with.
        pub fn status(&self) -> StatusCode {
            match self {
                AppError::NotFound(_) => StatusCode::NOT_FOUND,
                AppError::BadRequest(_) | AppError::Transport(_) => StatusCode::BAD_REQUEST,
                AppError::SignInRequired(_) => StatusCode::UNAUTHORIZED,
                AppError::Forbidden(_) => StatusCode::FORBIDDEN,
                AppError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
                AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                AppError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            }
        }

        /// Takes `T` from the server function's context, which the server provides for
        /// every request; its absence is a server bug, logged with `what` and answered as
        /// [`AppError::Internal`].
        pub fn from_context<T: Clone + Send + Sync + 'static>(what: &str) -> Result<T, AppError> {
            use_context::<T>().ok_or_else(|| {
                tracing::error!("no {what} in the server function context");
                AppError::Internal.respond()
            })
        }

        /// Sets this error's status on the response being built, then returns the error.
        pub fn respond(self) -> Self {
            if let Some(response) = use_context::<ResponseOptions>() {
                response.set_status(self.status());
                if let Some(secs) = self.retry_after_secs() {
                    response
                        .insert_header(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
                }
            }
            self
        }

        /// The `Retry-After` seconds a 429 or 503 carries.
        pub fn retry_after_secs(&self) -> Option<u64> {
            match self {
                AppError::Busy {
                    retry_after_secs, ..
                }
                | AppError::Unavailable {
                    retry_after_secs, ..
                } => Some(*retry_after_secs),
                _ => None,
            }
        }
    }

    impl AppError {
        /// A 400 with `message`, status set on the response.
        pub fn bad_request(message: impl Into<String>) -> Self {
            AppError::BadRequest(message.into()).respond()
        }

        /// A 404 with `message`, status set on the response.
        pub fn not_found(message: impl Into<String>) -> Self {
            AppError::NotFound(message.into()).respond()
        }

        /// A 403 with `message`, status set on the response.
        pub fn forbidden(message: impl Into<String>) -> Self {
            AppError::Forbidden(message.into()).respond()
        }

        /// A 429 saying `message`, with `Retry-After` set to `wait` (rounded up to seconds).
        pub fn busy(message: impl Into<String>, wait: std::time::Duration) -> Self {
            AppError::Busy {
                message: message.into(),
                retry_after_secs: wait_secs(wait),
            }
            .respond()
        }

        /// A 500 whose `detail` goes to the server log only.
        pub fn internal(detail: impl std::fmt::Display) -> Self {
            tracing::error!(%detail, "server function failed");
            AppError::Internal.respond()
        }
    }

    /// `wait` in whole seconds, rounded up and at least 1, as people and `Retry-After` read it.
    pub fn wait_secs(wait: std::time::Duration) -> u64 {
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }

    impl From<sqlx::Error> for AppError {
        fn from(error: sqlx::Error) -> Self {
            let Some(trouble) = Trouble::of(&error) else {
                tracing::error!(%error, "database error in a server function");
                return AppError::Internal.respond();
            };
            tracing::warn!(%error, "the database could not answer a server function");
            let (message, retry_after_secs) = match trouble {
                Trouble::Away => (
                    "The class database is busy or restarting, so nothing was changed. Try \
                     again in a few seconds.",
                    5,
                ),
                Trouble::DiskFull => (
                    "The class computer's disk is full, so nothing was saved. Tell your \
                     teacher; what was saved before is safe.",
                    30,
                ),
            };
            AppError::Unavailable {
                message: message.into(),
                retry_after_secs,
            }
            .respond()
        }
    }

    /// Why the database could not do what was asked, when the query itself is fine.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Trouble {
        /// It could not answer for now: no connection (a dropped or refused one, a full
        /// pool), SQLite's lock held by another program past the busy timeout, or
        /// PostgreSQL shutting down, starting or dropping the connection.
        Away,
        /// Its disk is full (SQLite's SQLITE_FULL, PostgreSQL's disk_full).
        DiskFull,
    }

    impl Trouble {
        fn of(error: &sqlx::Error) -> Option<Self> {
            match error {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                    Some(Trouble::Away)
                }
                sqlx::Error::Database(db) => {
                    let code = db.code().unwrap_or_default();
                    // SQLite's primary result code, under its extended codes.
                    let sqlite = code.parse::<i32>().ok().map(|n| n & 0xff);
                    if sqlite == Some(13) || code == "53100" {
                        Some(Trouble::DiskFull)
                    } else if matches!(sqlite, Some(5 | 6))
                        || code.starts_with("08")
                        || code.starts_with("57P0")
                    {
                        // SQLITE_BUSY, SQLITE_LOCKED; PostgreSQL connection exceptions
                        // (08…), shutdown and start-up (57P01-03).
                        Some(Trouble::Away)
                    } else {
                        None
                    }
                }
                _ => None,
            }
        }
    }
}
