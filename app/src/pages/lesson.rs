//! A lesson page: the lesson's text, its questions and the class's check-ins.

use super::claims::LessonClaimsBox;
use super::shared::ErrorList;
use crate::checkins::{CheckIn, checkin_count};
use crate::lessons::Lesson;
#[cfg(not(feature = "ssr"))]
use crate::lessons::get_lesson;
use crate::widgets::LessonWidget;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

/// Renders `/lessons/:slug`. The server reads the lesson from the catalog at once, so the
/// page's islands render once and outside any `Suspend`: an island's resources registered
/// by a render that a `Suspend` throws away would not be the ones the browser hydrates.
/// In the browser (the whole app, after a client-side navigation) a resource loads it.
#[component]
pub fn LessonPage() -> impl IntoView {
    let params = use_params_map();
    #[cfg(feature = "ssr")]
    {
        let slug = params.read_untracked().get("slug").unwrap_or_default();
        match crate::lessons::find_lesson(&slug) {
            Ok(lesson) => view! { <LessonView lesson /> }.into_any(),
            Err(error) => {
                let mut errors = Errors::default();
                errors.insert_with_default_key(error);
                view! { <LessonMissing errors=ArcRwSignal::new(errors) /> }.into_any()
            }
        }
    }
    #[cfg(not(feature = "ssr"))]
    {
        let slug = move || params.read().get("slug").unwrap_or_default();
        let lesson = Resource::new(slug, get_lesson);
        view! {
            <Transition fallback=|| view! { <p class="loading">"Loading the lesson…"</p> }>
                <ErrorBoundary fallback=|errors| view! { <LessonMissing errors /> }>
                    {move || Suspend::new(async move {
                        lesson.await.map(|lesson| view! { <LessonView lesson /> })
                    })}
                </ErrorBoundary>
            </Transition>
        }
    }
}

/// What `/lessons/:slug` shows for a slug that names no lesson.
#[component]
fn LessonMissing(errors: ArcRwSignal<Errors>) -> impl IntoView {
    view! {
        <Title text="Lesson not found" />
        <ErrorList errors />
        <p><a href="/">"Back to the lessons"</a></p>
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
            <div class="lesson-body" inner_html=scrolling_tables(&lesson.html)></div>
            {lesson.widget.map(|widget| view! { <LessonWidget widget /> })}
            <LessonClaimsBox slug=slug.clone() />
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

/// "I've got it": records a check-in on the server and shows the class total. An island:
/// see `crate::islands::IslandsBundle`.
#[cfg_attr(lessons_islands, island)]
#[cfg_attr(not(lessons_islands), component)]
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

/// Puts each table of a lesson's HTML in a region of its own that scrolls sideways on a
/// narrow screen (the page itself never does) and that keyboard users can focus to
/// scroll it.
fn scrolling_tables(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 256);
    let mut rest = html;
    let mut count = 0;
    while let Some(start) = rest.find("<table>") {
        count += 1;
        out.push_str(&rest[..start]);
        out.push_str(&format!(
            "<div class=\"table-scroll\" role=\"region\" tabindex=\"0\" aria-label=\"Table {count} of the lesson\">"
        ));
        rest = &rest[start..];
        let end = rest
            .find("</table>")
            .map_or(rest.len(), |end| end + "</table>".len());
        out.push_str(&rest[..end]);
        out.push_str("</div>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::scrolling_tables;

    #[test]
    fn each_table_gets_a_scrolling_region_of_its_own() {
        let html = "<p>a</p><table><tr><td>1</td></tr></table><p>b</p><table></table>";
        assert_eq!(
            scrolling_tables(html),
            "<p>a</p><div class=\"table-scroll\" role=\"region\" tabindex=\"0\" aria-label=\"Table 1 of the lesson\"><table><tr><td>1</td></tr></table></div>\
             <p>b</p><div class=\"table-scroll\" role=\"region\" tabindex=\"0\" aria-label=\"Table 2 of the lesson\"><table></table></div>"
        );
        assert_eq!(scrolling_tables("<p>no tables</p>"), "<p>no tables</p>");
    }
}
