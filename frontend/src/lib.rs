//! The browser entry point: hydrates the page the server rendered. Built to WebAssembly by
//! cargo-leptos as `/pkg/jigsaw-lab.wasm`.

/// Called by the hydration script once the WebAssembly module has loaded. Marks the body
/// with `data-hydrated="true"` when done, which the browser tests wait for.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    if let Some(body) = leptos::prelude::document().body() {
        let _ = body.set_attribute("data-hydrated", "true");
    }
}
