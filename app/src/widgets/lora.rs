//! The LoRA counter: pick a rank and the matrices to adapt, and see how many parameters
//! LoRA would train in the default model, computed from its real shapes.

use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Which matrices of every layer get adapters; a field left out means "no".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraTargets {
    /// Attention query.
    pub query: bool,
    /// Attention key.
    pub key: bool,
    /// Attention value.
    pub value: bool,
    /// Attention output projection.
    pub attention_output: bool,
    /// Feed-forward expansion.
    pub ffn_in: bool,
    /// Feed-forward projection back.
    pub ffn_out: bool,
}

/// The counts for one choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraParams {
    /// The model counted.
    pub model: String,
    /// Parameters of the model with its classification head.
    pub model_params: usize,
    /// Parameters the adapters add (all trainable).
    pub adapter_params: usize,
    /// Trainable parameters of the classifier that LoRA trains too.
    pub classifier_params: usize,
}

impl LoraParams {
    /// Adapters as a share of the model, in percent (the lesson's figure, before the head).
    pub fn adapter_percent(&self) -> f64 {
        100.0 * self.adapter_params as f64 / self.model_params.max(1) as f64
    }
}

/// Counts LoRA's trainable parameters for the default model.
#[server(prefix = "/api", endpoint = "lora-count")]
pub async fn lora_count(rank: usize, targets: LoraTargets) -> Result<LoraParams, AppError> {
    use run_protocol::{
        LIMITS, LoraSettings, LoraTarget, Method, lora_adapter_params, param_counts,
    };
    if !LIMITS.lora_rank.contains(&rank) {
        return Err(AppError::BadRequest(format!(
            "The rank must be between {} and {}, not {rank}.",
            LIMITS.lora_rank.start(),
            LIMITS.lora_rank.end()
        ))
        .respond());
    }
    let chosen: Vec<LoraTarget> = [
        (targets.query, LoraTarget::Query),
        (targets.key, LoraTarget::Key),
        (targets.value, LoraTarget::Value),
        (targets.attention_output, LoraTarget::AttentionOutput),
        (targets.ffn_in, LoraTarget::FfnIn),
        (targets.ffn_out, LoraTarget::FfnOut),
    ]
    .into_iter()
    .filter_map(|(on, target)| on.then_some(target))
    .collect();
    if chosen.is_empty() {
        return Err(AppError::BadRequest("Pick at least one matrix to adapt.".into()).respond());
    }
    let models: crate::models::ModelService = AppError::from_context("models")?;
    let shape = models.default_config().shape();
    let full = param_counts(&shape, 2, Method::Full);
    let lora = param_counts(
        &shape,
        2,
        Method::Lora(LoraSettings::new(rank, LoraSettings::default_alpha(rank))),
    );
    let default_adapters = lora.total - full.total;
    Ok(LoraParams {
        model: models.default_name().to_string(),
        model_params: full.total,
        adapter_params: lora_adapter_params(&shape, rank, &chosen),
        classifier_params: lora.trainable - default_adapters,
    })
}

/// A count with thousands separated by commas: "22,713,986".
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Rank and target pickers, and the counts they give.
#[component]
pub fn LoraCounter() -> impl IntoView {
    let rank = RwSignal::new("16".to_string());
    let targets = RwSignal::new(LoraTargets {
        query: true,
        value: true,
        ..LoraTargets::default()
    });
    let count = Resource::new(
        move || (rank.get(), targets.get()),
        |(rank, targets)| async move {
            match rank.trim().parse::<usize>() {
                Ok(rank) => lora_count(rank, targets).await,
                Err(_) => Err(AppError::BadRequest(
                    "The rank must be a whole number.".into(),
                )),
            }
        },
    );
    let toggle = move |label: &'static str,
                       get: fn(&LoraTargets) -> bool,
                       set: fn(&mut LoraTargets, bool)| {
        view! {
            <label class="check">
                <input
                    type="checkbox"
                    name=label
                    prop:checked=move || get(&targets.get())
                    on:change=move |ev| targets.update(|t| set(t, event_target_checked(&ev)))
                />
                {label}
            </label>
        }
    };
    view! {
        <section class="widget lora-counter">
            <h2>"Try it: the LoRA counter"</h2>
            <p>"Choose the rank r and which matrices of every layer get adapters; the counts come from the real shapes of all-MiniLM-L6-v2."</p>
            <div class="fields">
                <label class="field">
                    <span>"Rank r"</span>
                    <input type="number" name="rank" min="1" max="256" value=rank.get_untracked() on:input=move |ev| rank.set(event_target_value(&ev)) />
                </label>
            </div>
            <div class="checks">
                {toggle("query", |t| t.query, |t, v| t.query = v)}
                {toggle("key", |t| t.key, |t, v| t.key = v)}
                {toggle("value", |t| t.value, |t, v| t.value = v)}
                {toggle("attention output", |t| t.attention_output, |t, v| t.attention_output = v)}
                {toggle("feed-forward in", |t| t.ffn_in, |t, v| t.ffn_in = v)}
                {toggle("feed-forward out", |t| t.ffn_out, |t, v| t.ffn_out = v)}
            </div>
            <Transition fallback=|| view! { <p class="loading">"Counting…"</p> }>
                {move || count.get().map(|result| match result {
                    Ok(c) => view! {
                        <dl class="results" data-testid="lora-results">
                            <div><dt>"Adapter parameters"</dt><dd data-testid="adapter-params">{thousands(c.adapter_params)}</dd></div>
                            <div><dt>"Share of the model"</dt><dd data-testid="adapter-percent">{format!("{:.2}%", c.adapter_percent())}</dd></div>
                            <div><dt>"Plus the classifier"</dt><dd>{thousands(c.classifier_params)}</dd></div>
                            <div><dt>{format!("{} in total", c.model)}</dt><dd>{thousands(c.model_params)}</dd></div>
                        </dl>
                    }.into_any(),
                    Err(error) => view! { <p class="error-box" role="alert">{error.to_string()}</p> }.into_any(),
                })}
            </Transition>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(147_456), "147,456");
        assert_eq!(thousands(22_713_986), "22,713,986");
        assert_eq!(thousands(770), "770");
    }

    #[test]
    fn the_share_is_in_percent() {
        let count = LoraParams {
            model: "m".into(),
            model_params: 1000,
            adapter_params: 5,
            classifier_params: 2,
        };
        assert!((count.adapter_percent() - 0.5).abs() < 1e-12);
    }
}
