//! Several nodes on one PostgreSQL database, from outside: web nodes that train nothing
//! (`JIGSAW_TRAINING_SLOTS=0`), a `jigsaw-lab worker` node that trains without serving
//! pages, and live changes crossing between them through LISTEN/NOTIFY.

mod support;

use reqwest::header::CONTENT_TYPE;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;
use support::training::*;
use support::*;

/// A `jigsaw-lab worker` process, killed when dropped.
struct WorkerNode(Child);

impl WorkerNode {
    /// Starts a worker node on `data_dir` with `env`, once it says what it does.
    fn start(data_dir: &std::path::Path, env: &[(&str, String)]) -> Self {
        let mut command = command(data_dir);
        command.arg("worker").envs(env.iter().map(|(k, v)| (*k, v)));
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("the worker says what it does").unwrap();
        assert!(
            first.starts_with("Jigsaw Lab worker node: trains up to 1 run"),
            "{first}"
        );
        assert!(
            first.contains("postgres://") && !first.contains("postgres@"),
            "{first}"
        );
        std::thread::spawn(move || for _ in lines {});
        Self(child)
    }
}

impl Drop for WorkerNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The settings of web-only nodes on `database`, each with its own data folder and all
/// with one runs folder under `root` (a worker drops `JIGSAW_TRAINING_SLOTS`).
fn web_only_env(
    root: &std::path::Path,
    database: &PostgresDatabase,
) -> Vec<(&'static str, String)> {
    let mut env = training_env(root, Some(database));
    env.push(("JIGSAW_TRAINING_SLOTS", "0".to_string()));
    env.push(("JIGSAW_RUNS_DIR", root.join("runs").display().to_string()));
    env
}

/// A node's own data folder under `root`.
fn node_dir(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_worker_node_refuses_sqlite() {
    let temp = tempfile::tempdir().unwrap();
    let output = command(temp.path()).arg("worker").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DATABASE_URL=postgres://") && !stderr.contains("JIGSAW_DATABASE_URL"),
        "{stderr}"
    );
    assert!(stderr.contains("SQLite"), "{stderr}");
}

/// Reads the class-events stream at `url` until one `class-changed` arrives (or 10 s pass).
async fn next_class_change(client: &reqwest::Client, url: String) -> bool {
    let mut response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while !text.contains("event: class-changed") {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn web_nodes_stream_what_a_worker_node_trains_and_each_others_changes() {
    let database = PostgresDatabase::create().await;
    let temp = tempfile::tempdir().unwrap();
    let mut env = web_only_env(temp.path(), &database);
    let node_dir = |name: &str| node_dir(temp.path(), name);
    // Web node A, where the class is set up and the run queued; it trains nothing.
    let class = classroom(&node_dir("web-a"), &env).await;
    let server = &class.server;
    // Web node B on the same database; the same sessions work there.
    let other_web = Server::start_in_with(&node_dir("web-b"), &env);
    let run_id = submit(&class.red, server, &[("epochs", "8")]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = run_detail(&class.red, server, run_id).await;
    assert_eq!(waiting["status"], "queued", "no web node trains: {waiting}");
    assert_eq!(waiting["held_by"], "NoTrainingNode", "{waiting}");
    let form = ok(&class.red, server, "run-form", &[]).await;
    let device = form["device"].as_str().unwrap();
    assert!(device.contains("no training node is running"), "{device}");

    // A GPU node that is still compiling its kernels after its start claims nothing; the
    // run's page and the form say that is what the queue waits for. (The row is the one
    // such a node declares; a worker's own declaration is the server's unit test.)
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&database.url).await.unwrap();
    sqlx::query(
        "INSERT INTO training_nodes (name, device, slots, last_seen, train_examples, \
         warming_up_since) VALUES ('gpu-1', 'GPU: test card', 1, $1, 65349, $2)",
    )
    .bind(unix_seconds())
    .bind(unix_seconds() - 75)
    .execute(&admin)
    .await
    .unwrap();
    let waiting = run_detail(&class.red, server, run_id).await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    let seconds = waiting["held_by"]["WarmingUp"]["seconds"].as_i64();
    assert!(seconds.is_some_and(|s| (75..90).contains(&s)), "{waiting}");
    let page = page_html(&class.red, server, &format!("/runs/{run_id}")).await;
    assert!(
        page.contains("data-testid=\"run-held\"")
            && page.contains("The training GPU is getting ready"),
        "the run's page says what the run waits for"
    );
    let form = ok(&class.red, server, "run-form", &[]).await;
    let device = form["device"].as_str().unwrap();
    assert!(device.contains("getting ready"), "{device}");
    assert!(form["queue"]["held_by"]["WarmingUp"].is_object(), "{form}");
    // The team's list and the instructor's say it on the run's line.
    let own = ok(&class.red, server, "team-runs", &[]).await;
    assert!(own[0]["held_by"]["WarmingUp"].is_object(), "{own}");
    let class_runs = ok(
        &class.teacher,
        server,
        "team-runs",
        &[("class_id", &class.class_id.to_string())],
    )
    .await;
    assert!(
        class_runs[0]["held_by"]["WarmingUp"].is_object(),
        "{class_runs}"
    );
    let team_page = page_html(&class.red, server, "/team").await;
    assert!(
        team_page.contains("The training GPU is getting ready")
            && team_page.contains("queued, #1 in line: the GPU is getting ready"),
        "the run form and the team's list say what queued runs wait for"
    );
    // The node's warm-up ends and it claims runs: nothing holds the queue.
    sqlx::query("UPDATE training_nodes SET warming_up_since = NULL")
        .execute(&admin)
        .await
        .unwrap();
    let waiting = run_detail(&class.red, server, run_id).await;
    assert_eq!(waiting["held_by"], serde_json::Value::Null, "{waiting}");
    // The form's note, fetched again every few seconds, now counts the runs ahead.
    let queue = ok(&class.red, server, "queue-wait", &[]).await;
    assert_eq!(queue["held_by"], serde_json::Value::Null, "{queue}");
    assert_eq!(queue["runs_ahead"], 1, "{queue}");
    refused(
        &class.teacher,
        server,
        "queue-wait",
        &[],
        StatusCode::FORBIDDEN,
    )
    .await;
    sqlx::query("DELETE FROM training_nodes")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;

    // A worker node trains it; the page on web node B follows every event live, from the
    // start to the end.
    // The page opens before the worker starts, so every event reaches it live.
    let page = tokio::spawn({
        let (red, url) = (
            class.red.clone(),
            other_web.url(&format!("/api/runs/{run_id}/events")),
        );
        async move { read_event_stream(&red, url, None).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.retain(|(name, _)| *name != "JIGSAW_TRAINING_SLOTS");
    let health_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut worker_env = env.clone();
    worker_env.push(("JIGSAW_HEALTH_BIND", format!("127.0.0.1:{health_port}")));
    let _worker = WorkerNode::start(&node_dir("worker"), &worker_env);
    // The worker serves no pages, only its health check.
    let health = reqwest::get(format!("http://127.0.0.1:{health_port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(
        (&health["role"], &health["database"]),
        (&serde_json::json!("worker"), &serde_json::json!("ok")),
        "{health}"
    );
    let pages = reqwest::get(format!("http://127.0.0.1:{health_port}/"))
        .await
        .unwrap();
    assert_eq!(pages.status(), reqwest::StatusCode::NOT_FOUND);
    let (ids, events) = page.await.unwrap();
    assert_every_event_once(&ids, &events);
    assert_eq!(events.last().unwrap()["type"], "finished");
    let done = wait_for_end(&class.red, &other_web, run_id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // The worker declared its device and slot: the form on any web node names them.
    let form = ok(&class.red, &other_web, "run-form", &[]).await;
    let device = form["device"].as_str().unwrap();
    assert!(
        device.starts_with("CPU") && device.ends_with("1 slot"),
        "{device}"
    );
    // Web node B reads the model the worker trained.
    let reading = ok(
        &class.red,
        &other_web,
        "try-model",
        &[
            ("run_id", &run_id.to_string()),
            ("text", "the story was charming ."),
        ],
    )
    .await;
    assert_eq!(reading["label"], "positive", "{reading}");

    // A phase changed through node A reaches a student's open page on node B.
    let listening = tokio::spawn({
        let (red, url) = (class.red.clone(), other_web.url("/api/class-events"));
        async move { next_class_change(&red, url).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = class
        .teacher
        .post(server.url("/api/set-phase"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("class_id", &class.class_id.to_string()),
            ("phase", "quiz"),
        ]))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert!(
        listening.await.unwrap(),
        "node B's class stream heard node A's phase change"
    );
}

#[tokio::test]
async fn a_killed_worker_is_taken_over_and_a_dropped_listener_misses_nothing() {
    let database = PostgresDatabase::create().await;
    let temp = tempfile::tempdir().unwrap();
    let mut env = web_only_env(temp.path(), &database);
    let node_dir = |name: &str| node_dir(temp.path(), name);
    let class = classroom(&node_dir("web-a"), &env).await;
    // One sentence a step (about 80 steps an epoch): the run is still training when the
    // worker is killed, however fast the machine.
    let run_id = submit(
        &class.red,
        &class.server,
        &[("epochs", "8"), ("batch_size", "1")],
    )
    .await;
    // The team's page on web node A is open from before the run starts.
    let page = tokio::spawn({
        let (red, url) = (
            class.red.clone(),
            class.server.url(&format!("/api/runs/{run_id}/events")),
        );
        async move { read_event_stream(&red, url, None).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.retain(|(name, _)| *name != "JIGSAW_TRAINING_SLOTS");
    let first = WorkerNode::start(&node_dir("worker-1"), &env);

    // Once the run has a checkpoint: every node's database listener is cut (A reconnects
    // and catches up), and the worker is killed outright.
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let checkpoints: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_events WHERE run_id = $1 AND kind = 'checkpoint'",
        )
        .bind(run_id)
        .fetch_one(&admin)
        .await
        .unwrap();
        if checkpoints > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint in 2 min"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!cut.is_empty(), "the nodes were listening");
    drop(first);
    let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(status, "running", "the kill left the run claimed: {status}");
    admin.close().await;

    // A second worker takes the run over once its lease expires, from the checkpoint; the
    // page on A follows it to the end with no gap and no duplicate.
    let _second = WorkerNode::start(&node_dir("worker-2"), &env);
    let (ids, events) = page.await.unwrap();
    assert_every_event_once(&ids, &events);
    let started: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["type"] == "started").collect();
    assert_eq!(
        started.len(),
        2,
        "started, then started again on the second worker"
    );
    assert!(started[1]["resumed_from_step"].as_u64().unwrap() > 0);
    assert_eq!(events.last().unwrap()["type"], "finished");
}

#[tokio::test]
async fn two_workers_train_six_runs_once_each_turning_between_teams() {
    let database = PostgresDatabase::create().await;
    let temp = tempfile::tempdir().unwrap();
    let mut env = web_only_env(temp.path(), &database);
    let node_dir = |name: &str| node_dir(temp.path(), name);
    let class = classroom(&node_dir("web"), &env).await;
    let server = &class.server;
    let class_id = class.class_id.to_string();
    ok(
        &class.teacher,
        server,
        "add-team",
        &[("class_id", &class_id), ("name", "Green")],
    )
    .await;
    let admin = ok(
        &class.teacher,
        server,
        "class-admin",
        &[("class_id", &class_id)],
    )
    .await;
    let code = admin["summary"]["join_code"].as_str().unwrap().to_string();
    let green_team = admin["teams"][2]["id"].as_i64().unwrap();
    let green = joined_student(server, &code, "Gil", green_team).await;
    // Two runs per team, queued team by team before any worker runs.
    let mut runs = Vec::new();
    for student in [&class.red, &class.blue, &green] {
        for _ in 0..2 {
            runs.push((
                student.clone(),
                submit(student, server, &[("epochs", "4")]).await,
            ));
        }
    }
    env.retain(|(name, _)| *name != "JIGSAW_TRAINING_SLOTS");
    let _one = WorkerNode::start(&node_dir("worker-1"), &env);
    let _two = WorkerNode::start(&node_dir("worker-2"), &env);
    for (student, run_id) in &runs {
        let done = wait_for_end(student, server, *run_id, Duration::from_secs(180)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM runs ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(statuses, vec!["succeeded"; 6]);
    // Every run trained once: one start each, never taken over.
    let starts: Vec<i64> = sqlx::query_scalar(
        "SELECT COUNT(*) FROM run_events WHERE kind = 'started' GROUP BY run_id ORDER BY run_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(starts, vec![1; 6]);
    // The claims turned between the teams: each team once in the first three, once in
    // the last three.
    let teams: Vec<i64> = sqlx::query_scalar("SELECT team_id FROM runs ORDER BY claim_order, id")
        .fetch_all(&pool)
        .await
        .unwrap();
    for half in teams.chunks(3) {
        let mut half = half.to_vec();
        half.sort();
        half.dedup();
        assert_eq!(half.len(), 3, "claims by team: {teams:?}");
    }
    pool.close().await;
}
