//! One run's page (`/runs/:id`): the live loss curve, evaluations, learning-rate schedule,
//! progress, the probe sentences' attention before and after, the outcome, and "try your
//! model". Events arrive over server-sent events and are drawn in small batches.

use super::runs::every_refresh;
use super::shared::{ErrorList, action_error, id_param};
use crate::charts::{Heatmap, LineChart, ema};
use crate::error::AppError;
use crate::live::{refresher, show_if_changed};
use crate::runs::timing::duration;
use crate::runs::{CancelRun, RunStatus, RunSummary, TryRunModel, run_detail};
use crate::widgets::head_average;
use leptos::prelude::*;
use leptos_meta::Title;
use run_protocol::{EvalSplit, Event};

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
    /// The progress line above the loss chart: where the run is and how long it has left.
    fn progress(&self) -> String {
        let done = self.steps.last().map_or(0, |s| s.0);
        if self.steps_planned == 0 {
            return "Waiting for the first step…".to_string();
        }
        if self.steps.is_empty() {
            return match (&self.ending, self.device.starts_with("GPU")) {
                (Some(_), _) => "It ended before its first step.".to_string(),
                (None, true) => format!(
                    "Started on {}: preparing the first of {} steps. A GPU first compiles \
                     the programs for settings it has not trained with since it started, \
                     which can take up to a minute.",
                    self.device, self.steps_planned
                ),
                (None, false) => format!(
                    "Started on {}: preparing the first of {} steps.",
                    self.device, self.steps_planned
                ),
            };
        }
        let recent: Vec<f64> = self
            .steps
            .iter()
            .rev()
            .take(20)
            .map(|s| s.3)
            .filter(|v| *v > 0.0)
            .collect();
        let speed = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
        // Seconds per step = batch size / throughput; the batch size is the run's.
        let elapsed: f64 = self
            .steps
            .iter()
            .map(|s| {
                if s.3 > 0.0 {
                    self.batch_size as f64 / s.3
                } else {
                    0.0
                }
            })
            .sum();
        let left = elapsed / done.max(1) as f64 * self.steps_planned.saturating_sub(done) as f64;
        format!(
            "Step {done} of {} on {} · {:.0} sentences/s · training time so far {} · about {} left (plus evaluations)",
            self.steps_planned,
            self.device,
            speed,
            duration(elapsed),
            duration(left)
        )
    }

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

/// `/runs/:id`: the live loss curve, evaluations, schedule, attention and outcome. The
/// server renders the run as it is; [`LiveRun`], an island (see
/// `crate::islands::IslandsBundle`), follows it live in the browser.
#[component]
pub fn RunPage() -> impl IntoView {
    let run_id = id_param();
    let run = Resource::new(move || run_id.get(), run_detail);
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
                            <LiveRun run />
                        }
                    })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// The run's state, outcome and charts. Its events stream in (see [`follow_run`]); a status
/// change, a cancel, and (while the run waits) every few seconds fetch the run again. It
/// takes no resource, so the server can render it inside the page's `Suspend`.
#[cfg_attr(runs_islands, island)]
#[cfg_attr(not(runs_islands), component)]
fn LiveRun(run: RunSummary) -> impl IntoView {
    let id = run.id;
    let live = RwSignal::new(Live {
        batch_size: run.settings.batch_size,
        ..Live::default()
    });
    let run = RwSignal::new(run);
    let failed = RwSignal::new(None::<Result<(), AppError>>);
    let cancel = ServerAction::<CancelRun>::new();
    let refresh = refresher(
        move || run_detail(id),
        move |fresh| match fresh {
            Ok(fresh) => {
                let _ = live.try_update(|l| l.batch_size = fresh.settings.batch_size);
                // Unchanged, the run is not drawn again (a sentence typed into "Try your
                // model" stays).
                show_if_changed(run, fresh);
                let _ = failed.try_set(None);
            }
            Err(error) => {
                let _ = failed.try_set(Some(Err(error)));
            }
        },
    );
    follow_run(id, live, refresh.clone());
    // While the run waits, other runs starting move it up the line: refresh its position.
    every_refresh({
        let refresh = refresh.clone();
        move || {
            if run.with_untracked(|r| r.status == RunStatus::Queued) {
                refresh();
            }
        }
    });
    Effect::watch(
        move || cancel.version().get(),
        move |_, _, _| refresh(),
        false,
    );
    view! {
        {move || {
            let run = run.get();
            view! {
                <p data-testid="run-state">
                    <strong>{run.status.as_str()}</strong>
                    {run.queue_position.map(|p| format!(", #{p} in line"))}
                    " · "{run.settings.summary()}
                </p>
                {run.message.clone().map(|m| view! { <p class="notice">{m}</p> })}
                {run.held_by.map(|hold| view! { <p class="hint" role="status" data-testid="run-held">{hold.describe()}</p> })}
                {run.claim.is_some().then(|| view! {
                    <p class="hint" data-testid="claim-run">"This run tests one of the lessons' claims for the whole class. Your teacher queued it, and the lesson shows what it found."</p>
                })}
                {(run.status.is_active() && run.claim.is_none()).then(|| view! {
                    <button on:click=move |_| { cancel.dispatch(CancelRun { run_id: id }); }>"Cancel this run"</button>
                })}
                <Outcome status=run.status message=run.message.unwrap_or_default() />
                {(run.status == RunStatus::Succeeded).then(|| view! { <TryModel run_id=id /> })}
            }
        }}
        {move || action_error(cancel.value().get())}
        {move || action_error(failed.get())}
        <RunCharts live />
    }
}

/// How long a run page gathers streamed events before drawing them.
#[cfg(feature = "hydrate")]
const EVENT_BATCH: std::time::Duration = std::time::Duration::from_millis(100);

/// Streamed events not yet drawn (browser only).
#[cfg(feature = "hydrate")]
#[derive(Default)]
struct Batch {
    /// Run events, in the order they came.
    events: Vec<Event>,
    /// Whether a status change came after them.
    status_changed: bool,
}

/// Opens the run's event stream (browser only): events go into `live`, and a status change
/// calls `on_status_change`. The browser reconnects by itself with the last id it saw.
fn follow_run(run_id: i64, live: RwSignal<Live>, on_status_change: impl Fn() + 'static) {
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
        // kept the browser busy for tens of seconds. A status change waits in the same
        // batch, so the page shows a run as finished only with every step before it drawn.
        let batch: std::rc::Rc<std::cell::RefCell<Batch>> = Default::default();
        let on_status_change = std::rc::Rc::new(on_status_change);
        let receive = move |item: Option<Event>| {
            let first = {
                let mut batch = batch.borrow_mut();
                let first = batch.events.is_empty() && !batch.status_changed;
                match item {
                    Some(event) => batch.events.push(event),
                    None => batch.status_changed = true,
                }
                first
            };
            if first {
                let (batch, on_status_change) = (batch.clone(), on_status_change.clone());
                set_timeout(
                    move || {
                        let Batch {
                            events,
                            status_changed,
                        } = std::mem::take(&mut *batch.borrow_mut());
                        // The page may be gone by now; then there is nothing to draw.
                        let _ = live.try_update(|live| {
                            events.into_iter().for_each(|event| live.apply(event))
                        });
                        if status_changed {
                            on_status_change();
                        }
                    },
                    EVENT_BATCH,
                );
            }
        };
        let on_event = Closure::<dyn FnMut(web_sys::MessageEvent)>::new({
            let receive = receive.clone();
            move |message: web_sys::MessageEvent| {
                let Some(data) = message.data().as_string() else {
                    return;
                };
                match serde_json::from_str::<Event>(&data) {
                    Ok(event) => receive(Some(event)),
                    Err(error) => leptos::logging::warn!(
                        "run {run_id}: an event from the server does not parse ({error}): {}",
                        data.chars().take(200).collect::<String>()
                    ),
                }
            }
        });
        let on_status =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_: web_sys::MessageEvent| {
                receive(None)
            });
        let _ =
            source.add_event_listener_with_callback(RUN_EVENT, on_event.as_ref().unchecked_ref());
        let _ = source
            .add_event_listener_with_callback(RUN_STATUS_EVENT, on_status.as_ref().unchecked_ref());
        let kept = StoredValue::new_local((source, on_event, on_status));
        on_cleanup(move || kept.with_value(|(source, _, _)| source.close()));
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (run_id, live, on_status_change);
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
        <section class="panel try-model" data-testid="try-model">
            <h2>"Try your model"</h2>
            <form on:submit=move |ev| {
                ev.prevent_default();
                read.dispatch(TryRunModel { run_id, text: text.get_untracked() });
            }>
                <textarea name="text" rows="2" maxlength="512" aria-label="A sentence for your model" prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
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

/// The charts and attention maps, redrawn as events arrive.
#[component]
fn RunCharts(live: RwSignal<Live>) -> impl IntoView {
    let smoothing = RwSignal::new(0.6_f64);
    let progress = move || live.with(Live::progress);
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
            <p class="hint">
                {move || live.with(|l| match l.attention.first().map(|map| map.matrices.len()) {
                    Some(layers) if layers > 0 => format!("Layer {layers} (the model's last)"),
                    _ => "The model's last layer".to_string(),
                })}
                ", average of the heads, for the class's probe sentence and your team's own. Left: before training; right: latest."
            </p>
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
                    let when = if step == 0 { "before training".to_string() } else { format!("after step {step}") };
                    view! {
                        <figure>
                            <figcaption>{when.clone()}</figcaption>
                            <Heatmap name=format!("{}, {when}", map.sentence) tokens=map.tokens.clone() matrix=last />
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
    fn the_progress_line_says_what_a_run_waits_for_before_its_first_step() {
        let mut live = Live::default();
        assert_eq!(live.progress(), "Waiting for the first step…");
        live.steps_planned = 4_000;
        live.device = "GPU: NVIDIA H200 (burn cuda)".into();
        let gpu = live.progress();
        assert!(
            gpu.starts_with(
                "Started on GPU: NVIDIA H200 (burn cuda): preparing the first of 4000 steps."
            ) && gpu.contains("compiles"),
            "{gpu}"
        );
        live.device = "CPU: 2 threads (burn flex)".into();
        assert_eq!(
            live.progress(),
            "Started on CPU: 2 threads (burn flex): preparing the first of 4000 steps."
        );
        live.batch_size = 32;
        live.steps = vec![(1, 0.69, 2e-5, 16.0), (2, 0.68, 2e-5, 16.0)];
        // Two steps of 32 sentences at 16 sentences/s: 4 s so far, 3,998 steps to go.
        assert_eq!(
            live.progress(),
            "Step 2 of 4000 on CPU: 2 threads (burn flex) · 16 sentences/s · training time so far 4 s · about 2 h 13 min left (plus evaluations)"
        );
        live.steps.clear();
        live.ending = Some(Event::Cancelled { step: 0 });
        assert_eq!(live.progress(), "It ended before its first step.");
    }
}
