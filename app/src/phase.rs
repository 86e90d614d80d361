//! The stages a jigsaw class moves through: study → teach → quiz → competition. The
//! classroom moves a class along them; the quiz opens in the quiz phase.

use serde::{Deserialize, Serialize};

/// The stage a class is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Each team studies its own topic.
    Study,
    /// Teams teach their topics to the others.
    Teach,
    /// The quizzes are open.
    Quiz,
    /// Teams fine-tune models and compete on the run leaderboards.
    Competition,
}

impl Phase {
    /// Every phase in class order.
    pub const ALL: [Phase; 4] = [Phase::Study, Phase::Teach, Phase::Quiz, Phase::Competition];

    /// The name stored in the database and used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Study => "study",
            Phase::Teach => "teach",
            Phase::Quiz => "quiz",
            Phase::Competition => "competition",
        }
    }

    /// Reads a stored phase name.
    pub fn parse(text: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Study => "Study",
            Phase::Teach => "Teach",
            Phase::Quiz => "Quiz",
            Phase::Competition => "Competition",
        }
    }

    /// What students do in this phase.
    pub fn instructions(self) -> &'static str {
        match self {
            Phase::Study => {
                "Become the class expert on your team's topic: read the lesson, try its widget, and agree on how you will explain it."
            }
            Phase::Teach => {
                "Each team teaches its topic to the others. Every lesson is open now; the expert team is named next to it."
            }
            Phase::Quiz => {
                "The quiz is open. Answer every question; you can edit until your teacher closes it."
            }
            Phase::Competition => {
                "Fine-tune a model with your team and climb the leaderboard. The quiz results are in."
            }
        }
    }

    /// Whether the quiz can be answered in this phase (the instructor may still close it).
    pub fn quiz_available(self) -> bool {
        matches!(self, Phase::Quiz | Phase::Competition)
    }
}
