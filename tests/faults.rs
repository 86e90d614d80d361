//! Faults a class machine meets, from outside against the real binary: PostgreSQL dropping
//! every connection in the middle of a run (what a restart does to the server), the SQLite
//! file locked by another program, the database's disk full (a small tmpfs: these tests run
//! as root, as `make test` does here), and a finished run's model damaged on disk. A run keeps
//! every event and finishes; a request that cannot be served gets a clear message and a
//! status that says to retry, never a 500. (A damaged checkpoint is the trainer's own test:
//! `a_damaged_checkpoint_resumes_from_the_one_before_it`.)

mod support;

use std::time::{Duration, Instant};
use support::training::*;
use support::*;

/// These tests train; each trains alone, so that its fault lands while its run is training.
static CPU: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until run `run_id` has stored at least `steps` step events.
async fn wait_for_stored_steps(pool: &sqlx::AnyPool, run_id: i64, steps: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_events WHERE run_id = $1 AND kind = 'step'",
        )
        .bind(run_id)
        .fetch_one(pool)
        .await
        .unwrap();
        if stored >= steps {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} stored no {steps} steps in 2 min"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that a finished run's stream holds every sequence number and every step once.
async fn assert_whole_history(client: &reqwest::Client, server: &Server, run_id: i64) {
    let done = wait_for_end(client, server, run_id, Duration::from_secs(180)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (ids, events) = read_events(client, server, run_id, None).await;
    assert_every_event_once(&ids, &events);
}

#[tokio::test]
async fn a_run_keeps_every_event_when_postgres_drops_every_connection() {
    let _cpu = CPU.lock().await;
    let database = PostgresDatabase::create().await;
    let temp = tempfile::tempdir().unwrap();
    let env = training_env(temp.path(), Some(&database));
    let class = classroom(&temp.path().join("data"), &env).await;
    let server = &class.server;
    let run_id = submit(&class.red, server, &[("epochs", "8")]).await;
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&database.url).await.unwrap();
    wait_for_stored_steps(&admin, run_id, 3).await;
    // What a PostgreSQL restart does to the server: every connection it holds is cut,
    // three times over a second, while the run is storing its steps.
    for _ in 0..3 {
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&admin)
        .await
        .unwrap();
        assert!(!cut.is_empty(), "the server held connections");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Pages keep working once the pool has reconnected.
    let health = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_whole_history(&class.red, server, run_id).await;
    admin.close().await;
}

#[tokio::test]
async fn a_locked_sqlite_file_gets_a_retry_message_and_the_run_loses_nothing() {
    let _cpu = CPU.lock().await;
    let temp = tempfile::tempdir().unwrap();
    let env = training_env(temp.path(), None);
    let data_dir = temp.path().join("data");
    let class = classroom(&data_dir, &env).await;
    let server = &class.server;
    let run_id = submit(&class.red, server, &[("epochs", "8")]).await;
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", data_dir.join("jigsaw-lab.db").display());
    let other_program = sqlx::AnyPool::connect(&url).await.unwrap();
    wait_for_stored_steps(&other_program, run_id, 3).await;

    // Another program takes the write lock for 8 s (the server waits 5 s for it).
    let mut lock = other_program.acquire().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let locked_at = Instant::now();
    // Reading still works; a write waits, then says to retry, and changes nothing.
    let run = run_detail(&class.red, server, run_id).await;
    assert_eq!(run["status"], "running", "{run}");
    let url = server.url("/api/set-phase");
    let response = class
        .teacher
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("class_id", &class.class_id.to_string()),
            ("phase", "quiz"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let message = response.text().await.unwrap();
    assert!(message.contains("Try again in a few seconds"), "{message}");
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(locked_at.elapsed())).await;
    sqlx::query("COMMIT").execute(&mut *lock).await.unwrap();
    drop(lock);
    other_program.close().await;

    let phase = ok(
        &class.teacher,
        server,
        "set-phase",
        &[("class_id", &class.class_id.to_string()), ("phase", "quiz")],
    )
    .await;
    assert!(phase.is_null(), "{phase}");
    assert_whole_history(&class.red, server, run_id).await;
}

#[tokio::test]
async fn a_damaged_model_file_gets_a_clear_message() {
    let _cpu = CPU.lock().await;
    let temp = tempfile::tempdir().unwrap();
    let env = training_env(temp.path(), None);
    let data_dir = temp.path().join("data");
    let class = classroom(&data_dir, &env).await;
    let server = &class.server;
    let run_id = submit(&class.red, server, &[("epochs", "2")]).await;
    let done = wait_for_end(&class.red, server, run_id, Duration::from_secs(180)).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // The weights cut in half, as a full disk or a crash during a copy leaves them.
    let weights = data_dir.join(format!("runs/{run_id}/model/model.safetensors"));
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let run = run_id.to_string();
    let sentence = [("run_id", run.as_str()), ("text", "a charming film")];
    let message = refused(
        &class.red,
        server,
        "try-model",
        &sentence,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(message.contains("cannot be read"), "{message}");
    // The team's attention maps fall on the same model and say the same.
    let (status, body) = call(&class.red, server, "team-attention", &[("text", "good")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Everything else goes on.
    let health = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts `megabytes` of tmpfs at `dir`; the test fails, saying why, when it cannot.
    fn mount(dir: &std::path::Path, megabytes: u32) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "the disk-full test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(dir.to_path_buf())
    }

    /// Fills the disk with one file, up to its last byte.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let mut byte = [0u8; 1];
        while file.write_all(&byte).is_ok() {
            byte[0] = 1;
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_new_answers_clearly_and_keeps_the_saved_ones() {
    let temp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&temp.path().join("disk"), 16);
    let data_dir = temp.path().join("disk/data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let server = Server::start_in(&data_dir);
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (class_id, code, teams) = class_with_teams(&teacher, &server).await;
    let zoe = joined_student(&server, &code, "Zoé", teams[0]).await;
    ok(
        &teacher,
        &server,
        "set-phase",
        &[("class_id", &class_id.to_string()), ("phase", "quiz")],
    )
    .await;
    let saved = "Pretraining learns language; fine-tuning adapts it to one task.";
    let answer = |key, text| [("key", key), ("text", text), ("submit", "true")];
    ok(
        &zoe,
        &server,
        "save-answer",
        &answer("fine-tuning-1", saved),
    )
    .await;

    // The disk fills up: a new answer is refused with a message that says so, and a 503.
    let filler = disk.fill();
    let long = "a long answer that needs room on the disk. ".repeat(100);
    let (status, body) = call(
        &zoe,
        &server,
        "save-answer",
        &answer("fine-tuning-2", &long),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("disk is full"), "{body}");
    // Everything saved before is there, and the server still serves.
    let quiz = ok(&zoe, &server, "my-quiz", &[]).await;
    assert_eq!(quiz["items"][0]["mine"]["answer"], saved);
    let health = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // Room again: the same answer goes in.
    std::fs::remove_file(filler).unwrap();
    ok(
        &zoe,
        &server,
        "save-answer",
        &answer("fine-tuning-2", &long),
    )
    .await;
    let quiz = ok(&zoe, &server, "my-quiz", &[]).await;
    assert_eq!(quiz["items"][1]["mine"]["answer"], long.trim());
    drop(server);
}
