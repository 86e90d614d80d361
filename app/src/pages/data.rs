//! `/instructor/data`: the training data (SST-2) the runs use: whether it is installed,
//! what it holds, and the upload that installs it. [`DataMissingNotice`] puts the same
//! news on the instructor's other pages.

use super::shared::ErrorList;
use crate::flash::Outcome;
use crate::runs::dataset::{
    DataFacts, MAX_UPLOAD_MB, UPLOAD_PATH, training_data_missing, training_data_page,
};
use crate::widgets::thousands;
use leptos::prelude::*;
use leptos_meta::Title;

/// `/instructor/data`: the data's state and the upload form. It has no island: its form
/// posts to the server, and the browser loads no WebAssembly for it (see
/// `crate::islands::IslandsBundle`).
#[component]
pub fn TrainingDataPage() -> impl IntoView {
    let page = Resource::new(|| (), |_| training_data_page());
    view! {
        <Title text="Training data" />
        <p class="breadcrumb"><a href="/instructor">"My classes"</a>" / Training data"</p>
        <h1>"Training data"</h1>
        <p>
            "Teams fine-tune on SST-2, the Stanford Sentiment Treebank's sentences labelled "
            "positive or negative, as the GLUE benchmark distributes it: train.tsv, dev.tsv and "
            "test.tsv. It is not part of Jigsaw Lab, so a new class server starts without it; the "
            "lessons work without it, the runs do not."
        </p>
        <Transition fallback=|| view! { <p class="loading">"Checking the training data…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    page.await.map(|page| {
                        let replace_blocked = page.status.is_ok() && page.active_runs > 0;
                        // A web-only node needs no copy: its workers read their own.
                        let missing_means = if page.trains_here {
                            "Runs cannot start: "
                        } else {
                            "This web node has no copy, and needs none as it trains no runs: "
                        };
                        let outcome = page.outcome.map(|outcome| match outcome {
                            Outcome::Done(rows) => view! {
                                <p class="notice" role="status" data-testid="data-added">
                                    {format!("SST-2 is installed and checked ({rows} training sentences): teams can queue runs now.")}
                                </p>
                            }.into_any(),
                            Outcome::Problem(message) => view! {
                                <p class="error" role="alert" data-testid="data-problem">{message}</p>
                            }.into_any(),
                        });
                        view! {
                            {outcome}
                            <section class="panel" data-testid="data-status">
                                <h2>"What is installed"</h2>
                                {match page.status {
                                    Ok(facts) => view! { <DataSummary facts /> }.into_any(),
                                    Err(problem) => view! {
                                        <p class="error" role="alert" data-testid="data-missing">
                                            <strong>{missing_means}</strong> {problem} "."
                                        </p>
                                    }
                                    .into_any(),
                                }}
                                <p class="hint">"Folder on the server: " <code>{page.folder}</code></p>
                                {(!page.trains_here).then(|| view! {
                                    <p class="hint">
                                        "This server trains no runs itself (it has no training "
                                        "slots); each worker node reads its own copy, installed with "
                                        <code>"jigsaw-lab data add SST-2.zip"</code> " on that machine."
                                    </p>
                                })}
                            </section>
                            {page.trains_here.then(|| view! {
                                <section class="panel">
                                    <h2>"Add or replace SST-2"</h2>
                                    <p class="hint">
                                        "Download SST-2.zip from the GLUE benchmark's site on any "
                                        "computer with internet access, then upload it here as it is (up to "
                                        {MAX_UPLOAD_MB} " MB), or upload its three files. The server "
                                        "checks the headers, columns, labels and row counts, and compares "
                                        "each file with the GLUE release's sha256, before runs can use it. "
                                        "From the server's terminal, " <code>"jigsaw-lab data add SST-2.zip"</code>
                                        " does the same."
                                    </p>
                                    {replace_blocked.then(|| view! {
                                        <p class="notice" role="status">
                                            {format!("{} run{} waiting or training on the data installed now; replace it when the queue is empty.",
                                                page.active_runs, if page.active_runs == 1 { " is" } else { "s are" })}
                                        </p>
                                    })}
                                    <form method="post" action=UPLOAD_PATH enctype="multipart/form-data" class="inline-fields">
                                        <label class="field">
                                            "SST-2.zip"
                                            <input type="file" name="archive" accept=".zip,application/zip" />
                                        </label>
                                        <label class="field">
                                            "or the three .tsv files"
                                            <input type="file" name="files" accept=".tsv,text/tab-separated-values" multiple />
                                        </label>
                                        <button type="submit" disabled=replace_blocked>"Upload and check"</button>
                                    </form>
                                </section>
                            })}
                        }
                    })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// What the installed data holds.
#[component]
fn DataSummary(facts: DataFacts) -> impl IntoView {
    let positive = 100.0 * facts.train_positive as f64 / facts.train_rows.max(1) as f64;
    let release = if facts.glue_release {
        "The GLUE release of SST-2: every file matches its sha256."
    } else {
        "Not the GLUE release: the files are well formed, but the lessons' numbers (row counts, \
         accuracies) are those of GLUE's SST-2 and will differ."
    };
    view! {
        <p class="notice" role="status" data-testid="data-ready">"Installed: teams can queue runs."</p>
        <table class="data-table">
            <thead><tr><th>"File"</th><th>"Sentences"</th><th>"Used for"</th></tr></thead>
            <tbody>
                <tr>
                    <td><code>"train.tsv"</code></td>
                    <td>{thousands(facts.train_rows)}</td>
                    <td>{format!("training ({positive:.1}% positive), less {} kept aside for validation", thousands(facts.validation_size))}</td>
                </tr>
                <tr><td><code>"dev.tsv"</code></td><td>{thousands(facts.dev_rows)}</td><td>"the private test set"</td></tr>
                <tr><td><code>"test.tsv"</code></td><td>{thousands(facts.test_rows)}</td><td>"unlabelled; not used by runs"</td></tr>
            </tbody>
        </table>
        <p data-testid="data-release">{release}</p>
    }
}

/// A plain notice, on the instructor's pages, that runs cannot start until SST-2 is
/// installed, with a link to the page that installs it. Nothing when the data is there.
#[component]
pub fn DataMissingNotice() -> impl IntoView {
    let missing = Resource::new(|| (), |_| training_data_missing());
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                missing.await.ok().flatten().map(|problem| view! {
                    <p class="error" role="alert" data-testid="data-missing-notice">
                        <strong>"Training data is missing: "</strong>
                        "teams cannot queue runs until SST-2 is installed (" {problem} "). "
                        <a href="/instructor/data">"Add it on the Training data page"</a> "."
                    </p>
                })
            })}
        </Transition>
    }
}
