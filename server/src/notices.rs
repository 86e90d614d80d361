//! Live changes across nodes. On PostgreSQL, every node LISTENs on the
//! [`CHANNEL`](app::live::ssr::CHANNEL) that the [`Notifier`](app::live::ssr::Notifier)s of
//! all nodes NOTIFY on, and passes each notice on to its own open pages and workers: a run
//! trained on a worker node, a phase changed through another web node or a new grade reach
//! every page within a second. Notices carry ids only; the streams read the rows. On SQLite
//! there is one node, and its in-process broadcasts already reach every page.

use crate::config::Config;
use app::live::ssr::{CHANNEL, ClassChanged, ClassEvents, Notice};
use app::runs::environment::{RunChange, RunEnvironment, RunUpdate};
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How long the listener waits before trying to reach the database again.
const RETRY_WAIT: Duration = Duration::from_secs(1);

/// Starts this node's listener when the database is shared (PostgreSQL).
pub fn listen_if_shared(
    config: &Config,
    pool: &app::db::DbPool,
    runs: &RunEnvironment,
    classes: &ClassEvents,
    shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    app::db::is_postgres(pool).then(|| {
        tokio::spawn(listen(
            config.database_url.clone(),
            runs.notifier.origin().to_string(),
            runs.events.clone(),
            runs.wake.clone(),
            classes.0.clone(),
            shutdown,
        ))
    })
}

/// Passes the other nodes' notices on `CHANNEL` (this node is `origin`) to this node's
/// broadcasts until shutdown. When the
/// connection drops, it reconnects and tells every stream to catch up from the database,
/// so a notice missed meanwhile leaves no gap (and the streams' sequence numbers leave no
/// duplicate).
async fn listen(
    url: String,
    origin: String,
    runs: broadcast::Sender<RunUpdate>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    classes: broadcast::Sender<ClassChanged>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = loop {
        match connect(&url).await {
            Ok(listener) => break listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for other nodes' changes yet; retrying");
                if wait_or_stop(&mut shutdown).await {
                    return;
                }
            }
        }
    };
    tracing::info!("listening for other nodes' changes");
    loop {
        tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => match Notice::parse(notification.payload()) {
                    // This node's own notices have reached its pages already.
                    Some((from, _)) if from == origin => {}
                    Some((_, notice)) => {
                        // A run queued (or requeued) on another node: this node's idle
                        // workers look at the queue now rather than at their next poll.
                        if matches!(notice, Notice::RunStatus(_)) {
                            wake.notify_one();
                        }
                        pass_on(notice, &runs, &classes);
                    }
                    None => tracing::warn!(payload = notification.payload(), "an unreadable notice"),
                },
                // The connection dropped. Reconnect now (a query on the listener reconnects
                // and listens again), then catch up on what was missed meanwhile.
                Ok(None) => {
                    tracing::warn!("lost the connection that listens for other nodes; reconnecting");
                    while let Err(error) = sqlx::query("SELECT 1").execute(&mut listener).await {
                        tracing::warn!(%error, "cannot reach the database yet; retrying");
                        if wait_or_stop(&mut shutdown).await {
                            return;
                        }
                    }
                    resync(&runs, &classes);
                }
                Err(error) => {
                    tracing::warn!(%error, "listening for other nodes failed; retrying");
                    if wait_or_stop(&mut shutdown).await {
                        return;
                    }
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// A listener on [`CHANNEL`].
async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Waits [`RETRY_WAIT`]; true when the server is shutting down meanwhile.
async fn wait_or_stop(shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(RETRY_WAIT) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// Passes one notice on to this node's pages and workers.
fn pass_on(
    notice: Notice,
    runs: &broadcast::Sender<RunUpdate>,
    classes: &broadcast::Sender<ClassChanged>,
) {
    match notice {
        Notice::Class(class_id) => {
            let _ = classes.send(ClassChanged {
                class_id: Some(class_id),
            });
        }
        Notice::RunEvent(run_id, seq) => {
            let _ = runs.send(RunUpdate {
                run_id,
                change: RunChange::StoredUpTo(seq),
            });
        }
        Notice::RunStatus(run_id) => {
            let _ = runs.send(RunUpdate {
                run_id,
                change: RunChange::Status,
            });
        }
    }
}

/// Tells every stream to read what it may have missed from the database.
fn resync(runs: &broadcast::Sender<RunUpdate>, classes: &broadcast::Sender<ClassChanged>) {
    let _ = runs.send(RunUpdate {
        run_id: 0,
        change: RunChange::Resync,
    });
    let _ = classes.send(ClassChanged { class_id: None });
}
