//! Pieces the widgets share: the sentence form of the widgets that run the model, and how
//! they show a request's outcome. The input checks and labels are
//! [`crate::models`]'.

use crate::error::AppError;
use crate::models::MAX_SENTENCE_CHARS;
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
                aria-label="Your sentence"
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
