//! A lesson page: the lesson's text, its questions and the class's check-ins.

use super::shared::ErrorList;
use crate::checkins::{CheckIn, checkin_count};
use crate::lessons::{Lesson, get_lesson};
use crate::widgets::LessonWidget;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

/// Renders `/lessons/:slug`.
#[component]
pub fn LessonPage() -> impl IntoView {
    let params = use_params_map();
    let slug = move || params.read().get("slug").unwrap_or_default();
    let lesson = Resource::new(slug, get_lesson);
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the lesson…"</p> }>
            <ErrorBoundary fallback=|errors| {
                view! {
                    <Title text="Lesson not found" />
                    <ErrorList errors />
                    <p><a href="/">"Back to the lessons"</a></p>
                }
            }>
                {move || Suspend::new(async move {
                    lesson.await.map(|lesson| view! { <LessonView lesson /> })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// The body of a loaded lesson.
#[component]
fn LessonView(lesson: Lesson) -> impl IntoView {
    let slug = lesson.summary.slug.clone();
    view! {
        <Title text=lesson.summary.title.clone() />
        <article class="lesson">
            <p class="breadcrumb"><a href="/">"Lessons"</a>" / "{lesson.summary.title.clone()}</p>
            <h1>{lesson.summary.title}</h1>
            <p class="lead">{lesson.summary.summary}</p>
            <div class="lesson-body" inner_html=lesson.html></div>
            {lesson.widget.map(|widget| view! { <LessonWidget widget /> })}
            <section class="questions">
                <h2>"Check your understanding"</h2>
                <ol>
                    {lesson.questions.into_iter().map(|q| view! { <li>{q.prompt}</li> }).collect_view()}
                </ol>
            </section>
            <CheckInButton slug />
        </article>
    }
}

/// "I've got it": records a check-in on the server and shows the class total.
#[component]
fn CheckInButton(slug: String) -> impl IntoView {
    let count = Resource::new(
        {
            let slug = slug.clone();
            move || slug.clone()
        },
        checkin_count,
    );
    let check_in = ServerAction::<CheckIn>::new();
    let checked_in = move || matches!(check_in.value().get(), Some(Ok(_)));
    let total = move || match check_in.value().get() {
        Some(Ok(total)) => Some(total),
        _ => count.get().and_then(Result::ok),
    };
    let error = move || match check_in.value().get() {
        Some(Err(error)) => Some(error.to_string()),
        _ => None,
    };
    view! {
        <section class="checkin">
            <button
                class="checkin-button"
                disabled=move || checked_in() || check_in.pending().get()
                on:click=move |_| {
                    check_in.dispatch(CheckIn { slug: slug.clone() });
                }
            >
                {move || if checked_in() { "Thanks, counted" } else { "I've got it" }}
            </button>
            <Transition fallback=|| ()>
                <span class="checkin-count" data-testid="checkin-count">
                    {move || match total() {
                        Some(1) => "1 classmate has got it".to_string(),
                        Some(n) => format!("{n} classmates have got it"),
                        None => String::new(),
                    }}
                </span>
            </Transition>
            {move || error().map(|e| view! { <p class="error-box" role="alert">{e}</p> })}
        </section>
    }
}
