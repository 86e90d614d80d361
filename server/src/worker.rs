//! The training worker: claims queued runs from the database with a lease, drives the
//! trainer on a blocking thread, persists every event with a per-run sequence number and
//! broadcasts it, and keeps the lease alive with a heartbeat.
//!
//! A run whose lease expired (its server crashed) goes back to the queue and resumes from
//! its latest checkpoint; events it had already stored are not stored again, so its
//! history has no gap and no duplicate. The queue is round robin across teams. The server
//! runs one worker per training slot (`JIGSAW_TRAINING_SLOTS`, default 1); each claims and
//! trains runs on its own. With one slot a CPU run is reproducible from its seed; with more,
//! concurrent runs share the backend's process-wide random generator.

use app::db::DbPool;
use app::runs::RunStatus;
use app::runs::environment::{RunChange, RunEnvironment, RunUpdate};
use app::runs::event_log::EventLog;
use app::runs::queue::{ClaimedRun, RunEnding, RunQueue};
use app::runs::timing::unix_now;
use run_protocol::estimate::VALIDATE_EVERY;
use run_protocol::{EvalSplit, Event, EventKind, RunSettings};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use trainer::device::ComputeDevice;
use trainer::optim::OptimizerChoice;
use trainer::train::{CancelToken, TrainConfig};

mod outcome;
mod retry;
pub mod warm_up;

use outcome::{TimingNotes, ending_of, without_server_paths};
use retry::{append_retrying, retrying};

/// The sentence every run's attention is shown for, before and after fine-tuning.
pub const FIXED_PROBE: &str = "the movie was not good .";

/// How long a claim holds without a heartbeat.
const LEASE: Duration = Duration::from_secs(15);
/// How often the lease is renewed and cancellation checked.
const HEARTBEAT: Duration = Duration::from_secs(3);
/// How often the queue is looked at when nothing wakes the worker.
const IDLE_POLL: Duration = Duration::from_secs(2);

/// What the worker needs.
#[derive(Clone)]
pub struct Worker {
    /// The database holding the queue.
    pub pool: DbPool,
    /// Models folder, wake-up and broadcast channel shared with the web side.
    pub env: RunEnvironment,
    /// The device runs train on.
    pub device: ComputeDevice,
    /// Where each run keeps its checkpoints and exported model (`<runs_dir>/<id>/`).
    pub runs_dir: PathBuf,
    /// Identifies this process in leases.
    pub owner: String,
    /// Turns true when runs may be claimed: a GPU node warms its kernels up first
    /// ([`warm_up::start`]).
    pub ready: watch::Receiver<bool>,
}

/// What every web run with `settings` trains with on this node, before its own folders and
/// time limit ([`Worker::train_config`]): the warm-up ([`warm_up`]) compiles for the same.
fn run_config(env: &RunEnvironment, settings: &RunSettings) -> TrainConfig {
    let mut probes = vec![FIXED_PROBE.to_string()];
    if !settings.probe_sentence.is_empty() && settings.probe_sentence != FIXED_PROBE {
        probes.push(settings.probe_sentence.clone());
    }
    TrainConfig {
        model_dir: env.models_dir.join(&settings.model),
        sst2_dir: env.data.dir.clone(),
        settings: settings.clone(),
        validation_size: env.data.validation_size,
        eval_every: Some(VALIDATE_EVERY),
        probe_sentences: probes,
        checkpoint_dir: None,
        checkpoint_every: None,
        export_dir: None,
        readback_every: None,
        resume_at_most: None,
        optimizer: OptimizerChoice::Auto,
        test_each_epoch: false,
        keep_best: true,
        time_limit: None,
    }
}

impl Worker {
    /// Runs the worker until `shutdown` turns true. A run in progress is then stopped at
    /// its next step and left to resume from its checkpoint at the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // A run claimed during the warm-up would only wait inside its first step for the
        // same compilation; queued, it waits where its page shows it waiting.
        let mut ready = self.ready.clone();
        tokio::select! {
            _ = ready.wait_for(|ready| *ready) => {}
            Ok(_) = shutdown.wait_for(|stop| *stop) => return,
        }
        let mut said_data_missing = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Without training data every run would fail: leave them queued for a node
            // that has it, or until the instructor adds it here.
            if let Err(problem) = self.env.data.checked().await {
                if !said_data_missing {
                    tracing::warn!(
                        "this node claims no run until SST-2 is installed: {problem} (add it \
                         on the instructor's Training data page or with `jigsaw-lab data add`)"
                    );
                    said_data_missing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            said_data_missing = false;
            if let Err(error) = self.requeue_expired().await {
                tracing::warn!(%error, "could not requeue expired runs");
            }
            match self.claim().await {
                Ok(Some(run)) => self.execute(run, shutdown.clone()).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.env.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not claim a run");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
        }
    }

    /// The queue in this worker's database.
    fn queue(&self) -> RunQueue {
        RunQueue::new(self.pool.clone())
    }

    /// When a lease taken or renewed now runs out (seconds since the epoch).
    fn lease_until() -> i64 {
        unix_now() + LEASE.as_secs() as i64
    }

    /// Puts runs whose lease expired back in the queue.
    async fn requeue_expired(&self) -> Result<(), sqlx::Error> {
        let requeued = self.queue().requeue_expired(unix_now()).await?;
        if requeued > 0 {
            tracing::info!(runs = requeued, "requeued runs whose lease expired");
        }
        Ok(())
    }

    /// Claims the next run (see [`RunQueue::claim`]) and tells live pages.
    async fn claim(&self) -> Result<Option<ClaimedRun>, sqlx::Error> {
        let claimed = self.queue().claim(&self.owner, Self::lease_until()).await?;
        if let Some(run) = &claimed {
            self.announce(run.id);
        }
        Ok(claimed)
    }

    /// Tells live pages a run's status changed.
    fn announce(&self, run_id: i64) {
        self.env.announce(run_id);
    }

    /// The trainer's settings for a run: [`run_config`], with the run's own folders and
    /// time limit.
    fn train_config(&self, run: &ClaimedRun) -> TrainConfig {
        let dir = self.runs_dir.join(run.id.to_string());
        TrainConfig {
            checkpoint_dir: Some(dir.join("checkpoints")),
            checkpoint_every: Some(Duration::from_secs(120)),
            export_dir: Some(self.env.model_dir(run.id)),
            time_limit: Some(Duration::from_secs(run.minutes_limit.max(1) as u64 * 60)),
            ..run_config(&self.env, &run.settings)
        }
    }

    /// Trains one claimed run to its end (or until shutdown), storing its events.
    async fn execute(&self, run: ClaimedRun, mut shutdown: watch::Receiver<bool>) {
        let mut history = match History::load(&self.pool, run.id).await {
            Ok(history) => history,
            Err(error) => {
                tracing::error!(%error, run = run.id, "could not read the run's history");
                return;
            }
        };
        // Checkpoint files can be ahead of the stored events after a crash: resume from one
        // the stored steps reach, so the run's history keeps no gap.
        let config = TrainConfig {
            resume_at_most: Some(history.last_step),
            ..self.train_config(&run)
        };
        let cancel = CancelToken::default();
        let (sender, mut receiver) = mpsc::unbounded_channel::<Event>();
        let device = self.device.clone();
        let training = tokio::task::spawn_blocking({
            let cancel = cancel.clone();
            move || {
                trainer::train::train(&config, &device, &cancel, &mut |event| {
                    let _ = sender.send(event);
                })
            }
        });
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        // A Cancel pressed on this server arrives at once; the heartbeat catches the rest.
        let mut updates = self.env.events.subscribe();
        let mut interrupted = false;
        let mut outcome: Option<RunEnding> = None;
        let mut timing = TimingNotes::default();
        loop {
            tokio::select! {
                event = receiver.recv() => {
                    let Some(event) = event else { break };
                    timing.note(&event);
                    // The page draws the last layer's mean; the stored event holds just that.
                    let event = without_server_paths(event.summarized(), run.id);
                    if let Some(ending) = ending_of(&event) {
                        if interrupted && matches!(event, Event::Cancelled { .. }) {
                            continue; // stopped for a restart, not by a person
                        }
                        outcome = Some(ending);
                    }
                    if let Err(error) = history.store(&self.pool, &self.env, run.id, &event).await {
                        tracing::error!(%error, run = run.id, "could not store a run event");
                    }
                }
                update = updates.recv() => {
                    let ours = match update {
                        Ok(RunUpdate { run_id, change: RunChange::Status }) => run_id == run.id,
                        Ok(RunUpdate { change: RunChange::Resync, .. }) => true,
                        Ok(_) => false,
                        Err(_) => true,
                    };
                    if ours && self.cancel_requested(run.id).await.unwrap_or(false) {
                        cancel.cancel();
                    }
                }
                _ = heartbeat.tick() => {
                    match self.renew(run.id).await {
                        Ok(Renewal::Held { cancel_requested }) => if cancel_requested { cancel.cancel() },
                        Ok(Renewal::Lost) => {
                            tracing::warn!(run = run.id, "lease lost; stopping this copy of the run");
                            interrupted = true;
                            cancel.cancel();
                        }
                        Err(error) => tracing::warn!(%error, run = run.id, "heartbeat failed"),
                    }
                }
                _ = shutdown.changed(), if !interrupted => {
                    tracing::info!(run = run.id, "shutting down: the run will resume from its checkpoint");
                    interrupted = true;
                    cancel.cancel();
                }
            }
        }
        let _ = training.await;
        let result = match outcome {
            Some(mut ending) => {
                let family =
                    trainer::loader::read_config(&self.env.models_dir.join(&run.settings.model))
                        .ok()
                        .map(|config| config.family);
                ending.timing = timing.measured(
                    &run,
                    family,
                    self.env.data.validation_size,
                    &self.env.device,
                );
                self.finish(run.id, &ending).await
            }
            None if interrupted => self.release(run.id).await,
            None => {
                let ending = RunEnding {
                    status: RunStatus::Failed,
                    message: Some(
                        "The training engine stopped without saying why; see the server log."
                            .into(),
                    ),
                    accuracies: None,
                    timing: None,
                };
                self.finish(run.id, &ending).await
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, run = run.id, "could not record the run's end");
        }
    }

    /// Extends the lease; says whether someone asked to cancel.
    async fn renew(&self, run_id: i64) -> Result<Renewal, sqlx::Error> {
        let queue = self.queue();
        if !queue
            .renew(run_id, &self.owner, Self::lease_until())
            .await?
        {
            return Ok(Renewal::Lost);
        }
        Ok(Renewal::Held {
            cancel_requested: queue.cancel_requested(run_id).await?,
        })
    }

    /// Whether someone pressed Cancel on the run.
    async fn cancel_requested(&self, run_id: i64) -> Result<bool, sqlx::Error> {
        self.queue().cancel_requested(run_id).await
    }

    /// Records a run's end, if this worker still holds it.
    async fn finish(&self, run_id: i64, ending: &RunEnding) -> Result<(), sqlx::Error> {
        let queue = self.queue();
        retrying("recording the run's end", run_id, || {
            queue.finish(run_id, &self.owner, ending)
        })
        .await?;
        self.announce(run_id);
        Ok(())
    }

    /// Gives an unfinished run back to the queue (it resumes from its checkpoint).
    async fn release(&self, run_id: i64) -> Result<(), sqlx::Error> {
        self.queue().release(run_id, &self.owner).await?;
        self.announce(run_id);
        Ok(())
    }
}

/// What a heartbeat found.
enum Renewal {
    /// Still ours.
    Held {
        /// Someone pressed Cancel.
        cancel_requested: bool,
    },
    /// Another worker requeued or took the run.
    Lost,
}

/// What a run has already stored, so a resumed run adds only what is new.
struct History {
    next_seq: i64,
    last_step: usize,
    evals: HashSet<(usize, EvalSplit)>,
    attention: HashSet<(usize, String)>,
    checkpoints: HashSet<usize>,
}

impl History {
    async fn load(pool: &DbPool, run_id: i64) -> Result<Self, sqlx::Error> {
        let rows = EventLog::new(pool.clone()).after(run_id, 0).await?;
        let mut history = History {
            next_seq: rows.last().map_or(1, |row| row.seq + 1),
            last_step: 0,
            evals: HashSet::new(),
            attention: HashSet::new(),
            checkpoints: HashSet::new(),
        };
        for row in rows {
            match serde_json::from_str::<Event>(&row.payload) {
                Ok(event) => history.note(&event),
                Err(error) => tracing::warn!(
                    run = run_id,
                    seq = row.seq,
                    %error,
                    "a stored run event does not parse; resuming without it"
                ),
            }
        }
        Ok(history)
    }

    /// Whether `event` is already stored (a resumed run repeats the steps after its
    /// checkpoint).
    fn already_stored(&self, event: &Event) -> bool {
        match event {
            Event::Step { step, .. } => *step <= self.last_step,
            Event::Eval { step, split, .. } => self.evals.contains(&(*step, *split)),
            Event::Attention { step, sentence, .. } => {
                self.attention.contains(&(*step, sentence.clone()))
            }
            Event::Checkpoint { step } => self.checkpoints.contains(step),
            _ => false,
        }
    }

    fn note(&mut self, event: &Event) {
        match event {
            Event::Step { step, .. } => self.last_step = self.last_step.max(*step),
            Event::Eval { step, split, .. } => {
                self.evals.insert((*step, *split));
            }
            Event::Attention { step, sentence, .. } => {
                self.attention.insert((*step, sentence.clone()));
            }
            Event::Checkpoint { step } => {
                self.checkpoints.insert(*step);
            }
            _ => {}
        }
    }

    /// Stores and broadcasts `event` unless it is already stored.
    async fn store(
        &mut self,
        pool: &DbPool,
        env: &RunEnvironment,
        run_id: i64,
        event: &Event,
    ) -> Result<(), sqlx::Error> {
        if self.already_stored(event) {
            return Ok(());
        }
        let (kind, payload) = match serde_json::to_string(event) {
            Ok(payload) => (event.kind(), payload),
            Err(e) => (
                EventKind::Failed,
                format!("{{\"type\":\"failed\",\"reason\":\"unserialisable event: {e}\"}}"),
            ),
        };
        append_retrying(
            &EventLog::new(pool.clone()),
            run_id,
            self.next_seq,
            kind,
            &payload,
        )
        .await?;
        env.publish_event(run_id, self.next_seq, payload);
        self.next_seq += 1;
        self.note(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_that_keeps_killing_its_worker_fails_with_an_explanation() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = crate::db::connect_and_migrate(&url).await.unwrap();
        for sql in [
            "INSERT INTO instructors (id, username, password_hash) VALUES (1, 't', 'x')",
            "INSERT INTO classes (id, instructor_id, name, join_code) VALUES (1, 1, 'c', 'ABCDEF')",
            "INSERT INTO teams (id, class_id, name) VALUES (1, 1, 'Red')",
            // Both were running when their worker died; the second has died twice before.
            "INSERT INTO runs (id, class_id, team_id, submitted_by, settings, status, lease_expires_at, crashes) \
             VALUES (1, 1, 1, 'Ana', '{}', 'running', 10, 0), (2, 1, 1, 'Ana', '{}', 'running', 10, 2)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let queue = RunQueue::new(pool.clone());
        assert_eq!(queue.requeue_expired(100).await.unwrap(), 1);
        let rows: Vec<(String, i64, Option<String>)> =
            sqlx::query_as("SELECT status, crashes, message FROM runs ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!((rows[0].0.as_str(), rows[0].1), ("queued", 1));
        assert_eq!((rows[1].0.as_str(), rows[1].1), ("failed", 3));
        let message = rows[1].2.as_deref().unwrap();
        assert!(
            message.contains("3 times") && message.contains("smaller batch"),
            "{message}"
        );
    }
}
