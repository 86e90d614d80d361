//! The attention viewer: a sentence through the real default model, then a heatmap of who
//! attends to whom for a chosen layer and head, or the average over a layer's heads. Each
//! answer carries one layer (the heads of the layer the page shows); choosing another
//! layer asks for it.

use crate::charts::{AttentionTable, Heatmap};
use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One layer's attention for one sentence: what the viewer draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionView {
    /// The tokens, special tokens included.
    pub tokens: Vec<String>,
    /// How many layers the model has.
    pub layer_count: usize,
    /// The layer these maps come from, counted from 0.
    pub layer: usize,
    /// That layer's heads, `[head][query * tokens + key]`, rounded to the three decimals
    /// the heatmap can draw.
    pub heads: Vec<Vec<f32>>,
    /// Whether the sentence was cut to `max_len` tokens.
    pub truncated: bool,
    /// The viewer's length limit, in tokens.
    pub max_len: usize,
}

/// Runs the default model on `text` and returns the attention of `layer` (counted from
/// 0; the last layer when `None`).
#[server(prefix = "/api", endpoint = "attention")]
pub async fn attention_map(text: String, layer: Option<usize>) -> Result<AttentionView, AppError> {
    crate::models::check_sentence(&text)?;
    let models: crate::models::ModelService = AppError::from_context("models")?;
    models
        .with_default(move |predictor| {
            let maps = predictor
                .attention(&text)
                .map_err(|e| AppError::BadRequest(e.to_string()).respond())?;
            one_layer(maps, layer)
        })
        .await
}

/// The layer the viewer draws, out of every layer's maps.
#[cfg(feature = "ssr")]
fn one_layer(
    maps: trainer::inference::AttentionMaps,
    layer: Option<usize>,
) -> Result<AttentionView, AppError> {
    let layer_count = maps.layers.len();
    let chosen = layer.unwrap_or(layer_count.saturating_sub(1));
    let Some(heads) = maps.layers.into_iter().nth(chosen) else {
        return Err(AppError::bad_request(format!(
            "This model has {layer_count} layers, counted from 0: choose a layer from 0 to {}.",
            layer_count.saturating_sub(1)
        )));
    };
    Ok(AttentionView {
        tokens: maps.tokens,
        layer_count,
        layer: chosen,
        heads: drawn_precision(heads),
        truncated: maps.truncated,
        max_len: crate::models::VIEWER_MAX_TOKENS,
    })
}

/// The weights the heatmap can draw: three decimals (a shade step is far coarser), which
/// halves the answer's JSON.
#[cfg(feature = "ssr")]
fn drawn_precision(mut heads: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    for weight in heads.iter_mut().flatten() {
        *weight = (*weight * 1000.0).round() / 1000.0;
    }
    heads
}

/// The attention of the caller's team's fine-tuned model, for the side-by-side view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamAttention {
    /// The run whose model it is.
    pub run_id: i64,
    /// Its maps.
    pub view: AttentionView,
}

/// The same sentence and layer through the caller's team's latest fine-tuned model, when
/// the caller is a student whose team has finished a run (otherwise `None`).
#[server(prefix = "/api", endpoint = "team-attention")]
pub async fn team_attention_map(
    text: String,
    layer: Option<usize>,
) -> Result<Option<TeamAttention>, AppError> {
    crate::models::check_sentence(&text)?;
    let pool = crate::db::pool()?;
    let Some((run_id, dir)) = crate::runs::environment::team_model(&pool).await? else {
        return Ok(None);
    };
    let models: crate::models::ModelService = AppError::from_context("models")?;
    let view = models
        .with_trained(run_id, dir, move |predictor| {
            let maps = predictor
                .attention(&text)
                .map_err(|e| AppError::bad_request(e.to_string()))?;
            one_layer(maps, layer)
        })
        .await?;
    Ok(Some(TeamAttention { run_id, view }))
}

/// A sentence box, layer and head pickers, and the heatmap.
#[component]
pub fn AttentionViewer() -> impl IntoView {
    let text = RwSignal::new("the movie was not good .".to_string());
    // The sentence last shown, which a change of layer asks about again.
    let asked = RwSignal::new(String::new());
    let show = ServerAction::<AttentionMap>::new();
    let team = ServerAction::<TeamAttentionMap>::new();
    let pretrained_choice = Choice::new();
    let team_choice = Choice::new();
    let pretrained_layer = Callback::new(move |layer: usize| {
        show.dispatch(AttentionMap {
            text: asked.get_untracked(),
            layer: Some(layer),
        });
    });
    let team_layer = Callback::new(move |layer: usize| {
        team.dispatch(TeamAttentionMap {
            text: asked.get_untracked(),
            layer: Some(layer),
        });
    });
    view! {
        <section class="widget attention-viewer">
            <h2>"Try it: the attention viewer"</h2>
            <p>
                "Type a sentence and see, for each word (row), how much it attends to every other word (column) "
                "in all-MiniLM-L6-v2. Darker means more attention; each row adds up to 1."
            </p>
            <super::shared::SentenceForm
                text
                label="Show attention"
                pending=show.pending()
                on_submit=move |text: String| {
                    asked.set(text.clone());
                    show.dispatch(AttentionMap { text: text.clone(), layer: None });
                    team.dispatch(TeamAttentionMap { text, layer: None });
                }
            />
            <div class="chart-pair">
                <div>
                    {move || show.value().get().is_some_and(|r| r.is_ok()).then(|| view! { <h3>"Pretrained all-MiniLM-L6-v2"</h3> })}
                    {move || super::shared::action_result(show.value().get(), |view| view! {
                        <AttentionExplorer name="pretrained all-MiniLM-L6-v2" view=Arc::new(view) choice=pretrained_choice on_layer=pretrained_layer pending=show.pending() />
                    }.into_any())}
                </div>
                {move || match team.value().get() {
                    Some(Ok(Some(found))) => Some(view! {
                        <div data-testid="team-attention">
                            <h3>{format!("Your team's fine-tuned model (run #{})", found.run_id)}</h3>
                            <AttentionExplorer name=format!("your team's model, run #{}", found.run_id) view=Arc::new(found.view) choice=team_choice on_layer=team_layer pending=team.pending() />
                        </div>
                    }),
                    _ => None,
                }}
            </div>
        </section>
    }
}

/// What the reader chose to see of one model's maps, kept while a new layer loads.
#[derive(Debug, Clone, Copy)]
struct Choice {
    /// One head, or the average of the layer's heads (`None`).
    head: RwSignal<Option<usize>>,
    /// Lines instead of the heatmap.
    as_lines: RwSignal<bool>,
}

impl Choice {
    fn new() -> Self {
        Self {
            head: RwSignal::new(None),
            as_lines: RwSignal::new(false),
        }
    }
}

/// Layer and head pickers over one sentence's maps.
#[component]
fn AttentionExplorer(
    /// Whose maps these are (the pretrained model or the team's).
    #[prop(into)]
    name: String,
    view: Arc<AttentionView>,
    choice: Choice,
    /// Asks for another layer's maps.
    on_layer: Callback<usize>,
    /// Whether another layer is being read.
    #[prop(into)]
    pending: Signal<bool>,
) -> impl IntoView {
    let Choice { head, as_lines } = choice;
    let heads = view.heads.len();
    let layers = view.layer_count;
    let layer = view.layer;
    let matrix = {
        let view = view.clone();
        move || match head.get() {
            Some(h) if h < view.heads.len() => view.heads[h].clone(),
            _ => run_protocol::events::mean_of(&view.heads),
        }
    };
    let tokens = view.tokens.clone();
    let notice = view.truncated.then(|| {
        view! { <p class="notice">{format!("Only the first {} tokens are shown.", view.max_len)}</p> }
    });
    view! {
        <div class="pickers">
            <label class="field">
                <span>"Layer"</span>
                <select
                    name="layer"
                    disabled=move || pending.get()
                    on:change=move |ev| {
                        if let Ok(chosen) = event_target_value(&ev).parse::<usize>()
                            && chosen != layer
                        {
                            on_layer.run(chosen);
                        }
                    }
                    prop:value=layer.to_string()
                >
                    {(0..layers).map(|l| view! { <option value=l.to_string() selected=l == layer>{format!("{} of {layers}", l + 1)}</option> }).collect_view()}
                </select>
            </label>
            <label class="field">
                <span>"Head"</span>
                <select
                    name="head"
                    on:change=move |ev| head.set(event_target_value(&ev).parse().ok())
                    prop:value=move || head.get().map_or("average".to_string(), |h| h.to_string())
                >
                    <option value="average">"Average of all heads"</option>
                    {(0..heads).map(|h| view! { <option value=h.to_string()>{format!("Head {}", h + 1)}</option> }).collect_view()}
                </select>
            </label>
            <label class="field">
                <span>"Show as"</span>
                <select
                    name="view"
                    on:change=move |ev| as_lines.set(event_target_value(&ev) == "lines")
                    prop:value=move || if as_lines.get() { "lines" } else { "heatmap" }
                >
                    <option value="heatmap">"Heatmap"</option>
                    <option value="lines">"Lines (BertViz style)"</option>
                </select>
            </label>
        </div>
        {notice}
        {move || {
            if as_lines.get() {
                view! { <AttentionLines name=name.clone() tokens=tokens.clone() matrix=matrix() /> }.into_any()
            } else {
                view! { <Heatmap name=name.clone() tokens=tokens.clone() matrix=matrix() /> }.into_any()
            }
        }}
    }
}

/// The BertViz-style view: the tokens twice, side by side, and a line from each word on
/// the left to each word on the right it attends to, as opaque as the attention is strong.
/// Pointing at a word on the left shows only its lines.
#[component]
fn AttentionLines(name: String, tokens: Vec<String>, matrix: Vec<f32>) -> impl IntoView {
    const ROW: f32 = 22.0;
    const TEXT: f32 = 110.0;
    const GAP: f32 = 160.0;
    /// Lines fainter than this are left out, so the picture stays readable.
    const MIN_SHOWN: f32 = 0.02;
    let n = tokens.len();
    let height = ROW * n as f32 + 10.0;
    let width = TEXT * 2.0 + GAP;
    let y = |i: usize| ROW * i as f32 + ROW * 0.7;
    let groups = tokens
        .iter()
        .enumerate()
        .map(|(q, token)| {
            let lines = (0..n)
                .filter_map(|k| {
                    let p = matrix.get(q * n + k).copied().unwrap_or(0.0);
                    (p >= MIN_SHOWN).then(|| {
                        view! {
                            <line
                                x1=(TEXT + 4.0).to_string()
                                y1=(y(q) - 4.0).to_string()
                                x2=(TEXT + GAP - 4.0).to_string()
                                y2=(y(k) - 4.0).to_string()
                                stroke-opacity=format!("{:.3}", p.clamp(0.0, 1.0))
                                stroke-width=format!("{:.2}", 1.0 + 3.0 * p)
                            />
                        }
                    })
                })
                .collect_view();
            view! {
                <g class="query-lines">
                    <text class="query" x=TEXT.to_string() y=y(q).to_string() text-anchor="end">{token.clone()}</text>
                    {lines}
                </g>
            }
        })
        .collect_view();
    let keys = tokens
        .iter()
        .enumerate()
        .map(|(k, token)| view! { <text class="key" x=(TEXT + GAP).to_string() y=y(k).to_string()>{token.clone()}</text> })
        .collect_view();
    view! {
        <div class="heatmap-scroll" role="region" tabindex="0" aria-label=format!("Attention lines: {name}")>
            <svg class="attention-lines" data-testid="attention-lines" viewBox=format!("0 0 {width} {height}") width=width.to_string() height=height.to_string() role="img" aria-label="Attention lines: each word on the left linked to the words it attends to on the right">
                {groups}
                {keys}
            </svg>
        </div>
        <AttentionTable name tokens matrix />
    }
}
