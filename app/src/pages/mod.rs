//! One module per page.

mod account;
mod home;
mod instructor;
mod lesson;
mod not_found;
pub(crate) mod runs;
mod student;

pub use account::{JoinPage, SignInPage, ViewerBar};
pub use home::HomePage;
pub use instructor::{ClassAdminPage, GradeQuestionPage, GradingOverviewPage, InstructorHome};
pub use lesson::LessonPage;
pub use not_found::NotFound;
use runs::ClassRuns;
pub use runs::{RunPage, TeamPage};
pub use student::{QuizPage, StudentClassPage};

use crate::error::AppError;
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

/// An action's error as an inline alert, or nothing.
fn action_error<T>(outcome: Option<Result<T, AppError>>) -> Option<AnyView> {
    match outcome {
        Some(Err(error)) => {
            Some(view! { <p class="error-box" role="alert">{error.to_string()}</p> }.into_any())
        }
        _ => None,
    }
}

/// The page's `:id` route parameter as a number (0 when missing or malformed, which the
/// server answers with "no such class").
fn id_param() -> Memo<i64> {
    let params = leptos_router::hooks::use_params_map();
    Memo::new(move |_| {
        params
            .read()
            .get("id")
            .and_then(|id| id.parse().ok())
            .unwrap_or(0)
    })
}

/// Formats a stored UTC timestamp (`YYYY-MM-DD HH:MM:SS`) for people.
fn when(timestamp: &str) -> String {
    format!("{} UTC", timestamp.get(..16).unwrap_or(timestamp))
}

/// "1 point", "2 points", "1.5 points".
fn points_worth(value: f64) -> String {
    if value == 1.0 {
        "1 point".to_string()
    } else {
        format!("{} points", points(value))
    }
}

/// Formats points without a trailing `.0`.
fn points(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}
