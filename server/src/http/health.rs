//! `GET /healthz`: liveness and readiness, on a web node's port and, when
//! `JIGSAW_HEALTH_BIND` names one, on a worker node's own port ([`worker_router`]).

use super::{AppState, ServerStatus};
use app::db::DbPool;
use app::runs::dataset::ssr::TrainingData;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use std::sync::Arc;

/// The body of `/healthz`.
#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    database: &'static str,
    /// "ok", or why this node's SST-2 cannot be used (pages still work without it).
    training_data: String,
    #[serde(flatten)]
    server: &'a ServerStatus,
}

/// Liveness and readiness: 200 when the database answers, 503 otherwise.
pub(super) async fn healthz(State(state): State<AppState>) -> Response {
    answer(&state.pool, &state.status, &state.data).await
}

/// What a worker node's health answer reads.
type WorkerHealth = (DbPool, Arc<ServerStatus>, TrainingData);

/// A worker node's only HTTP surface: `GET /healthz`, answered as a web node answers it.
pub fn worker_router(pool: DbPool, status: ServerStatus, data: TrainingData) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(
                |State((pool, status, data)): State<WorkerHealth>| async move {
                    answer(&pool, &status, &data).await
                },
            ),
        )
        .with_state((pool, Arc::new(status), data))
}

/// The health answer of a node on `pool`.
async fn answer(pool: &DbPool, status: &ServerStatus, data: &TrainingData) -> Response {
    let database_ok = sqlx::query("SELECT 1").execute(pool).await.is_ok();
    let health = Health {
        status: if database_ok { "ok" } else { "degraded" },
        database: if database_ok { "ok" } else { "unreachable" },
        training_data: data
            .checked()
            .await
            .map_or_else(|problem| problem, |_| "ok".into()),
        server: status,
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
        .into_response()
}
