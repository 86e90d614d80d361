//! `GET /instructor/classes/{id}/answers.csv`: a class's answers and grades for its
//! instructor.

use super::{AppState, error_response};
use app::auth::ssr::{caller_of, check_class_owner, instructor_only};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

/// `GET /instructor/classes/{id}/answers.csv`: the class's answers and grades.
pub(super) async fn answers_csv(
    State(state): State<AppState>,
    session: Session,
    Path(class_id): Path<i64>,
) -> Response {
    let result = async {
        let instructor = instructor_only(caller_of(&session, &state.pool).await?)?;
        check_class_owner(&state.pool, &instructor, class_id).await?;
        app::quiz::ssr::answers_csv(&state.pool, class_id).await
    }
    .await;
    match result {
        Ok(csv) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"class-{class_id}-answers.csv\""),
                ),
            ],
            csv,
        )
            .into_response(),
        Err(error) => error_response(error),
    }
}
