//! The team's training page (`/team`): the run form with its checks and duration
//! estimate, the team's runs and the leaderboards; and the instructor's view of a class's
//! runs. One run's page is in `run.rs`.

use super::shared::{ErrorList, action_error, parameter_count};
use crate::charts::{LineChart, ScrollRegion, ema};
use crate::error::AppError;
use crate::live::{refresher, show_if_changed};
use crate::runs::timing::{Machine, duration};
use crate::runs::{
    Boards, CancelRun, ModelChoice, PrioritizeRun, QueueWait, RUNS_CLOSED, RevealBoard, RunCurves,
    RunFormInfo, RunStatus, RunSummary, SubmitOutcome, SubmitRun, class_boards,
    default_learning_rate_after_switch, load_queue_wait, load_run_form, team_curves, team_runs,
};
use leptos::prelude::*;
use leptos_meta::Title;
use run_protocol::estimate::REFERENCE_PARAMS;
use run_protocol::{Precision, RunSettings, StepPlan};

/// While the calling component lives, calls `refresh` every 4 seconds in the browser
/// (nothing on the server): how the run lists, boards and queue places stay current.
pub(super) fn every_refresh(refresh: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    if let Ok(handle) = set_interval_with_handle(refresh, std::time::Duration::from_secs(4)) {
        on_cleanup(move || handle.clear());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = refresh;
}

/// Where a refreshed list goes: a good answer is shown, and drawn again only when it
/// changed (see [`show_if_changed`]); a failed fetch keeps what is shown.
pub(super) fn keep<T: PartialEq + Send + Sync + 'static>(
    shown: RwSignal<Option<T>>,
) -> impl Fn(Result<T, AppError>) + 'static {
    move |fresh| {
        if let Ok(fresh) = fresh {
            show_if_changed(shown, Some(fresh));
        }
    }
}

/// `/team`: train a model, watch the team's runs, see the boards. The server renders them
/// as they are; [`TeamRuns`], an island (see `crate::islands::IslandsBundle`), keeps them
/// current in the browser.
#[component]
pub fn TeamPage() -> impl IntoView {
    // The four load at once; only the form's data is needed for the page: a list that
    // fails to load is left out, as it is when a later refresh fails.
    let info = Resource::new(|| (), |_| load_run_form());
    let runs = Resource::new(|| (), |_| team_runs(None));
    let boards = Resource::new(|| (), |_| class_boards(None));
    let curves = Resource::new(|| (), |_| team_curves());
    view! {
        <Title text="Team runs" />
        <h1>"Fine-tune a model"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> <p><a href="/join">"Join a class"</a></p> }>
                {move || Suspend::new(async move {
                    let info = info.await?;
                    let (runs, boards, curves) = (runs.await.ok(), boards.await.ok(), curves.await.ok());
                    Ok::<_, AppError>(view! { <TeamRuns info runs boards curves /> })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// The run form, the team's runs, their curves and the boards. The lists are fetched again
/// every few seconds and after each submit or cancel; a list that fails to load (`None`)
/// is left out until a fetch succeeds, and a later failure keeps what is shown. It takes
/// no resource, so the server can render it inside the page's `Suspend`.
#[cfg_attr(runs_islands, island)]
#[cfg_attr(not(runs_islands), component)]
fn TeamRuns(
    info: RunFormInfo,
    runs: Option<Vec<RunSummary>>,
    boards: Option<Boards>,
    curves: Option<Vec<RunCurves>>,
) -> impl IntoView {
    let submit = ServerAction::<SubmitRun>::new();
    let cancel = ServerAction::<CancelRun>::new();
    let (runs, boards, curves) = (
        RwSignal::new(runs),
        RwSignal::new(boards),
        RwSignal::new(curves),
    );
    let queue = RwSignal::new(info.queue);
    let refresh_runs = refresher(|| team_runs(None), keep(runs));
    let refresh_boards = refresher(|| class_boards(None), keep(boards));
    let refresh_curves = refresher(team_curves, keep(curves));
    let refresh_queue = refresher(
        load_queue_wait,
        move |fresh: Result<QueueWait, AppError>| {
            if let Ok(fresh) = fresh {
                show_if_changed(queue, fresh);
            }
        },
    );
    every_refresh({
        let (runs, boards, queue) = (
            refresh_runs.clone(),
            refresh_boards.clone(),
            refresh_queue.clone(),
        );
        move || {
            runs();
            boards();
            queue();
            refresh_curves();
        }
    });
    Effect::watch(
        move || submit.version().get(),
        {
            let (runs, boards) = (refresh_runs.clone(), refresh_boards);
            move |_, _, _| {
                runs();
                boards();
                refresh_queue();
            }
        },
        false,
    );
    Effect::watch(
        move || cancel.version().get(),
        move |_, _, _| refresh_runs(),
        false,
    );
    view! {
        <NewRunForm info queue submit />
        <section class="panel">
            <h2>"Your team's runs"</h2>
            {move || runs.get().map(|runs| view! { <RunList runs cancel /> })}
            {move || action_error(cancel.value().get())}
        </section>
        {move || curves.get().map(|curves| view! { <CompareRuns curves /> })}
        {move || boards.get().map(|boards| view! { <BoardsView boards /> })}
    }
}

/// The run form: choices, checks, hints and the duration estimate.
#[component]
fn NewRunForm(
    info: RunFormInfo,
    queue: RwSignal<QueueWait>,
    submit: ServerAction<SubmitRun>,
) -> impl IntoView {
    let form = RwSignal::new(info.suggested.clone());
    let send = move |confirmed: bool| {
        submit.dispatch(SubmitRun {
            form: form.get_untracked(),
            confirmed,
        });
    };
    let models = info.models.clone();
    let runs_open = info.runs_open && info.data_missing.is_none();
    let machine = info.machine;
    let estimate = move || {
        let form = form.get();
        let machine = machine?;
        let model = models
            .iter()
            .find(|m| m.name == form.model)
            .cloned()
            .unwrap_or_else(|| ModelChoice {
                name: form.model.clone(),
                params: REFERENCE_PARAMS,
                family: run_protocol::Family::Bert,
            });
        let settings = RunSettings {
            train_subset: form.train_subset.trim().parse::<usize>().ok(),
            batch_size: form.batch_size.trim().parse().ok().filter(|b| *b > 0)?,
            epochs: form.epochs.trim().parse().ok().filter(|e| *e > 0)?,
            ..RunSettings::default()
        };
        let examples = settings
            .train_subset
            .map_or(machine.train_examples, |n| n.min(machine.train_examples));
        let steps =
            StepPlan::checked(examples, settings.batch_size, settings.epochs, 0.0)?.total_steps;
        let seconds = machine.estimate(&settings, &model)?;
        let stops = seconds >= machine.limit_seconds;
        Some(format!(
            "{steps} steps; about {}, evaluations included{}.",
            duration(seconds),
            if stops {
                ", stopping at the time limit"
            } else {
                ""
            }
        ))
    };
    let speed_source = if info.machine.is_some_and(|m| m.measured) {
        "Estimates use the speed this machine measured in its latest runs."
    } else {
        "Estimates use this kind of device's typical speed until a run here has measured it."
    };
    let budget_note = if info.machine.is_none() {
        "The form starts on the default settings: how long a run takes can be estimated once \
         the training data is installed."
            .to_string()
    } else if info.over_budget {
        format!(
            "Even the smallest run measured to learn takes longer than the class's {} min per run: ask your teacher for more minutes.",
            info.run_minutes
        )
    } else {
        format!(
            "The form starts on settings that fit the class's {} min per run on this machine and are measured to reach at least {:.0}% on SST-2 dev.",
            info.run_minutes, info.suggested_accuracy
        )
    };
    // Without training data no run can be queued, which the form says instead.
    let data_missing = info.data_missing.is_some();
    let queue_note = move || (!data_missing).then(|| queue.get().note());
    // One text input per field of the form, named as the field.
    macro_rules! text_input {
        ($label:literal, $field:ident) => {
            view! {
                <label class="field">
                    <span>{$label}</span>
                    <input
                        type="text"
                        name=stringify!($field)
                        prop:value=move || form.with(|f| f.$field.clone())
                        on:input=move |ev| form.update(|f| f.$field = event_target_value(&ev))
                    />
                </label>
            }
        };
    }
    view! {
        <section class="panel run-form">
            <h2>"New run"</h2>
            <form on:submit=move |ev| {
                ev.prevent_default();
                send(false);
            }>
                <div class="fields">
                    <label class="field">
                        <span>"Base model"</span>
                        <select name="model" on:change=move |ev| form.update(|f| f.model = event_target_value(&ev))>
                            {info.models.iter().map(|m| {
                                let selected = form.with_untracked(|f| m.name == f.model);
                                view! { <option value=m.name.clone() selected=selected>{model_label(m, machine)}</option> }
                            }).collect_view()}
                        </select>
                    </label>
                    <label class="field">
                        <span>"Method"</span>
                        <select name="method" on:change=move |ev| {
                            let chosen = event_target_value(&ev);
                            form.update(|f| {
                                f.learning_rate = default_learning_rate_after_switch(&f.learning_rate, &chosen);
                                f.method = chosen;
                            });
                        }>
                            <option value="full">"Full fine-tuning"</option>
                            <option value="lora">"LoRA (query and value)"</option>
                        </select>
                    </label>
                    {move || form.with(|f| f.method == "lora").then(|| view! {
                        {text_input!("LoRA rank r", lora_rank)}
                        {text_input!("LoRA alpha", lora_alpha)}
                    })}
                    {text_input!("Learning rate", learning_rate)}
                    {text_input!("Batch size", batch_size)}
                    {text_input!("Epochs", epochs)}
                    {text_input!("Warmup ratio", warmup_ratio)}
                    {text_input!("Max length (tokens)", max_len)}
                    {text_input!("Training sentences (empty = all)", train_subset)}
                    {text_input!("Seed", seed)}
                    <label class="field">
                        <span>"Number format of the matrix products"</span>
                        <select name="precision" on:change=move |ev| form.update(|f| f.precision = event_target_value(&ev))>
                            {Precision::ALL.into_iter().map(|p| {
                                let selected = form.with_untracked(|f| f.precision == p.as_str());
                                view! { <option value=p.as_str() selected=selected>{precision_label(p)}</option> }
                            }).collect_view()}
                        </select>
                    </label>
                </div>
                <label class="field wide">
                    <span>"A sentence whose attention you want to watch"</span>
                    <input type="text" name="probe_sentence" maxlength=crate::models::MAX_SENTENCE_CHARS.to_string() prop:value=move || form.with(|f| f.probe_sentence.clone()) on:input=move |ev| form.update(|f| f.probe_sentence = event_target_value(&ev)) />
                </label>
                <p class="hint" data-testid="budget">{budget_note}</p>
                <p class="hint" data-testid="estimate">{estimate}</p>
                <p class="hint">{format!("Training on: {}. ", info.device)}{speed_source}" "<span data-testid="queue-wait">{queue_note}</span></p>
                <p class="hint">{format!("A team may have at most {} runs waiting at once. A run stops after {} min (your teacher's limit) and keeps its best model.", info.max_queued, info.run_minutes)}</p>
                {(!info.runs_open).then(|| view! { <p class="notice" role="status" data-testid="runs-closed">{RUNS_CLOSED}</p> })}
                {info.data_missing.clone().map(|message| view! { <p class="notice" role="status" data-testid="data-missing">{message}</p> })}
                <button type="submit" class="primary" disabled=move || !runs_open || submit.pending().get()>"Queue the run"</button>
            </form>
            {move || match submit.value().get() {
                Some(Ok(SubmitOutcome::NeedsConfirmation(hints))) => Some(view! {
                    <div class="notice" role="alert" data-testid="hints">
                        <p>"Outside the lesson's recommended ranges:"</p>
                        <ul>{hints.into_iter().map(|h| view! { <li>{h}</li> }).collect_view()}</ul>
                        <button on:click=move |_| send(true)>"Submit anyway"</button>
                    </div>
                }.into_any()),
                Some(Ok(SubmitOutcome::Queued(id))) => Some(view! {
                    <p class="saved" role="status">"Queued as run " <a href=format!("/runs/{id}")>{format!("#{id}")}</a></p>
                }.into_any()),
                other => action_error(other),
            }}
        </section>
    }
}

/// A precision as the run form lists it, with what it is for.
fn precision_label(precision: Precision) -> &'static str {
    match precision {
        Precision::Fp32 => "fp32: full precision (fastest on most CPUs)",
        Precision::Bf16 => "bf16: half the bits, f32's range (GPU tensor cores, CPUs with AMX)",
        Precision::F16 => "f16: half the bits, loss scaling (GPU tensor cores)",
    }
}

/// "22.7M", "110M", "55k": a parameter count for people.
/// A model as the form lists it: name, family, size and training speed on this machine,
/// measured by its finished runs (scaled to the model's size) or the device's typical one.
fn model_label(model: &ModelChoice, machine: Option<Machine>) -> String {
    let mut label = format!(
        "{} ({}, {} parameters",
        model.name,
        model.family.name(),
        parameter_count(model.params)
    );
    if let Some(machine) = machine {
        let speed = run_protocol::estimate::speed_of_model(
            machine.reference_speed,
            model.params,
            model.family,
        );
        let source = if machine.measured {
            "measured here"
        } else {
            "typical"
        };
        label.push_str(&format!(", about {speed:.0} sentences/s {source}"));
    }
    label.push(')');
    label
}

/// The team's runs with status, queue position and a Cancel button.
#[component]
fn RunList(runs: Vec<RunSummary>, cancel: ServerAction<CancelRun>) -> impl IntoView {
    if runs.is_empty() {
        return view! { <p class="hint">"No runs yet."</p> }.into_any();
    }
    view! {
        <ScrollRegion label="Your team's runs">
            <table class="data-table" data-testid="runs">
                <thead><tr><th>"Run"</th><th>"Status"</th><th>"Settings"</th><th>"Validation accuracy"</th><th><span class="visually-hidden">"Actions"</span></th></tr></thead>
                <tbody>
                    {runs.into_iter().map(|run| {
                        let id = run.id;
                        let settings = run.settings.summary();
                        let status = match (run.status, run.queue_position) {
                            (RunStatus::Queued, Some(position)) => format!(
                                "queued, #{position} in line{}",
                                run.held_by.map_or(String::new(), |hold| format!(": {}", hold.reason()))
                            ),
                            (status, _) => status.as_str().to_string(),
                        };
                        view! {
                            <tr>
                                <td><a href=format!("/runs/{id}")>{format!("#{id}")}</a>" by "{run.submitted_by}</td>
                                <td data-testid="run-status">{status}</td>
                                <td>{settings}</td>
                                <td>{run.validation_accuracy.map(|a| format!("{:.1}%", 100.0 * a))}</td>
                                <td>{run.status.is_active().then(|| view! {
                                    <button on:click=move |_| { cancel.dispatch(CancelRun { run_id: id }); }>"Cancel"</button>
                                })}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </ScrollRegion>
    }
    .into_any()
}

/// The team's latest runs overlaid: training loss (smoothed) and validation accuracy.
#[component]
fn CompareRuns(curves: Vec<RunCurves>) -> impl IntoView {
    if curves.len() < 2 {
        return ().into_any();
    }
    let name = |c: &RunCurves| format!("#{} {}", c.run_id, c.label);
    let loss: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|c| (name(c), ema(&c.loss, 0.8)))
        .collect();
    let accuracy: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|c| (name(c), c.validation_accuracy.clone()))
        .collect();
    view! {
        <section class="panel">
            <h2>"Compare your runs"</h2>
            <div class="chart-pair">
                <LineChart testid="compare-loss" series=loss x_label="step" y_label="training loss (smoothed)" />
                <LineChart testid="compare-accuracy" series=accuracy x_label="step" y_label="validation accuracy %" />
            </div>
        </section>
    }
    .into_any()
}

/// The public board and, once revealed, the private one.
#[component]
fn BoardsView(boards: Boards) -> impl IntoView {
    let table = |lines: Vec<crate::runs::BoardLine>, testid: &'static str| {
        if lines.is_empty() {
            return view! { <p class="hint">"No finished runs yet."</p> }.into_any();
        }
        view! {
            <ScrollRegion label=if testid == "private-board" { "Private leaderboard" } else { "Leaderboard" }>
                <table class="data-table" data-testid=testid>
                    <thead><tr><th>"#"</th><th>"Team"</th><th>"Accuracy"</th><th>"Run"</th></tr></thead>
                    <tbody>
                        {lines.into_iter().enumerate().map(|(rank, line)| view! {
                            <tr><td>{rank + 1}</td><td>{line.team}</td><td>{format!("{:.1}%", 100.0 * line.accuracy)}</td><td>{format!("#{}", line.run_id)}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </ScrollRegion>
        }
        .into_any()
    };
    view! {
        <section class="panel">
            <h2>"Leaderboard: validation accuracy"</h2>
            {table(boards.public, "public-board")}
        </section>
        <section class="panel">
            <h2>"Private leaderboard: SST-2 dev accuracy"</h2>
            {match boards.private {
                Some(lines) => table(lines, "private-board"),
                None => view! { <p class="hint">"Hidden until your teacher reveals it, so nobody tunes on the test set."</p> }.into_any(),
            }}
        </section>
    }
}

/// The instructor's view of a class's runs: cancel, move up, and the boards with the
/// private board's reveal switch. Both lists are fetched again every few seconds and after
/// each action; a list that failed to load (`None`) is left out until a fetch succeeds.
/// An island of the instructor's pages' bundle (see `crate::islands::IslandsBundle`); it
/// takes no resource, so the server can render it inside the class page's `Suspend`.
#[cfg_attr(instructor_islands, island)]
#[cfg_attr(not(instructor_islands), component)]
pub fn ClassRuns(
    class_id: i64,
    runs: Option<Vec<RunSummary>>,
    boards: Option<Boards>,
) -> impl IntoView {
    let cancel = ServerAction::<CancelRun>::new();
    let prioritize = ServerAction::<PrioritizeRun>::new();
    let reveal = ServerAction::<RevealBoard>::new();
    let (runs, boards) = (RwSignal::new(runs), RwSignal::new(boards));
    let refresh_runs = refresher(move || team_runs(Some(class_id)), keep(runs));
    let refresh_boards = refresher(move || class_boards(Some(class_id)), keep(boards));
    every_refresh({
        let (runs, boards) = (refresh_runs.clone(), refresh_boards.clone());
        move || {
            runs();
            boards();
        }
    });
    Effect::watch(
        move || (cancel.version().get(), prioritize.version().get()),
        move |_, _, _| refresh_runs(),
        false,
    );
    Effect::watch(
        move || reveal.version().get(),
        move |_, _, _| refresh_boards(),
        false,
    );
    view! {
        <section class="panel">
            <h2>"Training runs"</h2>
            {move || runs.get().map(|runs| {
                if runs.is_empty() {
                    return view! { <p class="hint">"No runs yet: teams queue them from their team page in the competition phase."</p> }.into_any();
                }
                view! {
                    <ScrollRegion label="The class's runs">
                        <table class="data-table" data-testid="class-runs">
                            <thead><tr><th>"Run"</th><th>"Team"</th><th>"Status"</th><th>"Settings"</th><th>"Validation"</th><th><span class="visually-hidden">"Actions"</span></th></tr></thead>
                            <tbody>
                                {runs.into_iter().map(|run| {
                                    let id = run.id;
                                    let settings = run.settings.summary();
                                    let queued = run.status == RunStatus::Queued;
                                    view! {
                                        <tr>
                                            <td><a href=format!("/runs/{id}")>{format!("#{id}")}</a></td>
                                            <td>{run.team}</td>
                                            <td>{run.status.as_str()}{run.queue_position.map(|p| format!(" (#{p})"))}{run.held_by.map(|hold| format!(": {}", hold.reason()))}</td>
                                            <td>{settings}</td>
                                            <td>{run.validation_accuracy.map(|a| format!("{:.1}%", 100.0 * a))}</td>
                                            <td>
                                                {queued.then(|| view! { <button on:click=move |_| { prioritize.dispatch(PrioritizeRun { run_id: id }); }>"Run next"</button> })}
                                                {run.status.is_active().then(|| view! { <button on:click=move |_| { cancel.dispatch(CancelRun { run_id: id }); }>"Cancel"</button> })}
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </ScrollRegion>
                }.into_any()
            })}
            {move || action_error(cancel.value().get()).or_else(|| action_error(prioritize.value().get()))}
        </section>
        {move || boards.get().map(|boards| {
            let revealed = boards.revealed;
            view! {
                <BoardsView boards />
                <p>
                    {if revealed { "Students see the private board. " } else { "Students do not see the private board yet. " }}
                    <button data-testid="reveal-board" on:click=move |_| { reveal.dispatch(RevealBoard { class_id, revealed: !revealed }); }>
                        {if revealed { "Hide it again" } else { "Reveal the private board" }}
                    </button>
                </p>
            }
        })}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_read_naturally() {
        assert_eq!(parameter_count(22_713_986), "22.7M");
        assert_eq!(parameter_count(55_000), "55k");
        assert_eq!(parameter_count(512), "512");
    }
}
