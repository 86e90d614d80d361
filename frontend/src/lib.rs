//! The browser entry point: hydrates the page the server rendered. Built to WebAssembly by
//! `scripts/build-site.sh` as `/pkg/jigsaw-lab.wasm`, split into one chunk per page.

/// Called by the hydration script once the WebAssembly module has loaded. Each page is a
/// lazily loaded route, so hydration first fetches the page's chunk; when it is done the
/// body gets `data-hydrated="true"`, which the browser tests wait for.
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
