//! The [CLS] demo: a sentence through the default model, its [CLS] vector drawn as a strip,
//! and what the classification head makes of it.

use crate::charts::ScrollRegion;
use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The [CLS] vector of a sentence and the head's reading of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClsView {
    /// The tokens the model read.
    pub tokens: Vec<String>,
    /// The last layer's [CLS] vector.
    pub cls: Vec<f32>,
    /// (label, probability) from the classification head.
    pub probabilities: Vec<(String, f32)>,
    /// False while the head has random weights (the model is not fine-tuned yet).
    pub head_trained: bool,
    /// The fine-tuning run whose model read the sentence (the caller's team's latest), or
    /// `None` for the pretrained default model.
    pub run_id: Option<i64>,
}

/// Runs the default model on `text` and reads its [CLS] vector and head output.
#[server(prefix = "/api", endpoint = "cls")]
pub async fn read_cls(text: String) -> Result<ClsView, AppError> {
    crate::models::check_sentence(&text)?;
    let pool = crate::db::pool()?;
    let models: crate::models::ModelService = AppError::from_context("models")?;
    if let Some((run_id, dir)) = crate::runs::environment::team_model(&pool).await? {
        return models
            .with_trained(run_id, dir, move |predictor| {
                let prediction = predictor
                    .predict(&text)
                    .map_err(|e| AppError::bad_request(e.to_string()))?;
                Ok(ClsView {
                    tokens: prediction.tokens,
                    cls: prediction.cls,
                    probabilities: crate::models::labelled(prediction.probs),
                    head_trained: true,
                    run_id: Some(run_id),
                })
            })
            .await;
    }
    models
        .with_default(move |predictor| {
            let prediction = predictor
                .predict(&text)
                .map_err(|e| AppError::BadRequest(e.to_string()).respond())?;
            Ok(ClsView {
                tokens: prediction.tokens,
                cls: prediction.cls,
                probabilities: crate::models::labelled(prediction.probs),
                head_trained: predictor.head_trained(),
                run_id: None,
            })
        })
        .await
}

/// Sentence in, [CLS] vector and probabilities out.
#[component]
pub fn ClsDemo() -> impl IntoView {
    let text = RwSignal::new("a gorgeous , witty , seductive movie .".to_string());
    let read = ServerAction::<ReadCls>::new();
    view! {
        <section class="widget cls-demo">
            <h2>"Try it: from [CLS] to a label"</h2>
            <p>"The model reads the whole sentence; the classifier looks only at the [CLS] vector it ends with."</p>
            <super::shared::SentenceForm
                text
                label="Read the [CLS] vector"
                pending=read.pending()
                on_submit=move |text| {
                    read.dispatch(ReadCls { text });
                }
            />
            {move || super::shared::action_result(read.value().get(), |view| view! { <ClsResult view /> }.into_any())}
        </section>
    }
}

/// The vector strip, the probabilities and what they mean.
#[component]
fn ClsResult(view: ClsView) -> impl IntoView {
    let n = view.cls.len();
    // Scale to the 98th percentile so one outlier dimension does not flatten the rest;
    // bars beyond it are clipped.
    let mut magnitudes: Vec<f32> = view.cls.iter().map(|v| v.abs()).collect();
    magnitudes.sort_by(f32::total_cmp);
    let scale = magnitudes
        .get(n * 98 / 100)
        .copied()
        .unwrap_or(1.0)
        .max(1e-6);
    let bars = view
        .cls
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let height = 30.0 * (v.abs() / scale).min(1.0);
            let (y, class) = if *v >= 0.0 { (32.0 - height, "up") } else { (32.0, "down") };
            view! {
                <rect class=class x=i.to_string() y=y.to_string() width="1" height=height.to_string() />
            }
        })
        .collect_view();
    let probabilities = view
        .probabilities
        .into_iter()
        .map(|(label, p)| {
            view! {
                <li>
                    <span class="label">{label}</span>
                    <span class="bar" style=format!("width: {:.1}%", 100.0 * p)></span>
                    <span class="value">{format!("{:.1}%", 100.0 * p)}</span>
                </li>
            }
        })
        .collect_view();
    let explanation = if let Some(run_id) = view.run_id {
        format!(
            "This is your team's fine-tuned model from run #{run_id}: its head was trained on SST-2, so the probabilities are the model's verdict."
        )
    } else if view.head_trained {
        "This head was fine-tuned, so the probabilities are the model's verdict.".to_string()
    } else {
        "This is the pretrained all-MiniLM-L6-v2: its classification head has random weights until a team fine-tunes it, so these probabilities are close to a coin toss. Fine-tuning trains the head, and nudges the whole model so that [CLS] carries the sentiment.".to_string()
    };
    let above = view.cls.iter().filter(|v| **v >= 0.0).count();
    let largest = view
        .cls
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1));
    let smallest = view
        .cls
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1));
    let summary = match (largest, smallest) {
        (Some((hi, high)), Some((lo, low))) => format!(
            "The [CLS] vector: {n} numbers, one bar each; {above} above zero (up, blue), {} below (down, orange). The largest is {high:.3} (number {}), the smallest {low:.3} (number {}). All the numbers are in the table below.",
            n - above,
            hi + 1,
            lo + 1
        ),
        _ => "The [CLS] vector is empty.".to_string(),
    };
    // The numbers, eight to a row.
    const PER_ROW: usize = 8;
    let rows = view
        .cls
        .chunks(PER_ROW)
        .enumerate()
        .map(|(row, values)| {
            let first = row * PER_ROW + 1;
            view! {
                <tr>
                    <th scope="row">{format!("{first}–{}", first + values.len() - 1)}</th>
                    {values.iter().map(|v| view! { <td>{format!("{v:.3}")}</td> }).collect_view()}
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="piece-summary">{format!("[CLS] summarizes {} tokens into {n} numbers (bars up and blue above zero, down and orange below):", view.tokens.len())}</p>
        <svg class="cls-strip" data-testid="cls-strip" viewBox=format!("0 0 {n} 64") preserveAspectRatio="none" role="img" aria-label=summary>
            {bars}
        </svg>
        <details class="chart-data">
            <summary>"The numbers: the [CLS] vector"</summary>
            <ScrollRegion label="Table of the [CLS] vector">
                <table class="data-table numbers">
                    <caption>{format!("The {n} numbers of the [CLS] vector, {PER_ROW} to a row: row 1–8, column +2 is number 3")}</caption>
                    <thead>
                        <tr>
                            <th scope="col">"Numbers"</th>
                            {(1..=PER_ROW).map(|i| view! { <th scope="col">{format!("+{}", i - 1)}</th> }).collect_view()}
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </ScrollRegion>
        </details>
        <ul class="probabilities" data-testid="probabilities">{probabilities}</ul>
        <p class="notice">{explanation}</p>
    }
}
