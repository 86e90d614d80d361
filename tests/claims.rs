//! Claims the class reproduces, from outside: the instructor queues the runs that test one
//! of the lessons' claims with one call, sized to the CPU (subsets); they train on the
//! server's worker; the lesson then shows the class's result next to the claim, with links
//! to the runs, and a verdict that follows from the runs' own numbers. One test per claim.
//!
//! The instructor picks the tiny test BERT as the model the tests train (the panel offers
//! every installed model, all-MiniLM-L6-v2 first), on the synthetic SST-2.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::training::*;
use support::*;

/// A class on a server with the default model and the tiny BERT.
async fn claim_class(root: &Path) -> Classroom {
    classroom(&root.join("data"), &training_env(root, None)).await
}

/// The model the tests train.
const MODEL: &str = "tiny-bert";

/// One claim's view from a list of them.
fn find<'a>(claims: &'a Value, slug: &str) -> &'a Value {
    claims
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["slug"] == slug)
        .unwrap_or_else(|| panic!("no claim {slug} in {claims}"))
}

/// What a claim test did: its runs (as the run page reads them) and the lesson's view of
/// the claim, as a student of the class sees it.
struct Tested {
    runs: Vec<Value>,
    lesson_view: Value,
    class: Classroom,
}

/// Queues claim `slug` as the instructor, checks who may and what was queued, waits for
/// its runs and reads the lesson's view of it.
async fn test_claim(root: &Path, slug: &str, lesson: &str, arms: usize) -> Tested {
    test_claim_ending(root, slug, lesson, arms, &["succeeded"]).await
}

/// [`test_claim`] where each run may end as any of `endings`.
async fn test_claim_ending(
    root: &Path,
    slug: &str,
    lesson: &str,
    arms: usize,
    endings: &[&str],
) -> Tested {
    let class = claim_class(root).await;
    let (server, teacher, student) = (&class.server, &class.teacher, &class.red);
    let id = class.class_id.to_string();

    // Before the test: the lesson states the claim with no result; the panel offers it
    // sized to the CPU, with an estimate.
    let before = ok(student, server, "lesson-claims", &[("slug", lesson)]).await;
    assert_eq!(before["in_class"], true);
    let claim = find(&before["claims"], slug);
    assert!(claim["finding"].is_null(), "{claim}");
    // The panel opens on the default model and offers every installed one.
    let panel = ok(
        teacher,
        server,
        "class-claims",
        &[("class_id", &id), ("model", "")],
    )
    .await;
    assert_eq!(panel["model"], "all-MiniLM-L6-v2");
    assert_eq!(panel["models"].as_array().unwrap().len(), 2, "{panel}");
    let panel = ok(
        teacher,
        server,
        "class-claims",
        &[("class_id", &id), ("model", MODEL)],
    )
    .await;
    assert_eq!(panel["claims"].as_array().unwrap().len(), 4, "{panel}");
    let offered = find(&panel["claims"], slug);
    assert!(
        offered["device_note"].as_str().unwrap().contains("CPU"),
        "{offered}"
    );
    assert_eq!(offered["arms"].as_array().unwrap().len(), arms);
    for arm in offered["arms"].as_array().unwrap() {
        assert!(arm["estimated_seconds"].as_f64().unwrap() > 0.0, "{arm}");
        assert!(arm["run"].is_null());
    }

    // Only the class's instructor queues it, and only a claim and a model that exist.
    let form = [("class_id", id.as_str()), ("slug", slug), ("model", MODEL)];
    let body = refused(student, server, "queue-claim", &form, StatusCode::FORBIDDEN).await;
    assert!(!body.contains("panicked"), "{body}");
    let stranger = signed_in_instructor(server, "stranger").await;
    refused(
        &stranger,
        server,
        "queue-claim",
        &form,
        StatusCode::NOT_FOUND,
    )
    .await;
    let unknown = [
        ("class_id", id.as_str()),
        ("slug", "the-moon-is-cheese"),
        ("model", MODEL),
    ];
    let body = refused(
        teacher,
        server,
        "queue-claim",
        &unknown,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(body.contains("no such claim"), "{body}");
    let unknown = [
        ("class_id", id.as_str()),
        ("slug", slug),
        ("model", "gpt-9"),
    ];
    let body = refused(
        teacher,
        server,
        "queue-claim",
        &unknown,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(body.contains("no model called"), "{body}");

    // One call queues every run of the test; a second while they wait or run is refused.
    // Another team's long run holds the one training slot until then, so that the claim's
    // runs are surely still waiting (a tiny run at 1e-2 can end within the second).
    let blocker = submit(&class.blue, server, &LONG_RUN).await;
    wait_for_status(&class.blue, server, blocker, "running").await;
    let ids = ok(teacher, server, "queue-claim", &form).await;
    let ids: Vec<i64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), arms);
    let again = refused(
        teacher,
        server,
        "queue-claim",
        &form,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(again.contains("already waiting or training"), "{again}");
    ok(
        &class.blue,
        server,
        "cancel-run",
        &[("run_id", &blocker.to_string())],
    )
    .await;

    let mut runs = Vec::new();
    for run_id in &ids {
        let run = wait_for_end(teacher, server, *run_id, Duration::from_secs(300)).await;
        assert!(endings.contains(&run["status"].as_str().unwrap()), "{run}");
        assert_eq!(run["team"], "Teacher (claim tests)");
        assert_eq!(run["settings"]["model"], MODEL);
        // A student of the class reads the claim's runs, but does not stop them.
        let seen = run_detail(student, server, *run_id).await;
        assert_eq!(seen["id"], *run_id);
        refused(
            student,
            server,
            "cancel-run",
            &[("run_id", &run_id.to_string())],
            StatusCode::FORBIDDEN,
        )
        .await;
        runs.push(run);
    }

    // The claim runs are on no team's list, board or standings.
    let own = ok(student, server, "team-runs", &[]).await;
    assert_eq!(own.as_array().unwrap().len(), 0, "{own}");
    let boards = ok(student, server, "boards", &[]).await;
    assert_eq!(boards["public"].as_array().unwrap().len(), 0, "{boards}");
    let admin = ok(teacher, server, "class-admin", &[("class_id", &id)]).await;
    assert_eq!(admin["teams"].as_array().unwrap().len(), 2, "{admin}");
    assert_eq!(admin["leaderboard"].as_array().unwrap().len(), 2, "{admin}");

    // The lesson shows the result next to the claim, linking each run.
    let after = ok(student, server, "lesson-claims", &[("slug", lesson)]).await;
    let lesson_view = find(&after["claims"], slug).clone();
    let linked: Vec<i64> = lesson_view["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arm| arm["run"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(linked, ids);
    Tested {
        runs,
        lesson_view,
        class,
    }
}

/// The finding's verdict and sentence.
fn finding(view: &Value) -> (&str, &str) {
    (
        view["finding"]["verdict"].as_str().unwrap(),
        view["finding"]["text"].as_str().unwrap(),
    )
}

/// "Agrees" when `holds`, else "Disagrees".
fn expected(holds: bool) -> &'static str {
    if holds { "Agrees" } else { "Disagrees" }
}

#[tokio::test]
async fn the_lora_claim_queues_full_and_lora_and_compares_them() {
    let temp = tempfile::tempdir().unwrap();
    let tested = test_claim(temp.path(), "lora-keeps-accuracy", "lora", 2).await;
    let (full, lora) = (&tested.runs[0]["settings"], &tested.runs[1]["settings"]);
    // The CPU sizes of claims.toml: the same 1,000-sentence subset, one epoch, batch 16.
    for settings in [full, lora] {
        assert_eq!(settings["train_subset"], 1000);
        assert_eq!(settings["epochs"], 1);
        assert_eq!(settings["batch_size"], 16);
    }
    assert!(full["lora_rank"].is_null());
    assert_eq!(full["learning_rate"], 1e-4);
    assert_eq!(lora["lora_rank"], 16);
    assert_eq!(lora["learning_rate"], 2e-3);
    // The verdict follows from the runs' accuracies and LoRA's share of trained weights
    // (the tiny BERT is so small that its adapters are far more than 1% of it).
    let (verdict, text) = finding(&tested.lesson_view);
    let kept = tested.runs[1]["validation_accuracy"].as_f64().unwrap()
        / tested.runs[0]["validation_accuracy"].as_f64().unwrap();
    assert_eq!(verdict, "Disagrees", "{text}");
    assert!(text.contains("of the parameters"), "{text}");
    assert!(
        text.contains(&format!("{:.1}%", 100.0 * kept)),
        "{text} (kept {kept})"
    );
    drop(tested.class);
}

#[tokio::test]
async fn the_high_learning_rate_claim_queues_one_run_at_1e_2() {
    let temp = tempfile::tempdir().unwrap();
    // At 1e-2 a run may also diverge, which the claim counts as failing to learn.
    let tested = test_claim_ending(
        temp.path(),
        "high-learning-rate-fails",
        "hyperparameters",
        1,
        &["succeeded", "diverged"],
    )
    .await;
    let run = &tested.runs[0];
    let settings = &run["settings"];
    assert_eq!(settings["learning_rate"], 1e-2);
    assert_eq!(settings["train_subset"], 1000);
    assert!(settings["lora_rank"].is_null());
    let (verdict, text) = finding(&tested.lesson_view);
    if run["status"] == "diverged" {
        assert_eq!(verdict, "Agrees", "{text}");
        assert!(text.contains("diverged"), "{text}");
    } else {
        let best = run["validation_accuracy"].as_f64().unwrap();
        assert_eq!(verdict, expected(best < 0.6), "{text}");
        assert!(text.contains(&format!("{:.1}%", 100.0 * best)), "{text}");
    }
}

#[tokio::test]
async fn the_overfitting_claim_queues_many_epochs_on_a_small_subset() {
    let temp = tempfile::tempdir().unwrap();
    let tested = test_claim(temp.path(), "small-subset-overfits", "overfitting", 1).await;
    let settings = &tested.runs[0]["settings"];
    assert_eq!(settings["train_subset"], 160);
    assert_eq!(settings["epochs"], 8);
    // Eight epochs were evaluated, so the rule decides: agree or disagree, with the
    // lowest and the last validation loss in the sentence.
    let (verdict, text) = finding(&tested.lesson_view);
    assert!(
        matches!(verdict, "Agrees" | "Disagrees"),
        "{verdict}: {text}"
    );
    assert!(text.contains("The validation loss fell to"), "{text}");
}

#[tokio::test]
async fn the_two_epoch_claim_queues_three_epochs_and_reads_each_epochs_end() {
    let temp = tempfile::tempdir().unwrap();
    let tested = test_claim(temp.path(), "two-epochs-enough", "hyperparameters", 1).await;
    let settings = &tested.runs[0]["settings"];
    assert_eq!(settings["epochs"], 3);
    assert_eq!(settings["train_subset"], 1000);
    // The evaluations at the ends of epochs 2 and 3 were found among the run's events.
    let (verdict, text) = finding(&tested.lesson_view);
    assert!(
        matches!(verdict, "Agrees" | "Disagrees"),
        "{verdict}: {text}"
    );
    assert!(text.contains("after epoch 2"), "{text}");
    // Outside a class, the lesson states its claims without any class's result.
    let anonymous = ok(
        &browser(),
        &tested.class.server,
        "lesson-claims",
        &[("slug", "hyperparameters")],
    )
    .await;
    assert_eq!(anonymous["in_class"], false);
    assert_eq!(anonymous["claims"].as_array().unwrap().len(), 2);
    assert!(find(&anonymous["claims"], "two-epochs-enough")["finding"].is_null());
}
