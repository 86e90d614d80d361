//! HTTP-level tests of fine-tuning runs against the real binary, training a tiny random BERT
//! on a small synthetic sentiment set on the CPU: the whole path from the form to the
//! leaderboard, a crash in the middle of a run, and the form's bad input. The `_on_postgres`
//! tests run the same flows on PostgreSQL instead of SQLite.

mod support;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::training::*;
use support::*;

/// Training tests share the CPU, except the crash test, which trains alone so that the
/// kill lands while its run is still training. (When stored events lag behind the
/// checkpoint files, the worker resumes from the newest checkpoint they reach; see
/// `trainer::checkpoint::candidates`.)
static CPU: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test]
async fn two_training_slots_train_two_teams_runs_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let mut env = training_env(temp.path(), None);
    env.push(("JIGSAW_TRAINING_SLOTS", "2".to_string()));
    let class = classroom(&temp.path().join("data"), &env).await;
    let server = &class.server;
    // Runs long enough to overlap for sure; both are cancelled once they do.
    let long = LONG_RUN;
    let red = submit(&class.red, server, &long).await;
    wait_for_status(&class.red, server, red, "running").await;
    let blue = submit(&class.blue, server, &long).await;
    wait_for_status(&class.blue, server, blue, "running").await;
    let red_now = run_detail(&class.red, server, red).await;
    assert_eq!(
        red_now["status"], "running",
        "both runs train at once: {red_now}"
    );
    for (client, run_id) in [(&class.red, red), (&class.blue, blue)] {
        ok(
            client,
            server,
            "cancel-run",
            &[("run_id", &run_id.to_string())],
        )
        .await;
        let ended = wait_for_end(client, server, run_id, Duration::from_secs(60)).await;
        assert_eq!(ended["status"], "cancelled", "{ended}");
    }
}

#[tokio::test]
async fn a_run_in_bf16_trains_and_keeps_its_precision() {
    let temp = tempfile::tempdir().unwrap();
    let env = training_env(temp.path(), None);
    let class = classroom(&temp.path().join("data"), &env).await;
    let server = &class.server;
    let run_id = submit(
        &class.red,
        server,
        &[("precision", "bf16"), ("epochs", "2")],
    )
    .await;
    let ended = wait_for_end(&class.red, server, run_id, Duration::from_secs(120)).await;
    assert_eq!(ended["status"], "succeeded", "{ended}");
    // `wait_for_end` returns the run as the team's page reads it, stored settings included.
    assert_eq!(ended["settings"]["precision"], "bf16", "{ended}");
}

#[tokio::test]
async fn a_run_goes_from_the_form_to_the_leaderboard() {
    run_to_the_leaderboard(None).await;
}

#[tokio::test]
async fn a_run_goes_from_the_form_to_the_leaderboard_on_postgres() {
    let database = PostgresDatabase::create().await;
    run_to_the_leaderboard(Some(&database)).await;
}

async fn run_to_the_leaderboard(database: Option<&PostgresDatabase>) {
    let _cpu = CPU.read().await;
    let temp = tempfile::tempdir().unwrap();
    let env = training_env(temp.path(), database);
    let class = classroom(&temp.path().join("data"), &env).await;
    let server = &class.server;

    let form = ok(&class.red, server, "run-form", &[]).await;
    let names: Vec<&str> = form["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["all-MiniLM-L6-v2", "tiny-bert"]);
    assert_eq!(form["models"][0]["params"], 22_713_986);

    // A learning rate far outside the lesson's range asks for confirmation first.
    let mut unconfirmed = run_form(&[("confirmed", "false")]);
    unconfirmed.retain(|(k, _)| *k != "confirmed");
    unconfirmed.push(("confirmed", "false"));
    let asked = ok(&class.red, server, "submit-run", &unconfirmed).await;
    assert!(
        asked["NeedsConfirmation"][0]
            .as_str()
            .unwrap()
            .contains("far above"),
        "{asked}"
    );

    let run_id = submit(&class.red, server, &[]).await;
    let queued = run_detail(&class.red, server, run_id).await;
    assert!(
        matches!(queued["status"].as_str(), Some("queued" | "running")),
        "{queued}"
    );

    // The team watches the whole run over SSE, from Started to Finished.
    let (ids, events) = read_events(&class.red, server, run_id, None).await;
    assert_eq!(events[0]["type"], "started");
    let planned = assert_every_event_once(&ids, &events);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "eval" && e["split"] == "validation")
    );
    let probes: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "attention")
        .map(|e| e["sentence"].as_str().unwrap())
        .collect();
    assert!(
        probes.contains(&"the movie was not good .") && probes.contains(&"the cast was witty ."),
        "{probes:?}"
    );
    // A stored attention event holds what the page draws: the last layer's head mean.
    for event in events.iter().filter(|e| e["type"] == "attention") {
        let tokens = event["tokens"].as_array().unwrap().len();
        let matrices = event["matrices"].as_array().unwrap();
        assert_eq!(matrices.len(), 1, "one layer");
        assert_eq!(matrices[0].as_array().unwrap().len(), 1, "one head mean");
        assert_eq!(matrices[0][0].as_array().unwrap().len(), tokens * tokens);
    }
    assert_eq!(events.last().unwrap()["type"], "finished");

    let done = wait_for_end(&class.red, server, run_id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let accuracy = done["validation_accuracy"].as_f64().unwrap();
    assert!(
        accuracy > 0.7,
        "the tiny model learns the separable task: {accuracy}"
    );

    // A reconnect with Last-Event-ID gets only what came after.
    let (later, _) = read_events(&class.red, server, run_id, Some(ids[ids.len() - 3])).await;
    assert_eq!(later, ids[ids.len() - 2..].to_vec());

    // The public board shows the team; the private one stays hidden until revealed.
    let boards = ok(&class.blue, server, "boards", &[]).await;
    assert_eq!(boards["public"][0]["team"], "Red");
    assert!(boards["private"].is_null());
    let id = class.class_id.to_string();
    let teacher_view = ok(&class.teacher, server, "boards", &[("class_id", &id)]).await;
    assert_eq!(teacher_view["private"][0]["team"], "Red");
    ok(
        &class.teacher,
        server,
        "reveal-board",
        &[("class_id", &id), ("revealed", "true")],
    )
    .await;
    assert_eq!(
        ok(&class.blue, server, "boards", &[]).await["private"][0]["team"],
        "Red"
    );

    // The overfitting lesson draws this run's training and validation loss for its team
    // and the instructor; a team without a finished run gets none.
    let example = ok(&class.red, server, "overfitting-curves", &[]).await;
    assert_eq!(example["run_id"], run_id, "{example}");
    let validation = example["validation_loss"].as_array().unwrap();
    assert_eq!(
        validation.len(),
        8,
        "one validation point per epoch: {example}"
    );
    assert!(!example["train_loss"].as_array().unwrap().is_empty());
    let best = example["best"][1].as_f64().unwrap();
    assert!(validation.iter().all(|p| p[1].as_f64().unwrap() >= best));
    assert!(
        ok(&class.blue, server, "overfitting-curves", &[])
            .await
            .is_null()
    );
    let teacher_example = ok(&class.teacher, server, "overfitting-curves", &[]).await;
    assert_eq!(teacher_example["run_id"], run_id);

    // The run was estimated when it was queued and timed when it finished; the instructor
    // sees both side by side.
    let admin = ok(
        &class.teacher,
        server,
        "class-admin",
        &[("class_id", &class.class_id.to_string())],
    )
    .await;
    let check = admin["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["run_id"] == run_id)
        .unwrap_or_else(|| panic!("the finished run's estimate is checked: {admin}"));
    assert!(
        check["estimated_seconds"].as_f64().unwrap() > 0.0,
        "{check}"
    );
    assert!(check["trained_seconds"].as_f64().unwrap() > 0.0, "{check}");
    // The form opens on settings sized to the class's time per run: this small data set
    // fits the full defaults.
    let form = ok(&class.red, server, "run-form", &[]).await;
    assert_eq!(form["suggested"]["epochs"], "2", "{form}");
    assert_eq!(form["suggested"]["train_subset"], "", "{form}");
    assert!(!form["over_budget"].as_bool().unwrap(), "{form}");
    assert!(
        form["machine"]["train_examples"].as_u64().unwrap() > 0,
        "{form}"
    );

    // The team's page and the run's page are islands carrying what the server rendered:
    // the browser brings them to life from these props.
    for (path, island, holds) in [
        ("/team".to_string(), "TeamRuns_", "&quot;suggested&quot;"),
        (
            format!("/runs/{run_id}"),
            "LiveRun_",
            "&quot;status&quot;:&quot;succeeded&quot;",
        ),
    ] {
        let page = page_html(&class.red, server, &path).await;
        assert!(
            page.contains(&format!("<leptos-island data-component=\"{island}")),
            "{path} is an island"
        );
        assert!(page.contains(holds), "{path}'s island props hold {holds}");
    }

    // "Try your model" runs the fine-tuned model; the download is an HF directory.
    let reading = ok(
        &class.red,
        server,
        "try-model",
        &[
            ("run_id", &run_id.to_string()),
            ("text", "the story was charming ."),
        ],
    )
    .await;
    assert_eq!(reading["label"], "positive", "{reading}");
    let zip = class
        .red
        .get(server.url(&format!("/runs/{run_id}/model.zip")))
        .send()
        .await
        .unwrap();
    assert_eq!(zip.status(), StatusCode::OK);
    assert_eq!(zip.headers()[CONTENT_TYPE], "application/zip");
    let bytes = zip.bytes().await.unwrap();
    assert_eq!(&bytes[..2], b"PK");
    let names = String::from_utf8_lossy(&bytes);
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(
            names.contains(&format!("jigsaw-run-{run_id}/{file}")),
            "the zip holds {file}"
        );
    }
    let foreign = class
        .blue
        .get(server.url(&format!("/runs/{run_id}/model.zip")))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    refused(
        &class.blue,
        server,
        "try-model",
        &[("run_id", &run_id.to_string()), ("text", "good")],
        StatusCode::NOT_FOUND,
    )
    .await;

    // The lessons' attention viewer and [CLS] demo use the team's fine-tuned model too.
    let sentence = [("text", "the story was charming .")];
    let team_view = ok(&class.red, server, "team-attention", &sentence).await;
    assert_eq!(team_view["run_id"], run_id);
    assert_eq!(team_view["view"]["tokens"][0], "[CLS]");
    assert!(
        ok(&class.blue, server, "team-attention", &sentence)
            .await
            .is_null(),
        "Blue has no model yet"
    );
    let cls = ok(&class.red, server, "cls", &sentence).await;
    assert_eq!(
        (cls["run_id"].as_i64(), cls["head_trained"].as_bool()),
        (Some(run_id), Some(true))
    );
    let pretrained = ok(&class.blue, server, "cls", &sentence).await;
    assert_eq!(
        (
            pretrained["run_id"].as_i64(),
            pretrained["head_trained"].as_bool()
        ),
        (None, Some(false))
    );

    // Another team can neither see nor cancel the run.
    refused(
        &class.blue,
        server,
        "run",
        &[("run_id", &run_id.to_string())],
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &class.blue,
        server,
        "cancel-run",
        &[("run_id", &run_id.to_string())],
        StatusCode::NOT_FOUND,
    )
    .await;
    let stream = class
        .blue
        .get(server.url(&format!("/api/runs/{run_id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::NOT_FOUND);

    // A queued or running run can be cancelled by its team.
    let second = submit(&class.red, server, &[("epochs", "20")]).await;
    ok(
        &class.red,
        server,
        "cancel-run",
        &[("run_id", &second.to_string())],
    )
    .await;
    let cancelled = wait_for_end(&class.red, server, second, Duration::from_secs(30)).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    refused(
        &class.red,
        server,
        "cancel-run",
        &[("run_id", &second.to_string())],
        StatusCode::BAD_REQUEST,
    )
    .await;

    // The team compares its runs' curves in one chart.
    let curves = ok(&class.red, server, "team-curves", &[]).await;
    let curves = curves.as_array().unwrap();
    assert_eq!(curves.len(), 2);
    assert_eq!(curves[0]["run_id"], run_id);
    assert_eq!(
        curves[0]["loss"].as_array().unwrap().len() as u64,
        planned.min(200)
    );
    assert!(
        !curves[0]["validation_accuracy"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        curves[0]["label"]
            .as_str()
            .unwrap()
            .starts_with("tiny-bert · full")
    );
    refused(
        &class.teacher,
        server,
        "team-curves",
        &[],
        StatusCode::FORBIDDEN,
    )
    .await;
}

#[tokio::test]
async fn a_run_survives_a_server_crash_and_resumes_from_its_checkpoint() {
    survive_a_crash(None).await;
}

#[tokio::test]
async fn a_run_survives_a_server_crash_and_resumes_from_its_checkpoint_on_postgres() {
    let database = PostgresDatabase::create().await;
    survive_a_crash(Some(&database)).await;
}

/// Kills the server after a run's first checkpoint, restarts it, and checks that the run
/// resumes from that checkpoint and ends with every step reported exactly once.
async fn survive_a_crash(database: Option<&PostgresDatabase>) {
    let _cpu = CPU.write().await;
    let temp = tempfile::tempdir().unwrap();
    let env = training_env(temp.path(), database);
    let data_dir = temp.path().join("data");
    let class = classroom(&data_dir, &env).await;
    // One sentence a step makes each epoch about 80 steps, so the run is still training
    // well after its first checkpoint even on a fast machine (with batch 8 it once finished
    // its last seven epochs between two looks at the database).
    let run_id = submit(
        &class.red,
        &class.server,
        &[("epochs", "8"), ("batch_size", "1")],
    )
    .await;

    // Wait for the first checkpoint (end of epoch 1), then kill the server outright.
    let deadline = Instant::now() + Duration::from_secs(120);
    sqlx::any::install_default_drivers();
    let db = match database {
        Some(database) => database.url.clone(),
        None => format!("sqlite://{}", data_dir.join("jigsaw-lab.db").display()),
    };
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    loop {
        let checkpoints: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_events WHERE run_id = $1 AND payload LIKE '%\"type\":\"checkpoint\"%'",
        )
        .bind(run_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if checkpoints > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint within two minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Classroom { server, red, .. } = class;
    server.kill();
    let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "running", "the crash left the run claimed");
    pool.close().await;

    // After a restart the expired lease is noticed and the run resumes.
    let server = Server::start_in_with(&data_dir, &env);
    let done = wait_for_end(&red, &server, run_id, Duration::from_secs(180)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (ids, events) = read_events(&red, &server, run_id, None).await;
    assert_every_event_once(&ids, &events);
    let resumed: Vec<&Value> = events.iter().filter(|e| e["type"] == "started").collect();
    assert_eq!(
        resumed.len(),
        2,
        "started, then started again after the crash"
    );
    assert!(resumed[1]["resumed_from_step"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn bad_run_forms_get_a_clear_error_and_never_a_5xx() {
    let _cpu = CPU.read().await;
    let temp = tempfile::tempdir().unwrap();
    let env = training_env(temp.path(), None);
    let class = classroom(&temp.path().join("data"), &env).await;
    let server = &class.server;
    // Runs open in the competition phase only.
    set_phase(&class.teacher, server, class.class_id, "quiz").await;
    let early = refused(
        &class.red,
        server,
        "submit-run",
        &run_form(&[]),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(early.contains("competition phase"), "{early}");
    set_phase(&class.teacher, server, class.class_id, "competition").await;
    let huge_sentence = "x".repeat(600);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("learning_rate", "NaN")], "Learning rate"),
        (vec![("learning_rate", "-0.001")], "Learning rate"),
        (vec![("learning_rate", "fast")], "not a number"),
        (vec![("batch_size", "-8")], "Batch size"),
        (vec![("batch_size", "1000000")], "Batch size"),
        (vec![("epochs", "1e9")], "not a number"),
        (vec![("epochs", "0")], "Epochs"),
        (vec![("warmup_ratio", "2")], "Warmup ratio"),
        (vec![("max_len", "100000")], "Max length"),
        (vec![("train_subset", "3")], "Training sentences"),
        (vec![("seed", "-1")], "not a number"),
        (vec![("model", "bert-large-imaginary")], "no model"),
        (vec![("model", "../../etc")], "no model"),
        (vec![("method", "lora"), ("lora_rank", "0")], "LoRA rank"),
        (
            vec![("precision", "fp8")],
            "Precision must be fp32, bf16 or f16",
        ),
        (
            vec![("probe_sentence", huge_sentence.as_str())],
            "attention sentence",
        ),
    ];
    for (changes, message) in cases {
        let (status, body) = call(&class.red, server, "submit-run", &run_form(&changes)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{changes:?}: {body}");
        assert!(body.contains(message), "{changes:?}: {body}");
    }
    // Unreadable fields and other teams' runs.
    let (status, body) = call(
        &class.red,
        server,
        "submit-run",
        &[("form[model]", "tiny-bert")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let first = submit(&class.red, server, &[("epochs", "20")]).await;
    // The worker claims it before the queue fills, so it is the one run that is not waiting
    // when the instructor moves another up (on a busy machine the claim can take a while).
    wait_for_status(&class.red, server, first, "running").await;
    let run_id = first.to_string();
    for endpoint in ["run", "cancel-run"] {
        refused(
            &class.blue,
            server,
            endpoint,
            &[("run_id", &run_id)],
            StatusCode::NOT_FOUND,
        )
        .await;
        refused(
            &class.blue,
            server,
            endpoint,
            &[("run_id", "abc")],
            StatusCode::BAD_REQUEST,
        )
        .await;
        refused(
            &browser(),
            server,
            endpoint,
            &[("run_id", &run_id)],
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    // The team's queue allowance (3 waiting by default) is enforced with a clear message.
    let mut refused_for_queue = None;
    for _ in 0..10 {
        let (status, body) = call(
            &class.red,
            server,
            "submit-run",
            &run_form(&[("epochs", "20")]),
        )
        .await;
        if !status.is_success() {
            refused_for_queue = Some((status, body));
            break;
        }
    }
    let (status, body) = refused_for_queue.expect("the fourth waiting run is refused");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("runs waiting"), "{body}");

    // Only the instructor moves a run up the queue.
    let waiting = ok(
        &class.teacher,
        server,
        "team-runs",
        &[("class_id", &class.class_id.to_string())],
    )
    .await;
    let queued = waiting
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "queued")
        .expect("a waiting run");
    let queued_id = queued["id"].as_i64().unwrap().to_string();
    refused(
        &class.red,
        server,
        "prioritize-run",
        &[("run_id", &queued_id)],
        StatusCode::FORBIDDEN,
    )
    .await;
    ok(
        &class.teacher,
        server,
        "prioritize-run",
        &[("run_id", &queued_id)],
    )
    .await;
    refused(
        &class.teacher,
        server,
        "prioritize-run",
        &[("run_id", &run_id)],
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn a_team_gets_a_limited_number_of_scored_runs_per_day() {
    limit_runs_per_day(None).await;
}

#[tokio::test]
async fn a_team_gets_a_limited_number_of_scored_runs_per_day_on_postgres() {
    let database = PostgresDatabase::create().await;
    limit_runs_per_day(Some(&database)).await;
}

async fn limit_runs_per_day(database: Option<&PostgresDatabase>) {
    let _cpu = CPU.read().await;
    let temp = tempfile::tempdir().unwrap();
    let mut env = training_env(temp.path(), database);
    env.push(("JIGSAW_MAX_RUNS_PER_DAY", "2".to_string()));
    env.push(("JIGSAW_MAX_QUEUED_PER_TEAM", "10".to_string()));
    let class = classroom(&temp.path().join("data"), &env).await;
    let server = &class.server;
    // Twelve submissions at once: the count and the insert are one transaction, so exactly
    // the allowance is queued and the rest are told why.
    let url = server.url("/api/submit-run");
    // The runs are long, so the one cancelled below has surely not ended by itself.
    let body = form_body(&run_form(&LONG_RUN));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (client, url, body) = (class.red.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (response.status(), response.text().await.unwrap())
            })
        })
        .collect();
    let mut queued = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        if status.is_success() {
            let outcome: Value = serde_json::from_str(&body).unwrap();
            queued.push(outcome["Queued"].as_i64().unwrap());
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(body.contains("used its 2 runs for today"), "{body}");
        }
    }
    assert_eq!(queued.len(), 2, "{queued:?}");
    let first = queued[0];
    // Another team has its own allowance; a cancelled run gives one back.
    submit(&class.blue, server, &LONG_RUN).await;
    ok(
        &class.red,
        server,
        "cancel-run",
        &[("run_id", &first.to_string())],
    )
    .await;
    let ended = wait_for_end(&class.red, server, first, Duration::from_secs(60)).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    submit(&class.red, server, &LONG_RUN).await;
}
