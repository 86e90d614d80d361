//! `/instructor/models`: the models teams can fine-tune, what each is and what this
//! server's runs measured with it; adding one from a zip and removing one.

use super::shared::{ErrorList, action_error, parameter_count};
use crate::charts::ScrollRegion;
use crate::flash::Outcome;
use crate::library::{MAX_MODEL_NAME_CHARS, ModelEntry, RemoveModel, UPLOAD_PATH, list_models};
use crate::live::refresher;
use crate::widgets::thousands;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

/// `/instructor/models`: the model table, the upload form and the remove buttons.
#[component]
pub fn ModelsPage() -> impl IntoView {
    let models = Resource::new(|| (), |_| list_models());
    view! {
        <Title text="Models" />
        <p class="breadcrumb"><a href="/instructor">"My classes"</a>" / Models"</p>
        <h1>"Models"</h1>
        <super::DataMissingNotice />
        <p>
            "Teams choose among these models on the run form. Each is a folder as HF "
            "transformers saves it; the engine trains BERT, DistilBERT, RoBERTa, ELECTRA and "
            "DeBERTa-v2/v3 checkpoints."
        </p>
        <Transition fallback=|| view! { <p class="loading">"Reading the models folder…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    models.await.map(|page| view! {
                        {page.outcome.map(|outcome| match outcome {
                            Outcome::Done(name) => view! {
                                <p class="notice" role="status" data-testid="model-added">
                                    "Added " <strong>{name}</strong> ": it loaded and classified two sentences, and teams can choose it now."
                                </p>
                            }.into_any(),
                            Outcome::Problem(message) => view! {
                                <p class="error" role="alert" data-testid="model-problem">{message}</p>
                            }.into_any(),
                        })}
                        <ModelList models=page.models />
                        <section class="panel">
                            <h2>"Add a model"</h2>
                            <p class="hint">
                                "A zip of one model folder: config.json, model.safetensors or "
                                "pytorch_model.bin, and tokenizer.json. Up to "
                                {page.max_upload_mb} " MB. The server unpacks it, loads it and "
                                "classifies two sentences with it before teams see it; this "
                                "takes a few seconds for a small model and a minute for a large one."
                            </p>
                            <form method="post" action=UPLOAD_PATH enctype="multipart/form-data" class="inline-fields">
                                <label class="field">
                                    "Name"
                                    <input type="text" name="name" required maxlength=MAX_MODEL_NAME_CHARS.to_string() pattern="[A-Za-z0-9_\\-][A-Za-z0-9._\\-]*" placeholder="e.g. distilbert-base-uncased" />
                                </label>
                                <label class="field">
                                    "Zip file"
                                    <input type="file" name="archive" accept=".zip,application/zip" required />
                                </label>
                                <button type="submit">"Upload and check"</button>
                            </form>
                        </section>
                    })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// The table of models, read again after each removal. An island of the instructor's
/// pages' bundle (see `crate::islands::IslandsBundle`); it takes no resource, so the server can
/// render it inside the page's `Suspend`.
#[cfg_attr(instructor_islands, island)]
#[cfg_attr(not(instructor_islands), component)]
fn ModelList(models: Vec<ModelEntry>) -> impl IntoView {
    let remove = ServerAction::<RemoveModel>::new();
    let models = RwSignal::new(models);
    let refresh = refresher(list_models, move |fresh| {
        if let Ok(fresh) = fresh {
            let _ = models.try_set(fresh.models);
        }
    });
    Effect::watch(
        move || remove.version().get(),
        move |_, _, _| refresh(),
        false,
    );
    view! {
        {move || action_error(remove.value().get())}
        {move || view! { <ModelTable models=models.get() remove /> }}
    }
}

/// The table of models, with a remove button where removing is allowed.
#[component]
fn ModelTable(models: Vec<ModelEntry>, remove: ServerAction<RemoveModel>) -> impl IntoView {
    if models.is_empty() {
        return view! { <p class="hint">"The models folder is empty: add a model below."</p> }
            .into_any();
    }
    view! {
        <ScrollRegion label="Models">
            <table class="data-table" data-testid="models">
                <thead>
                    <tr>
                        <th>"Model"</th><th>"Family"</th><th>"Parameters"</th><th>"Vocabulary"</th>
                        <th>"Max tokens"</th><th>"On disk"</th><th>"Best validation"</th>
                        <th>"Sentences/s"</th><th>"Runs"</th><th><span class="visually-hidden">"Remove"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {models.into_iter().map(|model| view! { <ModelRow model remove /> }).collect_view()}
                </tbody>
            </table>
        </ScrollRegion>
    }
    .into_any()
}

/// One model's row.
#[component]
fn ModelRow(model: ModelEntry, remove: ServerAction<RemoveModel>) -> impl IntoView {
    let ModelEntry {
        name,
        summary,
        is_default,
        active_runs,
        measured,
    } = model;
    let facts = match summary {
        Ok(facts) => view! {
            <td>{facts.family.name()}</td>
            <td>{parameter_count(facts.params)}</td>
            <td>{thousands(facts.vocab_size)}</td>
            <td>{facts.max_len}</td>
            <td>{megabytes(facts.disk_bytes)}</td>
        }
        .into_any(),
        Err(problem) => view! {
            <td colspan="5" class="error">"Cannot be used: " {problem}</td>
        }
        .into_any(),
    };
    let best = measured
        .best_validation
        .map_or_else(|| "–".to_string(), |v| format!("{:.2}%", v * 100.0));
    let speeds = if measured.speeds.is_empty() {
        "–".to_string()
    } else {
        measured
            .speeds
            .iter()
            .map(|(device, speed)| format!("{speed:.0} on {device}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let removal = if is_default {
        view! { <span class="hint">"default"</span> }.into_any()
    } else if active_runs > 0 {
        view! { <span class="hint">{format!("{active_runs} active run{}", if active_runs == 1 { "" } else { "s" })}</span> }.into_any()
    } else {
        let label = format!("Remove {name}");
        let value = name.clone();
        view! {
            <ActionForm action=remove>
                <input type="hidden" name="name" value=value />
                <button type="submit" class="secondary" aria-label=label>"Remove"</button>
            </ActionForm>
        }
        .into_any()
    };
    view! {
        <tr data-testid=format!("model-{name}")>
            <td><code>{name.clone()}</code></td>
            {facts}
            <td>{best}</td>
            <td>{speeds}</td>
            <td>{measured.finished_runs}</td>
            <td>{removal}</td>
        </tr>
    }
}

/// "87.4 MB".
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(thousands(30_522), "30,522");
        assert_eq!(thousands(128_100), "128,100");
        assert_eq!(thousands(217), "217");
        assert_eq!(megabytes(90_868_376), "90.9 MB");
    }
}
