//! The HTTP surface: Leptos pages and server functions, static files, and the middleware
//! around them (tracing, compression, security and cache headers, the cross-site guard in
//! `same_origin`). The routes outside Leptos live in one module each: `/healthz`
//! (`health`), the live streams of a class (`class_events`) and of a run (`run_events`),
//! capped by `live_streams`, a run's model download (`model_zip`), a class's answers
//! (`answers_csv`) and a model uploaded on the Models page (`model_upload`). `listener`
//! accepts the connections, with their time limits.

mod answers_csv;
mod class_events;
mod data_upload;
pub mod health;
pub mod listener;
pub mod live_streams;
mod model_upload;
mod model_zip;
mod run_events;
mod same_origin;

use app::db::DbPool;
use app::error::AppError;
use app::live::ssr::ClassEvents;
use app::models::ModelService;
use app::runs::environment::RunEnvironment;
use app::throttle::Throttles;
use app::widgets::DefaultTokenizer;
use app::{App, shell};
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

/// What every handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Leptos rendering options (site root, output name, address).
    pub leptos_options: LeptosOptions,
    /// The database.
    pub pool: DbPool,
    /// Facts `/healthz` reports.
    pub status: Arc<ServerStatus>,
    /// The default model's tokenizer, for the tokenizer playground.
    pub tokenizer: DefaultTokenizer,
    /// The default model and the fine-tuned ones the widgets read.
    pub models: ModelService,
    /// Changes to classes, streamed to their open pages.
    pub class_events: ClassEvents,
    /// Wrong join codes and passwords, counted per address and account.
    pub throttles: Throttles,
    /// Session cookies only over HTTPS (set when served behind TLS).
    pub secure_cookies: bool,
    /// Turns true when the server shuts down, ending the live event streams.
    pub shutdown: watch::Receiver<bool>,
    /// The run queue's shared parts: models, worker wake-up, run events.
    pub run_env: RunEnvironment,
    /// Open live streams, capped per account, per address and in all.
    pub live_streams: live_streams::LiveStreams,
    /// The models folder, for the Models page.
    pub library: app::library::ssr::Library,
    /// The SST-2 folder.
    pub data: app::runs::dataset::ssr::TrainingData,
}

/// Sessions last this long without activity.
const SESSION_IDLE_DAYS: i64 = 14;

/// Facts about this process fixed at start.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    /// What the node does: "web and training", "web" or "worker".
    pub role: &'static str,
    /// The compute device the trainer will use.
    pub device: String,
}

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    let site_root = std::path::PathBuf::from(state.leptos_options.site_root.as_ref());
    let routes = generate_route_list(App);
    let pool = state.pool.clone();
    let tokenizer = state.tokenizer.clone();
    let models = state.models.clone();
    let class_events = state.class_events.clone();
    let throttles = state.throttles.clone();
    let run_env = state.run_env.clone();
    let library = state.library.clone();
    let data = state.data.clone();
    let provide_pool = move || {
        provide_context(run_env.clone());
        provide_context(library.clone());
        provide_context(data.clone());
        provide_context(pool.clone());
        provide_context(tokenizer.clone());
        provide_context(models.clone());
        provide_context(class_events.clone());
        provide_context(throttles.clone());
    };
    let store = crate::sessions::SqlSessionStore::new(state.pool.clone());
    store.sweep_every(std::time::Duration::from_secs(3600));
    let sessions = SessionManagerLayer::new(store)
        .with_name("jigsaw_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.secure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(
            SESSION_IDLE_DAYS,
        )));

    let static_files = Router::new()
        .nest_service(
            "/pkg",
            ServiceBuilder::new()
                .layer(cache_control("no-cache"))
                // The site build writes each bundle file compressed at brotli's highest
                // quality beside it; browsers that accept br get that file as it is.
                .service(ServeDir::new(site_root.join("pkg")).precompressed_br()),
        )
        .route_service(
            "/favicon.svg",
            ServiceBuilder::new()
                .layer(cache_control("public, max-age=86400"))
                .service(ServeFile::new(site_root.join("favicon.svg"))),
        );

    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/api/class-events", get(class_events::stream_class_events))
        .route("/api/runs/{id}/events", get(run_events::stream_run_events))
        .route("/runs/{id}/model.zip", get(model_zip::download_model))
        .route(
            "/instructor/classes/{id}/answers.csv",
            get(answers_csv::answers_csv),
        )
        .route(
            app::library::UPLOAD_PATH,
            axum::routing::post(model_upload::upload_model).layer(
                axum::extract::DefaultBodyLimit::max(model_upload::body_limit(&state.library)),
            ),
        )
        .route(
            app::runs::dataset::UPLOAD_PATH,
            axum::routing::post(data_upload::upload_data).layer(
                axum::extract::DefaultBodyLimit::max(data_upload::BODY_LIMIT),
            ),
        )
        .leptos_routes_with_context(&state, routes, provide_pool.clone(), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(provide_pool, shell))
        .layer(middleware::from_fn(crate::sessions::renew_daily))
        .layer(sessions)
        .merge(static_files)
        .layer(middleware::from_fn(server_fn_error_status))
        .layer(middleware::from_fn(same_origin::same_origin_only))
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(CompressionLayer::new())
                .layer(cache_control("no-store"))
                .layer(header_if_absent(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header_if_absent(header::X_FRAME_OPTIONS, "DENY"))
                // `same-origin`, not `no-referrer`: with no-referrer, browsers send `Origin: null`
                // on the site's own form posts, which the cross-site guard must refuse.
                .layer(header_if_absent(header::REFERRER_POLICY, "same-origin"))
                .layer(header_if_absent(
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
                     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
                     frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
                )),
        )
        .with_state(state)
}

/// A 303 back to the page at `path`, which tells `outcome` once (kept in the session under
/// `page`): how the upload forms, which work without the page's script, say what happened.
async fn redirect_telling(
    session: &tower_sessions::Session,
    path: &'static str,
    page: &str,
    outcome: app::flash::Outcome,
) -> Response {
    if let Err(error) = app::flash::ssr::keep(session, page, outcome).await {
        return error_response(error);
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, path)]).into_response()
}

/// Sets header `name` to `value` on responses that do not set it themselves.
fn header_if_absent(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Sets `Cache-Control` to `value` on responses that do not set it themselves.
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

/// An [`AppError`] as a plain-text response with its status (and `Retry-After` for 429
/// and 503).
fn error_response(error: AppError) -> Response {
    let mut response = (error.status(), error.to_string()).into_response();
    if let Some(secs) = error.retry_after_secs() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
