//! The class's run boards: the best validation accuracy per team (public), and the best
//! SST-2 dev accuracy (private until the instructor reveals it). Not to be confused with
//! the quiz standings.

use super::Boards;
use crate::error::AppError;
use leptos::prelude::*;
#[cfg(feature = "ssr")]
use {
    super::access::{Viewpoint, viewpoint},
    super::queue::{Board, RunQueue},
};

/// The class's leaderboards: public validation accuracy, and SST-2 dev accuracy once
/// revealed (instructors always see it).
#[server(prefix = "/api", endpoint = "boards")]
pub async fn class_boards(class_id: Option<i64>) -> Result<Boards, AppError> {
    let pool = crate::db::pool()?;
    let (class_id, instructor) = match viewpoint(&pool, class_id).await? {
        Viewpoint::Team { class_id, .. } => (class_id, false),
        Viewpoint::Instructor { class_id } => (class_id, true),
    };
    let revealed: i64 = sqlx::query_scalar(
        "SELECT CAST(private_board_revealed AS INTEGER) FROM classes WHERE id = $1",
    )
    .bind(class_id)
    .fetch_one(&pool)
    .await?;
    let revealed = revealed != 0;
    let queue = RunQueue::new(pool);
    Ok(Boards {
        public: queue.board(class_id, Board::Public).await?,
        private: if revealed || instructor {
            Some(queue.board(class_id, Board::Private).await?)
        } else {
            None
        },
        revealed,
    })
}

/// Shows or hides the private (SST-2 dev) board to the class's students.
#[server(prefix = "/api", endpoint = "reveal-board")]
pub async fn reveal_board(class_id: i64, revealed: bool) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    sqlx::query("UPDATE classes SET private_board_revealed = $1 WHERE id = $2")
        .bind(revealed)
        .bind(class_id)
        .execute(&pool)
        .await?;
    crate::live::ssr::announce(class_id);
    Ok(())
}
