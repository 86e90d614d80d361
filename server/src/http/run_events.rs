//! `GET /api/runs/{id}/events`: a run's stored events, then its live ones.

use super::{AppState, error_response};
use app::auth::ssr::caller_of;
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

/// Stored events read from the database at a time, for the history and each catch-up.
const HISTORY_PAGE: usize = 500;

/// Where one page's stream stands.
struct Reader {
    /// Every run update on this node.
    updates: broadcast::Receiver<RunUpdate>,
    /// Set when the server shuts down.
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The sequence number of the last event sent.
    last_sent: i64,
    /// Events read from the database, not yet sent.
    read: VecDeque<(i64, String)>,
    /// Whether the database may hold events after `last_sent` that were not read.
    behind: bool,
    /// Whether a status event is due once the events read back have gone out (after a
    /// catch-up, so the page sees the status after the events that came before it).
    status_due: bool,
}

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
/// Status changes come as `status` events without an id. The history is read in pages of
/// [`HISTORY_PAGE`] as the stream is consumed; a listener that falls behind the live
/// broadcast catches up from the database the same way, within the same stream.
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
    // The history goes out a page at a time, read as the stream is consumed; so does every
    // catch-up later (after falling behind, or a notice from another node).
    let stream = futures_util::stream::unfold(
        Reader {
            updates,
            shutdown: state.shutdown.clone(),
            last_sent: after,
            read: VecDeque::new(),
            behind: true,
            status_due: false,
        },
        move |mut reader| {
            let log = log.clone();
            async move {
                loop {
                    if *reader.shutdown.borrow() {
                        return None;
                    }
                    // Events read back from the database go first.
                    if let Some((seq, payload)) = reader.read.pop_front() {
                        if seq <= reader.last_sent {
                            continue;
                        }
                        reader.last_sent = seq;
                        return Some((Ok(run_event(seq, payload)), reader));
                    }
                    if reader.behind {
                        // If the database fails, end the stream: the browser reconnects
                        // with its Last-Event-ID.
                        let page = log
                            .page(run_id, reader.last_sent, HISTORY_PAGE)
                            .await
                            .ok()?;
                        reader.behind = page.len() == HISTORY_PAGE;
                        reader
                            .read
                            .extend(page.into_iter().map(|row| (row.seq, row.payload)));
                        continue;
                    }
                    if reader.status_due {
                        reader.status_due = false;
                        return Some((Ok(status_event(run_id)), reader));
                    }
                    tokio::select! {
                        received = reader.updates.recv() => match received {
                            // Notices may have been missed (this node's database listener
                            // reconnected), or this listener fell too far behind: catch up
                            // from the database, then say the status may have changed.
                            Ok(RunUpdate { change: RunChange::Resync, .. })
                            | Err(broadcast::error::RecvError::Lagged(_)) => {
                                reader.behind = true;
                                reader.status_due = true;
                                continue;
                            }
                            Ok(RunUpdate { run_id: id, .. }) if id != run_id => continue,
                            Ok(RunUpdate { change: RunChange::Event(seq, payload), .. }) => {
                                if seq <= reader.last_sent {
                                    continue;
                                }
                                reader.last_sent = seq;
                                return Some((Ok(run_event(seq, payload)), reader));
                            }
                            Ok(RunUpdate { change: RunChange::Status, .. }) => {
                                return Some((Ok(status_event(run_id)), reader));
                            }
                            // Stored by a worker on another node: read it from the database.
                            Ok(RunUpdate { change: RunChange::StoredUpTo(seq), .. }) => {
                                reader.behind = seq > reader.last_sent;
                                continue;
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        _ = reader.shutdown.changed() => return None,
                    }
                }
            }
        },
    );
    // The stream holds its place until the page closes.
    let stream = stream.map(move |event| {
        let _held = &place;
        event
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
