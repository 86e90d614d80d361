//! The whole application, which the server renders and the main browser bundle hydrates.
//! The islands bundles leave it out: each brings its pages' islands to life, nothing else.

use crate::{OUTPUT_NAME, pages, pages::routes};
use leptos::prelude::*;
use leptos_meta::{Stylesheet, Title, provide_meta_context};
use leptos_router::{
    Lazy, SsrMode,
    components::{A, Route, Router, Routes},
    path,
};

/// The application: header, routes and footer.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href=format!("/pkg/{OUTPUT_NAME}.css") />
        <Title formatter=|page: String| {
            if page.is_empty() { "Jigsaw Lab".to_string() } else { format!("{page} · Jigsaw Lab") }
        } />
        <Router>
            // Keyboard users skip the header's links; `rel="external"` leaves the jump to the
            // browser, which also moves the keyboard focus there.
            <a class="skip-link" href="#main" rel="external">
                "Skip to the content"
            </a>
            <header class="site-header">
                <A href="/" attr:class="brand">
                    "Jigsaw Lab"
                </A>
                <span class="tagline">"Learn how transformers are fine-tuned, one piece each"</span>
                <pages::ViewerBar />
            </header>
            <main id="main" tabindex="-1">
                <Routes fallback=pages::NotFound>
                    // Async rendering waits for the data, so the status code (404 for an
                    // unknown lesson) is known before the response starts, and the islands
                    // pages (`islands::IslandsBundle`) arrive whole, islands included.
                    <Route path=path!("/") view={Lazy::<routes::Home>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/lessons/:slug") view={Lazy::<routes::Lesson>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/join") view={Lazy::<routes::Join>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/class") view={Lazy::<routes::StudentClass>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/quiz") view={Lazy::<routes::Quiz>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/team") view={Lazy::<routes::Team>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/runs/:id") view={Lazy::<routes::Run>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/instructor/sign-in") view={Lazy::<routes::SignIn>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/instructor") view={Lazy::<routes::InstructorHome>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/instructor/models") view={Lazy::<routes::Models>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/instructor/data") view={Lazy::<routes::TrainingData>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/instructor/classes/:id") view={Lazy::<routes::ClassAdmin>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/instructor/classes/:id/grading") view={Lazy::<routes::GradingOverview>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/instructor/classes/:id/grading/:key") view={Lazy::<routes::GradeQuestion>::new()} ssr=SsrMode::Async />
                </Routes>
            </main>
            <footer class="site-footer">
                "Fine-tuning BERT-family models on SST-2, in class."
            </footer>
        </Router>
    }
}
