//! Jigsaw Lab's user interface: Leptos components rendered on the server and hydrated in
//! the browser, plus the server functions they call. Database code is compiled only with
//! the `ssr` feature; the `hydrate` feature builds the browser side.

// Leptos view types nest deeply; the widget pages exceed the default limit.
#![recursion_limit = "256"]
// The islands bundle uses the islands alone; the pages around them are the server's.
#![cfg_attr(
    all(feature = "hydrate", feature = "islands"),
    allow(dead_code, unused_imports)
)]

pub mod auth;
mod charts;
pub mod checkins;
pub mod claims;
pub mod classroom;
#[cfg(feature = "ssr")]
pub mod db;
pub mod error;
pub mod flash;
pub mod grading;
#[cfg(feature = "ssr")]
pub mod islands;
pub mod lessons;
pub mod library;
pub mod live;
pub mod models;
mod pages;
pub mod phase;
pub mod quiz;
#[cfg(not(all(feature = "hydrate", feature = "islands")))]
mod root;
pub mod runs;
#[cfg(feature = "ssr")]
pub mod throttle;
#[cfg(feature = "ssr")]
pub(crate) mod uploads;
pub mod widgets;

#[cfg(not(all(feature = "hydrate", feature = "islands")))]
pub use root::App;

/// The name of the built site's files (`/pkg/jigsaw-lab.{js,wasm,css}`).
pub const OUTPUT_NAME: &str = "jigsaw-lab";

/// The HTML document around the app, rendered on the server. Every page loads the small
/// islands bundle of its group ([`islands::IslandsBundle`]), which brings its islands to
/// life and nothing else; only the 404 page loads the whole app and hydrates it.
#[cfg(feature = "ssr")]
pub fn shell(options: leptos::config::LeptosOptions) -> impl leptos::IntoView {
    use leptos::prelude::*;
    use leptos_meta::MetaTags;

    let path = use_context::<http::request::Parts>()
        .map(|parts| parts.uri.path().to_string())
        .unwrap_or_default();
    let scripts = if let Some(bundle) = islands::IslandsBundle::for_page(&path) {
        view! { <islands::IslandScripts bundle /> }.into_any()
    } else {
        view! { <HydrationScripts options /> }.into_any()
    };
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                {scripts}
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}
