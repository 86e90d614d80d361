//! The student's pages: their class (phase, expert topic, lessons, standings), following
//! the instructor live, and the quiz with drafts, submission and grades.

use super::shared::{ErrorList, Standings, action_error, points, points_worth, when};
use crate::classroom::{ClassLesson, StudentClass, my_class};
use crate::error::AppError;
use crate::live::{refetch_on_class_change, show_if_changed};
use crate::phase::Phase;
use crate::quiz::{
    AnswerFormat, MAX_ANSWER_CHARS, QuizState, SaveAnswer, StudentQuiz, StudentQuizItem, my_quiz,
};
use leptos::prelude::*;
use leptos_meta::Title;

/// `/class`: what the student's team does now, following the instructor's phase live. The
/// server renders the class as it is; [`LiveClass`], an island (see
/// `crate::islands::IslandsBundle`), keeps it up to date in the browser.
#[component]
pub fn StudentClassPage() -> impl IntoView {
    let class = Resource::new(|| (), |_| my_class());
    view! {
        <Title text="My class" />
        <Transition fallback=|| view! { <p class="loading">"Loading your class…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <NotInAClass errors /> }>
                {move || Suspend::new(async move { class.await.map(|class| view! { <LiveClass class /> }) })}
            </ErrorBoundary>
        </Transition>
    }
}

/// Why the class or the quiz cannot be shown (no student session, most often), and the way
/// to join.
#[component]
fn NotInAClass(errors: ArcRwSignal<Errors>) -> impl IntoView {
    view! {
        <ErrorList errors />
        <p><a href="/join">"Join a class"</a></p>
    }
}

/// The class page's content, fetched again whenever the class changes (phase, topics,
/// teams, grades). It takes no resource, so the server can render it inside the page's
/// `Suspend`: nothing of it waits to be hydrated but its props.
#[cfg_attr(class_islands, island)]
#[cfg_attr(not(class_islands), component)]
fn LiveClass(class: StudentClass) -> impl IntoView {
    let class = RwSignal::new(Ok::<_, AppError>(class));
    refetch_on_class_change(my_class, move |fresh| show_if_changed(class, fresh));
    move || match class.get() {
        Ok(class) => view! { <ClassView class /> }.into_any(),
        Err(error) => {
            let mut errors = Errors::default();
            errors.insert_with_default_key(error);
            view! { <NotInAClass errors=ArcRwSignal::new(errors) /> }.into_any()
        }
    }
}

/// The loaded class page.
#[component]
fn ClassView(class: StudentClass) -> impl IntoView {
    let StudentClass {
        class_name,
        name,
        team,
        teammates,
        phase,
        topic,
        lessons,
        quiz_open,
        standings,
    } = class;
    let with = if teammates.is_empty() {
        String::from("nobody else has joined your team yet")
    } else {
        format!("with {}", teammates.join(", "))
    };
    let body = match phase {
        Phase::Study => {
            let others: Vec<ClassLesson> = lessons.into_iter().filter(|l| !l.mine).collect();
            view! {
                {match topic {
                    Some(topic) => view! {
                        <section class="expert-topic" data-testid="expert-topic">
                            <h2>"Your team's expert topic"</h2>
                            <a class="topic-link" href=format!("/lessons/{}", topic.slug)>{topic.title}</a>
                            <p>"Study it together until every member could teach it."</p>
                        </section>
                    }
                    .into_any(),
                    None => view! {
                        <p class="hint" data-testid="expert-topic">"Your teacher has not given your team a topic yet; this page updates when they do."</p>
                    }
                    .into_any(),
                }}
                <LessonList title="The other topics (other teams will teach you these)" lessons=others />
            }
            .into_any()
        }
        Phase::Teach => view! { <LessonList title="All topics and their expert teams" lessons /> }.into_any(),
        Phase::Quiz | Phase::Competition => view! {
            <section class="panel">
                <h2>"Quiz"</h2>
                <p>
                    {if quiz_open { "The quiz is open. " } else { "The quiz is closed. " }}
                    <a href="/quiz" data-testid="quiz-link">{if quiz_open { "Answer the quiz" } else { "See your answers and grades" }}</a>
                </p>
            </section>
            {(phase == Phase::Competition).then(|| view! {
                <section class="panel">
                    <h2>"Competition"</h2>
                    <p><a href="/team" data-testid="team-link">"Fine-tune a model with your team and see the leaderboard"</a></p>
                </section>
            })}
            <section class="panel">
                <h2>"Quiz standings"</h2>
                <Standings scores=standings />
            </section>
            <LessonList title="All topics" lessons />
        }
        .into_any(),
    };
    view! {
        <p class="breadcrumb">{class_name}</p>
        <h1>{format!("Hello, {name}")}</h1>
        <p>{format!("You are in {team}, {with}.")}</p>
        <ol class="phase-track" aria-label="Class phases">
            {Phase::ALL.into_iter().map(|p| view! {
                <li class:current={p == phase} aria-current=(p == phase).then_some("step")>{p.label()}</li>
            }).collect_view()}
        </ol>
        <p class="phase-banner" data-testid="phase" data-phase=phase.as_str()>
            <strong>{format!("{} phase. ", phase.label())}</strong>
            {phase.instructions()}
        </p>
        {body}
    }
}

/// Lessons with their expert teams.
#[component]
fn LessonList(title: &'static str, lessons: Vec<ClassLesson>) -> impl IntoView {
    view! {
        <section class="panel">
            <h2>{title}</h2>
            <ul class="topic-list" data-testid="topic-list">
                {lessons.into_iter().map(|lesson| {
                    let experts = if lesson.expert_teams.is_empty() {
                        String::new()
                    } else {
                        format!(" (experts: {})", lesson.expert_teams.join(", "))
                    };
                    view! {
                        <li class:mine=lesson.mine>
                            <a href=format!("/lessons/{}", lesson.topic.slug)>{lesson.topic.title}</a>
                            {experts}
                            {lesson.mine.then_some(" · your team")}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}

/// `/quiz`: every question with the student's draft, answer and grade. The server renders
/// the quiz as it is; [`LiveQuiz`], an island (see `crate::islands::IslandsBundle`), takes
/// the answers and follows the class live in the browser.
#[component]
pub fn QuizPage() -> impl IntoView {
    let quiz = Resource::new(|| (), |_| my_quiz());
    view! {
        <Title text="Quiz" />
        <h1>"Quiz"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading the quiz…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <NotInAClass errors /> }>
                {move || Suspend::new(async move { quiz.await.map(|quiz| view! { <LiveQuiz quiz /> }) })}
            </ErrorBoundary>
        </Transition>
    }
}

/// The quiz's questions. They are rendered once, so typing is never lost; live changes
/// (the quiz opening or closing, new grades) arrive through signals instead, and the
/// questions are rendered again only when the quiz first opens (or goes back to not yet
/// open). Like [`LiveClass`], it takes no resource.
#[cfg_attr(class_islands, island)]
#[cfg_attr(not(class_islands), component)]
fn LiveQuiz(quiz: StudentQuiz) -> impl IntoView {
    let live_state = RwSignal::new(quiz.state);
    let shown = RwSignal::new(quiz);
    let latest = RwSignal::new(Vec::<StudentQuizItem>::new());
    refetch_on_class_change(my_quiz, move |fresh| {
        // A failed fetch keeps the quiz as it was; the next change tries again.
        // (Nor is there anything to do once the page is gone.)
        let (Ok(fresh), Some(before)) = (fresh, live_state.try_get_untracked()) else {
            return;
        };
        live_state.set(fresh.state);
        if before == QuizState::NotYet || fresh.state == QuizState::NotYet {
            shown.set(fresh);
        } else {
            latest.set(fresh.items);
        }
    });
    let open = Signal::derive(move || live_state.get() == QuizState::Open);
    move || {
        let quiz = shown.get();
        if quiz.state == QuizState::NotYet {
            return view! {
                <p class="hint" data-testid="quiz-state">"The quiz opens when your teacher starts the quiz phase. This page updates by itself."</p>
            }
            .into_any();
        }
        view! {
            <p class="hint" data-testid="quiz-state">
                {move || if open.get() {
                    "Save drafts as you go; hand each answer in with Submit. You can change answers until your teacher closes the quiz."
                } else {
                    "The quiz is closed: your answers are final."
                }}
            </p>
            <ol class="quiz">
                {quiz.items.into_iter().map(|entry| view! { <QuizQuestion entry open latest /> }).collect_view()}
            </ol>
        }
        .into_any()
    }
}

/// One question: the answer box, Save draft and Submit, and the grade.
#[component]
fn QuizQuestion(
    entry: StudentQuizItem,
    open: Signal<bool>,
    /// The whole quiz as last fetched live; this question takes its new grade from it.
    latest: RwSignal<Vec<StudentQuizItem>>,
) -> impl IntoView {
    let StudentQuizItem { item, mine } = entry;
    let key = item.key.clone();
    // Buttons and the automatic draft save on leaving the box are separate actions, so a
    // draft save in flight never disables the button being clicked.
    let save = ServerAction::<SaveAnswer>::new();
    let autosave = ServerAction::<SaveAnswer>::new();
    let initial = mine
        .draft
        .clone()
        .or_else(|| mine.answer.clone())
        .unwrap_or_default();
    let text = RwSignal::new(initial);
    // The latest saved state: from the page load, then from each save.
    let saved = RwSignal::new(mine);
    Effect::new(move |_| {
        if let Some(Ok(updated)) = save.value().get() {
            saved.set(updated.mine);
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(updated)) = autosave.value().get() {
            saved.update(|mine| {
                mine.draft = updated.mine.draft;
            });
        }
    });
    let own_key = key.clone();
    Effect::new(move |_| {
        let fresh = latest.with(|items| {
            items
                .iter()
                .find(|entry| entry.item.key == own_key)
                .map(|entry| entry.mine.clone())
        });
        if let Some(fresh) = fresh {
            saved.update(|mine| {
                mine.points = fresh.points;
                mine.feedback = fresh.feedback;
            });
        }
    });
    let draft_key = key.clone();
    let dispatch = move |submit: bool| {
        save.dispatch(SaveAnswer {
            key: key.clone(),
            text: text.get_untracked(),
            submit,
        });
    };
    let dispatch_draft = move || {
        let typed = text.get_untracked();
        let unchanged = saved.with_untracked(|mine| {
            mine.draft.as_deref() == Some(typed.trim())
                || (mine.draft.is_none() && mine.answer.as_deref() == Some(typed.trim()))
        });
        if !unchanged {
            autosave.dispatch(SaveAnswer {
                key: draft_key.clone(),
                text: typed,
                submit: false,
            });
        }
    };
    let status = move || {
        let mine = saved.get();
        let typed = text.get();
        match (&mine.answer, &mine.submitted_at) {
            (Some(answer), Some(at)) if answer.trim() == typed.trim() => {
                format!("Submitted {}", when(at))
            }
            (Some(_), Some(at)) => format!(
                "Changed since you submitted ({}); submit again to hand in the new answer",
                when(at)
            ),
            _ if mine.draft.is_some() => "Draft saved, not handed in yet".to_string(),
            _ => "Not answered yet".to_string(),
        }
    };
    let max_points = item.max_points;
    let grade = move || {
        let mine = saved.get();
        mine.points.map(|p| {
            view! {
                <p class="grade" data-testid="grade">
                    <strong>{format!("{} / {} points", points(p), points(max_points))}</strong>
                    {mine.feedback.map(|f| view! { " · " <span class="feedback">{f}</span> })}
                </p>
            }
        })
    };
    let field = match item.format.clone() {
        AnswerFormat::Text => view! {
            <textarea
                rows="4"
                maxlength=MAX_ANSWER_CHARS.to_string()
                aria-label=item.prompt.clone()
                disabled=move || !open.get()
                prop:value=move || text.get()
                on:input=move |ev| text.set(event_target_value(&ev))
                on:change=move |_| dispatch_draft()
            ></textarea>
            <span class="hint">{move || format!("{} / {MAX_ANSWER_CHARS} characters", text.get().chars().count())}</span>
        }
        .into_any(),
        AnswerFormat::Number => view! {
            <input
                type="text"
                inputmode="decimal"
                aria-label=item.prompt.clone()
                disabled=move || !open.get()
                prop:value=move || text.get()
                on:input=move |ev| text.set(event_target_value(&ev))
            />
        }
        .into_any(),
        AnswerFormat::Choice(choices) => {
            let group = format!("choice-{}", item.key);
            view! {
                <div class="choices" role="radiogroup" aria-label=item.prompt.clone()>
                    {choices.into_iter().map(|choice| {
                        let value = choice.clone();
                        let checked = choice.clone();
                        view! {
                            <label class="check">
                                <input
                                    type="radio"
                                    name=group.clone()
                                    value=choice.clone()
                                    disabled=move || !open.get()
                                    prop:checked=move || text.get() == checked
                                    on:change=move |_| text.set(value.clone())
                                />
                                {choice}
                            </label>
                        }
                    }).collect_view()}
                </div>
            }
            .into_any()
        }
    };
    view! {
        <li class="quiz-question" data-testid="quiz-question" data-key=item.key.clone()>
            <p class="hint">{format!("{} · {}", item.lesson_title, points_worth(item.max_points))}</p>
            <p class="prompt">{item.prompt.clone()}</p>
            {field}
            <div class="quiz-actions">
                <button type="button" disabled=move || !open.get() || save.pending().get() on:click={
                    let dispatch = dispatch.clone();
                    move |_| dispatch(false)
                }>"Save draft"</button>
                <button type="button" class="primary" disabled=move || !open.get() || save.pending().get() on:click=move |_| dispatch(true)>
                    "Submit"
                </button>
                <span class="status" role="status" data-testid="answer-status">{status}</span>
            </div>
            {move || action_error(save.value().get()).or_else(|| action_error(autosave.value().get()))}
            {grade}
        </li>
    }
}
