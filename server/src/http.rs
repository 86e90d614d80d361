//! The HTTP surface: Leptos pages and server functions, static files, `/healthz`, and the
//! middleware around them (tracing, compression, security and cache headers).

use app::auth::ssr::{JoinLimiter, caller_of, check_class_owner, instructor_only};
use app::classroom::ssr::ClassEvents;
use app::db::DbPool;
use app::error::AppError;
use app::live::CLASS_CHANGED_EVENT;
use app::runs::ssr::{RunEnvironment, RunUpdate};
use app::widgets::{DefaultModel, DefaultTokenizer};
use app::{App, shell};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use futures_util::Stream;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

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
    /// The default model, for the attention viewer.
    pub model: DefaultModel,
    /// Changes to classes, streamed to their open pages.
    pub class_events: ClassEvents,
    /// Counts wrong join codes per address.
    pub join_limiter: JoinLimiter,
    /// Session cookies only over HTTPS (set when served behind TLS).
    pub secure_cookies: bool,
    /// Turns true when the server shuts down, ending the live event streams.
    pub shutdown: watch::Receiver<bool>,
    /// The run queue's shared parts: models, worker wake-up, run events.
    pub run_env: RunEnvironment,
}

/// Sessions last this long without activity.
const SESSION_IDLE_DAYS: i64 = 14;

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
    let class_events = state.class_events.clone();
    let join_limiter = state.join_limiter.clone();
    let run_env = state.run_env.clone();
    let provide_pool = move || {
        provide_context(run_env.clone());
        provide_context(pool.clone());
        provide_context(tokenizer.clone());
        provide_context(model.clone());
        provide_context(class_events.clone());
        provide_context(join_limiter.clone());
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
        .route("/api/class-events", get(stream_class_events))
        .route("/api/runs/{id}/events", get(stream_run_events))
        .route("/runs/{id}/model.zip", get(download_model))
        .route("/instructor/classes/{id}/answers.csv", get(answers_csv))
        .leptos_routes_with_context(&state, routes, provide_pool.clone(), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(provide_pool, shell))
        .layer(sessions)
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

/// An [`AppError`] as a plain-text response with its status.
fn error_response(error: AppError) -> Response {
    (error.status(), error.to_string()).into_response()
}

/// Which class an instructor's event stream is for.
#[derive(Deserialize)]
struct ClassQuery {
    class: Option<i64>,
}

/// `GET /api/class-events`: server-sent events, one `class-changed` per change to the
/// caller's class (phase, teams, topics, grades). Ends when the server shuts down.
async fn stream_class_events(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ClassQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    // A student follows their own class; an instructor names one of theirs.
    let caller = caller_of(&session, &state.pool)
        .await
        .map_err(error_response)?;
    let class_id = app::runs::ssr::viewpoint_of(&state.pool, caller, query.class)
        .await
        .map_err(error_response)?
        .class_id();
    let changes = state.class_events.0.subscribe();
    let stream = futures_util::stream::unfold(
        (changes, state.shutdown.clone()),
        move |(mut changes, mut shutdown)| async move {
            loop {
                if *shutdown.borrow() {
                    return None;
                }
                tokio::select! {
                    received = changes.recv() => match received {
                        Ok(change) if change.class_id != class_id => continue,
                        // A listener that fell behind has missed something: refresh anyway.
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            let event = Event::default().event(CLASS_CHANGED_EVENT).data(class_id.to_string());
                            return Some((Ok(event), (changes, shutdown)));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = shutdown.changed() => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /api/runs/{id}/events`: a run's stored events (after `Last-Event-ID`, when the
/// browser reconnects) and then its new ones live, each with its sequence number as the
/// SSE id, so a reconnect or reload sees the whole history with no gap or duplicate.
/// Status changes come as `status` events without an id. A listener that falls behind the
/// live broadcast catches up from the database within the same stream.
async fn stream_run_events(
    State(state): State<AppState>,
    session: Session,
    Path(run_id): Path<i64>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    let caller = caller_of(&session, &state.pool)
        .await
        .map_err(error_response)?;
    app::runs::ssr::check_access(&state.pool, &caller, run_id)
        .await
        .map_err(error_response)?;
    let after: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // Subscribe before reading the history, so nothing falls between the two.
    let updates = state.run_env.events.subscribe();
    let history: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, payload FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(run_id)
    .bind(after)
    .fetch_all(&state.pool)
    .await
    .map_err(|e| error_response(AppError::from(e)))?;
    let last_sent = history.last().map_or(after, |(seq, _)| *seq);
    let stored = futures_util::stream::iter(history.into_iter().map(|(seq, payload)| {
        Ok(Event::default()
            .id(seq.to_string())
            .event(RUN_EVENT)
            .data(payload))
    }));
    let pool = state.pool.clone();
    let live = futures_util::stream::unfold(
        (updates, state.shutdown.clone(), last_sent, VecDeque::new()),
        move |(mut updates, mut shutdown, mut last_sent, mut missed)| {
            let pool = pool.clone();
            async move {
                loop {
                    if *shutdown.borrow() {
                        return None;
                    }
                    // Events read back from the database after falling behind go first.
                    if let Some((seq, payload)) = missed.pop_front() {
                        if seq <= last_sent {
                            continue;
                        }
                        last_sent = seq;
                        let event = Event::default()
                            .id(seq.to_string())
                            .event(RUN_EVENT)
                            .data(payload);
                        return Some((Ok(event), (updates, shutdown, last_sent, missed)));
                    }
                    tokio::select! {
                        received = updates.recv() => match received {
                            Ok(RunUpdate { run_id: id, .. }) if id != run_id => continue,
                            Ok(RunUpdate { event: Some((seq, payload)), .. }) => {
                                if seq <= last_sent {
                                    continue;
                                }
                                last_sent = seq;
                                let event = Event::default().id(seq.to_string()).event(RUN_EVENT).data(payload);
                                return Some((Ok(event), (updates, shutdown, last_sent, missed)));
                            }
                            Ok(RunUpdate { event: None, .. }) => {
                                let event = Event::default().event(RUN_STATUS_EVENT).data(run_id.to_string());
                                return Some((Ok(event), (updates, shutdown, last_sent, missed)));
                            }
                            // Too slow a listener: catch up from the database in this same
                            // stream, then say the status may have changed meanwhile.
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                let stored: Result<Vec<(i64, String)>, _> = sqlx::query_as(
                                    "SELECT seq, payload FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
                                )
                                .bind(run_id)
                                .bind(last_sent)
                                .fetch_all(&pool)
                                .await;
                                // If the database fails, end the stream: the browser
                                // reconnects with its Last-Event-ID.
                                missed.extend(stored.ok()?);
                                let event = Event::default().event(RUN_STATUS_EVENT).data(run_id.to_string());
                                return Some((Ok(event), (updates, shutdown, last_sent, missed)));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        _ = shutdown.changed() => return None,
                    }
                }
            }
        },
    );
    use futures_util::StreamExt;
    Ok(Sse::new(stored.chain(live)).keep_alive(KeepAlive::default()))
}

/// `GET /runs/{id}/model.zip`: a finished run's fine-tuned model as an HF directory
/// (config.json with id2label, model.safetensors, tokenizer.json), zipped.
async fn download_model(
    State(state): State<AppState>,
    session: Session,
    Path(run_id): Path<i64>,
) -> Response {
    let result = async {
        let caller = caller_of(&session, &state.pool).await?;
        app::runs::ssr::check_access(&state.pool, &caller, run_id).await?;
        let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(&state.pool)
            .await?;
        let dir = state.run_env.model_dir(run_id);
        if status != "succeeded" || !dir.is_dir() {
            return Err(AppError::NotFound(
                "This run has no finished model to download.".into(),
            ));
        }
        tokio::task::spawn_blocking(move || zip_dir(&dir, &format!("jigsaw-run-{run_id}")))
            .await
            .map_err(AppError::internal)?
            .map_err(AppError::internal)
    }
    .await;
    match result {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/zip".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"jigsaw-run-{run_id}.zip\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => error_response(error),
    }
}

/// Zips the files of `dir` (not recursive) under the folder name `root`, uncompressed
/// (model weights hardly compress).
fn zip_dir(dir: &std::path::Path, root: &str) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = format!("{root}/{}", entry.file_name().to_string_lossy());
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        let bytes = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
        zip.write_all(&bytes).map_err(|e| e.to_string())?;
    }
    zip.finish()
        .map(|cursor| cursor.into_inner())
        .map_err(|e| e.to_string())
}

/// The SSE event name of a stored run event.
const RUN_EVENT: &str = app::live::RUN_EVENT;
/// The SSE event name of a run status change.
const RUN_STATUS_EVENT: &str = app::live::RUN_STATUS_EVENT;

/// `GET /instructor/classes/{id}/answers.csv`: the class's answers and grades.
async fn answers_csv(
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
