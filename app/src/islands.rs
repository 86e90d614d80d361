//! The script tags of the pages that load the islands bundle instead of the whole app (see
//! [`crate::pages::uses_islands`]). Such a page is rendered on the server like any other;
//! in the browser only its islands (`#[island]` components) come to life.

use leptos::prelude::*;

/// Loads `/pkg/jigsaw-lab-islands.js` and hydrates the page's islands, then marks the body
/// `data-hydrated="true"`, as the whole app does once it has hydrated. A page without
/// islands fetches no WebAssembly at all.
#[component]
pub fn IslandScripts() -> impl IntoView {
    // Outside islands, the browser hydrates nothing, so resources need not be sent along
    // with the page; each island turns this back on while it renders.
    if let Some(context) = Owner::current_shared_context() {
        context.set_is_hydrating(false);
    }
    let start = format!(
        "({})(\"/pkg/{}\");",
        include_str!("islands.js"),
        crate::ISLANDS_OUTPUT_NAME
    );
    view! { <script type="module">{start}</script> }
}
