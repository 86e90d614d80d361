//! Fine-tuning runs from the browser: the run form with its checks, the team's runs with
//! their live queue position, cancelling, the run boards, and the data the pages and the
//! server share about runs. The queue lives in the database ([`queue`], server only); the
//! server's worker claims runs from it and feeds the events back.
//!
//! - [`dataset`]: the SST-2 files runs train on, and the instructor's Training data page;
//! - [`form`]: the run form, its defaults and checks;
//! - [`server_fns`]: submitting, listing, cancelling and trying runs;
//! - [`boards`]: the class's run boards;
//! - [`timing`]: how long runs take on the class machine, estimated and measured;
//! - server only: [`queue`] (all SQL on `runs`), [`event_log`] (all SQL on `run_events`),
//!   [`access`], [`environment`] and [`curves`].

pub mod boards;
pub mod dataset;
pub mod form;
pub mod server_fns;
pub mod timing;

#[cfg(feature = "ssr")]
pub mod access;
#[cfg(feature = "ssr")]
pub mod curves;
#[cfg(feature = "ssr")]
pub mod environment;
#[cfg(feature = "ssr")]
pub mod event_log;
#[cfg(feature = "ssr")]
pub mod queue;

pub use boards::{ClassBoards, RevealBoard, class_boards, reveal_board};
pub use form::{RunForm, default_learning_rate_after_switch, format_rate};
pub use server_fns::{
    CancelRun, LoadQueueWait, LoadRunForm, PrioritizeRun, RUNS_CLOSED, RunDetail, SubmitRun,
    TeamCurves, TeamRuns, TryRunModel, cancel_run, load_queue_wait, load_run_form, prioritize_run,
    run_detail, submit_run, team_curves, team_runs, try_run_model,
};

use run_protocol::RunSettings;
use serde::{Deserialize, Serialize};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a training slot.
    Queued,
    /// Training now.
    Running,
    /// Finished normally.
    Succeeded,
    /// Stopped by an error.
    Failed,
    /// Stopped because the loss became NaN or exploded.
    Diverged,
    /// Stopped by a person.
    Cancelled,
}

impl RunStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Diverged => "diverged",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Every status.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Diverged,
        RunStatus::Cancelled,
    ];

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<RunStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the run can still change.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

impl TryFrom<String> for RunStatus {
    type Error = String;

    /// Reads a stored name; the error names what was stored.
    fn try_from(text: String) -> Result<Self, Self::Error> {
        RunStatus::parse(&text).ok_or_else(|| format!("unknown run status \u{201c}{text}\u{201d}"))
    }
}

/// A base model a team can fine-tune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelChoice {
    /// Directory name, e.g. all-MiniLM-L6-v2.
    pub name: String,
    /// Parameters with a two-label head.
    pub params: usize,
    /// Its family (BERT, RoBERTa, …).
    pub family: run_protocol::Family,
}

/// What the run form needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFormInfo {
    /// The models found in the models folder.
    pub models: Vec<ModelChoice>,
    /// How many a team may have waiting at once.
    pub max_queued: i64,
    /// The training nodes' devices and slots, described.
    pub device: String,
    /// What duration estimates need (speed, data, time limit); `None` without SST-2.
    pub machine: Option<timing::Machine>,
    /// The settings the form opens on: sized to the class's time per run on this machine.
    pub suggested: RunForm,
    /// SST-2 dev accuracy (percent) the suggested settings are measured to reach.
    pub suggested_accuracy: f64,
    /// True when even the smallest run measured to learn takes longer than the time limit.
    pub over_budget: bool,
    /// Where the queue stands now (the page fetches it again every few seconds).
    pub queue: QueueWait,
    /// Whether the class is in the competition phase, when runs can be queued.
    pub runs_open: bool,
    /// The longest a run of the class trains, in minutes (the instructor's limit).
    pub run_minutes: i64,
    /// Why runs cannot be queued yet for lack of training data, when they cannot.
    pub data_missing: Option<String>,
}

/// Where the queue stands for a run queued now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QueueWait {
    /// Runs waiting or training now.
    pub runs_ahead: i64,
    /// Seconds until a run queued now would start, from those runs' estimates.
    pub wait_seconds: f64,
    /// What holds every queued run now, when something other than the runs ahead does.
    pub held_by: Option<QueueHold>,
}

impl QueueWait {
    /// When a run queued now would start, said for students.
    pub fn note(self) -> String {
        let wait = timing::duration(self.wait_seconds);
        match (self.held_by, self.runs_ahead) {
            (Some(hold), _) => hold.describe(),
            (None, 0) => "No run is waiting or training: a run queued now starts at once.".into(),
            (None, 1) => {
                format!("1 run is waiting or training: a run queued now starts in about {wait}.")
            }
            (None, n) => {
                format!(
                    "{n} runs are waiting or training: a run queued now starts in about {wait}."
                )
            }
        }
    }
}

/// What holds every queued run, when something other than the runs ahead of it does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum QueueHold {
    /// No training node is running.
    NoTrainingNode,
    /// Every training node is still compiling its GPU kernels after its start (its
    /// warm-up), and has been for this many seconds.
    WarmingUp {
        /// Seconds since the warm-up began.
        seconds: i64,
    },
}

impl QueueHold {
    /// The hold in a few words, for a run's line in a list.
    pub fn reason(self) -> &'static str {
        match self {
            QueueHold::NoTrainingNode => "no training node is running",
            QueueHold::WarmingUp { .. } => "the GPU is getting ready",
        }
    }

    /// The hold, said for students.
    pub fn describe(self) -> String {
        match self {
            QueueHold::NoTrainingNode => {
                "No training node is running now: queued runs wait until one starts.".into()
            }
            QueueHold::WarmingUp { seconds } => format!(
                "The training GPU is getting ready: after each start it compiles the \
                 programs training runs on, once, before it takes any run. It has been at it \
                 for {}. Queued runs start when it is done.",
                timing::duration(seconds as f64)
            ),
        }
    }
}

/// A run as lists and pages show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id.
    pub id: i64,
    /// Its team.
    pub team: String,
    /// Who submitted it.
    pub submitted_by: String,
    /// Where it is.
    pub status: RunStatus,
    /// Its settings.
    pub settings: RunSettings,
    /// When it was submitted (UTC).
    pub created_at: String,
    /// 1 = next, while queued.
    pub queue_position: Option<i64>,
    /// Best validation accuracy so far, 0..1.
    pub validation_accuracy: Option<f64>,
    /// Why it failed, diverged or was cancelled.
    pub message: Option<String>,
    /// The lesson claim it tests, for a claim test's run (queued by the instructor for
    /// the whole class).
    pub claim: Option<String>,
    /// What holds it, while it is queued and something other than the runs ahead does.
    #[serde(default)]
    pub held_by: Option<QueueHold>,
}

/// What happened to a submitted form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubmitOutcome {
    /// Queued as this run.
    Queued(i64),
    /// Outside the recommended ranges: these hints, and the form must be sent again with
    /// `confirmed` to queue it anyway.
    NeedsConfirmation(Vec<String>),
}

/// One team's line on a leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardLine {
    /// The team.
    pub team: String,
    /// Its best accuracy, 0..1.
    pub accuracy: f64,
    /// The run that scored it.
    pub run_id: i64,
}

/// Both leaderboards of a class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Boards {
    /// Best validation accuracy per team (public).
    pub public: Vec<BoardLine>,
    /// Best SST-2 dev accuracy per team; `None` until the instructor reveals it.
    pub private: Option<Vec<BoardLine>>,
    /// Whether the private board is revealed to students.
    pub revealed: bool,
}

/// A finished run's model reading one sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReading {
    /// The tokens it read.
    pub tokens: Vec<String>,
    /// The most likely label.
    pub label: String,
    /// (label, probability) for each label.
    pub probabilities: Vec<(String, f32)>,
    /// Whether the sentence was cut to the model's length.
    pub truncated: bool,
}

/// One run's curves for the team's comparison chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCurves {
    /// The run.
    pub run_id: i64,
    /// Its settings in one line.
    pub label: String,
    /// (step, training loss), at most [`MAX_CURVE_POINTS`] evenly spaced points.
    pub loss: Vec<(f64, f64)>,
    /// (step, validation accuracy in %).
    pub validation_accuracy: Vec<(f64, f64)>,
}

/// The most points a comparison curve keeps.
pub const MAX_CURVE_POINTS: usize = 200;
/// How many of the team's latest runs the comparison shows.
pub const COMPARED_RUNS: i64 = 6;
