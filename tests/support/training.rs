//! Fine-tuning runs from outside: a models folder and data set for the tiny test BERT, a
//! class with two teams in the competition phase, the run form, and reading a run's
//! status and live events.

use super::*;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// A models folder (the default model plus the tiny test BERT), a small SST-2-style data
/// set whose sentiment follows from its words (see [`write_synthetic_sst2`]), and
/// `database` when given (else SQLite in the data directory).
pub fn training_env(
    root: &Path,
    database: Option<&PostgresDatabase>,
) -> Vec<(&'static str, String)> {
    let models = root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(
        models_dir().join("all-MiniLM-L6-v2"),
        models.join("all-MiniLM-L6-v2"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        repo_root().join("trainer/tests/fixtures/tiny-bert"),
        models.join("tiny-bert"),
    )
    .unwrap();
    let sst2 = root.join("sst2");
    write_synthetic_sst2(&sst2);
    let mut env = vec![
        ("JIGSAW_MODELS_DIR", models.display().to_string()),
        ("JIGSAW_SST2_DIR", sst2.display().to_string()),
        ("JIGSAW_VALIDATION_SIZE", "16".to_string()),
    ];
    env.extend(database.map(PostgresDatabase::env));
    env
}

/// A run form for the tiny model; `changes` override fields by name (`model`, or
/// `confirmed`). The server function takes the form as one struct, so its fields travel as
/// `form[name]`.
pub fn run_form<'a>(changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("form[model]", "tiny-bert"),
        ("form[method]", "full"),
        ("form[lora_rank]", "8"),
        ("form[lora_alpha]", ""),
        ("form[learning_rate]", "2e-3"),
        ("form[batch_size]", "8"),
        ("form[epochs]", "8"),
        ("form[warmup_ratio]", "0.1"),
        ("form[max_len]", "16"),
        ("form[train_subset]", ""),
        ("form[seed]", "11"),
        ("form[probe_sentence]", "the cast was witty ."),
        ("form[precision]", "fp32"),
        ("confirmed", "true"),
    ];
    for (key, value) in changes {
        form.iter_mut()
            .find(|(k, _)| {
                k == key || k.strip_prefix("form[").and_then(|k| k.strip_suffix(']')) == Some(key)
            })
            .unwrap_or_else(|| panic!("no form field {key}"))
            .1 = value;
    }
    form
}

/// Run settings that train for minutes on any CPU (MiniLM, one sentence per step, 20
/// epochs), for tests that must find a run still queued or training.
pub const LONG_RUN: [(&str, &str); 4] = [
    ("model", "all-MiniLM-L6-v2"),
    ("batch_size", "1"),
    ("epochs", "20"),
    ("learning_rate", "2e-5"),
];

/// A class with one student per team, ready to train.
pub struct Classroom {
    pub server: Server,
    pub teacher: reqwest::Client,
    pub class_id: i64,
    pub red: reqwest::Client,
    pub blue: reqwest::Client,
}

pub async fn classroom(data_dir: &Path, env: &[(&str, String)]) -> Classroom {
    std::fs::create_dir_all(data_dir).unwrap();
    let server = Server::start_in_with(data_dir, env);
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (class_id, code, teams) = class_with_teams(&teacher, &server).await;
    let red = joined_student(&server, &code, "Ana", teams[0]).await;
    let blue = joined_student(&server, &code, "Ben", teams[1]).await;
    set_phase(&teacher, &server, class_id, "competition").await;
    Classroom {
        server,
        teacher,
        class_id,
        red,
        blue,
    }
}

/// Moves the class to `phase`, as its teacher.
pub async fn set_phase(teacher: &reqwest::Client, server: &Server, class_id: i64, phase: &str) {
    ok(
        teacher,
        server,
        "set-phase",
        &[("class_id", &class_id.to_string()), ("phase", phase)],
    )
    .await;
}

/// Submits a run and returns its id.
pub async fn submit(client: &reqwest::Client, server: &Server, changes: &[(&str, &str)]) -> i64 {
    let outcome = ok(client, server, "submit-run", &run_form(changes)).await;
    outcome["Queued"]
        .as_i64()
        .unwrap_or_else(|| panic!("not queued: {outcome}"))
}

/// The run as its team's page reads it (`/api/run`).
pub async fn run_detail(client: &reqwest::Client, server: &Server, run_id: i64) -> Value {
    ok(client, server, "run", &[("run_id", &run_id.to_string())]).await
}

/// Polls a run until it leaves the queue and training (or `limit` passes).
pub async fn wait_for_end(
    client: &reqwest::Client,
    server: &Server,
    run_id: i64,
    limit: Duration,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let run = run_detail(client, server, run_id).await;
        if !matches!(run["status"].as_str(), Some("queued" | "running")) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not end in {limit:?}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads a run's whole event stream until its final event: (ids, events).
pub async fn read_events(
    client: &reqwest::Client,
    server: &Server,
    run_id: i64,
    last_event_id: Option<i64>,
) -> (Vec<i64>, Vec<Value>) {
    let url = server.url(&format!("/api/runs/{run_id}/events"));
    read_event_stream(client, url, last_event_id).await
}

/// Asserts that a run's stream holds every sequence number from 1 without a gap and every
/// planned step exactly once; returns the planned steps.
pub fn assert_every_event_once(ids: &[i64], events: &[Value]) -> u64 {
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "sequence numbers 1, 2, 3, … without gaps"
    );
    let planned = events[0]["steps_planned"].as_u64().unwrap();
    assert_eq!(
        steps(events),
        (1..=planned).collect::<Vec<_>>(),
        "every step once: no gap, no duplicate"
    );
    planned
}

/// Reads the run event stream at `url` until its final event: (ids, events).
pub async fn read_event_stream(
    client: &reqwest::Client,
    url: String,
    last_event_id: Option<i64>,
) -> (Vec<i64>, Vec<Value>) {
    let mut request = client.get(url);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut buffer = String::new();
    let (mut ids, mut events) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim_start().to_string())
            };
            if field("event:").as_deref() != Some("run") {
                continue;
            }
            ids.push(field("id:").unwrap().parse().unwrap());
            let event: Value = serde_json::from_str(&field("data:").unwrap()).unwrap();
            let done = matches!(
                event["type"].as_str(),
                Some("finished" | "failed" | "diverged" | "cancelled")
            );
            events.push(event);
            if done {
                return (ids, events);
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the run's events arrive")
            .unwrap()
            .expect("the stream stays open until the run ends");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

pub fn steps(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["type"] == "step")
        .map(|e| e["step"].as_u64().unwrap())
        .collect()
}

/// Polls a run until its status is `status`, returning it.
pub async fn wait_for_status(client: &reqwest::Client, server: &Server, run_id: i64, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = run_detail(client, server, run_id).await;
        if run["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never became {status}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
