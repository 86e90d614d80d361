//! Interactive widgets that make a lesson's concept tangible. Lessons name theirs in their
//! front matter (`widget = "..."`).

mod attention;
mod cls;
mod lora;
mod run_curves;
mod steps;
mod tokenizer;

pub use attention::{
    AttentionMap, AttentionView, AttentionViewer, TeamAttention, TeamAttentionMap, attention_map,
    team_attention_map,
};
pub(crate) use attention::{Heatmap, average as head_average};

pub use cls::{ClsDemo, ClsView, ReadCls, read_cls};
pub use lora::{LoraCount, LoraCounter, LoraParams, LoraTargets, lora_count};
pub use run_curves::{OverfittingCurves, OverfittingExample, RunCurves, overfitting_curves};
pub use steps::StepsCalculator;
#[cfg(feature = "ssr")]
pub use tokenizer::DefaultTokenizer;
pub use tokenizer::{Piece, TokenizeText, TokenizedText, TokenizerPlayground, tokenize_text};

use crate::error::AppError;
use crate::lessons::Widget;
use crate::models::MAX_SENTENCE_CHARS;
use leptos::prelude::*;

/// Renders the widget a lesson asked for.
#[component]
pub fn LessonWidget(widget: Widget) -> impl IntoView {
    match widget {
        Widget::TokenizerPlayground => view! { <TokenizerPlayground /> }.into_any(),
        Widget::StepsCalculator => view! { <StepsCalculator /> }.into_any(),
        Widget::AttentionViewer => view! { <AttentionViewer /> }.into_any(),
        Widget::LoraCounter => view! { <LoraCounter /> }.into_any(),
        Widget::ClsDemo => view! { <ClsDemo /> }.into_any(),
        Widget::RunCurves => view! { <RunCurves /> }.into_any(),
    }
}

/// A sentence box with a submit button, shared by the widgets that run the model.
#[component]
fn SentenceForm(
    /// The sentence, edited in place.
    text: RwSignal<String>,
    /// The button's label.
    label: &'static str,
    /// Whether a request is in flight (the button is disabled meanwhile).
    #[prop(into)]
    pending: Signal<bool>,
    /// Called with the sentence when the form is submitted.
    on_submit: impl Fn(String) + 'static,
) -> impl IntoView {
    view! {
        <form on:submit=move |ev| {
            ev.prevent_default();
            on_submit(text.get());
        }>
            <textarea
                name="text"
                rows="2"
                maxlength=MAX_SENTENCE_CHARS.to_string()
                prop:value=move || text.get()
                on:input=move |ev| text.set(event_target_value(&ev))
            ></textarea>
            <button type="submit" disabled=move || pending.get()>
                {label}
            </button>
        </form>
    }
}

/// Renders a widget request's outcome: nothing before the first answer, the error as an
/// alert, or `render` of the result.
fn action_result<T>(
    outcome: Option<Result<T, AppError>>,
    render: impl FnOnce(T) -> AnyView,
) -> AnyView {
    match outcome {
        None => ().into_any(),
        Some(Err(error)) => {
            view! { <p class="error-box" role="alert">{error.to_string()}</p> }.into_any()
        }
        Some(Ok(result)) => render(result),
    }
}
