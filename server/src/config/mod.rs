//! Server settings: defaults, then an optional TOML file, then environment variables.
//! [`SETTINGS`] names each one once, for the loader, `--help` and the tests.
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
pub use trainer::data::SST2_FILES;

/// The environment variable naming the TOML settings file.
pub const CONFIG_FILE: &str = "JIGSAW_CONFIG";

/// The settings file read when [`CONFIG_FILE`] is not set, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "jigsaw.toml";

/// One setting of [`Config`]: its environment variable, its key in the settings file, its
/// default and what it controls. [`SETTINGS`] lists them all; `--help` shows that list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable.
    pub env: &'static str,
    /// The key in the TOML settings file.
    pub key: &'static str,
    /// The default, in words.
    pub default: &'static str,
    /// What the setting controls, in a few words.
    pub meaning: &'static str,
}

/// Address and port to serve on.
pub const BIND: Setting = Setting {
    env: "JIGSAW_BIND",
    key: "bind",
    default: "127.0.0.1:3000",
    meaning: "address and port to serve on",
};
/// Where the database, run state and caches live.
pub const DATA_DIR: Setting = Setting {
    env: "JIGSAW_DATA_DIR",
    key: "data_dir",
    default: "data",
    meaning: "database, run state and the GPU's kernel cache",
};
/// The database.
pub const DATABASE: Setting = Setting {
    env: "DATABASE_URL",
    key: "database_url",
    default: "sqlite://$JIGSAW_DATA_DIR/jigsaw-lab.db",
    meaning: "the database: sqlite:... or postgres://user:password@host/db",
};
/// The folder of HF model directories.
pub const MODELS_DIR: Setting = Setting {
    env: "JIGSAW_MODELS_DIR",
    key: "models_dir",
    default: "$JIGSAW_DATA_DIR/models",
    meaning: "one HF model directory per model",
};
/// The folder of every run's files.
pub const RUNS_DIR: Setting = Setting {
    env: "JIGSAW_RUNS_DIR",
    key: "runs_dir",
    default: "$JIGSAW_DATA_DIR/runs",
    meaning: "each run's checkpoints, kept model and download; one folder every node reaches",
};
/// The folder of the GLUE SST-2 files.
pub const SST2_DIR: Setting = Setting {
    env: "JIGSAW_SST2_DIR",
    key: "sst2_dir",
    default: "../shared/data/sst2 when present, else $JIGSAW_DATA_DIR/sst2",
    meaning: "GLUE SST-2 train.tsv, dev.tsv and test.tsv",
};
/// The compute device to train on.
pub const DEVICE: Setting = Setting {
    env: "JIGSAW_DEVICE",
    key: "device",
    default: "auto",
    meaning: "where to train: auto (a GPU when usable: CUDA, then wgpu), gpu or cpu",
};
/// The built site.
pub const SITE_ROOT: Setting = Setting {
    env: "JIGSAW_SITE_ROOT",
    key: "site_root",
    default: "LEPTOS_SITE_ROOT when set, else target/site",
    meaning: "the built site (scripts/build-site.sh)",
};
/// The format of log lines.
pub const LOG_FORMAT: Setting = Setting {
    env: "JIGSAW_LOG_FORMAT",
    key: "log_format",
    default: "text",
    meaning: "text or json log lines",
};
/// Whether session cookies are marked Secure.
pub const SECURE_COOKIES: Setting = Setting {
    env: "JIGSAW_SECURE_COOKIES",
    key: "secure_cookies",
    default: "false",
    meaning: "mark session cookies Secure (set behind TLS)",
};
/// Sentences carved out of SST-2 train for validation.
pub const VALIDATION_SIZE: Setting = Setting {
    env: "JIGSAW_VALIDATION_SIZE",
    key: "validation_size",
    default: "2000",
    meaning: "sentences carved out of SST-2 train for validation in every web run (2..=20000)",
};
/// Runs a team may have waiting at once.
pub const MAX_QUEUED_PER_TEAM: Setting = Setting {
    env: "JIGSAW_MAX_QUEUED_PER_TEAM",
    key: "max_queued_per_team",
    default: "3",
    meaning: "runs a team may have waiting at once (1..=100)",
};
/// Scored runs a team may submit per UTC day.
pub const MAX_RUNS_PER_DAY: Setting = Setting {
    env: "JIGSAW_MAX_RUNS_PER_DAY",
    key: "max_runs_per_day",
    default: "10",
    meaning: "scored runs per team per UTC day (1..=1000)",
};
/// Runs trained at the same time.
pub const TRAINING_SLOTS: Setting = Setting {
    env: "JIGSAW_TRAINING_SLOTS",
    key: "training_slots",
    default: "1",
    meaning: "runs this server trains at the same time (0..=16; 0 = a web node that trains none)",
};

/// The largest model zip the Models page accepts.
pub const MAX_MODEL_UPLOAD_MB: Setting = Setting {
    env: "JIGSAW_MAX_MODEL_UPLOAD_MB",
    key: "max_model_upload_mb",
    default: "2048",
    meaning: "largest model zip an instructor may upload, in MB (1..=65536)",
};

/// Where a worker node answers health checks.
pub const HEALTH_BIND: Setting = Setting {
    env: "JIGSAW_HEALTH_BIND",
    key: "health_bind",
    default: "none",
    meaning: "a worker node's address for GET /healthz, such as 0.0.0.0:3100 (none: no listener)",
};

/// Every setting [`Config::load`] reads, in the order `--help` lists them.
pub const SETTINGS: [Setting; 16] = [
    BIND,
    DATA_DIR,
    DATABASE,
    MODELS_DIR,
    RUNS_DIR,
    SST2_DIR,
    DEVICE,
    SITE_ROOT,
    LOG_FORMAT,
    SECURE_COOKIES,
    VALIDATION_SIZE,
    MAX_QUEUED_PER_TEAM,
    MAX_RUNS_PER_DAY,
    TRAINING_SLOTS,
    MAX_MODEL_UPLOAD_MB,
    HEALTH_BIND,
];

/// The settings as a section of `--help`: where they come from, then each variable with
/// its key, default and meaning.
pub fn settings_help() -> String {
    let mut text = format!(
        "Settings: environment variables, or their keys in the TOML file named by \
         {CONFIG_FILE} (default ./{DEFAULT_CONFIG_FILE} when present). Environment variables \
         win; an empty one counts as unset. A bad setting stops the command with one line \
         naming it.\n"
    );
    for setting in SETTINGS {
        text.push_str(&format!(
            "\n  {} (key {})\n          {} [default: {}]",
            setting.env, setting.key, setting.meaning, setting.default
        ));
    }
    text
}

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
    /// Directory of every run's files (`JIGSAW_RUNS_DIR`): shared by all nodes.
    pub runs_dir: PathBuf,
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
    /// The largest model zip the Models page accepts, in MB
    /// (`JIGSAW_MAX_MODEL_UPLOAD_MB`, default 2048).
    pub max_model_upload_mb: u64,
    /// Where a worker node answers `GET /healthz` (`JIGSAW_HEALTH_BIND`); none by default.
    pub health_bind: Option<SocketAddr>,
}

/// The optional TOML file; every key mirrors an environment variable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    bind: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    models_dir: Option<PathBuf>,
    runs_dir: Option<PathBuf>,
    sst2_dir: Option<PathBuf>,
    device: Option<String>,
    site_root: Option<PathBuf>,
    log_format: Option<String>,
    secure_cookies: Option<bool>,
    validation_size: Option<usize>,
    max_queued_per_team: Option<i64>,
    max_runs_per_day: Option<i64>,
    training_slots: Option<usize>,
    max_model_upload_mb: Option<i64>,
    health_bind: Option<String>,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the settings, looking variables up with `var`.
    ///
    /// The TOML file is [`CONFIG_FILE`] when set, else [`DEFAULT_CONFIG_FILE`] in the working
    /// directory when that exists. Environment variables override the file. [`SETTINGS`]
    /// lists every variable read besides `JIGSAW_CONFIG` (and `LEPTOS_SITE_ROOT`, the fallback
    /// of [`SITE_ROOT`]).
    pub fn load(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = match var(CONFIG_FILE) {
            Some(path) => read_file(Path::new(&path))?,
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                read_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => FileSettings::default(),
        };
        let text = |env: &str, from_file: Option<String>| var(env).or(from_file);
        let path =
            |env: &str, from_file: Option<PathBuf>| var(env).map(PathBuf::from).or(from_file);

        let bind_text = text(BIND.env, file.bind).unwrap_or_else(|| BIND.default.into());
        let bind = bind_text.parse().map_err(|_| {
            ConfigError::new(
                BIND.env,
                format!(
                    "\u{201c}{bind_text}\u{201d} is not an address and port like 127.0.0.1:3000"
                ),
            )
        })?;

        let data_dir =
            path(DATA_DIR.env, file.data_dir).unwrap_or_else(|| PathBuf::from(DATA_DIR.default));
        let database_url = text(DATABASE.env, file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("jigsaw-lab.db").display()));
        let models_dir =
            path(MODELS_DIR.env, file.models_dir).unwrap_or_else(|| data_dir.join("models"));
        let runs_dir = path(RUNS_DIR.env, file.runs_dir).unwrap_or_else(|| data_dir.join("runs"));
        let sst2_dir = path(SST2_DIR.env, file.sst2_dir).unwrap_or_else(|| {
            let shared = PathBuf::from("../shared/data/sst2");
            if shared.is_dir() {
                shared
            } else {
                data_dir.join("sst2")
            }
        });
        let device_text = text(DEVICE.env, file.device).unwrap_or_else(|| DEVICE.default.into());
        let device = device_text
            .parse()
            .map_err(|e: trainer::device::DeviceError| {
                ConfigError::new(DEVICE.env, e.to_string())
            })?;
        let site_root = path(SITE_ROOT.env, file.site_root)
            .or_else(|| var("LEPTOS_SITE_ROOT").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("target/site"));
        let json_logs = match text(LOG_FORMAT.env, file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    LOG_FORMAT.env,
                    format!("\u{201c}{other}\u{201d} is not a log format; use text or json"),
                ));
            }
        };
        let secure_cookies = match var(SECURE_COOKIES.env).as_deref() {
            None => file.secure_cookies.unwrap_or(false),
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                return Err(ConfigError::new(
                    SECURE_COOKIES.env,
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
            VALIDATION_SIZE.env,
            file.validation_size.map(|v| v as i64),
            2_000,
            2,
            20_000,
        )? as usize;
        let max_queued_per_team =
            whole(MAX_QUEUED_PER_TEAM.env, file.max_queued_per_team, 3, 1, 100)?;
        let max_runs_per_day = whole(MAX_RUNS_PER_DAY.env, file.max_runs_per_day, 10, 1, 1_000)?;
        let training_slots = whole(
            TRAINING_SLOTS.env,
            file.training_slots.map(|v| v as i64),
            1,
            0,
            16,
        )? as usize;
        let max_model_upload_mb = whole(
            MAX_MODEL_UPLOAD_MB.env,
            file.max_model_upload_mb,
            app::library::DEFAULT_MAX_UPLOAD_MB as i64,
            1,
            65_536,
        )? as u64;
        let health_bind = match text(HEALTH_BIND.env, file.health_bind) {
            None => None,
            Some(text) if text == "none" => None,
            Some(text) => Some(text.parse().map_err(|_| {
                ConfigError::new(
                    HEALTH_BIND.env,
                    format!(
                        "\u{201c}{text}\u{201d} is not an address and port like 0.0.0.0:3100, or none"
                    ),
                )
            })?),
        };
        Ok(Self {
            bind,
            data_dir,
            database_url,
            models_dir,
            runs_dir,
            sst2_dir,
            device,
            site_root,
            json_logs,
            secure_cookies,
            validation_size,
            max_queued_per_team,
            max_runs_per_day,
            training_slots,
            max_model_upload_mb,
            health_bind,
        })
    }

    /// The models folder, for the Models page and `jigsaw-lab models`.
    pub fn library(&self) -> app::library::ssr::Library {
        app::library::ssr::Library {
            dir: self.models_dir.clone(),
            default_model: DEFAULT_MODEL.to_string(),
            max_upload_bytes: self.max_model_upload_mb << 20,
            changes: Default::default(),
        }
    }

    /// The SST-2 folder, for the run form, the workers and the Training data page.
    pub fn training_data(&self) -> app::runs::dataset::ssr::TrainingData {
        app::runs::dataset::ssr::TrainingData::new(
            self.sst2_dir.clone(),
            self.validation_size,
            self.training_slots > 0,
        )
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
        ensure_writable_dir(&self.data_dir, DATA_DIR.env)?;
        ensure_writable_dir(&self.runs_dir, RUNS_DIR.env)?;
        let model_dir = self.default_model_dir();
        let missing: Vec<_> = MODEL_FILES
            .iter()
            .filter(|name| !model_dir.join(name).is_file())
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(ConfigError::new(
                MODELS_DIR.env,
                format!(
                    "the default model {DEFAULT_MODEL} is missing {} in {}; run `make setup` to fetch it",
                    missing.join(", "),
                    model_dir.display()
                ),
            ));
        }
        // The whole app's bundle, and the islands bundles that the other pages load.
        let missing_script = std::iter::once(app::OUTPUT_NAME)
            .chain(app::islands::IslandsBundle::ALL.map(|bundle| bundle.name()))
            .map(|name| self.site_root.join("pkg").join(format!("{name}.js")))
            .find(|script| !script.is_file());
        if let Some(script) = missing_script {
            return Err(ConfigError::new(
                SITE_ROOT.env,
                format!(
                    "no built site at {} (expected {}); build it with `make run` or `scripts/build-site.sh`",
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
                "{env}: SST-2 not found ({} missing in {}). Training needs the GLUE SST-2 \
                 files train.tsv, dev.tsv and test.tsv: add them on the instructor's Training \
                 data page or with `jigsaw-lab data add SST-2.zip`, or point {env} at the \
                 folder that holds them. Lessons work without them.",
                missing.join(", "),
                self.sst2_dir.display(),
                env = SST2_DIR.env
            )
        })
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(CONFIG_FILE, format!("cannot read {}: {e}", path.display()))
    })?;
    toml::from_str(&text).map_err(|e| {
        ConfigError::new(
            CONFIG_FILE,
            format!(
                "{} is not a valid settings file: {}",
                path.display(),
                e.message()
            ),
        )
    })
}

/// Creates `dir` if needed and proves a file can be written in it.
fn ensure_writable_dir(dir: &Path, setting: &'static str) -> Result<(), ConfigError> {
    let fail = |what: String| ConfigError::new(setting, what);
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .map_err(|e| fail(format!("{} is not writable: {e}", dir.display())))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests;
