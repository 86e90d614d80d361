//! Pieces several pages share: error display, route parameters, time and points
//! formatting, and the quiz standings table.

use crate::charts::ScrollRegion;
use crate::error::AppError;
use crate::quiz::TeamScore;
use leptos::prelude::*;

/// A parameter count as people say it: "840", "31k", "22.7M".
pub(super) fn parameter_count(params: usize) -> String {
    match params {
        0..=999 => params.to_string(),
        1_000..=999_999 => format!("{:.0}k", params as f64 / 1e3),
        _ => format!("{:.1}M", params as f64 / 1e6),
    }
}

/// Shows the errors caught by an `ErrorBoundary` as a readable list.
#[component]
pub(super) fn ErrorList(
    /// The boundary's errors.
    errors: ArcRwSignal<Errors>,
) -> impl IntoView {
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
pub(super) fn action_error<T>(outcome: Option<Result<T, AppError>>) -> Option<AnyView> {
    match outcome {
        Some(Err(error)) => {
            Some(view! { <p class="error-box" role="alert">{error.to_string()}</p> }.into_any())
        }
        _ => None,
    }
}

/// The page's `:id` route parameter as a number (0 when missing or malformed, which the
/// server answers with "no such class").
pub(super) fn id_param() -> Memo<i64> {
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
pub(super) fn when(timestamp: &str) -> String {
    format!("{} UTC", timestamp.get(..16).unwrap_or(timestamp))
}

/// "1 point", "2 points", "1.5 points".
pub(super) fn points_worth(value: f64) -> String {
    if value == 1.0 {
        "1 point".to_string()
    } else {
        format!("{} points", points(value))
    }
}

/// Formats points without a trailing `.0`.
pub(super) fn points(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The quiz standings: graded points per member, best team first.
#[component]
pub(super) fn Standings(
    /// The teams' lines, best first.
    scores: Vec<TeamScore>,
) -> impl IntoView {
    if scores.is_empty() {
        return view! { <p class="hint">"No teams yet."</p> }.into_any();
    }
    view! {
        <ScrollRegion label="Quiz standings">
            <table class="data-table" data-testid="quiz-leaderboard">
                <thead><tr><th>"#"</th><th>"Team"</th><th>"Points per member"</th><th>"Points"</th><th>"Members"</th><th>"Graded answers"</th></tr></thead>
                <tbody>
                    {scores.into_iter().enumerate().map(|(rank, score)| view! {
                        <tr>
                            <td>{rank + 1}</td>
                            <td>{score.team}</td>
                            <td>{points(score.points_per_member)}</td>
                            <td>{points(score.points)}</td>
                            <td>{score.members}</td>
                            <td>{score.graded_answers}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </ScrollRegion>
    }
    .into_any()
}
