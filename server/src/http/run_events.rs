//! `GET /api/runs/{id}/events`: a run's stored events, then its live ones.

use super::{AppState, error_response};
use app::auth::ssr::caller_of;
use app::error::AppError;
use app::live::{RUN_EVENT, RUN_STATUS_EVENT};
use app::runs::environment::{RunChange, RunUpdate};
use app::runs::event_log::EventLog;
use axum::extract::{ConnectInfo, Path, State};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::sync::broadcast;
use tower_sessions::Session;

/// A stored run event as SSE, with its sequence number as the id.
fn run_event(seq: i64, payload: String) -> Event {
    Event::default()
        .id(seq.to_string())
        .event(RUN_EVENT)
        .data(payload)
}

/// The SSE event that says the run's status may have changed.
fn status_event(run_id: i64) -> Event {
    Event::default()
        .event(RUN_STATUS_EVENT)
        .data(run_id.to_string())
}

/// `GET /api/runs/{id}/events`: a run's stored events (after `Last-Event-ID`, when the
/// browser reconnects) and then its new ones live, each with its sequence number as the
/// SSE id, so a reconnect or reload sees the whole history with no gap or duplicate.
/// Status changes come as `status` events without an id. A listener that falls behind the
/// live broadcast catches up from the database within the same stream.
pub(super) async fn stream_run_events(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    session: Session,
    Path(run_id): Path<i64>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    let caller = caller_of(&session, &state.pool)
        .await
        .map_err(error_response)?;
    app::runs::access::check_access(&state.pool, &caller, run_id)
        .await
        .map_err(error_response)?;
    let place = state
        .live_streams
        .open(&caller, remote.ip())
        .map_err(error_response)?;
    let after: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // Subscribe before reading the history, so nothing falls between the two.
    let updates = state.run_env.events.subscribe();
    let log = EventLog::new(state.pool.clone());
    let history = log
        .after(run_id, after)
        .await
        .map_err(|e| error_response(AppError::from(e)))?;
    let last_sent = history.last().map_or(after, |row| row.seq);
    let stored = futures_util::stream::iter(
        history
            .into_iter()
            .map(|row| Ok(run_event(row.seq, row.payload))),
    );
    let live = futures_util::stream::unfold(
        (updates, state.shutdown.clone(), last_sent, VecDeque::new()),
        move |(mut updates, mut shutdown, mut last_sent, mut missed)| {
            let log = log.clone();
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
                        let event = run_event(seq, payload);
                        return Some((Ok(event), (updates, shutdown, last_sent, missed)));
                    }
                    tokio::select! {
                        received = updates.recv() => match received {
                            // Notices may have been missed (this node's database listener
                            // reconnected), or this listener fell too far behind: catch up
                            // from the database in this same stream, then say the status may
                            // have changed meanwhile.
                            Ok(RunUpdate { change: RunChange::Resync, .. })
                            | Err(broadcast::error::RecvError::Lagged(_)) => {
                                let stored = log.after(run_id, last_sent).await;
                                // If the database fails, end the stream: the browser
                                // reconnects with its Last-Event-ID.
                                missed.extend(stored.ok()?.into_iter().map(|row| (row.seq, row.payload)));
                                let event = status_event(run_id);
                                return Some((Ok(event), (updates, shutdown, last_sent, missed)));
                            }
                            Ok(RunUpdate { run_id: id, .. }) if id != run_id => continue,
                            Ok(RunUpdate { change: RunChange::Event(seq, payload), .. }) => {
                                if seq <= last_sent {
                                    continue;
                                }
                                last_sent = seq;
                                let event = run_event(seq, payload);
                                return Some((Ok(event), (updates, shutdown, last_sent, missed)));
                            }
                            Ok(RunUpdate { change: RunChange::Status, .. }) => {
                                let event = status_event(run_id);
                                return Some((Ok(event), (updates, shutdown, last_sent, missed)));
                            }
                            // Stored by a worker on another node: read it from the database.
                            Ok(RunUpdate { change: RunChange::StoredUpTo(seq), .. }) => {
                                if seq <= last_sent || missed.back().is_some_and(|(read, _)| *read >= seq) {
                                    continue;
                                }
                                missed.extend(log.after(run_id, last_sent).await.ok()?.into_iter().map(|row| (row.seq, row.payload)));
                                continue;
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        _ = shutdown.changed() => return None,
                    }
                }
            }
        },
    );
    // The stream holds its place until the page closes.
    let stream = stored.chain(live).map(move |event| {
        let _held = &place;
        event
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
