//! The HTTP surface: Leptos pages and server functions, static files, `/healthz`, and the
//! middleware around them (tracing, compression, security and cache headers).

use app::error::AppError;
use app::widgets::{DefaultModel, DefaultTokenizer};
use app::{App, shell};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::{FromRef, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use serde::Serialize;
use sqlx::SqlitePool;
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// What every handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Leptos rendering options (site root, output name, address).
    pub leptos_options: LeptosOptions,
    /// The database.
    pub pool: SqlitePool,
    /// Facts `/healthz` reports.
    pub status: Arc<ServerStatus>,
    /// The default model's tokenizer, for the tokenizer playground.
    pub tokenizer: DefaultTokenizer,
    /// The default model, for the attention viewer.
    pub model: DefaultModel,
}

/// Facts about this process fixed at start.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    /// The compute device the trainer will use.
    pub device: String,
    /// Why SST-2 is unavailable, if it is.
    pub sst2_warning: Option<String>,
}

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    let site_root = std::path::PathBuf::from(state.leptos_options.site_root.as_ref());
    let routes = generate_route_list(App);
    let pool = state.pool.clone();
    let tokenizer = state.tokenizer.clone();
    let model = state.model.clone();
    let provide_pool = move || {
        provide_context(pool.clone());
        provide_context(tokenizer.clone());
        provide_context(model.clone());
    };

    let static_files = Router::new()
        .nest_service(
            "/pkg",
            ServiceBuilder::new()
                .layer(cache_control("no-cache"))
                .service(ServeDir::new(site_root.join("pkg"))),
        )
        .route_service(
            "/favicon.svg",
            ServiceBuilder::new()
                .layer(cache_control("public, max-age=86400"))
                .service(ServeFile::new(site_root.join("favicon.svg"))),
        );

    Router::new()
        .route("/healthz", get(healthz))
        .leptos_routes_with_context(&state, routes, provide_pool.clone(), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(provide_pool, shell))
        .merge(static_files)
        .layer(middleware::from_fn(server_fn_error_status))
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(CompressionLayer::new())
                .layer(cache_control("no-store"))
                .layer(header_if_absent(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header_if_absent(header::X_FRAME_OPTIONS, "DENY"))
                .layer(header_if_absent(header::REFERRER_POLICY, "no-referrer"))
                .layer(header_if_absent(
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
                     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
                     frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
                )),
        )
        .with_state(state)
}

fn header_if_absent(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

fn cache_control(value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    header_if_absent(header::CACHE_CONTROL, value)
}

/// Gives server-function errors their proper status. The server-function runtime answers
/// every error with 500, including input it could not decode before our code ran; this
/// reads the [`AppError`] in the body and uses its status instead (400 for bad input).
async fn server_fn_error_status(request: Request, next: Next) -> Response {
    let is_server_fn = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    if !is_server_fn || response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "response body unreadable",
        )
            .into_response();
    };
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status = error.status();
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The body of `/healthz`.
#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    database: &'static str,
    #[serde(flatten)]
    server: &'a ServerStatus,
}

/// Liveness and readiness: 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
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
