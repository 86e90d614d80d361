//! The team's training pages: the run form with its checks and duration estimate, the
//! team's runs and the leaderboards (`/team`), and one run's live charts and attention
//! maps (`/runs/:id`).

use super::shared::{ErrorList, action_error, id_param};
use crate::charts::{Heatmap, LineChart, ema};
use crate::runs::{
    Boards, CancelRun, PrioritizeRun, RevealBoard, RunCurves, RunFormInfo, RunStatus, RunSummary,
    SubmitOutcome, SubmitRun, TryRunModel, class_boards, default_learning_rate_after_switch,
    load_run_form, run_detail, team_curves, team_runs,
};
use crate::widgets::head_average;
use leptos::prelude::*;
use leptos_meta::Title;
use run_protocol::settings::DEFAULT_MODEL;
use run_protocol::{EvalSplit, Event, StepPlan};

/// While the calling component lives, calls `refresh` every 4 seconds in the browser
/// (nothing on the server): how the run lists, boards and queue places stay current.
fn every_refresh(refresh: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    if let Ok(handle) = set_interval_with_handle(refresh, std::time::Duration::from_secs(4)) {
        on_cleanup(move || handle.clear());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = refresh;
}

/// `/team`: train a model, watch the team's runs, see the boards.
#[component]
pub fn TeamPage() -> impl IntoView {
    let info = Resource::new(|| (), |_| load_run_form());
    let tick = RwSignal::new(0_u32);
    every_refresh(move || tick.update(|n| *n += 1));
    let submit = ServerAction::<SubmitRun>::new();
    let cancel = ServerAction::<CancelRun>::new();
    let runs = Resource::new(
        move || (tick.get(), submit.version().get(), cancel.version().get()),
        |_| team_runs(None),
    );
    let boards = Resource::new(
        move || (tick.get(), submit.version().get()),
        |_| class_boards(None),
    );
    let curves = Resource::new(move || tick.get(), |_| team_curves());
    view! {
        <Title text="Team runs" />
        <h1>"Fine-tune a model"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> <p><a href="/join">"Join a class"</a></p> }>
                {move || Suspend::new(async move { info.await.map(|info| view! { <NewRunForm info submit /> }) })}
            </ErrorBoundary>
        </Transition>
        <section class="panel">
            <h2>"Your team's runs"</h2>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    runs.await.map(|runs| view! { <RunList runs cancel /> })
                })}
            </Transition>
            {move || action_error(cancel.value().get())}
        </section>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move { curves.await.map(|curves| view! { <CompareRuns curves /> }) })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move { boards.await.map(|boards| view! { <BoardsView boards /> }) })}
        </Transition>
    }
}

/// The run form: choices, checks, hints and the duration estimate.
#[component]
fn NewRunForm(info: RunFormInfo, submit: ServerAction<SubmitRun>) -> impl IntoView {
    let default_model = info
        .models
        .iter()
        .find(|m| m.name == DEFAULT_MODEL)
        .or(info.models.first())
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let form = RwSignal::new(crate::runs::RunForm {
        model: default_model,
        ..Default::default()
    });
    let send = move |confirmed: bool| {
        submit.dispatch(SubmitRun {
            form: form.get_untracked(),
            confirmed,
        });
    };
    let models = info.models.clone();
    let estimate = move || {
        let form = form.get();
        let params = models
            .iter()
            .find(|m| m.name == form.model)
            .map_or(22_713_986, |m| m.params);
        let examples = form
            .train_subset
            .trim()
            .parse::<usize>()
            .ok()
            .or(info.train_examples)?;
        let batch: usize = form.batch_size.trim().parse().ok().filter(|b| *b > 0)?;
        let epochs: usize = form.epochs.trim().parse().ok().filter(|e| *e > 0)?;
        let steps = StepPlan::checked(examples, batch, epochs, 0.0)?.total_steps;
        let speed = info.examples_per_second * 22_713_986.0 / params as f64;
        let seconds = (examples * epochs) as f64 / speed;
        Some(format!(
            "{steps} steps; roughly {} on {} (an estimate from measured speeds, plus evaluation time).",
            duration(seconds),
            info.device
        ))
    };
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
                                view! { <option value=m.name.clone() selected=selected>{format!("{} ({} parameters)", m.name, parameter_count(m.params))}</option> }
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
                </div>
                <label class="field wide">
                    <span>"A sentence whose attention you want to watch"</span>
                    <input type="text" name="probe_sentence" maxlength=crate::models::MAX_SENTENCE_CHARS.to_string() prop:value=move || form.with(|f| f.probe_sentence.clone()) on:input=move |ev| form.update(|f| f.probe_sentence = event_target_value(&ev)) />
                </label>
                <p class="hint" data-testid="estimate">{estimate}</p>
                <p class="hint">{format!("A team may have at most {} runs waiting at once.", info.max_queued)}</p>
                <button type="submit" class="primary" disabled=move || submit.pending().get()>"Queue the run"</button>
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

/// "22.7M", "110M", "55k": a parameter count for people.
fn parameter_count(params: usize) -> String {
    match params {
        0..=999 => params.to_string(),
        1_000..=999_999 => format!("{:.0}k", params as f64 / 1e3),
        _ => format!("{:.1}M", params as f64 / 1e6),
    }
}

/// "1 h 05 min", "12 min", "40 s".
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=89 => format!("{s} s"),
        90..=3599 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// The team's runs with status, queue position and a Cancel button.
#[component]
fn RunList(runs: Vec<RunSummary>, cancel: ServerAction<CancelRun>) -> impl IntoView {
    if runs.is_empty() {
        return view! { <p class="hint">"No runs yet."</p> }.into_any();
    }
    view! {
        <table class="data-table" data-testid="runs">
            <thead><tr><th>"Run"</th><th>"Status"</th><th>"Settings"</th><th>"Validation accuracy"</th><th></th></tr></thead>
            <tbody>
                {runs.into_iter().map(|run| {
                    let id = run.id;
                    let settings = run.settings.summary();
                    let status = match (run.status, run.queue_position) {
                        (RunStatus::Queued, Some(position)) => format!("queued, #{position} in line"),
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
            <ol class="legend">
                {curves.iter().enumerate().map(|(i, c)| view! { <li class=format!("series-{i}")>{name(c)}</li> }).collect_view()}
            </ol>
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
            <table class="data-table" data-testid=testid>
                <thead><tr><th>"#"</th><th>"Team"</th><th>"Accuracy"</th><th>"Run"</th></tr></thead>
                <tbody>
                    {lines.into_iter().enumerate().map(|(rank, line)| view! {
                        <tr><td>{rank + 1}</td><td>{line.team}</td><td>{format!("{:.1}%", 100.0 * line.accuracy)}</td><td>{format!("#{}", line.run_id)}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
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

/// One probe sentence's attention maps at one step.
#[derive(Debug, Clone, PartialEq)]
struct AttentionSnapshot {
    /// After this step (0 = before training).
    step: usize,
    /// The sentence.
    sentence: String,
    /// Its tokens.
    tokens: Vec<String>,
    /// `[layer][head][query * tokens + key]`.
    matrices: Vec<Vec<Vec<f32>>>,
}

/// Everything the run page has received from the live stream.
#[derive(Debug, Clone, Default, PartialEq)]
struct Live {
    batch_size: usize,
    steps_planned: usize,
    device: String,
    params: Option<(usize, usize)>,
    /// (step, loss, lr, examples/s)
    steps: Vec<(usize, f64, f64, f64)>,
    /// (step, split, loss, accuracy)
    evals: Vec<(usize, EvalSplit, f64, f64)>,
    attention: Vec<AttentionSnapshot>,
    ending: Option<Event>,
}

impl Live {
    /// Adds one event from the stream (called in the browser only).
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn apply(&mut self, event: Event) {
        match event {
            Event::Started {
                device,
                params_total,
                params_trainable,
                steps_planned,
                ..
            } => {
                self.device = device;
                self.params = Some((params_total, params_trainable));
                self.steps_planned = steps_planned;
            }
            Event::Step {
                step,
                loss,
                lr,
                examples_per_sec,
                ..
            } => self.steps.push((step, loss, lr, examples_per_sec)),
            Event::Eval {
                step,
                split,
                loss,
                accuracy,
            } => self.evals.push((step, split, loss, accuracy)),
            Event::Attention {
                step,
                sentence,
                tokens,
                matrices,
            } => self.attention.push(AttentionSnapshot {
                step,
                sentence,
                tokens,
                matrices,
            }),
            Event::Checkpoint { .. } => {}
            ending => self.ending = Some(ending),
        }
    }
}

/// `/runs/:id`: the live loss curve, evaluations, schedule, attention and outcome.
#[component]
pub fn RunPage() -> impl IntoView {
    let run_id = id_param();
    let changed = RwSignal::new(0_u32);
    let cancel = ServerAction::<CancelRun>::new();
    let run = Resource::new(
        move || (run_id.get(), changed.get(), cancel.version().get()),
        |(id, ..)| run_detail(id),
    );
    let live = RwSignal::new(Live::default());
    follow_run(run_id.get_untracked(), live, changed);
    // While the run waits, other runs starting move it up the line: refresh its position.
    every_refresh(move || {
        if matches!(run.get_untracked(), Some(Ok(ref r)) if r.status == RunStatus::Queued) {
            changed.update(|n| *n += 1);
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(run)) = run.get() {
            live.update(|l| l.batch_size = run.settings.batch_size);
        }
    });
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the run…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> <p><a href="/team">"Your team's runs"</a></p> }>
                {move || Suspend::new(async move {
                    run.await.map(|run| {
                        let id = run.id;
                        view! {
                            <Title text=format!("Run #{id}") />
                            <p class="breadcrumb"><a href="/team">"Team runs"</a>" / "{format!("Run #{id}")}</p>
                            <h1>{format!("Run #{id}")}</h1>
                            <p data-testid="run-state">
                                <strong>{run.status.as_str()}</strong>
                                {run.queue_position.map(|p| format!(", #{p} in line"))}
                                " · "{run.settings.summary()}
                            </p>
                            {run.message.clone().map(|m| view! { <p class="notice">{m}</p> })}
                            {run.status.is_active().then(|| view! {
                                <button on:click=move |_| { cancel.dispatch(CancelRun { run_id: id }); }>"Cancel this run"</button>
                            })}
                            <Outcome status=run.status message=run.message.unwrap_or_default() />
                            {(run.status == RunStatus::Succeeded).then(|| view! { <TryModel run_id=id /> })}
                        }
                    })
                })}
            </ErrorBoundary>
        </Transition>
        {move || action_error(cancel.value().get())}
        <RunCharts live />
    }
}

/// How long a run page gathers streamed events before drawing them.
#[cfg(feature = "hydrate")]
const EVENT_BATCH: std::time::Duration = std::time::Duration::from_millis(100);

/// Opens the run's event stream (browser only): events go into `live`, status changes
/// bump `changed`. The browser reconnects by itself with the last id it saw.
fn follow_run(run_id: i64, live: RwSignal<Live>, changed: RwSignal<u32>) {
    #[cfg(feature = "hydrate")]
    {
        use crate::live::{RUN_EVENT, RUN_STATUS_EVENT};
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;
        let Ok(source) = web_sys::EventSource::new(&format!("/api/runs/{run_id}/events")) else {
            return;
        };
        // Events are applied in batches, at most every EVENT_BATCH: a page opened on a long
        // run replays thousands of stored events, and redrawing the charts once per event
        // kept the browser busy for tens of seconds.
        let pending: std::rc::Rc<std::cell::RefCell<Vec<Event>>> = Default::default();
        let on_event = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |message: web_sys::MessageEvent| {
                let Some(data) = message.data().as_string() else {
                    return;
                };
                match serde_json::from_str::<Event>(&data) {
                    Ok(event) => {
                        let first = {
                            let mut queue = pending.borrow_mut();
                            queue.push(event);
                            queue.len() == 1
                        };
                        if first {
                            let pending = pending.clone();
                            set_timeout(
                                move || {
                                    let events = std::mem::take(&mut *pending.borrow_mut());
                                    // The page may be gone by now; then there is nothing to draw.
                                    let _ = live.try_update(|live| {
                                        events.into_iter().for_each(|event| live.apply(event))
                                    });
                                },
                                EVENT_BATCH,
                            );
                        }
                    }
                    Err(error) => leptos::logging::warn!(
                        "run {run_id}: an event from the server does not parse ({error}): {}",
                        data.chars().take(200).collect::<String>()
                    ),
                }
            },
        );
        let on_status =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_: web_sys::MessageEvent| {
                changed.update(|n| *n += 1);
            });
        let _ =
            source.add_event_listener_with_callback(RUN_EVENT, on_event.as_ref().unchecked_ref());
        let _ = source
            .add_event_listener_with_callback(RUN_STATUS_EVENT, on_status.as_ref().unchecked_ref());
        let kept = StoredValue::new_local((source, on_event, on_status));
        on_cleanup(move || kept.with_value(|(source, _, _)| source.close()));
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (run_id, live, changed);
}

/// What a run's end means for the class, with the lesson that explains it.
#[component]
fn Outcome(status: RunStatus, message: String) -> impl IntoView {
    match status {
        RunStatus::Diverged => Some(view! {
            <div class="notice" data-testid="outcome">
                <p><strong>"The loss became NaN or exploded."</strong>" This is the hyperparameters lesson's second question in real life: the learning rate was most likely too high. Lower it (e.g. 2e-5 for full fine-tuning) and keep warmup on."</p>
                <a href="/lessons/hyperparameters">"Revisit the hyperparameters lesson"</a>
            </div>
        }.into_any()),
        RunStatus::Failed if message.to_lowercase().contains("memory") => Some(view! {
            <div class="notice" data-testid="outcome">
                <p><strong>"Out of memory."</strong>" First move: lower the batch size (e.g. 32 → 16) or max_len; LoRA also needs less memory."</p>
                <a href="/lessons/overfitting">"See the lesson's OOM question"</a>
            </div>
        }.into_any()),
        RunStatus::Succeeded => Some(view! {
            <p class="hint" data-testid="outcome">"Finished. Compare the training and validation curves below: if training loss keeps falling while validation loss rises, the model is overfitting (see the overfitting lesson)."</p>
        }.into_any()),
        _ => None,
    }
}

/// "Try your model": a sentence through the run's fine-tuned model, and the download.
#[component]
fn TryModel(run_id: i64) -> impl IntoView {
    let text = RwSignal::new("a gorgeous , witty , seductive movie .".to_string());
    let read = ServerAction::<TryRunModel>::new();
    view! {
        <section class="panel" data-testid="try-model">
            <h2>"Try your model"</h2>
            <form on:submit=move |ev| {
                ev.prevent_default();
                read.dispatch(TryRunModel { run_id, text: text.get_untracked() });
            }>
                <textarea name="text" rows="2" maxlength="512" prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                <button type="submit" disabled=move || read.pending().get()>"Classify"</button>
            </form>
            {move || match read.value().get() {
                Some(Ok(reading)) => Some(view! {
                    <p data-testid="model-reading">
                        <strong>{reading.label.clone()}</strong>
                        {reading.probabilities.iter().map(|(label, p)| format!(" · {label} {:.1}%", 100.0 * p)).collect::<String>()}
                        {reading.truncated.then_some(" (the sentence was cut to the model's length)")}
                    </p>
                }.into_any()),
                other => action_error(other),
            }}
            <p>
                <a href=format!("/runs/{run_id}/model.zip") rel="external" download=format!("jigsaw-run-{run_id}.zip")>
                    "Download the model (Hugging Face format, zip)"
                </a>
                " · loads with "<code>"AutoModelForSequenceClassification.from_pretrained"</code>
            </p>
        </section>
    }
}

/// The instructor's view of a class's runs: cancel, move up, and the boards with the
/// private board's reveal switch.
#[component]
pub fn ClassRuns(class_id: i64) -> impl IntoView {
    let tick = RwSignal::new(0_u32);
    every_refresh(move || tick.update(|n| *n += 1));
    let cancel = ServerAction::<CancelRun>::new();
    let prioritize = ServerAction::<PrioritizeRun>::new();
    let reveal = ServerAction::<RevealBoard>::new();
    let runs = Resource::new(
        move || {
            (
                tick.get(),
                cancel.version().get(),
                prioritize.version().get(),
            )
        },
        move |_| team_runs(Some(class_id)),
    );
    let boards = Resource::new(
        move || (tick.get(), reveal.version().get()),
        move |_| class_boards(Some(class_id)),
    );
    view! {
        <section class="panel">
            <h2>"Training runs"</h2>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    runs.await.map(|runs| {
                        if runs.is_empty() {
                            return view! { <p class="hint">"No runs yet: teams queue them from their team page in the competition phase."</p> }.into_any();
                        }
                        view! {
                            <table class="data-table" data-testid="class-runs">
                                <thead><tr><th>"Run"</th><th>"Team"</th><th>"Status"</th><th>"Settings"</th><th>"Validation"</th><th></th></tr></thead>
                                <tbody>
                                    {runs.into_iter().map(|run| {
                                        let id = run.id;
                                        let settings = run.settings.summary();
                                        let queued = run.status == RunStatus::Queued;
                                        view! {
                                            <tr>
                                                <td><a href=format!("/runs/{id}")>{format!("#{id}")}</a></td>
                                                <td>{run.team}</td>
                                                <td>{run.status.as_str()}{run.queue_position.map(|p| format!(" (#{p})"))}</td>
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
                        }.into_any()
                    })
                })}
            </Transition>
            {move || action_error(cancel.value().get()).or_else(|| action_error(prioritize.value().get()))}
        </section>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                boards.await.map(|boards| {
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
                })
            })}
        </Transition>
    }
}

/// The charts and attention maps, redrawn as events arrive.
#[component]
fn RunCharts(live: RwSignal<Live>) -> impl IntoView {
    let smoothing = RwSignal::new(0.6_f64);
    let progress = move || {
        live.with(|l| {
            let done = l.steps.last().map_or(0, |s| s.0);
            if l.steps_planned == 0 {
                return "Waiting for the first step…".to_string();
            }
            let recent: Vec<f64> = l.steps.iter().rev().take(20).map(|s| s.3).filter(|v| *v > 0.0).collect();
            let speed = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
            // Seconds per step = batch size / throughput; the batch size is the run's.
            let elapsed: f64 = l.steps.iter().map(|s| if s.3 > 0.0 { l.batch_size as f64 / s.3 } else { 0.0 }).sum();
            let left = if done > 0 { elapsed / done as f64 * (l.steps_planned.saturating_sub(done)) as f64 } else { 0.0 };
            format!(
                "Step {done} of {} on {} · {:.0} sentences/s · training time so far {} · about {} left (plus evaluations)",
                l.steps_planned, l.device, speed, duration(elapsed), duration(left)
            )
        })
    };
    view! {
        <section class="panel">
            <h2>"Training loss"</h2>
            <p class="hint" data-testid="progress">{progress}</p>
            <label class="field">
                <span>{move || format!("Smoothing (exponential moving average): {:.2}", smoothing.get())}</span>
                <input type="range" min="0" max="0.99" step="0.01" prop:value=move || smoothing.get().to_string()
                    on:input=move |ev| smoothing.set(event_target_value(&ev).parse().unwrap_or(0.0)) />
            </label>
            {move || {
                let raw: Vec<(f64, f64)> = live.with(|l| l.steps.iter().map(|s| (s.0 as f64, s.1)).collect());
                let smooth = ema(&raw, smoothing.get());
                view! { <LineChart testid="loss-chart" series=vec![("raw".to_string(), raw), ("smoothed".to_string(), smooth)] x_label="step" y_label="loss" /> }
            }}
        </section>
        <section class="panel">
            <h2>"Validation"</h2>
            {move || {
                let (loss, accuracy) = live.with(|l| {
                    let validation = l.evals.iter().filter(|e| e.1 == EvalSplit::Validation);
                    (
                        validation.clone().map(|e| (e.0 as f64, e.2)).collect::<Vec<_>>(),
                        validation.map(|e| (e.0 as f64, 100.0 * e.3)).collect::<Vec<_>>(),
                    )
                });
                view! {
                    <div class="chart-pair">
                        <LineChart testid="validation-loss-chart" series=vec![("validation loss".to_string(), loss)] x_label="step" y_label="loss" />
                        <LineChart testid="validation-accuracy-chart" series=vec![("validation accuracy".to_string(), accuracy)] x_label="step" y_label="accuracy %" />
                    </div>
                }
            }}
        </section>
        <section class="panel">
            <h2>"Learning-rate schedule"</h2>
            {move || {
                let lr: Vec<(f64, f64)> = live.with(|l| l.steps.iter().map(|s| (s.0 as f64, s.2)).collect());
                view! { <LineChart testid="lr-chart" series=vec![("learning rate".to_string(), lr)] x_label="step" y_label="lr" /> }
            }}
        </section>
        <section class="panel">
            <h2>"Attention: before and after fine-tuning"</h2>
            <p class="hint">"Layer 6, average of the heads, for the class's probe sentence and your team's own. Left: before training; right: latest."</p>
            {move || live.with(|l| attention_pairs(&l.attention))}
        </section>
    }
}

/// For each probe sentence, its first and latest maps side by side.
fn attention_pairs(maps: &[AttentionSnapshot]) -> AnyView {
    let mut sentences: Vec<&String> = Vec::new();
    for map in maps {
        if !sentences.contains(&&map.sentence) {
            sentences.push(&map.sentence);
        }
    }
    if sentences.is_empty() {
        return view! { <p class="hint">"The first maps arrive when the run starts."</p> }
            .into_any();
    }
    sentences
        .into_iter()
        .map(|sentence| {
            let of_sentence: Vec<&AttentionSnapshot> = maps.iter().filter(|m| &m.sentence == sentence).collect();
            let first = of_sentence.first().copied();
            let latest = of_sentence.last().copied();
            let panel = |map: Option<&AttentionSnapshot>| {
                map.map(|map| {
                    let last = map.matrices.last().map(|heads| head_average(heads)).unwrap_or_default();
                    let step = map.step;
                    view! {
                        <figure>
                            <figcaption>{if step == 0 { "before training".to_string() } else { format!("after step {step}") }}</figcaption>
                            <Heatmap tokens=map.tokens.clone() matrix=last />
                        </figure>
                    }
                })
            };
            view! {
                <h3>{sentence.clone()}</h3>
                <div class="chart-pair" data-testid="attention-pair">{panel(first)}{panel(latest)}</div>
            }
        })
        .collect_view()
        .into_any()
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

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(40.0), "40 s");
        assert_eq!(duration(720.0), "12 min");
        assert_eq!(duration(3_900.0), "1 h 05 min");
    }
}
