//! The `jigsaw-lab` server: configuration, database, HTTP routes and process lifecycle.
//! The binary in `main.rs` is a thin command-line wrapper around [`serve`].

pub mod accounts;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod sessions;
pub mod worker;

use config::{Config, ConfigError};
use leptos::config::LeptosOptions;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Rough training speed of all-MiniLM-L6-v2 on a 2-core CPU (docs/benchmarks.md), for the
/// run form's duration estimate.
const CPU_EXAMPLES_PER_SECOND: f64 = 16.0;
/// Rough training speed of all-MiniLM-L6-v2 on a data-centre GPU (prototype on an H200, seq
/// 128; see the GPU issue), for the run form's duration estimate.
const GPU_EXAMPLES_PER_SECOND: f64 = 900.0;
/// How long shutdown waits for a run in progress to stop.
const WORKER_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// SST-2 training sentences left after the validation split, if the file is there.
fn count_train_examples(config: &Config) -> Option<usize> {
    let text = std::fs::read_to_string(config.sst2_dir.join("train.tsv")).ok()?;
    let rows = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    rows.checked_sub(config.validation_size)
}

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
    let run_env = app::runs::environment::RunEnvironment {
        models_dir: config.models_dir.clone(),
        max_queued_per_team: config.max_queued_per_team,
        max_runs_per_day: config.max_runs_per_day,
        train_examples: count_train_examples(&config),
        device: device.description(),
        examples_per_second: match device.kind() {
            trainer::device::BackendKind::Cpu => CPU_EXAMPLES_PER_SECOND,
            trainer::device::BackendKind::Gpu => GPU_EXAMPLES_PER_SECOND,
        },
        wake: Arc::new(tokio::sync::Notify::new()),
        // Room for several seconds of a fast run's events (a small model emits a thousand
        // steps a second); a run page that still falls behind catches up from the database.
        events: tokio::sync::broadcast::channel(16_384).0,
        runs_dir: config.data_dir.join("runs"),
    };
    // One worker per training slot, each claiming and training runs on its own.
    let workers: Vec<_> = (1..=config.training_slots)
        .map(|slot| {
            let worker = worker::Worker {
                pool: pool.clone(),
                env: run_env.clone(),
                device: device.clone(),
                sst2_dir: config.sst2_dir.clone(),
                runs_dir: run_env.runs_dir.clone(),
                validation_size: config.validation_size,
                owner: format!("{}-{}-{slot}", std::process::id(), address.port()),
            };
            tokio::spawn(worker.run(shutdown_receiver.clone()))
        })
        .collect();
    let state = http::AppState {
        leptos_options,
        pool: pool.clone(),
        status: Arc::new(http::ServerStatus {
            device: device.description(),
            sst2_warning: config.sst2_warning(),
        }),
        tokenizer: app::widgets::DefaultTokenizer(Arc::new(tokenizer)),
        models: app::models::ModelService::new(
            config::DEFAULT_MODEL.to_string(),
            predictor,
            model_config,
        ),
        class_events: app::live::ssr::ClassEvents::new(),
        throttles: app::throttle::Throttles::default(),
        secure_cookies: config.secure_cookies,
        shutdown: shutdown_receiver,
        run_env,
        live_streams: http::live_streams::LiveStreams::default(),
    };

    // Warnings come only once every fatal check has passed, so a failed start prints one line.
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(%address, "Jigsaw Lab is serving");
    println!("Jigsaw Lab listening on http://{address}");
    http::listener::serve(listener, http::router(state), async move {
        shutdown_signal().await;
        // Live event streams end now, so open pages do not hold the shutdown up.
        let _ = shutdown_sender.send(true);
    })
    .await;
    // Runs in progress stop at their next step and go back to the queue.
    if tokio::time::timeout(WORKER_STOP_WAIT, futures_util::future::join_all(workers))
        .await
        .is_err()
    {
        tracing::warn!(
            "a run in progress did not stop in time; it resumes from its checkpoint at the next start"
        );
    }
    pool.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
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
