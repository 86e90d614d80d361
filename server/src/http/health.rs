//! `GET /healthz`: liveness and readiness.

use super::{AppState, ServerStatus};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use serde::Serialize;

/// The body of `/healthz`.
#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    database: &'static str,
    #[serde(flatten)]
    server: &'a ServerStatus,
}

/// Liveness and readiness: 200 when the database answers, 503 otherwise.
pub(super) async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let database_ok = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let health = Health {
        status: if database_ok { "ok" } else { "degraded" },
        database: if database_ok { "ok" } else { "unreachable" },
        server: &state.status,
    };
    let code = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::to_value(&health).unwrap_or_default()),
    )
}
