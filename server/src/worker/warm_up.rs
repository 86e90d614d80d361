//! A GPU training node's start-up warm-up: before its workers claim a run, the node
//! compiles and autotunes the kernels of the runs a class starts most (the default model at
//! the run form's defaults, fully fine-tuned and with LoRA) with [`trainer::train::warm_up`].
//! A run queued meanwhile waits in the queue instead of waiting for the same compilation
//! inside its first step, and every run after it reaches its first loss point without
//! compiling. A CPU node compiles nothing and claims at once.

use super::run_config;
use app::runs::environment::RunEnvironment;
use run_protocol::settings::{DEFAULT_LORA_RANK, DEFAULT_MODEL};
use run_protocol::{LoraSettings, Method, RunSettings};
use tokio::sync::watch;
use trainer::device::{BackendKind, ComputeDevice};
use trainer::train::{CancelToken, TrainConfig};

/// The runs warmed up for: the default model at the form's defaults, trained fully and
/// with LoRA at the default rank, as a worker would train them ([`super::run_config`]).
fn warm_up_runs(env: &RunEnvironment) -> Vec<TrainConfig> {
    [
        Method::Full,
        Method::Lora(LoraSettings::new(
            DEFAULT_LORA_RANK,
            LoraSettings::default_alpha(DEFAULT_LORA_RANK),
        )),
    ]
    .into_iter()
    .map(|method| {
        let mut settings = RunSettings::default();
        settings.set_method(method);
        run_config(env, &settings)
    })
    .collect()
}

/// Starts the warm-up on `device` and returns a flag that turns true when the workers may
/// claim runs: at once on a CPU, else when the warm-up has ended (done, failed or
/// stopped by `shutdown`). A failed warm-up is logged; runs then compile as they go.
pub fn start(
    device: &ComputeDevice,
    env: &RunEnvironment,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    if device.kind() == BackendKind::Cpu {
        return watch::channel(true).1;
    }
    let (ready, receiver) = watch::channel(false);
    let device = device.clone();
    let env = env.clone();
    tokio::spawn(async move {
        if let Err(problem) = env.data.checked().await {
            tracing::info!("no GPU warm-up: {problem}; runs compile the GPU's kernels as they go");
            let _ = ready.send(true);
            return;
        }
        let cancel = CancelToken::default();
        let began = std::time::Instant::now();
        tracing::info!(
            model = DEFAULT_MODEL,
            "warming the GPU's kernels up (compiling and autotuning); runs wait in the queue until it ends"
        );
        let warming = tokio::task::spawn_blocking({
            let cancel = cancel.clone();
            move || {
                for config in warm_up_runs(&env) {
                    let method = match config.settings.method() {
                        Method::Full => "full fine-tuning",
                        Method::Lora(_) => "LoRA",
                    };
                    match trainer::train::warm_up(&config, &device, &cancel) {
                        Ok(done) if done.complete => tracing::info!(
                            method,
                            seconds = format!("{:.1}", done.seconds),
                            batches = done.batches.len(),
                            "GPU kernels warmed up"
                        ),
                        Ok(_) => return,
                        Err(reason) => tracing::warn!(
                            method,
                            %reason,
                            "the GPU warm-up failed; runs compile the kernels as they go"
                        ),
                    }
                }
            }
        });
        let stop_asked = async {
            if shutdown.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(warming);
        tokio::select! {
            _ = &mut warming => tracing::info!(
                seconds = format!("{:.1}", began.elapsed().as_secs_f64()),
                "the GPU warm-up has ended; this node now claims runs"
            ),
            _ = stop_asked => {
                cancel.cancel();
                let _ = warming.await;
            }
        }
        let _ = ready.send(true);
    });
    receiver
}
