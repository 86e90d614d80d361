//! Interactive widgets that make a lesson's concept tangible. Lessons name theirs in their
//! front matter (`widget = "..."`).

mod steps;
mod tokenizer;

pub use steps::{StepPlan, StepsCalculator, step_plan};
#[cfg(feature = "ssr")]
pub use tokenizer::DefaultTokenizer;
pub use tokenizer::{Piece, TokenizeText, TokenizedText, TokenizerPlayground, tokenize_text};

use crate::lessons::Widget;
use leptos::prelude::*;

/// Renders the widget a lesson asked for.
#[component]
pub fn LessonWidget(widget: Widget) -> impl IntoView {
    match widget {
        Widget::TokenizerPlayground => view! { <TokenizerPlayground /> }.into_any(),
        Widget::StepsCalculator => view! { <StepsCalculator /> }.into_any(),
    }
}
