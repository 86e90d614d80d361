//! One module per page.

mod home;
mod lesson;
mod not_found;

pub use home::HomePage;
pub use lesson::LessonPage;
pub use not_found::NotFound;

use leptos::prelude::*;

/// Shows the errors caught by an `ErrorBoundary` as a readable list.
#[component]
fn ErrorList(errors: ArcRwSignal<Errors>) -> impl IntoView {
    view! {
        <div class="error-box" role="alert">
            <ul>
                {move || {
                    errors
                        .get()
                        .into_iter()
                        .map(|(_, error)| view! { <li>{error.to_string()}</li> })
                        .collect_view()
                }}
            </ul>
        </div>
    }
}
