//! Pieces the widgets share: the sentence form and input checks of the widgets that run
//! the model, how they show a request's outcome, and the head's labels.

use crate::error::AppError;
use leptos::prelude::*;

/// A sentence box with a submit button, shared by the widgets that run the model.
#[component]
pub(super) fn SentenceForm(
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
                maxlength=MAX_CHARS.to_string()
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
pub(super) fn action_result<T>(
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

/// The longest text a widget accepts, in characters.
pub const MAX_CHARS: usize = 512;

/// Rejects empty and over-long widget input with a message for the student.
#[cfg(feature = "ssr")]
pub(crate) fn check_sentence(text: &str) -> Result<(), AppError> {
    let characters = text.chars().count();
    if text.trim().is_empty() {
        return Err(AppError::BadRequest("Type a sentence first.".into()).respond());
    }
    if characters > MAX_CHARS {
        return Err(AppError::BadRequest(format!(
            "That text has {characters} characters; the widgets take at most {MAX_CHARS}."
        ))
        .respond());
    }
    Ok(())
}

/// SST-2's labels paired with the head's probabilities.
#[cfg(feature = "ssr")]
pub(crate) fn labelled(probabilities: Vec<f32>) -> Vec<(String, f32)> {
    trainer::train::LABELS
        .iter()
        .map(|label| label.to_string())
        .zip(probabilities)
        .collect()
}
