//! The page for unknown addresses.

use leptos::prelude::*;
use leptos_meta::Title;

/// Answers unknown paths with a 404 status and a way back.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Page not found" />
        <section class="not-found">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address. The lessons are listed on the "<a href="/">"home page"</a>"."</p>
        </section>
    }
}
