//! Claims the class tests: the instructor's panel on the class page (one button per claim)
//! and the box under a lesson with the class's result next to the claim.

use super::runs::{every_refresh, keep};
use super::shared::action_error;
use crate::charts::ScrollRegion;
use crate::claims::{
    ArmView, ClaimTests, ClaimView, Finding, QueueClaim, class_claims, lesson_claims,
};
use crate::live::refresher;
use crate::runs::timing::duration;
use leptos::prelude::*;

/// The class page's panel: each claim with its test, sized to this machine, a button that
/// queues it, and the class's result. The claims are fetched again after each queueing,
/// when another model is picked, and every few seconds while a test's runs wait or train;
/// if they failed to load (`None`), the panel says so until a fetch succeeds. An island of
/// the instructor's pages' bundle (see `crate::islands::IslandsBundle`); it takes no
/// resource, so the server can render it inside the class page's `Suspend`.
#[cfg_attr(instructor_islands, island)]
#[cfg_attr(not(instructor_islands), component)]
pub fn ClassClaimsPanel(class_id: i64, tests: Option<ClaimTests>) -> impl IntoView {
    let queue = ServerAction::<QueueClaim>::new();
    // The model the tests train (empty: the default model).
    let model = RwSignal::new(String::new());
    let tests = RwSignal::new(tests);
    let refresh = refresher(
        move || class_claims(class_id, model.get_untracked()),
        keep(tests),
    );
    every_refresh({
        let refresh = refresh.clone();
        move || {
            let testing = tests.with_untracked(|tests| {
                tests
                    .as_ref()
                    .is_some_and(|tests| tests.claims.iter().any(ClaimView::is_active))
            });
            if testing {
                refresh();
            }
        }
    });
    Effect::watch(
        move || (queue.version().get(), model.get()),
        move |_, _, _| refresh(),
        false,
    );
    view! {
        <section class="panel" aria-labelledby="claims-heading">
            <h2 id="claims-heading">"Test the lessons' claims"</h2>
            <p class="hint">"Each button queues the runs that test one of the lessons' claims on this machine. The lesson then shows your class's result next to the claim, with links to the runs, and says so when the result disagrees."</p>
            {move || match tests.get() {
                None => view! { <p class="error" role="alert">"The claims could not be loaded; this panel tries again when you pick a model."</p> }.into_any(),
                Some(tests) => {
                    let chosen = tests.model.clone();
                    let picker = view! {
                        <label class="field">
                            "Model the tests train"
                            <select
                                data-testid="claim-model"
                                on:change=move |event| model.set(event_target_value(&event))
                            >
                                {tests.models.iter().map(|name| view! {
                                    <option value=name.clone() selected=*name == tests.model>{name.clone()}</option>
                                }).collect_view()}
                            </select>
                        </label>
                    };
                    let claims = tests.claims.into_iter().map(|claim| {
                        let model = chosen.clone();
                        let slug = claim.slug.clone();
                        let (article_id, button_id) = (format!("claim-{slug}"), format!("test-claim-{slug}"));
                        let active = claim.is_active();
                        let total: Option<f64> = claim.arms.iter().map(|a| a.estimated_seconds).sum();
                        view! {
                            <article class="claim" data-testid=article_id>
                                <h3>{claim.title.clone()}</h3>
                                <ClaimBody claim=claim.clone() />
                                <p>
                                    <button
                                        data-testid=button_id
                                        disabled=move || active || queue.pending().get()
                                        on:click=move |_| { queue.dispatch(QueueClaim { class_id, slug: slug.clone(), model: model.clone() }); }
                                    >
                                        {if active { "Testing…" } else if claim.finding.is_some() { "Test it again" } else { "Test this claim" }}
                                    </button>
                                    {total.map(|seconds| view! { <span class="hint">{format!(" About {} of training in all.", duration(seconds))}</span> })}
                                    " "
                                    <a href=format!("/lessons/{}", claim.lesson)>"The lesson"</a>
                                </p>
                            </article>
                        }
                    }).collect_view();
                    view! { {picker} {claims} }.into_any()
                }
            }}
            {move || action_error(queue.value().get())}
        </section>
    }
}

/// The claims a lesson makes, with the student's class's result next to each. An island:
/// see `crate::islands::IslandsBundle`.
#[cfg_attr(lessons_islands, island)]
#[cfg_attr(not(lessons_islands), component)]
pub fn LessonClaimsBox(slug: String) -> impl IntoView {
    let tick = refresh_while_testing();
    let claims = Resource::new(move || tick.get(), move |_| lesson_claims(slug.clone()));
    follow_tests(tick, move || {
        claims
            .get()
            .and_then(Result::ok)
            .map(|lesson| lesson.claims)
    });
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                claims.await.ok().filter(|c| !c.claims.is_empty()).map(|lesson| {
                    let in_class = lesson.in_class;
                    view! {
                        <section class="panel claims" aria-labelledby="lesson-claims-heading" data-testid="lesson-claims">
                            <h2 id="lesson-claims-heading">"Test it yourselves"</h2>
                            {lesson.claims.into_iter().map(|claim| view! {
                                <article class="claim" data-testid=format!("lesson-claim-{}", claim.slug)>
                                    <h3>{claim.title.clone()}</h3>
                                    <ClaimBody claim=claim.clone() />
                                    {(claim.finding.is_none()).then(|| view! {
                                        <p class="hint">{if in_class {
                                            "Your class has not tested this claim yet: your teacher can queue the runs from the class page."
                                        } else {
                                            "Students of a class see their class's result here once their teacher queues the test."
                                        }}</p>
                                    })}
                                </article>
                            }).collect_view()}
                        </section>
                    }
                })
            })}
        </Transition>
    }
}

/// A refresh counter that moves every few seconds while a claim's runs are waiting or
/// training (see [`follow_tests`]), and stands still otherwise.
fn refresh_while_testing() -> RefreshWhileTesting {
    let tick = RefreshWhileTesting {
        count: RwSignal::new(0),
        testing: RwSignal::new(false),
    };
    every_refresh(move || {
        if tick.testing.get_untracked() {
            tick.count.update(|n| *n += 1);
        }
    });
    tick
}

/// The counter of [`refresh_while_testing`].
#[derive(Clone, Copy)]
struct RefreshWhileTesting {
    count: RwSignal<u32>,
    testing: RwSignal<bool>,
}

impl RefreshWhileTesting {
    /// The count, tracked.
    fn get(self) -> u32 {
        self.count.get()
    }
}

/// Keeps `tick` moving while the claims `loaded` reads have runs waiting or training.
fn follow_tests(tick: RefreshWhileTesting, loaded: impl Fn() -> Option<Vec<ClaimView>> + 'static) {
    Effect::new(move |_| {
        if let Some(claims) = loaded() {
            tick.testing.set(claims.iter().any(ClaimView::is_active));
        }
    });
}

/// A claim, how it is tested, its runs and the class's finding.
#[component]
fn ClaimBody(claim: ClaimView) -> impl IntoView {
    let tested = claim.arms.iter().any(|arm| arm.run.is_some());
    view! {
        <blockquote class="claim-text">{claim.claim}</blockquote>
        <p>{claim.test}</p>
        {claim.device_note.map(|note| view! { <p class="hint">{note}</p> })}
        {claim.finding.map(|finding| view! { <FindingLine finding /> })}
        <ScrollRegion label="The runs of this test">
            <table class="data-table">
                <thead><tr><th>"Run"</th><th>"Settings"</th><th>"Time"</th>{tested.then(|| view! { <th>"Status"</th><th>"Best validation"</th> })}</tr></thead>
                <tbody>
                    {claim.arms.into_iter().map(|arm| view! { <ArmRow arm tested /> }).collect_view()}
                </tbody>
            </table>
        </ScrollRegion>
    }
}

/// The verdict badge and its sentence.
#[component]
fn FindingLine(finding: Finding) -> impl IntoView {
    view! {
        <p class="finding" data-testid="claim-finding">
            <strong class=finding.verdict.css_class()>{finding.verdict.label()}</strong>
            " "
            {finding.text}
        </p>
    }
}

/// One run of a claim's test.
#[component]
fn ArmRow(arm: ArmView, tested: bool) -> impl IntoView {
    let time = arm
        .estimated_seconds
        .map_or_else(|| "—".to_string(), |s| format!("about {}", duration(s)));
    let (run, status, accuracy) = match arm.run {
        Some(run) => (
            view! { <a href=format!("/runs/{}", run.id)>{format!("{} (#{})", arm.label, run.id)}</a> }.into_any(),
            run.status.as_str().to_string(),
            run.validation_accuracy
                .map_or_else(|| "—".to_string(), |a| format!("{:.1}%", 100.0 * a)),
        ),
        None => (view! { <span>{arm.label}</span> }.into_any(), String::new(), String::new()),
    };
    view! {
        <tr>
            <td>{run}</td>
            <td>{arm.settings}</td>
            <td>{time}</td>
            {tested.then(|| view! { <td>{status}</td><td>{accuracy}</td> })}
        </tr>
    }
}
