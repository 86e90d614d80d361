//! Interactive widgets that make a lesson's concept tangible. Lessons name theirs in their
//! front matter (`widget = "..."`).

mod attention;
mod cls;
mod lora;
mod run_curves;
mod shared;
mod steps;
mod tokenizer;

pub(crate) use lora::thousands;

// The mean of a layer's heads.
pub use attention::{
    AttentionMap, AttentionView, AttentionViewer, TeamAttention, TeamAttentionMap, attention_map,
    team_attention_map,
};
pub(crate) use run_protocol::events::mean_of as head_average;

pub use cls::{ClsDemo, ClsView, ReadCls, read_cls};
pub use lora::{LoraCount, LoraCounter, LoraParams, LoraTargets, lora_count};
pub use run_curves::{OverfittingCurves, OverfittingExample, RunCurves, overfitting_curves};
pub use steps::StepsCalculator;
#[cfg(feature = "ssr")]
pub use tokenizer::DefaultTokenizer;
pub use tokenizer::{Piece, TokenizeText, TokenizedText, TokenizerPlayground, tokenize_text};

use crate::lessons::Widget;
use leptos::prelude::*;

/// Renders the widget a lesson asked for. An island of the lessons' islands bundle (see
/// `crate::islands::IslandsBundle`).
#[cfg_attr(lessons_islands, island)]
#[cfg_attr(not(lessons_islands), component)]
pub fn LessonWidget(
    /// The widget the lesson names.
    widget: Widget,
) -> impl IntoView {
    match widget {
        Widget::TokenizerPlayground => view! { <TokenizerPlayground /> }.into_any(),
        Widget::StepsCalculator => view! { <StepsCalculator /> }.into_any(),
        Widget::AttentionViewer => view! { <AttentionViewer /> }.into_any(),
        Widget::LoraCounter => view! { <LoraCounter /> }.into_any(),
        Widget::ClsDemo => view! { <ClsDemo /> }.into_any(),
        Widget::RunCurves => view! { <RunCurves /> }.into_any(),
    }
}
