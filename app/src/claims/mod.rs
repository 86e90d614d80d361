//! Claims the class reproduces: the lessons' central claims (LoRA keeps most of the
//! accuracy, a learning rate of 1e-2 fails, a small subset overfits, two epochs are
//! enough), each with the runs that test it. The instructor queues a claim's runs with one
//! button, sized to the device that trains them; the lesson shows the class's result next
//! to the claim, with links to the runs, and says plainly when it disagrees.
//!
//! The claims are data (`app/content/claims.toml`, read by [`catalog`]); [`verdict`] decides
//! a claim from its runs. A claim's runs belong to a hidden team of the class, so they are
//! on no team's list and no board.

use crate::error::AppError;
use crate::runs::RunStatus;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod catalog;
#[cfg(feature = "ssr")]
mod ssr;
#[cfg(feature = "ssr")]
pub mod verdict;

/// What the class's runs say about a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The runs are waiting or training.
    Waiting,
    /// The result agrees with the claim.
    Agrees,
    /// The result disagrees with the claim.
    Disagrees,
    /// A run failed or was cancelled, or lacks the evaluations the rule reads.
    Inconclusive,
}

impl Verdict {
    /// A short label for the result's badge.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Waiting => "Waiting for the runs",
            Verdict::Agrees => "Agrees with the claim",
            Verdict::Disagrees => "Disagrees with the claim",
            Verdict::Inconclusive => "No result",
        }
    }

    /// The CSS class of the badge.
    pub fn css_class(self) -> &'static str {
        match self {
            Verdict::Waiting => "verdict waiting",
            Verdict::Agrees => "verdict agrees",
            Verdict::Disagrees => "verdict disagrees",
            Verdict::Inconclusive => "verdict inconclusive",
        }
    }
}

/// A verdict with the numbers behind it, in a sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The verdict.
    pub verdict: Verdict,
    /// The runs' numbers and what they mean for the claim.
    pub text: String,
}

/// The latest run of one of a claim's arms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRun {
    /// The run (its page is `/runs/<id>`).
    pub id: i64,
    /// Where it is.
    pub status: RunStatus,
    /// Its best validation accuracy so far, 0..1.
    pub validation_accuracy: Option<f64>,
}

/// One run of a claim's test, as queued on this class's machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmView {
    /// What the run is.
    pub label: String,
    /// Its settings in one line.
    pub settings: String,
    /// How long it should take on this machine, in seconds, when that can be estimated.
    pub estimated_seconds: Option<f64>,
    /// Its latest run in the class, if the test was queued.
    pub run: Option<ClaimRun>,
}

/// A claim with the class's test of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimView {
    /// Stable name.
    pub slug: String,
    /// The lesson that makes it.
    pub lesson: String,
    /// A short name.
    pub title: String,
    /// The claim as the lesson makes it.
    pub claim: String,
    /// How the runs test it.
    pub test: String,
    /// What differs on this machine's device (a subset on the CPU), if anything.
    pub device_note: Option<String>,
    /// The runs of the test.
    pub arms: Vec<ArmView>,
    /// The class's result; `None` until the test is queued.
    pub finding: Option<Finding>,
}

impl ClaimView {
    /// Whether a run of the test is waiting or training.
    pub fn is_active(&self) -> bool {
        self.arms
            .iter()
            .any(|arm| arm.run.as_ref().is_some_and(|run| run.status.is_active()))
    }
}

/// The claims a lesson makes, with the viewer's class's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimsOfLesson {
    /// Whether the viewer is a student of a class (else the claims come without results).
    pub in_class: bool,
    /// The claims.
    pub claims: Vec<ClaimView>,
}

/// The claims a class can test, on which model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimTests {
    /// The models installed, any of which the tests can train.
    pub models: Vec<String>,
    /// The model the runs below are sized for.
    pub model: String,
    /// Every claim with the class's test of it.
    pub claims: Vec<ClaimView>,
}

/// Every claim with the class's test of it, sized to the training nodes' device, for
/// `model` (empty: the default model) (the class's instructor).
#[server(prefix = "/api", endpoint = "class-claims")]
pub async fn class_claims(class_id: i64, model: String) -> Result<ClaimTests, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    ssr::claim_tests(&pool, class_id, &model).await
}

/// Queues the runs that test claim `slug` for class `class_id` on `model` (empty: the
/// default model), sized to the training nodes' device (its instructor); returns their ids.
#[server(prefix = "/api", endpoint = "queue-claim")]
pub async fn queue_claim(class_id: i64, slug: String, model: String) -> Result<Vec<i64>, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    ssr::queue_claim(&pool, class_id, &slug, &model).await
}

/// The claims lesson `slug` makes, with the results of the caller's class when the caller
/// is one of its students.
#[server(prefix = "/api", endpoint = "lesson-claims")]
pub async fn lesson_claims(slug: String) -> Result<ClaimsOfLesson, AppError> {
    let pool = crate::db::pool()?;
    let class_id = match crate::auth::ssr::caller(&pool).await? {
        crate::auth::ssr::Caller::Student(student) => Some(student.class_id),
        _ => None,
    };
    Ok(ClaimsOfLesson {
        in_class: class_id.is_some(),
        claims: ssr::claim_views(&pool, class_id, None, |claim| claim.lesson == slug).await?,
    })
}
