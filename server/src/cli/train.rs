//! `jigsaw-lab train`: a fine-tuning run from the terminal with a progress bar, using the
//! same engine the web app's worker drives.

use super::progress::Progress;
use super::{model_dir, number};
use crate::config::{self, Config};
use clap::Args;
use run_protocol::{Event, LoraSettings, Method, Precision, RunSettings};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;
use trainer::device::DeviceChoice;
use trainer::optim::OptimizerChoice;
use trainer::train::{CancelToken, TrainConfig};

/// The options of `jigsaw-lab train`. Defaults come from [`RunSettings::default`] and
/// [`TrainConfig::default`].
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// An HF model directory, or the name of a folder in JIGSAW_MODELS_DIR [default:
    /// all-MiniLM-L6-v2]
    #[arg(long, value_name = "DIR|NAME", allow_hyphen_values = true)]
    model: Option<String>,

    /// The SST-2 folder [default: the JIGSAW_SST2_DIR setting]
    #[arg(long, value_name = "DIR", env = config::SST2_DIR.env, allow_hyphen_values = true)]
    data: Option<OsString>,

    /// Where to train: auto, gpu or cpu [default: the JIGSAW_DEVICE setting, else auto]
    #[arg(long, value_name = "auto|gpu|cpu", env = config::DEVICE.env, allow_hyphen_values = true)]
    device: Option<String>,

    /// Write the fine-tuned model to DIR as an HF directory at the end
    #[arg(
        long,
        alias = "export-dir",
        value_name = "DIR",
        allow_hyphen_values = true
    )]
    out: Option<PathBuf>,

    /// Peak learning rate
    #[arg(long, value_name = "X", value_parser = number::<f64>, allow_hyphen_values = true,
          default_value_t = RunSettings::default().learning_rate)]
    lr: f64,

    /// Sentences per step
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true,
          default_value_t = RunSettings::default().batch_size)]
    batch_size: usize,

    /// Passes over the training data
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true,
          default_value_t = RunSettings::default().epochs)]
    epochs: usize,

    /// Share of the steps warming the learning rate up, 0..1
    #[arg(long, value_name = "X", value_parser = number::<f64>, allow_hyphen_values = true,
          default_value_t = RunSettings::default().warmup_ratio)]
    warmup_ratio: f64,

    /// Longest sequence in tokens
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true,
          default_value_t = RunSettings::default().max_len)]
    max_len: usize,

    /// Train on N sentences only
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true)]
    train_subset: Option<usize>,

    /// Sentences carved out of train for validation
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true,
          default_value_t = TrainConfig::default().validation_size)]
    validation_size: usize,

    /// Evaluate every N steps as well as at each epoch end
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true)]
    eval_every: Option<usize>,

    /// Train LoRA adapters of rank R instead of all weights
    #[arg(long = "lora-r", visible_alias = "lora-rank", value_name = "R",
          value_parser = number::<usize>, allow_hyphen_values = true)]
    lora_r: Option<usize>,

    /// LoRA alpha [default: 2 x rank]
    #[arg(long, value_name = "A", value_parser = number::<f64>, allow_hyphen_values = true)]
    lora_alpha: Option<f64>,

    /// Dropout on the LoRA branches' input [default: 0.1]
    #[arg(long, value_name = "P", value_parser = number::<f64>, allow_hyphen_values = true)]
    lora_dropout: Option<f64>,

    /// Seed for data order, dropout and the new head
    #[arg(long, value_name = "N", value_parser = number::<u64>, allow_hyphen_values = true,
          default_value_t = RunSettings::default().seed)]
    seed: u64,

    /// The number format of the matrix products: fp32, bf16 or f16
    ///
    /// Weights, AdamW's state, softmax, LayerNorm and the loss stay f32; f16 runs scale
    /// the loss. The low formats pay off on GPUs with tensor cores; on a CPU fp32 is the
    /// fastest, except bf16 on Intel Xeons with AMX.
    #[arg(long, value_name = "fp32|bf16|f16", value_parser = Precision::parse,
          allow_hyphen_values = true, default_value = Precision::default().as_str())]
    precision: Precision,

    /// A sentence whose attention maps are reported (repeatable)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true,
          default_values_t = TrainConfig::default().probe_sentences)]
    probe: Vec<String>,

    /// Keep checkpoints in DIR (each epoch and every 10 minutes)
    ///
    /// A run started again with the same settings resumes from the latest one.
    #[arg(long, value_name = "DIR", allow_hyphen_values = true)]
    checkpoint_dir: Option<PathBuf>,

    /// AdamW one tensor at a time (per-tensor) or all at once (flat, full fine-tuning only)
    ///
    /// auto: flat on a GPU for full fine-tuning, per-tensor otherwise.
    #[arg(long, value_name = "NAME", allow_hyphen_values = true,
          default_value = OptimizerChoice::default().name())]
    optimizer: OptimizerChoice,

    /// Also evaluate on SST-2 dev at each epoch end (for sweeps)
    #[arg(long)]
    test_each_epoch: bool,

    /// Finish with the model of the evaluation with the best validation accuracy
    ///
    /// Not the last step's: evaluations run at each epoch end and every --eval-every
    /// steps.
    #[arg(long)]
    keep_best: bool,

    /// Print every event as a JSON line on standard output
    #[arg(long)]
    events: bool,

    /// Measure start-up instead of training: start the run RUNS times in this process
    ///
    /// Each run stops at its first loss point and prints one JSON line (seconds to the
    /// device, to the started event and to the first loss). The first run pays for opening
    /// the device; the later ones see what the web app's long-lived worker sees.
    /// RUST_LOG=trainer=debug logs the phases.
    #[arg(long, value_name = "RUNS", value_parser = number::<usize>, allow_hyphen_values = true)]
    first_loss: Option<usize>,

    /// With --first-loss: first warm the GPU's kernels up as the server does at start-up
    ///
    /// One JSON line comes first with the warm-up's seconds and the batches it stepped
    /// (columns x sentences); the runs after it show what a class's first run sees.
    #[arg(long)]
    warm_up: bool,
}

/// A `train` command line: the run, where it trains and how it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainCommand {
    /// The run.
    pub run: TrainConfig,
    /// The compute device asked for.
    pub device: DeviceChoice,
    /// Print every event as a JSON line instead of the final metrics only.
    pub events: bool,
    /// Measure start-up only: this many runs, each stopped at its first loss point.
    pub first_loss_runs: Option<usize>,
    /// Before timing start-ups, warm the kernels up as the server does.
    pub warm_up: bool,
}

impl TrainArgs {
    /// Checks the options and resolves them against `config` into a run: the model by
    /// name or directory, and the data and the device from the settings when not given.
    pub fn into_command(self, config: &Config) -> Result<TrainCommand, String> {
        let model_dir = model_dir(config, self.model.as_deref())?;
        // An empty value, as an empty variable does in the settings, means "not given".
        let device = match self.device.as_deref() {
            None | Some("") => config.device,
            Some(text) => text.parse().map_err(|e| format!("--device: {e}"))?,
        };
        let sst2_dir = self
            .data
            .filter(|data| !data.is_empty())
            .map_or_else(|| config.sst2_dir.clone(), PathBuf::from);
        if self.first_loss == Some(0) {
            return Err("--first-loss needs at least 1 run".into());
        }
        if self.warm_up && self.first_loss.is_none() {
            return Err("--warm-up only goes with --first-loss".into());
        }
        let method = match self.lora_r {
            Some(rank) => Method::Lora(LoraSettings {
                dropout: self.lora_dropout.unwrap_or(LoraSettings::DEFAULT_DROPOUT),
                ..LoraSettings::new(
                    rank,
                    self.lora_alpha
                        .unwrap_or_else(|| LoraSettings::default_alpha(rank)),
                )
            }),
            None if self.lora_alpha.is_some() || self.lora_dropout.is_some() => {
                return Err("--lora-alpha and --lora-dropout need --lora-r".into());
            }
            None => Method::Full,
        };
        let mut settings = RunSettings {
            learning_rate: self.lr,
            batch_size: self.batch_size,
            epochs: self.epochs,
            warmup_ratio: self.warmup_ratio,
            max_len: self.max_len,
            train_subset: self.train_subset,
            seed: self.seed,
            precision: self.precision,
            ..RunSettings::default()
        };
        settings.set_method(method);
        // The model's name in the settings is a label: its folder's name.
        if let Some(name) = model_dir.file_name() {
            settings.model = name.to_string_lossy().into_owned();
        }
        let run = TrainConfig {
            model_dir,
            sst2_dir,
            settings,
            validation_size: self.validation_size,
            eval_every: self.eval_every,
            probe_sentences: self.probe,
            checkpoint_dir: self.checkpoint_dir,
            export_dir: self.out,
            optimizer: self.optimizer,
            test_each_epoch: self.test_each_epoch,
            keep_best: self.keep_best,
            ..TrainConfig::default()
        };
        run.validate().map_err(|e| e.to_string())?;
        if self.first_loss.is_some()
            && (self.events || run.export_dir.is_some() || run.checkpoint_dir.is_some())
        {
            return Err(
                "--first-loss only times start-ups: leave out --events, --out and --checkpoint-dir"
                    .into(),
            );
        }
        Ok(TrainCommand {
            run,
            device,
            events: self.events,
            first_loss_runs: self.first_loss,
            warm_up: self.warm_up,
        })
    }

    /// Runs `jigsaw-lab train`; `Ok(true)` when the run finished, `Ok(false)` when it
    /// failed, diverged or was cancelled (standard error says which). With `--first-loss`,
    /// `Ok(true)` when every run reached its first loss point.
    pub fn run(self, config: &Config) -> Result<bool, String> {
        let command = self.into_command(config)?;
        let opening = Instant::now();
        let device = config
            .open_device(command.device)
            .map_err(|e| format!("--device: {e}"))?;
        let device_s = opening.elapsed().as_secs_f64();
        if let Some(runs) = command.first_loss_runs {
            if command.warm_up && !warm_up(&command.run, &device) {
                return Ok(false);
            }
            return Ok(time_first_loss(&command.run, &device, runs, device_s));
        }
        let cancel = CancelToken::default();
        let mut progress = Progress::new(std::io::stderr().is_terminal());
        let mut emit = |event: Event| {
            if command.events
                && let Ok(line) = serde_json::to_string(&event)
            {
                println!("{line}");
            }
            progress.show(&event);
            if let Event::Finished { metrics } = &event
                && !command.events
                && let Ok(line) = serde_json::to_string(metrics)
            {
                println!("{line}");
            }
        };
        Ok(trainer::train::train(&command.run, &device, &cancel, &mut emit).is_some())
    }
}

/// `train --first-loss --warm-up`: warms `config`'s kernels up on `device` and prints one
/// JSON line saying how long that took and what it stepped. False when it failed.
fn warm_up(config: &TrainConfig, device: &trainer::device::ComputeDevice) -> bool {
    match trainer::train::warm_up(config, device, &CancelToken::default()) {
        Ok(done) => {
            let line = serde_json::json!({
                "warm_up_s": done.seconds,
                "batches": done
                    .batches
                    .iter()
                    .map(|(columns, sentences)| format!("{columns}x{sentences}"))
                    .collect::<Vec<_>>(),
            });
            println!("{line}");
            true
        }
        Err(reason) => {
            eprintln!("the warm-up failed: {reason}");
            false
        }
    }
}

/// How long one run took to start, in seconds from its beginning.
#[derive(Debug, Default, serde::Serialize)]
struct StartTimes {
    /// Which run of the process this was, from 1.
    run: usize,
    /// Opening the compute device, paid by the first run only.
    device_s: Option<f64>,
    /// To the `started` event: model, data and tokenization ready.
    started_s: Option<f64>,
    /// To the first loss point.
    first_loss_s: Option<f64>,
}

/// `train --first-loss`: starts `config`'s run `runs` times on `device`, stopping each at
/// its first loss point, and prints each one's [`StartTimes`]; opening the device took
/// `device_s` seconds. True when every run reached a loss point.
fn time_first_loss(
    config: &TrainConfig,
    device: &trainer::device::ComputeDevice,
    runs: usize,
    device_s: f64,
) -> bool {
    let mut all_reached = true;
    for run in 1..=runs {
        let begun = Instant::now();
        let cancel = CancelToken::default();
        let mut times = StartTimes {
            run,
            device_s: (run == 1).then_some(device_s),
            ..StartTimes::default()
        };
        let mut emit = |event: Event| match event {
            Event::Started { .. } => times.started_s = Some(begun.elapsed().as_secs_f64()),
            Event::Step { .. } if times.first_loss_s.is_none() => {
                times.first_loss_s = Some(begun.elapsed().as_secs_f64());
                cancel.cancel();
            }
            Event::Failed { reason } => eprintln!("run {run} failed: {reason}"),
            Event::Diverged { step, .. } => eprintln!("run {run} diverged at step {step}"),
            _ => {}
        };
        trainer::train::train(config, device, &cancel, &mut emit);
        all_reached &= times.first_loss_s.is_some();
        if let Ok(line) = serde_json::to_string(&times) {
            println!("{line}");
        }
    }
    all_reached
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command, describe};
    use super::*;
    use clap::{CommandFactory, Parser};

    fn config() -> Config {
        Config::load(|name| (name == "JIGSAW_MODELS_DIR").then(|| "/tmp".to_string())).unwrap()
    }

    /// Parses `jigsaw-lab train OPTIONS` and resolves it as the command would.
    fn parse_train_args(options: &str) -> Result<TrainCommand, String> {
        let args = ["jigsaw-lab", "train"]
            .into_iter()
            .chain(options.split_whitespace());
        match Cli::try_parse_from(args).map_err(|e| describe(&e))?.command {
            Some(Command::Train(args)) => args.into_command(&config()),
            other => panic!("not train: {other:?}"),
        }
    }

    #[test]
    fn options_parse_into_a_run() {
        let command = parse_train_args(
            "--lr 3e-5 --batch-size 16 --epochs 2 --lora-r 8 --seed 7 --data /data/sst2 \
             --device cpu --out /tmp/out --events",
        )
        .unwrap();
        let run = &command.run;
        assert_eq!(run.settings.learning_rate, 3e-5);
        assert_eq!(
            (
                run.settings.batch_size,
                run.settings.epochs,
                run.settings.seed
            ),
            (16, 2, 7)
        );
        assert_eq!(
            run.settings.method(),
            Method::Lora(LoraSettings::new(8, 16.0))
        );
        assert_eq!(run.sst2_dir, PathBuf::from("/data/sst2"));
        assert_eq!(run.export_dir, Some(PathBuf::from("/tmp/out")));
        assert_eq!(command.device, DeviceChoice::Cpu);
        assert!(command.events);
        assert_eq!(command.first_loss_runs, None);
        assert!(!command.warm_up);
        let timing = parse_train_args("--first-loss 3").unwrap();
        assert_eq!(timing.first_loss_runs, Some(3));
        assert!(!timing.warm_up);
        let warmed = parse_train_args("--first-loss 1 --warm-up").unwrap();
        assert_eq!((warmed.first_loss_runs, warmed.warm_up), (Some(1), true));
    }

    #[test]
    fn without_options_the_run_is_the_default_one() {
        let command = parse_train_args("--data /data/sst2 --device cpu").unwrap();
        let expected = TrainConfig {
            model_dir: config().default_model_dir(),
            sst2_dir: PathBuf::from("/data/sst2"),
            ..TrainConfig::default()
        };
        assert_eq!(command.run, expected);
    }

    #[test]
    fn aliases_and_repeats_are_accepted() {
        let command =
            parse_train_args("--lora-rank 4 --export-dir /tmp/a --out /tmp/b --probe x --probe y")
                .unwrap();
        assert_eq!(
            command.run.settings.method(),
            Method::Lora(LoraSettings::new(4, 8.0))
        );
        assert_eq!(command.run.export_dir, Some(PathBuf::from("/tmp/b")));
        assert_eq!(command.run.probe_sentences, ["x", "y"]);
        let command = parse_train_args("--epochs 1 --epochs 3 --events --events").unwrap();
        assert_eq!(command.run.settings.epochs, 3);
        assert_eq!(command.run.settings.precision, Precision::Fp32);
        let command = parse_train_args("--precision BF16").unwrap();
        assert_eq!(command.run.settings.precision, Precision::Bf16);
    }

    #[test]
    fn bad_options_are_clear() {
        for (text, needle) in [
            ("--lr abc", "--lr expects a number"),
            ("--lr NaN", "learning rate"),
            ("--batch-size -3", "--batch-size expects a number"),
            ("--epochs", "--epochs needs a value"),
            ("--model ../etc", "no model at"),
            ("--model nothing-here", "no model at"),
            ("--device tpu", "not a device choice"),
            ("--colour blue", "unknown option"),
            ("--lora-alpha 4", "need --lora-r"),
            ("--lora-dropout 0.2", "need --lora-r"),
            ("--lora-r 8 --lora-dropout 1.5", "LoRA dropout"),
            (
                "--optimizer fast",
                "--optimizer: \u{201c}fast\u{201d} is not an optimizer",
            ),
            ("--precision fp8", "Precision must be fp32, bf16 or f16"),
            ("--first-loss 0", "at least 1 run"),
            ("--first-loss many", "--first-loss expects a number"),
            ("--first-loss 2 --events", "only times start-ups"),
            ("--first-loss 2 --out /tmp/x", "only times start-ups"),
            ("--warm-up", "--warm-up only goes with --first-loss"),
        ] {
            let error = parse_train_args(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn help_states_the_defaults_the_parser_uses() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("train")
            .unwrap()
            .render_long_help()
            .to_string();
        let defaults = TrainConfig::default();
        let minutes = defaults.checkpoint_every.unwrap().as_secs() / 60;
        for needle in [
            crate::config::DEFAULT_MODEL.to_string(),
            format!("[default: {}]", LoraSettings::DEFAULT_DROPOUT),
            format!("every {minutes} minutes"),
            "[env: JIGSAW_SST2_DIR".to_string(),
            "[env: JIGSAW_DEVICE".to_string(),
            "--lora-rank".to_string(),
        ] {
            assert!(help.contains(&needle), "{needle} in {help}");
        }
    }
}
