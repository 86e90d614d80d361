//! What an upload form's post did, told once on the page it returns to. The upload forms
//! (Models, Training data) post without the page's script and are answered with a
//! redirect; the outcome waits in the poster's session for the page's next read, so a
//! crafted link cannot make a page announce what did not happen.

use serde::{Deserialize, Serialize};

/// What a post did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// It worked; what was added.
    Done(String),
    /// It did not; why, in words.
    Problem(String),
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! Keeping an outcome in the session and taking it back out.

    use super::Outcome;
    use crate::error::AppError;
    use tower_sessions::Session;

    fn key(page: &str) -> String {
        format!("outcome:{page}")
    }

    /// Keeps `outcome` for the next read of `page`.
    pub async fn keep(session: &Session, page: &str, outcome: Outcome) -> Result<(), AppError> {
        session
            .insert(&key(page), outcome)
            .await
            .map_err(AppError::internal)
    }

    /// The outcome kept for `page` in the caller's session, removed as it is read.
    pub async fn take(page: &str) -> Result<Option<Outcome>, AppError> {
        let session = crate::auth::ssr::session().await?;
        session
            .remove::<Outcome>(&key(page))
            .await
            .map_err(AppError::internal)
    }
}
