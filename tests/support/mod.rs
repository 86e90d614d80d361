//! What the HTTP-level integration tests share: starting the real `jigsaw-lab` binary on a
//! free port with a fresh data directory, and calling it. Each test file uses a part.
#![allow(dead_code)]

pub use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().to_path_buf();
        let mut server = Self::start_in(&data_dir);
        server._temp = Some(temp);
        server
    }

    pub fn start_in(data_dir: &Path) -> Self {
        let mut child = command(data_dir)
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
            _temp: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
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
