//! The `jigsaw-lab` command line, defined once with clap: the parser, every `--help` and
//! the errors for a bad command line all come from the types here and in the submodules.
//! Serving is the default command; `train`, `predict`, `inspect` and `bench` work from the
//! terminal with the engine the web app's worker drives, `models` and `data` manage the
//! models and the training data, and `instructor add` creates accounts.

mod bench;
mod data;
mod models;
mod predict;
mod progress;
mod train;

pub use bench::BenchArgs;
pub use data::DataAction;
pub use models::ModelsAction;
pub use predict::{InspectArgs, PredictArgs};
pub use train::{TrainArgs, TrainCommand};

use crate::config::{self, Config};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The whole command line of `jigsaw-lab`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "jigsaw-lab",
    version,
    about = "Jigsaw Lab: the web app that teaches fine-tuning, and its training engine \
             from the terminal. With no command, it serves the web app.",
    after_long_help = config::settings_help(),
    // A repeated option takes its last value, as it always has.
    args_override_self = true
)]
pub struct Cli {
    /// What to do; serving when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands of `jigsaw-lab`.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the web app (the default)
    ///
    /// Applies the database migrations, starts the training workers and serves until
    /// SIGTERM or Ctrl-C. Log verbosity follows RUST_LOG.
    #[command(after_long_help = config::settings_help())]
    Serve,
    /// Train runs for the web nodes of a shared PostgreSQL database, serving no pages
    ///
    /// A worker node claims the runs that web nodes queue (`jigsaw-lab serve`; with
    /// JIGSAW_TRAINING_SLOTS=0 a web node trains none itself), trains up to
    /// JIGSAW_TRAINING_SLOTS of them at once and stores their events, which reach every web
    /// node's pages through the database. It refuses SQLite, which lives on one machine.
    /// Runs until SIGTERM or Ctrl-C; a run in progress then resumes from its checkpoint.
    #[command(after_long_help = config::settings_help())]
    Worker,
    /// Fine-tune a model on SST-2 from the terminal
    ///
    /// A progress bar goes to standard error. When the run finishes, its final metrics go
    /// to standard output as one JSON line: steps, validation_accuracy, validation_loss,
    /// private_test_accuracy (SST-2 dev) and seconds. A run that diverges, fails or is
    /// cancelled says why on standard error and exits with status 1.
    #[command(after_long_help = SETTINGS_NOTE)]
    Train(Box<TrainArgs>),
    /// Classify sentences with a model
    ///
    /// Prints {"model_dir": ..., "results": [...]} as JSON, one result per sentence:
    /// tokens, ids, logits, probabilities and label. The device is the JIGSAW_DEVICE
    /// setting's.
    #[command(after_long_help = SETTINGS_NOTE)]
    Predict(PredictArgs),
    /// Show a model encoder's vectors and attention for one sentence
    ///
    /// Runs the base encoder (no classification head) on one sentence. With --json it
    /// prints one JSON object: tokens, ids, cls (the last layer's first-token vector), mean
    /// (the mask-aware mean of the last layer's vectors) and attentions
    /// `[layer][head][query][key]`. Without it, a readable summary. The device is the
    /// JIGSAW_DEVICE setting's.
    #[command(after_long_help = SETTINGS_NOTE)]
    Inspect(InspectArgs),
    /// List, add and remove the models teams can fine-tune
    Models {
        /// What to do.
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Check or install the training data (SST-2)
    Data {
        /// What to do.
        #[command(subcommand)]
        action: DataAction,
    },
    /// Manage instructor accounts
    Instructor {
        /// What to do to the account.
        #[command(subcommand)]
        action: InstructorAction,
    },
    /// Measure training-step throughput
    ///
    /// Measures full fine-tuning steps (forward, backward and AdamW update, fp32) on the
    /// device the JIGSAW_DEVICE setting chooses, for BERT-family models built from their
    /// configuration with random weights (nothing is downloaded). Inputs are full-length
    /// random token ids and random labels from a fixed seed.
    ///
    /// A table goes to standard error and one JSON record per configuration to standard
    /// output: card, date, model, impl, dtype, batch, seq, examples_per_s,
    /// step_ms_median, peak_mem_mb (null where the backend does not report memory),
    /// memory_after_warmup_mb and memory_by_window_mb (the GPU allocator's reservation,
    /// or on the CPU the process's resident memory, after the warm-up and after each
    /// window: flat when nothing grows), device, phases (forward_backward_ms,
    /// optimizer_ms, dispatch_ms: medians of one more window that waits for the device
    /// after each phase; dispatch is the host time to issue a step, which on a GPU shows
    /// whether the host's dispatch bounds the step), warmup_steps, warmup_s, windows,
    /// steps_per_window. bench/torch_reference.py writes the same records for PyTorch.
    #[command(after_long_help = SETTINGS_NOTE)]
    Bench(BenchArgs),
}

/// What `jigsaw-lab instructor` does.
#[derive(Debug, Clone, Subcommand)]
pub enum InstructorAction {
    /// Create an instructor account, or set a new password for an existing one
    ///
    /// The password is read from JIGSAW_INSTRUCTOR_PASSWORD when set, otherwise from the
    /// first line of standard input (typed at the prompt; it is shown as you type). At
    /// least 8 characters. The account goes into the database of the DATABASE_URL and
    /// JIGSAW_DATA_DIR settings, as for serve.
    #[command(after_long_help = SETTINGS_NOTE)]
    Add {
        /// The account's user name
        username: String,
    },
}

/// Where the terminal commands' settings come from, for their `--help`.
pub(crate) const SETTINGS_NOTE: &str = "Settings (the models, the data, the device, the database) come \
    from the environment and the settings file as for serve; `jigsaw-lab serve --help` \
    lists them.";

impl Cli {
    /// Parses the process's command line. Help and the version go to standard output
    /// (status 0); a bad command line gets one line on standard error, in the words of the
    /// command it was for, and status 2.
    pub fn from_command_line() -> Self {
        let args: Vec<OsString> = std::env::args_os().collect();
        match Self::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(error) if is_help_or_version(&error) => error.exit(),
            Err(error) => {
                eprintln!("{}: {}", command_name(&args), describe(&error));
                std::process::exit(2);
            }
        }
    }
}

/// Whether clap stopped to show help or the version rather than for a mistake.
fn is_help_or_version(error: &clap::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

/// `jigsaw-lab`, followed by the command of `args` when it names one.
fn command_name(args: &[OsString]) -> String {
    let named = args.get(1).and_then(|arg| arg.to_str()).and_then(|arg| {
        Cli::command()
            .find_subcommand(arg)
            .map(|c| c.get_name().to_string())
    });
    match named {
        Some(name) => format!("jigsaw-lab {name}"),
        None => "jigsaw-lab".to_string(),
    }
}

/// Why clap refused a command line, in one line where the words are ours: an unknown
/// option, argument or command, an option without its value, a value that is not a number
/// or is not one the option takes. Anything else keeps clap's own words.
fn describe(error: &clap::Error) -> String {
    let text = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => Some(text.as_str()),
        _ => None,
    };
    // clap names an option with its value, as in `--lr <X>`.
    let option = text(ContextKind::InvalidArg).map(|arg| arg.split(' ').next().unwrap_or(arg));
    let value = text(ContextKind::InvalidValue);
    match (error.kind(), option, value) {
        (ErrorKind::UnknownArgument, Some(option), _) => {
            let what = if option.starts_with('-') {
                "unknown option"
            } else {
                "unexpected argument"
            };
            let mut line = format!("{what} \u{201c}{option}\u{201d}");
            if let Some(suggested) = text(ContextKind::SuggestedArg) {
                line.push_str(&format!(" (did you mean {suggested}?)"));
            }
            line
        }
        (ErrorKind::InvalidSubcommand, ..) => {
            let command = text(ContextKind::InvalidSubcommand).unwrap_or_default();
            let mut line = format!("unknown command \u{201c}{command}\u{201d}");
            if let Some(ContextValue::Strings(names)) = error.get(ContextKind::SuggestedSubcommand)
                && !names.is_empty()
            {
                line.push_str(&format!(" (did you mean {}?)", names.join(" or ")));
            }
            line.push_str("; --help lists the commands");
            line
        }
        (ErrorKind::InvalidValue, Some(option), Some("")) => format!("{option} needs a value"),
        (ErrorKind::ValueValidation, Some(option), Some(value)) => {
            match std::error::Error::source(error) {
                Some(cause) if cause.is::<NotANumber>() => {
                    format!("{option} expects a number, not \u{201c}{value}\u{201d}")
                }
                Some(cause) => format!("{option}: {cause}"),
                None => clap_words(error),
            }
        }
        _ => clap_words(error),
    }
}

/// clap's own message for `error`, without its `error: ` prefix or trailing blank lines.
fn clap_words(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let words = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    words.trim_end().to_string()
}

/// An option value that is not a number of the option's kind.
#[derive(Debug)]
struct NotANumber;

impl std::fmt::Display for NotANumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("expects a number")
    }
}

impl std::error::Error for NotANumber {}

/// Parses a numeric option value (the value parser of every numeric option).
fn number<T: std::str::FromStr>(text: &str) -> Result<T, NotANumber> {
    text.parse().map_err(|_| NotANumber)
}

/// Resolves `--model`: an HF model directory (one holding `config.json`), or the name of a
/// folder inside the models directory; without it, the default model.
fn model_dir(config: &Config, value: Option<&str>) -> Result<PathBuf, String> {
    let Some(value) = value else {
        return Ok(config.default_model_dir());
    };
    let path = Path::new(value);
    if path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let named = config.models_dir.join(value);
    let plain_name = !value.is_empty() && !value.contains(['/', '\\']) && !value.starts_with('.');
    if plain_name && named.join("config.json").is_file() {
        return Ok(named);
    }
    Err(format!(
        "no model at \u{201c}{value}\u{201d}: give an HF model directory (with config.json) or a model name in {}",
        config.models_dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Why `jigsaw-lab ARGS` is refused, or `None` when it parses.
    fn refusal(args: &str) -> Option<String> {
        let args = std::iter::once("jigsaw-lab").chain(args.split_whitespace());
        Cli::try_parse_from(args).err().map(|e| describe(&e))
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_command_serves() {
        let cli = Cli::try_parse_from(["jigsaw-lab"]).unwrap();
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["jigsaw-lab", "serve"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Serve)));
    }

    #[test]
    fn instructor_add_takes_a_user_name() {
        let cli = Cli::try_parse_from(["jigsaw-lab", "instructor", "add", "ms.rivera"]).unwrap();
        let Some(Command::Instructor {
            action: InstructorAction::Add { username },
        }) = cli.command
        else {
            panic!("not instructor add");
        };
        assert_eq!(username, "ms.rivera");
        assert!(refusal("instructor add").is_some());
        assert!(
            refusal("instructor remove x")
                .unwrap()
                .contains("unknown command")
        );
    }

    #[test]
    fn bad_command_lines_are_named_in_our_words() {
        let unknown = refusal("tran").unwrap();
        assert!(
            unknown.starts_with("unknown command \u{201c}tran\u{201d}"),
            "{unknown}"
        );
        assert!(unknown.contains("did you mean train"), "{unknown}");
        assert!(refusal("--colour").unwrap().contains("unknown option"));
        let extra = refusal("serve extra").unwrap();
        assert_eq!(extra, "unexpected argument \u{201c}extra\u{201d}");
        assert_eq!(
            command_name(&["jigsaw-lab".into(), "bench".into()]),
            "jigsaw-lab bench"
        );
        assert_eq!(
            command_name(&["jigsaw-lab".into(), "--nope".into()]),
            "jigsaw-lab"
        );
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for args in [
            "--help",
            "-h",
            "help",
            "--version",
            "train --help",
            "predict -h",
            "inspect --help",
            "bench --help",
            "instructor add --help",
            "help train",
        ] {
            let words = std::iter::once("jigsaw-lab").chain(args.split_whitespace());
            let error = Cli::try_parse_from(words).unwrap_err();
            assert!(is_help_or_version(&error), "{args}: {error}");
        }
    }

    #[test]
    fn help_lists_every_setting() {
        let help = Cli::command().render_long_help().to_string();
        for setting in config::SETTINGS {
            assert!(help.contains(setting.env), "{} in {help}", setting.env);
        }
        let mut command = Cli::command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        for setting in config::SETTINGS {
            assert!(help.contains(setting.env), "{} in {help}", setting.env);
        }
    }

    #[test]
    fn instructor_help_states_the_password_rule() {
        let mut command = Cli::command();
        let add = command
            .find_subcommand_mut("instructor")
            .and_then(|c| c.find_subcommand_mut("add"))
            .unwrap();
        let help = add.render_long_help().to_string();
        let rule = format!("{} characters", crate::accounts::MIN_PASSWORD_CHARS);
        assert!(help.contains(&rule), "{help}");
        assert!(help.contains(crate::accounts::PASSWORD_VAR), "{help}");
    }
}
