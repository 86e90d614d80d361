//! Server settings: defaults, then an optional TOML file, then environment variables.
//!
//! Every problem is a [`ConfigError`] that names the setting at fault, so a bad value stops
//! the start with one clear line instead of a backtrace.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use trainer::device::{ComputeDevice, DeviceChoice, DeviceError};

/// The model every install ships with and the lessons use.
pub use run_protocol::settings::DEFAULT_MODEL;

/// Files an HF model directory must hold for Jigsaw Lab to use it.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// The GLUE SST-2 files the trainer reads.
pub const SST2_FILES: [&str; 3] = ["train.tsv", "dev.tsv", "test.tsv"];

/// A setting that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable (or TOML key) at fault.
    pub setting: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl ConfigError {
    /// Builds an error for `setting`.
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The resolved settings of one server process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`JIGSAW_BIND`).
    pub bind: SocketAddr,
    /// Where the database, checkpoints and other state live (`JIGSAW_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The database (`DATABASE_URL`); a SQLite file in the data directory by default.
    pub database_url: String,
    /// Directory holding one HF model directory per model (`JIGSAW_MODELS_DIR`).
    pub models_dir: PathBuf,
    /// Directory with the GLUE SST-2 TSVs (`JIGSAW_SST2_DIR`).
    pub sst2_dir: PathBuf,
    /// Which compute device to train on (`JIGSAW_DEVICE`).
    pub device: DeviceChoice,
    /// The built site: `pkg/` with the WebAssembly, script and stylesheet (`JIGSAW_SITE_ROOT`).
    pub site_root: PathBuf,
    /// Log as JSON lines instead of text (`JIGSAW_LOG_FORMAT=json`).
    pub json_logs: bool,
    /// Mark session cookies Secure, for a server behind TLS (`JIGSAW_SECURE_COOKIES=true`).
    pub secure_cookies: bool,
    /// Sentences carved out of SST-2 train for validation in every run
    /// (`JIGSAW_VALIDATION_SIZE`, default 2000).
    pub validation_size: usize,
    /// Runs a team may have waiting at once (`JIGSAW_MAX_QUEUED_PER_TEAM`, default 3).
    pub max_queued_per_team: i64,
    /// Scored runs a team may submit per UTC day (`JIGSAW_MAX_RUNS_PER_DAY`, default 10).
    pub max_runs_per_day: i64,
    /// Runs this process trains at the same time (`JIGSAW_TRAINING_SLOTS`, default 1).
    pub training_slots: usize,
}

/// The optional TOML file; every key mirrors an environment variable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    bind: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    models_dir: Option<PathBuf>,
    sst2_dir: Option<PathBuf>,
    device: Option<String>,
    site_root: Option<PathBuf>,
    log_format: Option<String>,
    secure_cookies: Option<bool>,
    validation_size: Option<usize>,
    max_queued_per_team: Option<i64>,
    max_runs_per_day: Option<i64>,
    training_slots: Option<usize>,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the settings, looking variables up with `var`.
    ///
    /// The TOML file is `JIGSAW_CONFIG` when set, else `jigsaw.toml` in the working directory
    /// when that exists. Environment variables override the file.
    pub fn load(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = match var("JIGSAW_CONFIG") {
            Some(path) => read_file(Path::new(&path))?,
            None if Path::new("jigsaw.toml").is_file() => read_file(Path::new("jigsaw.toml"))?,
            None => FileSettings::default(),
        };
        let text = |env: &str, from_file: Option<String>| var(env).or(from_file);
        let path =
            |env: &str, from_file: Option<PathBuf>| var(env).map(PathBuf::from).or(from_file);

        let bind_text = text("JIGSAW_BIND", file.bind).unwrap_or_else(|| "127.0.0.1:3000".into());
        let bind = bind_text.parse().map_err(|_| {
            ConfigError::new(
                "JIGSAW_BIND",
                format!(
                    "\u{201c}{bind_text}\u{201d} is not an address and port like 127.0.0.1:3000"
                ),
            )
        })?;

        let data_dir =
            path("JIGSAW_DATA_DIR", file.data_dir).unwrap_or_else(|| PathBuf::from("data"));
        let database_url = text("DATABASE_URL", file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("jigsaw-lab.db").display()));
        let models_dir =
            path("JIGSAW_MODELS_DIR", file.models_dir).unwrap_or_else(|| data_dir.join("models"));
        let sst2_dir = path("JIGSAW_SST2_DIR", file.sst2_dir).unwrap_or_else(|| {
            let shared = PathBuf::from("../shared/data/sst2");
            if shared.is_dir() {
                shared
            } else {
                data_dir.join("sst2")
            }
        });
        let device_text = text("JIGSAW_DEVICE", file.device).unwrap_or_else(|| "auto".into());
        let device = device_text
            .parse()
            .map_err(|e: trainer::device::DeviceError| {
                ConfigError::new("JIGSAW_DEVICE", e.to_string())
            })?;
        let site_root = path("JIGSAW_SITE_ROOT", file.site_root)
            .or_else(|| var("LEPTOS_SITE_ROOT").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("target/site"));
        let json_logs = match text("JIGSAW_LOG_FORMAT", file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "JIGSAW_LOG_FORMAT",
                    format!("\u{201c}{other}\u{201d} is not a log format; use text or json"),
                ));
            }
        };
        let secure_cookies = match var("JIGSAW_SECURE_COOKIES").as_deref() {
            None => file.secure_cookies.unwrap_or(false),
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                return Err(ConfigError::new(
                    "JIGSAW_SECURE_COOKIES",
                    format!("\u{201c}{other}\u{201d} is not true or false"),
                ));
            }
        };
        let whole = |env: &str, from_file: Option<i64>, default: i64, low: i64, high: i64| {
            let value = match var(env) {
                Some(text) => text.trim().parse::<i64>().map_err(|_| {
                    ConfigError::new(env, format!("\u{201c}{text}\u{201d} is not a whole number"))
                })?,
                None => from_file.unwrap_or(default),
            };
            if (low..=high).contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError::new(
                    env,
                    format!("{value} is outside {low}..={high}"),
                ))
            }
        };
        let validation_size = whole(
            "JIGSAW_VALIDATION_SIZE",
            file.validation_size.map(|v| v as i64),
            2_000,
            2,
            20_000,
        )? as usize;
        let max_queued_per_team = whole(
            "JIGSAW_MAX_QUEUED_PER_TEAM",
            file.max_queued_per_team,
            3,
            1,
            100,
        )?;
        let max_runs_per_day = whole(
            "JIGSAW_MAX_RUNS_PER_DAY",
            file.max_runs_per_day,
            10,
            1,
            1_000,
        )?;
        let training_slots = whole(
            "JIGSAW_TRAINING_SLOTS",
            file.training_slots.map(|v| v as i64),
            1,
            1,
            16,
        )? as usize;
        Ok(Self {
            bind,
            data_dir,
            database_url,
            models_dir,
            sst2_dir,
            device,
            site_root,
            json_logs,
            secure_cookies,
            validation_size,
            max_queued_per_team,
            max_runs_per_day,
            training_slots,
        })
    }

    /// The directory of the default model.
    pub fn default_model_dir(&self) -> PathBuf {
        self.models_dir.join(DEFAULT_MODEL)
    }

    /// Where the GPU runtime keeps its autotune results and compiled kernels between runs.
    pub fn gpu_cache_dir(&self) -> PathBuf {
        self.data_dir.join("gpu-cache")
    }

    /// Opens the compute device for `choice`, keeping the GPU's caches in
    /// [`Config::gpu_cache_dir`] so that only the first run on a machine pays the warm-up.
    pub fn open_device(&self, choice: DeviceChoice) -> Result<ComputeDevice, DeviceError> {
        trainer::device::keep_gpu_cache_in(&self.gpu_cache_dir());
        let opening = std::time::Instant::now();
        let device = trainer::device::select(choice)?;
        tracing::debug!(
            device = %device.description(),
            took_ms = opening.elapsed().as_millis() as u64,
            "compute device opened"
        );
        Ok(device)
    }

    /// Checks the file system before the server starts: a writable data directory, the
    /// default model and the built site. A missing SST-2 directory is not fatal (lessons
    /// work without it); it is returned as a warning to log.
    pub fn preflight(&self) -> Result<Vec<String>, ConfigError> {
        ensure_writable_dir(&self.data_dir)?;
        let model_dir = self.default_model_dir();
        let missing: Vec<_> = MODEL_FILES
            .iter()
            .filter(|name| !model_dir.join(name).is_file())
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(ConfigError::new(
                "JIGSAW_MODELS_DIR",
                format!(
                    "the default model {DEFAULT_MODEL} is missing {} in {}; run `make setup` to fetch it",
                    missing.join(", "),
                    model_dir.display()
                ),
            ));
        }
        let script = self
            .site_root
            .join("pkg")
            .join(format!("{}.js", app::OUTPUT_NAME));
        if !script.is_file() {
            return Err(ConfigError::new(
                "JIGSAW_SITE_ROOT",
                format!(
                    "no built site at {} (expected {}); build it with `make run` or `cargo leptos build --release`",
                    self.site_root.display(),
                    script.display()
                ),
            ));
        }
        Ok(self.sst2_warning().into_iter().collect())
    }

    /// Explains where to put SST-2 when its files are not found.
    pub fn sst2_warning(&self) -> Option<String> {
        let missing: Vec<_> = SST2_FILES
            .iter()
            .filter(|name| !self.sst2_dir.join(name).is_file())
            .copied()
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "JIGSAW_SST2_DIR: SST-2 not found ({} missing in {}). Training needs the GLUE SST-2 \
                 files train.tsv, dev.tsv and test.tsv: put them in that directory or point \
                 JIGSAW_SST2_DIR at the folder that holds them. Lessons work without them.",
                missing.join(", "),
                self.sst2_dir.display()
            )
        })
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "JIGSAW_CONFIG",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        ConfigError::new(
            "JIGSAW_CONFIG",
            format!(
                "{} is not a valid settings file: {}",
                path.display(),
                e.message()
            ),
        )
    })
}

/// Creates `dir` if needed and proves a file can be written in it.
fn ensure_writable_dir(dir: &Path) -> Result<(), ConfigError> {
    let fail = |what: String| ConfigError::new("JIGSAW_DATA_DIR", what);
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .map_err(|e| fail(format!("{} is not writable: {e}", dir.display())))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_listen_on_localhost_3000_with_sqlite_in_the_data_dir() {
        let config = load(&[("JIGSAW_DATA_DIR", "/tmp/x")]).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(config.database_url, "sqlite:///tmp/x/jigsaw-lab.db");
        assert_eq!(config.models_dir, PathBuf::from("/tmp/x/models"));
        assert_eq!(config.device, DeviceChoice::Auto);
    }

    #[test]
    fn a_bad_port_names_the_setting() {
        let error = load(&[("JIGSAW_BIND", "127.0.0.1:http")]).unwrap_err();
        assert_eq!(error.setting, "JIGSAW_BIND");
        assert!(error.message.contains("127.0.0.1:http"));
    }

    #[test]
    fn a_bad_device_names_the_setting() {
        let error = load(&[("JIGSAW_DEVICE", "tpu")]).unwrap_err();
        assert_eq!(error.setting, "JIGSAW_DEVICE");
    }

    #[test]
    fn the_toml_file_is_read_and_env_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jigsaw.toml");
        std::fs::write(&file, "bind = \"0.0.0.0:8080\"\ndevice = \"cpu\"\n").unwrap();
        let file = file.to_str().unwrap();
        let config = load(&[("JIGSAW_CONFIG", file)]).unwrap();
        assert_eq!(config.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(config.device, DeviceChoice::Cpu);
        let config = load(&[("JIGSAW_CONFIG", file), ("JIGSAW_BIND", "127.0.0.1:9")]).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:9");
    }

    #[test]
    fn an_unknown_toml_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jigsaw.toml");
        std::fs::write(&file, "port = 3000\n").unwrap();
        let error = load(&[("JIGSAW_CONFIG", file.to_str().unwrap())]).unwrap_err();
        assert_eq!(error.setting, "JIGSAW_CONFIG");
        assert!(error.message.contains("port"), "{}", error.message);
    }

    #[test]
    fn an_unwritable_data_dir_is_refused() {
        let config = load(&[("JIGSAW_DATA_DIR", "/proc/jigsaw-lab")]).unwrap();
        assert_eq!(config.preflight().unwrap_err().setting, "JIGSAW_DATA_DIR");
    }

    #[test]
    fn a_missing_model_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(&[("JIGSAW_DATA_DIR", dir.path().to_str().unwrap())]).unwrap();
        let error = config.preflight().unwrap_err();
        assert_eq!(error.setting, "JIGSAW_MODELS_DIR");
        assert!(error.message.contains("make setup"));
    }

    #[test]
    fn missing_sst2_says_where_to_put_it() {
        let config = load(&[("JIGSAW_SST2_DIR", "/nonexistent/sst2")]).unwrap();
        let warning = config.sst2_warning().unwrap();
        assert!(warning.contains("train.tsv") && warning.contains("/nonexistent/sst2"));
    }
}
