//! The attention viewer: a sentence through the real default model, then a heatmap of who
//! attends to whom for a chosen layer and head, or the average over a layer's heads.

use crate::charts::{AttentionTable, Heatmap};
use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Every layer's and head's attention for one sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionView {
    /// The tokens, special tokens included.
    pub tokens: Vec<String>,
    /// `[layer][head][query * tokens + key]`.
    pub layers: Vec<Vec<Vec<f32>>>,
    /// Whether the sentence was cut to `max_len` tokens.
    pub truncated: bool,
    /// The viewer's length limit, in tokens.
    pub max_len: usize,
}

/// Runs the default model on `text` and returns its attention maps.
#[server(prefix = "/api", endpoint = "attention")]
pub async fn attention_map(text: String) -> Result<AttentionView, AppError> {
    crate::models::check_sentence(&text)?;
    let models: crate::models::ModelService = AppError::from_context("models")?;
    let maps = models
        .with_default(move |predictor| {
            predictor
                .attention(&text)
                .map_err(|e| AppError::BadRequest(e.to_string()).respond())
        })
        .await?;
    Ok(AttentionView {
        tokens: maps.tokens,
        layers: drawn_precision(maps.layers),
        truncated: maps.truncated,
        max_len: crate::models::VIEWER_MAX_TOKENS,
    })
}

/// The weights the heatmap can draw: three decimals (a shade step is far coarser), which
/// halves the answer's JSON (a 64-token sentence through all-MiniLM-L6-v2: 294,912 weights).
#[cfg(feature = "ssr")]
fn drawn_precision(mut layers: Vec<Vec<Vec<f32>>>) -> Vec<Vec<Vec<f32>>> {
    for weight in layers.iter_mut().flatten().flatten() {
        *weight = (*weight * 1000.0).round() / 1000.0;
    }
    layers
}

/// The attention of the caller's team's fine-tuned model, for the side-by-side view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamAttention {
    /// The run whose model it is.
    pub run_id: i64,
    /// Its maps.
    pub view: AttentionView,
}

/// The same sentence through the caller's team's latest fine-tuned model, when the caller
/// is a student whose team has finished a run (otherwise `None`).
#[server(prefix = "/api", endpoint = "team-attention")]
pub async fn team_attention_map(text: String) -> Result<Option<TeamAttention>, AppError> {
    crate::models::check_sentence(&text)?;
    let pool = crate::db::pool()?;
    let Some((run_id, dir)) = crate::runs::environment::team_model(&pool).await? else {
        return Ok(None);
    };
    let models: crate::models::ModelService = AppError::from_context("models")?;
    let view = models
        .with_trained(run_id, dir, move |predictor| {
            predictor
                .attention(&text)
                .map_err(|e| AppError::bad_request(e.to_string()))
        })
        .await?;
    Ok(Some(TeamAttention {
        run_id,
        view: AttentionView {
            tokens: view.tokens,
            layers: drawn_precision(view.layers),
            truncated: view.truncated,
            max_len: crate::models::VIEWER_MAX_TOKENS,
        },
    }))
}

/// A sentence box, layer and head pickers, and the heatmap.
#[component]
pub fn AttentionViewer() -> impl IntoView {
    let text = RwSignal::new("the movie was not good .".to_string());
    let show = ServerAction::<AttentionMap>::new();
    let team = ServerAction::<TeamAttentionMap>::new();
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
                    show.dispatch(AttentionMap { text: text.clone() });
                    team.dispatch(TeamAttentionMap { text });
                }
            />
            <div class="chart-pair">
                <div>
                    {move || show.value().get().is_some_and(|r| r.is_ok()).then(|| view! { <h3>"Pretrained all-MiniLM-L6-v2"</h3> })}
                    {move || super::shared::action_result(show.value().get(), |view| view! { <AttentionExplorer name="pretrained all-MiniLM-L6-v2" view=Arc::new(view) /> }.into_any())}
                </div>
                {move || match team.value().get() {
                    Some(Ok(Some(team))) => Some(view! {
                        <div data-testid="team-attention">
                            <h3>{format!("Your team's fine-tuned model (run #{})", team.run_id)}</h3>
                            <AttentionExplorer name=format!("your team's model, run #{}", team.run_id) view=Arc::new(team.view) />
                        </div>
                    }),
                    _ => None,
                }}
            </div>
        </section>
    }
}

/// Layer and head pickers over one sentence's maps.
#[component]
fn AttentionExplorer(
    /// Whose maps these are (the pretrained model or the team's).
    #[prop(into)]
    name: String,
    view: Arc<AttentionView>,
) -> impl IntoView {
    let layer = RwSignal::new(view.layers.len().saturating_sub(1));
    let head = RwSignal::new(None::<usize>);
    let as_lines = RwSignal::new(false);
    let heads = view.layers.first().map_or(0, Vec::len);
    let layers = view.layers.len();
    let matrix = {
        let view = view.clone();
        move || {
            let maps = &view.layers[layer.get().min(layers - 1)];
            match head.get() {
                Some(h) if h < maps.len() => maps[h].clone(),
                _ => run_protocol::events::mean_of(maps),
            }
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
                    on:change=move |ev| layer.set(event_target_value(&ev).parse().unwrap_or(0))
                    prop:value=move || layer.get().to_string()
                >
                    {(0..layers).map(|l| view! { <option value=l.to_string()>{format!("{} of {layers}", l + 1)}</option> }).collect_view()}
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
