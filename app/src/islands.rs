//! Islands: the script tags of the pages that load the islands bundle instead of the whole
//! app (see [`crate::pages::uses_islands`]), and what every island does first on the
//! server. Such a page is rendered on the server like any other; in the browser only its
//! islands (`#[island]` components) come to life.

use leptos::prelude::*;

/// Keeps the owners above an island alive for as long as the island lives; every island
/// calls it first. On the server an island renders in a reactive owner of its own, which
/// holds its parent weakly; a lesson's islands sit inside the page's `Suspend`, whose owner
/// is gone by the time the islands' resources load, and with it the contexts the server
/// functions read (the database, the run environment, the request). In the browser it
/// does nothing.
pub(crate) fn keep_island_ancestors() {
    #[cfg(feature = "ssr")]
    {
        /// The owners above an island, held in the island's own owner.
        #[derive(Clone)]
        struct Ancestors(#[allow(dead_code)] Vec<Owner>);

        let mut ancestors = Vec::new();
        let mut owner = Owner::current();
        while let Some(parent) = owner.as_ref().and_then(Owner::parent) {
            ancestors.push(parent.clone());
            owner = Some(parent);
        }
        provide_context(Ancestors(ancestors));
    }
}

/// Loads `/pkg/jigsaw-lab-islands.js` and hydrates the page's islands, then marks the body
/// `data-hydrated="true"`, as the whole app does once it has hydrated. A page without
/// islands fetches no WebAssembly at all.
#[cfg(feature = "ssr")]
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
