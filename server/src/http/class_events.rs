//! `GET /api/class-events`: the live stream of changes to one class.

use super::{AppState, error_response};
use app::auth::ssr::caller_of;
use app::live::CLASS_CHANGED_EVENT;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::sync::broadcast;
use tower_sessions::Session;

/// Which class an instructor's event stream is for.
#[derive(Deserialize)]
pub(super) struct ClassQuery {
    class: Option<i64>,
}

/// `GET /api/class-events`: server-sent events, one `class-changed` per change to the
/// caller's class (phase, teams, topics, grades). Ends when the server shuts down.
pub(super) async fn stream_class_events(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    session: Session,
    Query(query): Query<ClassQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    // A student follows their own class; an instructor names one of theirs.
    let caller = caller_of(&session, &state.pool)
        .await
        .map_err(error_response)?;
    let class_id = app::runs::access::viewpoint_of(&state.pool, caller.clone(), query.class)
        .await
        .map_err(error_response)?
        .class_id();
    let place = state
        .live_streams
        .open(&caller, remote.ip())
        .map_err(error_response)?;
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
                        Ok(change) if change.class_id.is_some_and(|id| id != class_id) => continue,
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
    // The stream holds its place until the page closes.
    let stream = futures_util::StreamExt::map(stream, move |event| {
        let _held = &place;
        event
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
