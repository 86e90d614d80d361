//! The browser entry points, built to WebAssembly by `scripts/build-site.sh`:
//! - by default, `/pkg/jigsaw-lab.wasm`, which hydrates the whole app the server rendered,
//!   split into one chunk per page;
//! - with `islands` and one group's feature (`lessons-islands`, `class-islands`,
//!   `runs-islands`, `instructor-islands`), that group's islands bundle, which holds only its pages' islands
//!   (`app::islands::IslandsBundle` says which pages load which).

/// Called by the hydration script once the WebAssembly module has loaded. Each page is a
/// lazily loaded route, so hydration first fetches the page's chunk; when it is done the
/// body gets `data-hydrated="true"`, which the browser tests wait for.
#[cfg(not(feature = "islands"))]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Hydration starts the reactive system's executor itself.
    wasm_bindgen_futures::spawn_local(async {
        let body = leptos::prelude::document()
            .body()
            .expect("the page has a body");
        let mounted = leptos::mount::hydrate_from_async(body.clone(), app::App).await;
        // The app lives as long as the page.
        mounted.forget();
        let _ = body.set_attribute("data-hydrated", "true");
    });
}

/// Called by the islands script (app/src/islands.js) once the module has loaded, before
/// it hydrates each island through the island's own export.
#[cfg(feature = "islands")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}

// The islands' exports live in `app`, which nothing above names in the islands build: this
// keeps the crate, and with it the exports, in the module.
#[cfg(feature = "islands")]
extern crate app;
