//! `jigsaw-lab`: the Jigsaw Lab server binary.

use server::config::Config;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
Usage: jigsaw-lab [serve]           serve the web app
       jigsaw-lab train [options]   fine-tune from the terminal (jigsaw-lab train --help)
       jigsaw-lab predict TEXT...   classify sentences (jigsaw-lab predict --help)
       jigsaw-lab inspect TEXT      the encoder's vectors and attention (jigsaw-lab inspect --help)
       jigsaw-lab instructor add NAME   create an instructor account
       jigsaw-lab bench [options]   training-step throughput (jigsaw-lab bench --help)

Serves Jigsaw Lab. Settings come from environment variables (JIGSAW_BIND, JIGSAW_DATA_DIR,
DATABASE_URL, JIGSAW_MODELS_DIR, JIGSAW_SST2_DIR, JIGSAW_DEVICE, JIGSAW_SITE_ROOT,
JIGSAW_LOG_FORMAT, JIGSAW_SECURE_COOKIES) and the optional TOML file named by JIGSAW_CONFIG (default ./jigsaw.toml).
See README.md.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => serve(),
        ["train", "-h" | "--help"] => {
            println!("{}", server::cli::TRAIN_USAGE);
            ExitCode::SUCCESS
        }
        ["train", ..] => command("train", |config| server::cli::train(&args[1..], config)),
        ["predict", "-h" | "--help"] => {
            println!("{}", server::cli::PREDICT_USAGE);
            ExitCode::SUCCESS
        }
        ["predict", ..] => command("predict", |config| {
            server::cli::predict(&args[1..], config).map(|()| true)
        }),
        ["inspect", "-h" | "--help"] => {
            println!("{}", server::cli::INSPECT_USAGE);
            ExitCode::SUCCESS
        }
        ["inspect", ..] => command("inspect", |config| {
            server::cli::inspect(&args[1..], config).map(|()| true)
        }),
        ["instructor", "-h" | "--help"] => {
            println!("{}", server::accounts::INSTRUCTOR_USAGE);
            ExitCode::SUCCESS
        }
        ["instructor", ..] => command("instructor", |config| {
            server::accounts::instructor(&args[1..], config)
        }),
        ["bench", "-h" | "--help"] => {
            println!("{}", server::cli::BENCH_USAGE);
            ExitCode::SUCCESS
        }
        ["bench", ..] => command("bench", |config| server::cli::bench(&args[1..], config)),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["-V" | "--version"] => {
            println!("jigsaw-lab {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        other => {
            eprintln!(
                "jigsaw-lab: unknown command \u{201c}{}\u{201d}\n\n{USAGE}",
                other.join(" ")
            );
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
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
    match runtime.block_on(server::serve(config)) {
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

fn fail(error: server::config::ConfigError) -> ExitCode {
    eprintln!("jigsaw-lab: {error}");
    ExitCode::from(2)
}

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
