//! The home page: the lessons of the jigsaw, one card each.

use super::shared::ErrorList;
use crate::lessons::{LessonSummary, list_lessons};
use leptos::prelude::*;
use leptos_meta::Title;

/// Lists every lesson with its summary and study time.
#[component]
pub fn HomePage() -> impl IntoView {
    let lessons = Resource::new(|| (), |_| list_lessons());
    view! {
        <Title text="" />
        <section class="intro">
            <h1>"Fine-tune a transformer, as a class"</h1>
            <p>
                "Each team becomes the expert on one piece of the puzzle, then teaches it to the others. "
                "Pick your team's lesson below."
            </p>
        </section>
        <Transition fallback=|| view! { <p class="loading">"Loading the lessons…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    lessons
                        .await
                        .map(|lessons| {
                            view! {
                                <ol class="lesson-grid">
                                    {lessons.into_iter().map(|lesson| view! { <LessonCard lesson /> }).collect_view()}
                                </ol>
                            }
                        })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// One lesson's card.
#[component]
fn LessonCard(lesson: LessonSummary) -> impl IntoView {
    let href = format!("/lessons/{}", lesson.slug);
    view! {
        <li class="lesson-card">
            <a href=href>
                <h2>{lesson.title}</h2>
                <p>{lesson.summary}</p>
                <span class="minutes">{format!("about {} min", lesson.minutes)}</span>
            </a>
        </li>
    }
}
