//! The `jigsaw-lab` server: configuration, database, HTTP routes and process lifecycle.
//! The binary in `main.rs` is a thin command-line wrapper around [`serve`] (a web node,
//! training too unless it has no training slots) and [`work`] (a worker node).

pub mod accounts;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod notices;
pub mod sessions;
pub mod worker;

use config::{Config, ConfigError};
use leptos::config::LeptosOptions;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How long shutdown waits for a run in progress to stop.
const WORKER_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Starts the server with `config` and runs until SIGTERM or Ctrl-C.
///
/// Every start-up problem comes back as a [`ConfigError`] naming the setting at fault.
pub async fn serve(config: Config) -> Result<(), ConfigError> {
    let warnings = config.preflight()?;
    let device = config
        .open_device(config.device)
        .map_err(|e| ConfigError::new("JIGSAW_DEVICE", e.to_string()))?;
    tracing::info!(device = %device.description(), "compute device chosen");

    let model_dir = config.default_model_dir();
    let bad_model = |e: String| ConfigError::new("JIGSAW_MODELS_DIR", e);
    let model_config =
        trainer::loader::read_config(&model_dir).map_err(|e| bad_model(e.to_string()))?;
    let tokenizer = trainer::tokenize::TextEncoder::from_file(
        &model_dir.join("tokenizer.json"),
        model_config.max_sequence_len(),
    )
    .map_err(|e| bad_model(e.to_string()))?;
    let predictor = trainer::inference::Predictor::load(
        &model_dir,
        Some(app::models::VIEWER_MAX_TOKENS),
        device.device(),
    )
    .map_err(|e| bad_model(e.to_string()))?;

    let pool = db::connect_and_migrate(&config.database_url).await?;
    let listener = TcpListener::bind(config.bind).await.map_err(|e| {
        ConfigError::new(
            "JIGSAW_BIND",
            format!("cannot listen on {}: {e}", config.bind),
        )
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| ConfigError::new("JIGSAW_BIND", e.to_string()))?;

    let leptos_options = LeptosOptions::builder()
        .output_name(app::OUTPUT_NAME)
        .site_root(config.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(address)
        .build();
    let (shutdown_sender, shutdown_receiver) = tokio::sync::watch::channel(false);
    let owner = format!("{}-{}-{}", host_name(), std::process::id(), address.port());
    let node = NodeTasks::start(&config, &device, &pool, &owner, &shutdown_receiver);
    let state = http::AppState {
        leptos_options,
        pool: pool.clone(),
        status: Arc::new(http::ServerStatus {
            role: if config.training_slots == 0 {
                "web"
            } else {
                "web and training"
            },
            device: device.description(),
        }),
        tokenizer: app::widgets::DefaultTokenizer(Arc::new(tokenizer)),
        models: app::models::ModelService::new(
            config::DEFAULT_MODEL.to_string(),
            predictor,
            model_config,
        ),
        class_events: node.class_events.clone(),
        throttles: app::throttle::Throttles::default(),
        secure_cookies: config.secure_cookies,
        shutdown: shutdown_receiver,
        run_env: node.run_env.clone(),
        live_streams: http::live_streams::LiveStreams::default(),
        library: {
            let library = config.library();
            library.sweep();
            library
        },
        data: {
            let data = node.run_env.data.clone();
            data.sweep();
            data
        },
    };

    // Warnings come only once every fatal check has passed, so a failed start prints one line.
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(%address, "Jigsaw Lab is serving");
    println!("{}", role_line(&config, &device, false));
    println!("Jigsaw Lab listening on http://{address}");
    http::listener::serve(listener, http::router(state), async move {
        shutdown_signal().await;
        // Live event streams end now, so open pages do not hold the shutdown up.
        let _ = shutdown_sender.send(true);
    })
    .await;
    node.stop().await;
    pool.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `jigsaw-lab worker`: a node that trains runs queued in a shared PostgreSQL database and
/// serves no pages, until SIGTERM or Ctrl-C. Its live events reach the web nodes' pages
/// through the database ([`notices`]).
pub async fn work(config: Config) -> Result<(), ConfigError> {
    if !config.database_url.starts_with("postgres") {
        return Err(ConfigError::new(
            config::DATABASE.env,
            "a worker node trains the runs that web nodes queue in a shared PostgreSQL \
             database, but this is SQLite, which lives on one machine: set \
             DATABASE_URL=postgres://…, or run `jigsaw-lab serve`, which trains too"
                .to_string(),
        ));
    }
    if config.training_slots == 0 {
        return Err(ConfigError::new(
            "JIGSAW_TRAINING_SLOTS",
            "a worker node needs at least one training slot".to_string(),
        ));
    }
    let warnings = config.preflight()?;
    let device = config
        .open_device(config.device)
        .map_err(|e| ConfigError::new("JIGSAW_DEVICE", e.to_string()))?;
    let pool = db::connect_and_migrate(&config.database_url).await?;
    let (shutdown_sender, shutdown_receiver) = tokio::sync::watch::channel(false);
    let owner = format!("{}-{}-worker", host_name(), std::process::id());
    let health = match config.health_bind {
        Some(address) => Some(TcpListener::bind(address).await.map_err(|e| {
            ConfigError::new(
                config::HEALTH_BIND.env,
                format!("cannot listen on {address}: {e}"),
            )
        })?),
        None => None,
    };
    let node = NodeTasks::start(&config, &device, &pool, &owner, &shutdown_receiver);
    node.run_env.data.sweep();
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    println!("{}", role_line(&config, &device, true));
    if let Some(listener) = health {
        let router = http::health::worker_router(
            pool.clone(),
            http::ServerStatus {
                role: "worker",
                device: device.description(),
            },
            node.run_env.data.clone(),
        );
        if let Ok(address) = listener.local_addr() {
            println!("Health checks at http://{address}/healthz");
        }
        let mut stop = shutdown_receiver.clone();
        tokio::spawn(async move {
            let until_stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(until_stopped)
                .await
            {
                tracing::warn!("the health listener stopped: {error}");
            }
        });
    }
    shutdown_signal().await;
    let _ = shutdown_sender.send(true);
    node.stop().await;
    pool.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// This machine's name, for naming its nodes ("localhost" when it has none to tell).
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The start-up line that says what this node does and which database it uses.
fn role_line(config: &Config, device: &trainer::device::ComputeDevice, worker: bool) -> String {
    let database = db::redact(&config.database_url);
    match (config.training_slots, worker) {
        (slots, true) => format!(
            "Jigsaw Lab worker node: trains up to {slots} run(s) at once on {}, no web pages; database {database}",
            device.description()
        ),
        (0, _) => format!(
            "Jigsaw Lab web node: serves pages and queues runs for the worker nodes, trains none; database {database}"
        ),
        (slots, _) => format!(
            "Jigsaw Lab web and training node: serves pages and trains up to {slots} run(s) at once on {}; database {database}",
            device.description()
        ),
    }
}

/// What the run server functions and the workers share on this node.
fn run_environment(
    config: &Config,
    device: &trainer::device::ComputeDevice,
    pool: &app::db::DbPool,
) -> app::runs::environment::RunEnvironment {
    app::runs::environment::RunEnvironment {
        models_dir: config.models_dir.clone(),
        max_queued_per_team: config.max_queued_per_team,
        max_runs_per_day: config.max_runs_per_day,
        data: config.training_data(),
        validation_size: config.validation_size,
        device: device.description(),
        examples_per_second: match device.kind() {
            trainer::device::BackendKind::Cpu => run_protocol::estimate::CPU_EXAMPLES_PER_SECOND,
            trainer::device::BackendKind::Gpu => run_protocol::estimate::GPU_EXAMPLES_PER_SECOND,
        },
        wake: Arc::new(tokio::sync::Notify::new()),
        // Room for several seconds of a fast run's events (a small model emits a thousand
        // steps a second); a run page that still falls behind catches up from the database.
        events: tokio::sync::broadcast::channel(16_384).0,
        runs_dir: config.runs_dir.clone(),
        notifier: app::live::ssr::Notifier::new(pool),
    }
}

/// One worker per training slot, each claiming and training runs on its own, and the task
/// that declares the node's device and slots; `owner` names this node in the runs' leases
/// and among the training nodes.
fn spawn_workers(
    config: &Config,
    device: &trainer::device::ComputeDevice,
    pool: &app::db::DbPool,
    run_env: &app::runs::environment::RunEnvironment,
    owner: &str,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ready = match config.training_slots {
        0 => tokio::sync::watch::channel(true).1,
        _ => worker::warm_up::start(device, run_env, shutdown.clone()),
    };
    let presence = (config.training_slots > 0).then(|| {
        tokio::spawn(declare_presence(
            pool.clone(),
            owner.to_string(),
            device.description(),
            config.training_slots,
            run_env.data.clone(),
            ready.clone(),
            shutdown.clone(),
        ))
    });
    (1..=config.training_slots)
        .map(|slot| {
            let worker = worker::Worker {
                pool: pool.clone(),
                env: run_env.clone(),
                device: device.clone(),
                runs_dir: run_env.runs_dir.clone(),
                owner: format!("{owner}-{slot}"),
                ready: ready.clone(),
            };
            tokio::spawn(worker.run(shutdown.clone()))
        })
        .chain(presence)
        .collect()
}

/// Declares this node as a training node while it runs (its device, slots, training
/// sentences and whether it is still warming up, renewed every few seconds and at once when
/// its warm-up ends, for the run form's estimates, wait and data check), and removes it at
/// shutdown. `ready` turns true when the workers may claim runs.
async fn declare_presence(
    pool: app::db::DbPool,
    name: String,
    device: String,
    slots: usize,
    data: app::runs::dataset::ssr::TrainingData,
    mut ready: tokio::sync::watch::Receiver<bool>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use app::runs::timing::{NODE_RENEW_EVERY, TrainingNode, declare_node, forget_node, unix_now};
    let started = unix_now();
    let mut warming_up = !*ready.borrow();
    loop {
        let node = TrainingNode {
            device: device.clone(),
            slots: slots as i64,
            train_examples: data.train_examples().await.map(|n| n as i64),
            warming_up_since: warming_up.then_some(started),
        };
        if let Err(error) = declare_node(&pool, &name, &node).await {
            tracing::warn!(%error, "could not declare this training node");
        }
        tokio::select! {
            _ = tokio::time::sleep(NODE_RENEW_EVERY) => {}
            // A warm-up that ends (or whose task is gone) leaves the node claiming runs.
            _ = ready.wait_for(|ready| *ready), if warming_up => warming_up = false,
            _ = shutdown.changed() => break,
        }
    }
    if let Err(error) = forget_node(&pool, &name).await {
        tracing::warn!(%error, "could not remove this training node; it expires by itself");
    }
}

/// What every node that trains or serves runs beside its pages: the run environment and
/// class broadcast, the database listener (PostgreSQL), and the training workers with the
/// task that declares them.
struct NodeTasks {
    run_env: app::runs::environment::RunEnvironment,
    class_events: app::live::ssr::ClassEvents,
    listener: Option<tokio::task::JoinHandle<()>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl NodeTasks {
    /// Starts them for the node `owner`; they end when `shutdown` turns true.
    fn start(
        config: &Config,
        device: &trainer::device::ComputeDevice,
        pool: &app::db::DbPool,
        owner: &str,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let run_env = run_environment(config, device, pool);
        let class_events = app::live::ssr::ClassEvents::new(run_env.notifier.clone());
        let listener =
            notices::listen_if_shared(config, pool, &run_env, &class_events, shutdown.clone());
        let workers = spawn_workers(config, device, pool, &run_env, owner, shutdown);
        Self {
            run_env,
            class_events,
            listener,
            workers,
        }
    }

    /// Waits for the workers' runs to stop at their next step and go back to the queue,
    /// and for the database listener to end.
    async fn stop(self) {
        if tokio::time::timeout(
            WORKER_STOP_WAIT,
            futures_util::future::join_all(self.workers),
        )
        .await
        .is_err()
        {
            tracing::warn!(
                "a run in progress did not stop in time; it resumes from its checkpoint at the next start"
            );
        }
        if let Some(listener) = self.listener {
            let _ = listener.await;
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing open requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node's row: its warm-up start, or `None` when it has no row.
    async fn warming_up_since(pool: &app::db::DbPool) -> Option<Option<i64>> {
        sqlx::query_scalar("SELECT warming_up_since FROM training_nodes WHERE name = 'gpu-1'")
            .fetch_optional(pool)
            .await
            .unwrap()
    }

    /// Waits up to 5 s for the node's row to read `expected`.
    async fn until_row(pool: &app::db::DbPool, expected: impl Fn(Option<Option<i64>>) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !expected(warming_up_since(pool).await) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the row never changed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_node_says_it_warms_up_until_its_workers_may_claim() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = db::connect_and_migrate(&url).await.unwrap();
        let (ready, ready_receiver) = tokio::sync::watch::channel(false);
        let (shutdown, shutdown_receiver) = tokio::sync::watch::channel(false);
        let before = app::runs::timing::unix_now();
        let presence = tokio::spawn(declare_presence(
            pool.clone(),
            "gpu-1".into(),
            "GPU: test".into(),
            1,
            app::runs::dataset::ssr::TrainingData::new(dir.path().join("none"), 100, true),
            ready_receiver,
            shutdown_receiver,
        ));
        until_row(&pool, |row| row.is_some()).await;
        let since = warming_up_since(&pool).await.unwrap().expect("warming up");
        assert!(since >= before && since <= app::runs::timing::unix_now());
        let nodes = app::runs::timing::live_nodes(&pool).await.unwrap();
        assert!(matches!(
            app::runs::timing::queue_hold(&nodes),
            Some(app::runs::QueueHold::WarmingUp { .. })
        ));
        // The warm-up ends: the row says so at once, not at the next renewal 30 s later.
        ready.send(true).unwrap();
        until_row(&pool, |row| row == Some(None)).await;
        let nodes = app::runs::timing::live_nodes(&pool).await.unwrap();
        assert_eq!(app::runs::timing::queue_hold(&nodes), None);
        shutdown.send(true).unwrap();
        presence.await.unwrap();
        assert_eq!(warming_up_since(&pool).await, None, "the row is removed");
    }
}
