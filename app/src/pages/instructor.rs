//! The instructor's pages: their classes, one class's teams, topics and phase, and grading
//! the quiz one question at a time.

use super::DataMissingNotice;
use super::claims::ClassClaimsPanel;
use super::runs::ClassRuns;
use super::shared::{ErrorList, Standings, action_error, id_param, points, points_worth, when};
use crate::auth::MAX_NAME_CHARS;
use crate::charts::ScrollRegion;
use crate::claims::class_claims;
use crate::classroom::{
    AddTeam, AssignTopic, AssignTopicsRoundRobin, ClassAdmin, ClassSummary, CreateClass,
    MAX_RUN_MINUTES, SetPhase, SetQuizClosed, SetRunMinutes, TeamAdmin, Topic, class_dashboard,
    my_classes,
};
use crate::error::AppError;
use crate::grading::{
    AnswerToGrade, GradeAnswer, GradingQueue, MAX_FEEDBACK_CHARS, answers_to_grade,
    grading_overview,
};
use crate::live::{follow_class, refresher, show_if_changed};
use crate::phase::Phase;
use crate::quiz::AnswerFormat;
use crate::runs::{class_boards, team_runs};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

/// `/instructor`: the instructor's classes and a form for a new one. The server renders the
/// list; [`ClassList`], an island (see `crate::islands::IslandsBundle`), adds classes.
#[component]
pub fn InstructorHome() -> impl IntoView {
    let classes = Resource::new(|| (), |_| my_classes());
    view! {
        <Title text="My classes" />
        <h1>"My classes"</h1>
        <DataMissingNotice />
        <p>
            "The base models teams fine-tune are on the " <a href="/instructor/models">"Models"</a>
            " page, where you can add one from a zip and see how each did in your runs; the "
            "data they train on is on the " <a href="/instructor/data">"Training data"</a> " page."
        </p>
        <Transition fallback=|| view! { <p class="loading">"Loading your classes…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move { classes.await.map(|classes| view! { <ClassList classes /> }) })}
            </ErrorBoundary>
        </Transition>
    }
}

/// The form for a new class and the table of classes, fetched again after each class is
/// created. It takes no resource, so the server can render it inside the page's `Suspend`.
#[cfg_attr(instructor_islands, island)]
#[cfg_attr(not(instructor_islands), component)]
fn ClassList(classes: Vec<ClassSummary>) -> impl IntoView {
    let create = ServerAction::<CreateClass>::new();
    let classes = RwSignal::new(classes);
    let form = NodeRef::<leptos::html::Form>::new();
    clear_after_success(create, form);
    let refresh = refresher(my_classes, move |fresh| {
        if let Ok(fresh) = fresh {
            let _ = classes.try_set(fresh);
        }
    });
    Effect::watch(
        move || create.version().get(),
        move |_, _, _| refresh(),
        false,
    );
    view! {
        <ActionForm action=create node_ref=form attr:class="inline-fields">
            <label class="field">
                "New class"
                <input type="text" name="name" required maxlength=MAX_NAME_CHARS.to_string() placeholder="e.g. NLP, Tuesday group" />
            </label>
            <button type="submit" disabled=move || create.pending().get()>"Create class"</button>
        </ActionForm>
        {move || action_error(create.value().get())}
        {move || {
            let classes = classes.get();
            if classes.is_empty() {
                return view! { <p class="hint">"No classes yet: create one above."</p> }.into_any();
            }
            view! {
                <ScrollRegion label="Your classes">
                    <table class="data-table" data-testid="classes">
                        <thead><tr><th>"Class"</th><th>"Join code"</th><th>"Phase"</th><th>"Teams"</th><th>"Students"</th></tr></thead>
                        <tbody>
                            {classes.into_iter().map(|class| view! {
                                <tr>
                                    <td><a href=format!("/instructor/classes/{}", class.id)>{class.name}</a></td>
                                    <td><code class="join-code">{class.join_code}</code></td>
                                    <td>{class.phase.label()}</td>
                                    <td>{class.teams}</td>
                                    <td>{class.students}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </ScrollRegion>
            }
            .into_any()
        }}
    }
}

/// `/instructor/classes/:id`: join code, phase, teams and topics, quiz standings.
#[component]
pub fn ClassAdminPage() -> impl IntoView {
    let class_id = id_param();
    // The four load at once; only the class itself is needed for the page: a panel whose
    // data fails to load says so, or is left out.
    let class = Resource::new(move || class_id.get(), class_dashboard);
    let tests = Resource::new(move || class_id.get(), |id| class_claims(id, String::new()));
    let runs = Resource::new(move || class_id.get(), |id| team_runs(Some(id)));
    let boards = Resource::new(move || class_id.get(), |id| class_boards(Some(id)));
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the class…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    let class = class.await?;
                    let (tests, runs, boards) = (tests.await.ok(), runs.await.ok(), boards.await.ok());
                    let (id, name) = (class.summary.id, class.summary.name.clone());
                    Ok::<_, AppError>(view! {
                        <Title text=name.clone() />
                        <p class="breadcrumb"><a href="/instructor">"My classes"</a>" / "{name.clone()}</p>
                        <h1>{name}</h1>
                        <DataMissingNotice />
                        <ClassDashboard class />
                        <ClassClaimsPanel class_id=id tests />
                        <ClassRuns class_id=id runs boards />
                    })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// The class's join code, phase, teams and topics, time per run and standings, with the
/// instructor's actions. Fetched again after each action and whenever the class changes
/// (students joining, answers graded). An island of the instructor's pages' bundle (see
/// `crate::islands::IslandsBundle`); it takes no resource, so the server can render it
/// inside the page's `Suspend`.
#[cfg_attr(instructor_islands, island)]
#[cfg_attr(not(instructor_islands), component)]
fn ClassDashboard(class: ClassAdmin) -> impl IntoView {
    let id = class.summary.id;
    let set_phase = ServerAction::<SetPhase>::new();
    let set_closed = ServerAction::<SetQuizClosed>::new();
    let add_team = ServerAction::<AddTeam>::new();
    let round_robin = ServerAction::<AssignTopicsRoundRobin>::new();
    let assign = ServerAction::<AssignTopic>::new();
    let set_minutes = ServerAction::<SetRunMinutes>::new();
    let team_form = NodeRef::<leptos::html::Form>::new();
    clear_after_success(add_team, team_form);
    let class = RwSignal::new(class);
    let refresh = refresher(
        move || class_dashboard(id),
        move |fresh| {
            if let Ok(fresh) = fresh {
                show_if_changed(class, fresh);
            }
        },
    );
    follow_class(Some(id), refresh.clone());
    Effect::watch(
        move || {
            (
                set_phase.version().get(),
                set_closed.version().get(),
                add_team.version().get(),
                round_robin.version().get(),
                assign.version().get(),
                set_minutes.version().get(),
            )
        },
        move |_, _, _| refresh(),
        false,
    );
    let errors = move || {
        action_error(set_phase.value().get())
            .or_else(|| action_error(set_closed.value().get()))
            .or_else(|| action_error(add_team.value().get()))
            .or_else(|| action_error(round_robin.value().get()))
            .or_else(|| action_error(assign.value().get()))
            .or_else(|| action_error(set_minutes.value().get()))
    };
    view! {
        {move || {
            let ClassAdmin { summary, run_minutes, quiz_closed, teams, topics, standings, estimates } = class.get();
            let phase = summary.phase;
            view! {
                <p class="join-banner">
                    "Students join at " <strong>"/join"</strong> " with the code "
                    <code class="join-code big" data-testid="join-code">{summary.join_code}</code>
                </p>
                <section class="panel">
                    <h2>"Phase"</h2>
                    <div class="phase-steps" role="group" aria-label="Class phase">
                        {Phase::ALL.into_iter().map(|p| view! {
                            <button
                                class:current={p == phase}
                                aria-pressed=(p == phase).to_string()
                                data-testid=format!("phase-{}", p.as_str())
                                on:click=move |_| { set_phase.dispatch(SetPhase { class_id: id, phase: p }); }
                            >
                                {p.label()}
                            </button>
                        }).collect_view()}
                    </div>
                    <p class="hint">{phase.instructions()}</p>
                    <p>
                        {if quiz_closed { "The quiz is closed: answers are final. " } else { "The quiz accepts answers in the quiz and competition phases. " }}
                        <button
                            data-testid="toggle-quiz"
                            on:click=move |_| { set_closed.dispatch(SetQuizClosed { class_id: id, closed: !quiz_closed }); }
                        >
                            {if quiz_closed { "Reopen the quiz" } else { "Close the quiz" }}
                        </button>
                    </p>
                    <p>
                        <a href=format!("/instructor/classes/{id}/grading")>"Grade the quiz"</a>
                        " · "
                        <a href=format!("/instructor/classes/{id}/answers.csv") rel="external" download="answers.csv">"Download answers and grades (CSV)"</a>
                    </p>
                </section>
                <section class="panel">
                    <h2>"Teams and expert topics"</h2>
                    <ActionForm action=add_team node_ref=team_form attr:class="inline-fields">
                        <input type="hidden" name="class_id" value=id.to_string() />
                        <label class="field">
                            "New team"
                            <input type="text" name="name" required maxlength=MAX_NAME_CHARS.to_string() placeholder="e.g. Team Red" />
                        </label>
                        <button type="submit">"Add team"</button>
                    </ActionForm>
                    <button
                        data-testid="round-robin"
                        on:click=move |_| { round_robin.dispatch(AssignTopicsRoundRobin { class_id: id }); }
                    >
                        "Give each team a topic in turn"
                    </button>
                    <TeamTable teams topics assign />
                </section>
                <section class="panel">
                    <h2>"Runs"</h2>
                    <ActionForm action=set_minutes attr:class="inline-fields">
                        <input type="hidden" name="class_id" value=id.to_string() />
                        <label class="field">
                            "Longest run, in minutes"
                            <input type="number" name="minutes" required min="1" max=MAX_RUN_MINUTES.to_string() value=run_minutes.to_string() data-testid="run-minutes" />
                        </label>
                        <button type="submit">"Set"</button>
                    </ActionForm>
                    <p class="hint">"A run that reaches this time stops and finishes with its best model so far, and its page says so. One run cannot hold the training machine all lesson. The teams' run form opens on settings sized to fit this time on this machine."</p>
                    <EstimateTable checks=estimates />
                </section>
                <section class="panel">
                    <h2>"Quiz standings"</h2>
                    <Standings scores=standings />
                </section>
            }
        }}
        {errors}
    }
}

/// Empties `form` each time `action` succeeds, ready for the next entry.
fn clear_after_success<A, T>(action: ServerAction<A>, form: NodeRef<leptos::html::Form>)
where
    A: leptos::server_fn::ServerFn<Output = T, Error = crate::error::AppError>
        + Clone
        + Send
        + Sync
        + 'static,
    T: Clone + Send + Sync + 'static,
{
    Effect::new(move |_| {
        if matches!(action.value().get(), Some(Ok(_)))
            && let Some(form) = form.get_untracked()
        {
            form.reset();
        }
    });
}

/// The teams with a topic picker each.
#[component]
fn TeamTable(
    teams: Vec<TeamAdmin>,
    topics: Vec<Topic>,
    assign: ServerAction<AssignTopic>,
) -> impl IntoView {
    if teams.is_empty() {
        return view! { <p class="hint">"No teams yet. Add one per group of three to five students."</p> }.into_any();
    }
    view! {
        <ScrollRegion label="Teams">
            <table class="data-table" data-testid="teams">
                <thead><tr><th>"Team"</th><th>"Expert topic"</th><th>"Members"</th></tr></thead>
                <tbody>
                    {teams.into_iter().map(|team| {
                        let current = team.topic.as_ref().map(|t| t.slug.clone()).unwrap_or_default();
                        let team_id = team.id;
                        view! {
                            <tr>
                                <td>{team.name.clone()}</td>
                                <td>
                                    <select
                                        aria-label=format!("Topic of {}", team.name)
                                        on:change=move |ev| { assign.dispatch(AssignTopic { team_id, slug: event_target_value(&ev) }); }
                                    >
                                        <option value="" selected=current.is_empty()>"(none yet)"</option>
                                        {topics.iter().map(|topic| view! {
                                            <option value=topic.slug.clone() selected={topic.slug == current}>{topic.title.clone()}</option>
                                        }).collect_view()}
                                    </select>
                                </td>
                                <td>{if team.members.is_empty() { "nobody yet".to_string() } else { team.members.join(", ") }}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </ScrollRegion>
    }
    .into_any()
}

/// `/instructor/classes/:id/grading`: every question with how many answers are graded. It
/// has no island: the browser loads no WebAssembly for it (see
/// `crate::islands::IslandsBundle`).
#[component]
pub fn GradingOverviewPage() -> impl IntoView {
    let class_id = id_param();
    let progress = Resource::new(move || class_id.get(), grading_overview);
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    progress.await.map(|progress| {
                        let id = class_id.get_untracked();
                        view! {
                            <Title text=format!("Grading · {}", progress.class_name) />
                            <p class="breadcrumb">
                                <a href="/instructor">"My classes"</a>" / "
                                <a href=format!("/instructor/classes/{id}")>{progress.class_name}</a>" / Grading"
                            </p>
                            <h1>"Grade the quiz, one question at a time"</h1>
                            <ScrollRegion label="Questions to grade">
                                <table class="data-table" data-testid="grading-overview">
                                    <thead><tr><th>"Lesson"</th><th>"Question"</th><th>"Graded"</th></tr></thead>
                                    <tbody>
                                        {progress.questions.into_iter().map(|q| {
                                            let href = format!("/instructor/classes/{id}/grading/{}", q.item.key);
                                            let auto = q.item.auto_graded();
                                            view! {
                                                <tr>
                                                    <td>{q.item.lesson_title}</td>
                                                    <td><a href=href>{q.item.prompt}</a>{auto.then_some(" (graded automatically)")}</td>
                                                    <td>{format!("{} of {}", q.graded, q.submitted)}</td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </ScrollRegion>
                        }
                    })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// `/instructor/classes/:id/grading/:key`: all answers to one question, each with points
/// and feedback.
#[component]
pub fn GradeQuestionPage() -> impl IntoView {
    let class_id = id_param();
    let params = use_params_map();
    let key = move || params.read().get("key").unwrap_or_default();
    let queue = Resource::new(
        move || (class_id.get(), key()),
        |(id, key)| answers_to_grade(id, key),
    );
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the answers…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    queue.await.map(|queue| view! { <GradingView queue class_id=class_id.get_untracked() /> })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// The loaded grading queue.
#[component]
fn GradingView(queue: GradingQueue, class_id: i64) -> impl IntoView {
    let GradingQueue {
        class_name,
        item,
        model_answer,
        answers,
    } = queue;
    let max_points = item.max_points;
    let format_note = match &item.format {
        AnswerFormat::Text => None,
        AnswerFormat::Number => {
            Some("Graded automatically as a number; you can override a grade below.")
        }
        AnswerFormat::Choice(_) => {
            Some("Graded automatically as a choice; you can override a grade below.")
        }
    };
    view! {
        <Title text=format!("Grading: {}", item.lesson_title) />
        <p class="breadcrumb">
            <a href="/instructor">"My classes"</a>" / "
            <a href=format!("/instructor/classes/{class_id}")>{class_name}</a>" / "
            <a href=format!("/instructor/classes/{class_id}/grading")>"Grading"</a>
        </p>
        <h1>{item.prompt}</h1>
        <p class="hint">{format!("{} · worth {}", item.lesson_title, points_worth(max_points))}</p>
        {format_note.map(|note| view! { <p class="hint">{note}</p> })}
        <details class="model-answer" open>
            <summary>"Model answer"</summary>
            <p>{model_answer}</p>
        </details>
        <AnswerQueue answers max_points />
    }
}

/// The answers, each with its grading form, and how many are graded. An island of the
/// instructor's pages' bundle (see `crate::islands::IslandsBundle`).
#[cfg_attr(instructor_islands, island)]
#[cfg_attr(not(instructor_islands), component)]
fn AnswerQueue(answers: Vec<AnswerToGrade>, max_points: f64) -> impl IntoView {
    let total = answers.len();
    let graded = RwSignal::new(answers.iter().filter(|a| a.points.is_some()).count());
    view! {
        <p data-testid="grading-progress">{move || format!("{} of {total} answers graded", graded.get())}</p>
        {(total == 0).then(|| view! { <p class="hint">"No answers handed in yet."</p> })}
        <ol class="answer-queue">
            {answers.into_iter().map(|answer| view! { <AnswerCard answer max_points graded /> }).collect_view()}
        </ol>
    }
}

/// One answer with its grading form.
#[component]
fn AnswerCard(answer: AnswerToGrade, max_points: f64, graded: RwSignal<usize>) -> impl IntoView {
    let grade = ServerAction::<GradeAnswer>::new();
    let was_graded = answer.points.is_some();
    let points_text = RwSignal::new(answer.points.map(points).unwrap_or_default());
    let feedback = RwSignal::new(answer.feedback.clone().unwrap_or_default());
    let id = answer.id;
    // The page's "n of m graded" counts this answer once, the first time it is graded.
    let counted = StoredValue::new(was_graded);
    Effect::new(move |_| {
        if matches!(grade.value().get(), Some(Ok(()))) && !counted.get_value() {
            counted.set_value(true);
            graded.update(|n| *n += 1);
        }
    });
    let saved = move || matches!(grade.value().get(), Some(Ok(())));
    view! {
        <li class="answer-card" data-testid="answer-card">
            <p class="answer-meta">
                <strong>{answer.student}</strong>" · "{answer.team}" · submitted "{when(&answer.submitted_at)}
                {answer.graded_by.map(|by| format!(" · graded ({by})"))}
            </p>
            // Rendered as text: whatever a student typed is never interpreted as HTML.
            <p class="answer-text">{answer.answer}</p>
            <form
                class="inline-fields"
                on:submit=move |ev| {
                    ev.prevent_default();
                    let points = points_text.get().trim().replace(',', ".").parse::<f64>().unwrap_or(f64::NAN);
                    grade.dispatch(GradeAnswer { answer_id: id, points, feedback: feedback.get() });
                }
            >
                <label class="field">
                    {format!("Points (0–{})", points(max_points))}
                    <input
                        type="number"
                        name="points"
                        min="0"
                        max=max_points.to_string()
                        step="0.5"
                        required
                        // Only the first value: writing the signal back would clear what
                        // the browser shows while "1." is typed on the way to "1.5".
                        value=points_text.get_untracked()
                        on:input=move |ev| points_text.set(event_target_value(&ev))
                    />
                </label>
                <label class="field grow">
                    "Feedback"
                    <textarea
                        name="feedback"
                        rows="2"
                        maxlength=MAX_FEEDBACK_CHARS.to_string()
                        prop:value=move || feedback.get()
                        on:input=move |ev| feedback.set(event_target_value(&ev))
                    ></textarea>
                </label>
                <button type="submit" disabled=move || grade.pending().get()>"Save grade"</button>
                {move || saved().then(|| view! { <span class="saved" role="status">"Saved"</span> })}
            </form>
            {move || action_error(grade.value().get())}
        </li>
    }
}

/// The class's latest finished runs: estimated against actual time, and the mean error.
#[component]
fn EstimateTable(checks: Vec<crate::runs::timing::EstimateCheck>) -> impl IntoView {
    use crate::runs::timing::duration;
    let Some(mean) = crate::runs::timing::mean_absolute_error(&checks) else {
        return view! { <p class="hint" data-testid="estimate-checks">"No run has finished yet, so no estimate can be checked."</p> }.into_any();
    };
    view! {
        <ScrollRegion label="Run times against their estimates">
            <table class="data-table" data-testid="estimate-checks">
                <caption>{format!("Run times against the form's estimates: off by {:.0}% on average over the latest {} runs", mean * 100.0, checks.len())}</caption>
                <thead><tr><th scope="col">"Run"</th><th scope="col">"Team"</th><th scope="col">"Estimated"</th><th scope="col">"Took"</th><th scope="col">"Off by"</th></tr></thead>
                <tbody>
                    {checks.into_iter().map(|c| view! {
                        <tr>
                            <td><a href=format!("/runs/{}", c.run_id)>{format!("#{}", c.run_id)}</a></td>
                            <td>{c.team.clone()}</td>
                            <td>{duration(c.estimated_seconds)}</td>
                            <td>{duration(c.trained_seconds)}</td>
                            <td>{format!("{:+.0}%", c.error() * 100.0)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </ScrollRegion>
    }.into_any()
}
