//! What the HTTP-level integration tests share: starting the real `jigsaw-lab` binary on a
//! free port with a fresh data directory (and, for the `_on_postgres` tests, a fresh
//! PostgreSQL database), and calling it. Each test file uses a part.
#![allow(dead_code)]

#[path = "../../trainer/tests/support/synthetic_sst2.rs"]
mod synthetic_sst2;

/// Fine-tuning runs: the tiny test model, a class ready to train, the run form.
pub mod training;

pub use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
#[allow(unused_imports)] // each test file uses a part
pub use synthetic_sst2::write_synthetic_sst2;

/// This package's directory, read when the test runs (cargo sets it), so a test binary
/// built from another checkout sharing the target directory still finds its files.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

pub const LESSON_SLUGS: [&str; 8] = [
    "fine-tuning",
    "tokenization",
    "attention",
    "cls-token",
    "model-choice",
    "hyperparameters",
    "lora",
    "overfitting",
];

pub fn repo_root() -> PathBuf {
    manifest_dir().parent().unwrap().to_path_buf()
}

/// The models directory `make setup` fills.
pub fn models_dir() -> PathBuf {
    std::env::var_os("JIGSAW_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("data/models"))
}

/// The site `cargo leptos build` wrote.
pub fn site_root() -> PathBuf {
    std::env::var_os("JIGSAW_TEST_SITE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/site"))
}

/// A running server that is killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    /// The environment variables it was started with beyond the test defaults.
    env: Vec<(String, String)>,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_on(None)
    }

    /// Starts the server in a fresh data directory, on `database` when given (else on
    /// SQLite in that directory).
    pub fn start_on(database: Option<&PostgresDatabase>) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().to_path_buf();
        let env: Vec<_> = database.map(PostgresDatabase::env).into_iter().collect();
        let mut server = Self::start_in_with(&data_dir, &env);
        server._temp = Some(temp);
        server
    }

    pub fn start_in(data_dir: &Path) -> Self {
        Self::start_in_with(data_dir, &[])
    }

    /// Starts the server with extra environment variables (overriding the test defaults).
    pub fn start_in_with(data_dir: &Path, env: &[(&str, String)]) -> Self {
        let mut command = command(data_dir);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the jigsaw-lab binary starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("Jigsaw Lab listening on ") {
                    let _ = sender.send(address.to_string());
                }
            }
        });
        let base = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("the server announces its address within a minute");
        Self {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone()))
                .collect(),
            _temp: None,
        }
    }

    /// The binary with this server's environment, for its terminal commands.
    pub fn command(&self) -> Command {
        let mut command = command(&self.data_dir);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with a test environment: CPU device, a free port, the given data directory.
pub fn command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jigsaw-lab"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("JIGSAW_BIND", "127.0.0.1:0")
        .env("JIGSAW_DATA_DIR", data_dir)
        .env("JIGSAW_MODELS_DIR", models_dir())
        .env("JIGSAW_SITE_ROOT", site_root())
        .env("JIGSAW_DEVICE", "cpu")
        .env("RUST_LOG", "warn")
        .current_dir(data_dir);
    command
}

/// Runs the binary with one setting changed and returns (exit code, stderr).
pub fn failed_start(setting: &str, value: &str) -> (Option<i32>, String) {
    let temp = tempfile::tempdir().unwrap();
    let output = command(temp.path())
        .env(setting, value)
        .output()
        .expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// PostgreSQL: the `_on_postgres` tests run the same flows on a database of their own.

/// Names the PostgreSQL server the `_on_postgres` tests create their databases on.
pub const POSTGRES_URL_VAR: &str = "JIGSAW_TEST_POSTGRES_URL";

/// A fresh, empty PostgreSQL database for one test, dropped (connections and all) when the
/// value is. Declare it before the server, so the server stops first.
pub struct PostgresDatabase {
    pub url: String,
}

impl PostgresDatabase {
    /// Creates the database on the server that [`POSTGRES_URL_VAR`] names, or fails the
    /// test saying how to set it: these tests never pass without a database to test.
    pub async fn create() -> Self {
        use sqlx::migrate::MigrateDatabase;
        static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let server = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
            panic!(
                "{POSTGRES_URL_VAR} is not set. The _on_postgres tests need a PostgreSQL server \
                 where they may create databases, e.g. \
                 {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test (`make test` sets that)"
            )
        });
        let name = format!(
            "jigsaw_test_{}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let url = with_database(&server, &name);
        sqlx::Postgres::create_database(&url)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot create a test database with {POSTGRES_URL_VAR}={server}: {e}")
            });
        Self { url }
    }

    /// The setting that points a server at this database.
    pub fn env(&self) -> (&'static str, String) {
        ("DATABASE_URL", self.url.clone())
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        use sqlx::migrate::MigrateDatabase;
        let url = self.url.clone();
        // Drop runs inside the test's runtime, which cannot block; a thread of its own can.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(sqlx::Postgres::force_drop_database(&url))
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop the test database {}: {error}", self.url);
        }
    }
}

/// `server`, a postgres:// URL, with its database name replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    format!("{}/{name}{query}", &base[..host_end])
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// The Unix time now, in seconds (the clock of sessions, leases and training nodes).
pub fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The HTML of the page at `path`, fetched with `client` (and its session, if it has one).
pub async fn page_html(client: &reqwest::Client, server: &Server, path: &str) -> String {
    let response = client.get(server.url(path)).send().await.unwrap();
    response.text().await.unwrap()
}

pub async fn call_server_fn(server: &Server, endpoint: &str, body: &str) -> (StatusCode, String) {
    let response = client()
        .post(server.url(&format!("/api/{endpoint}")))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

// The classroom: accounts, a class with teams, joined students.

pub const PASSWORD: &str = "correct horse battery";

/// Creates an instructor account with the terminal command, as a teacher would.
pub fn add_instructor(server: &Server, username: &str) {
    let output = server
        .command()
        .env("JIGSAW_INSTRUCTOR_PASSWORD", PASSWORD)
        .args(["instructor", "add", username])
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "instructor add failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("created"));
}

/// A browser-like client: keeps its cookies, does not follow redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Calls a server function as `client`; returns the status and the body.
pub async fn call(
    client: &reqwest::Client,
    server: &Server,
    endpoint: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let body = form_body(form);
    let response = client
        .post(server.url(&format!("/api/{endpoint}")))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// A form as an `application/x-www-form-urlencoded` body (values encoded, keys as given).
pub fn form_body(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a form value.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Calls a server function that must succeed and returns its JSON answer.
pub async fn ok(
    client: &reqwest::Client,
    server: &Server,
    endpoint: &str,
    form: &[(&str, &str)],
) -> Value {
    let (status, body) = call(client, server, endpoint, form).await;
    assert!(
        status.is_success() || status.is_redirection(),
        "{endpoint} answered {status}: {body}"
    );
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Asserts a server function is refused with `expected` and a readable message.
pub async fn refused(
    client: &reqwest::Client,
    server: &Server,
    endpoint: &str,
    form: &[(&str, &str)],
    expected: StatusCode,
) -> String {
    let (status, body) = call(client, server, endpoint, form).await;
    assert_eq!(status, expected, "{endpoint} {form:?}: {body}");
    body
}

pub async fn signed_in_instructor(server: &Server, username: &str) -> reqwest::Client {
    add_instructor(server, username);
    let client = browser();
    ok(
        &client,
        server,
        "sign-in",
        &[("username", username), ("password", PASSWORD)],
    )
    .await;
    let me = ok(&client, server, "whoami", &[]).await;
    assert_eq!(me["Instructor"]["username"], username);
    client
}

/// A class with teams "Red" and "Blue", topics in turn. Returns (class id, join code, team ids).
pub async fn class_with_teams(
    instructor: &reqwest::Client,
    server: &Server,
) -> (i64, String, Vec<i64>) {
    let class = ok(
        instructor,
        server,
        "create-class",
        &[("name", "Période 3 · NLP")],
    )
    .await;
    let class_id = class["id"].as_i64().unwrap();
    let code = class["join_code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6);
    let id = class_id.to_string();
    for team in ["Red", "Blue"] {
        ok(
            instructor,
            server,
            "add-team",
            &[("class_id", &id), ("name", team)],
        )
        .await;
    }
    ok(instructor, server, "assign-topics", &[("class_id", &id)]).await;
    let preview = ok(
        &browser(),
        server,
        "find-class",
        &[("code", &code.to_lowercase())],
    )
    .await;
    let teams = preview["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    (class_id, code, teams)
}

pub async fn joined_student(server: &Server, code: &str, name: &str, team: i64) -> reqwest::Client {
    let client = browser();
    ok(
        &client,
        server,
        "join-class",
        &[
            ("code", code),
            ("display_name", name),
            ("team_id", &team.to_string()),
        ],
    )
    .await;
    client
}

/// A zip of `files` (name, bytes), deflated, as a teacher's zip tool makes one.
pub fn zip_of<N: AsRef<str>>(files: &[(N, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        zip.start_file(name.as_ref(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}
