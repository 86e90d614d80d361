//! `jigsaw-lab`: the Jigsaw Lab server binary. The command line is [`server::cli::Cli`];
//! this file runs what it names with the settings loaded.

use server::cli::{Cli, Command, InstructorAction};
use server::config::Config;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Runs the command the command line names; serving when it names none.
fn main() -> ExitCode {
    match Cli::from_command_line().command {
        None | Some(Command::Serve) => run_node(|config| Box::pin(server::serve(config))),
        Some(Command::Worker) => run_node(|config| Box::pin(server::work(config))),
        Some(Command::Train(args)) => command("train", |config| args.run(config)),
        Some(Command::Predict(args)) => command("predict", |config| args.run(config)),
        Some(Command::Inspect(args)) => command("inspect", |config| args.run(config)),
        Some(Command::Instructor {
            action: InstructorAction::Add { username },
        }) => command("instructor", |config| {
            server::accounts::add_instructor(&username, config)
        }),
        Some(Command::Bench(args)) => command("bench", |config| args.run(config)),
        Some(Command::Models { action }) => command("models", |config| action.run(config)),
        Some(Command::Data { action }) => command("data", |config| action.run(config)),
    }
}

/// A node's future: `serve` or `work`.
type Node =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), server::config::ConfigError>>>>;

/// `jigsaw-lab serve` or `worker`: runs the node until SIGTERM or Ctrl-C; status 2 when a
/// setting is bad.
fn run_node(node: impl FnOnce(Config) -> Node) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => return fail(error),
    };
    init_tracing(config.json_logs);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("jigsaw-lab: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(node(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

/// Runs a terminal command with the settings loaded: exit 0 when it succeeded, 1 when
/// it ran but did not succeed, 2 when it could not run.
fn command(name: &str, run: impl FnOnce(&Config) -> Result<bool, String>) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => return fail(error),
    };
    init_tracing(config.json_logs);
    match run(&config) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("jigsaw-lab {name}: {message}");
            ExitCode::from(2)
        }
    }
}

/// Reports a bad setting in one line: status 2.
fn fail(error: server::config::ConfigError) -> ExitCode {
    eprintln!("jigsaw-lab: {error}");
    ExitCode::from(2)
}

/// Logs to standard error, as text or JSON lines, at the level RUST_LOG sets.
fn init_tracing(json: bool) {
    // cubecl logs every GPU kernel it autotunes at info, and at warn when two runs measure
    // the same kernel at once: noise for a teacher, so only its errors show by default.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,tower_http=info,sqlx=warn,cubecl=warn,cubecl_runtime=error")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
