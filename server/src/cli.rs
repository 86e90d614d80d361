//! `jigsaw-lab train`: a fine-tuning run from the terminal with a progress bar, using the
//! same engine the web app's worker drives. Also `predict`, `inspect` and `bench`.

use crate::config::{Config, DEFAULT_MODEL};
use run_protocol::{EvalSplit, Event, LoraSettings, Method};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use trainer::bench::{BenchOptions, Shape};
use trainer::device::DeviceChoice;
use trainer::train::{CancelToken, TrainConfig};

/// Usage text of the `train` subcommand.
pub const TRAIN_USAGE: &str = "\
Usage: jigsaw-lab train [options]

  --model DIR|NAME      an HF model directory, or a folder name under JIGSAW_MODELS_DIR
                        (default all-MiniLM-L6-v2)
  --data DIR            the SST-2 folder (default JIGSAW_SST2_DIR)
  --device auto|gpu|cpu where to train (default JIGSAW_DEVICE, else auto)
  --out DIR             write the fine-tuned model to DIR as an HF directory at the end
  --lr X                peak learning rate (default 5e-5)
  --batch-size N        sentences per step (default 32)
  --epochs N            passes over the training data (default 2)
  --warmup-ratio X      share of steps warming up, 0..1 (default 0.1)
  --max-len N           longest sequence in tokens (default 64)
  --train-subset N      train on N sentences only
  --validation-size N   sentences carved out of train for validation (default 2000)
  --eval-every N        evaluate every N steps as well as at each epoch end
  --lora-r R            train LoRA adapters of rank R instead of all weights (or --lora-rank)
  --lora-alpha A        LoRA alpha (default 2 x rank)
  --lora-dropout P      dropout on the LoRA branches' input (default 0.1)
  --seed N              seed for data order, dropout and the new head (default 42)
  --probe TEXT          a sentence whose attention maps are reported (repeatable)
  --checkpoint-dir DIR  keep checkpoints in DIR (each epoch and every 10 minutes); a run
                        started again with the same settings resumes from the latest one

  --optimizer NAME       AdamW one tensor at a time (per-tensor) or all at once (flat,
                        full fine-tuning only); default auto: flat on a GPU for full
                        fine-tuning, per-tensor otherwise
  --test-each-epoch     also evaluate on SST-2 dev at each epoch end (for sweeps)
  --keep-best           finish with the model of the evaluation with the best validation
                        accuracy, not the last step's (evaluations run at each epoch end
                        and every --eval-every steps)

  --events              print every event as a JSON line on standard output
  --first-loss RUNS     measure start-up instead of training: start the run RUNS times
                        in this one process, stopping each at its first loss point, and
                        print one JSON line per run (seconds to the device, to the
                        started event and to the first loss). The first run pays for
                        opening the device; the later ones see what the web app's
                        long-lived worker sees. RUST_LOG=trainer=debug logs the phases.

A progress bar goes to standard error. When the run finishes, its final metrics go to
standard output as one JSON line: steps, validation_accuracy, validation_loss,
private_test_accuracy (SST-2 dev) and seconds. A run that diverges, fails or is cancelled
says why on standard error and exits with status 1.";

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
}

/// Parses `train` options into a run configuration.
pub fn parse_train_args(args: &[String], config: &Config) -> Result<TrainCommand, String> {
    let mut device = config.device;
    let mut events = false;
    let mut first_loss_runs = None;
    let mut run = TrainConfig {
        model_dir: config.models_dir.join(DEFAULT_MODEL),
        sst2_dir: config.sst2_dir.clone(),
        ..TrainConfig::default()
    };
    let mut lora_rank: Option<usize> = None;
    let mut lora_alpha: Option<f64> = None;
    let mut lora_dropout: Option<f64> = None;
    let mut probes = Vec::new();
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => run.model_dir = model_dir(config, value()?)?,
            "--data" => run.sst2_dir = PathBuf::from(value()?),
            "--device" => device = value()?.parse().map_err(|e| format!("--device: {e}"))?,
            "--events" => events = true,
            "--first-loss" => match number(flag, value()?)? {
                0 => return Err("--first-loss needs at least 1 run".into()),
                runs => first_loss_runs = Some(runs),
            },
            "--lr" => run.settings.learning_rate = number(flag, value()?)?,
            "--batch-size" => run.settings.batch_size = number(flag, value()?)?,
            "--epochs" => run.settings.epochs = number(flag, value()?)?,
            "--warmup-ratio" => run.settings.warmup_ratio = number(flag, value()?)?,
            "--max-len" => run.settings.max_len = number(flag, value()?)?,
            "--train-subset" => run.settings.train_subset = Some(number(flag, value()?)?),
            "--validation-size" => run.validation_size = number(flag, value()?)?,
            "--eval-every" => run.eval_every = Some(number(flag, value()?)?),
            "--lora-r" | "--lora-rank" => lora_rank = Some(number(flag, value()?)?),
            "--lora-alpha" => lora_alpha = Some(number(flag, value()?)?),
            "--lora-dropout" => lora_dropout = Some(number(flag, value()?)?),
            "--seed" => run.settings.seed = number(flag, value()?)?,
            "--probe" => probes.push(value()?.clone()),
            "--checkpoint-dir" => run.checkpoint_dir = Some(PathBuf::from(value()?)),
            "--out" | "--export-dir" => run.export_dir = Some(PathBuf::from(value()?)),
            "--optimizer" => {
                run.optimizer = value()?.parse().map_err(|e| format!("--optimizer: {e}"))?
            }
            "--test-each-epoch" => run.test_each_epoch = true,
            "--keep-best" => run.keep_best = true,
            other => return Err(format!("unknown option \u{201c}{other}\u{201d}")),
        }
    }
    if let Some(rank) = lora_rank {
        run.settings.set_method(Method::Lora(LoraSettings {
            dropout: lora_dropout.unwrap_or(LoraSettings::DEFAULT_DROPOUT),
            ..LoraSettings::new(
                rank,
                lora_alpha.unwrap_or_else(|| LoraSettings::default_alpha(rank)),
            )
        }));
    } else if lora_alpha.is_some() || lora_dropout.is_some() {
        return Err("--lora-alpha and --lora-dropout need --lora-r".into());
    }
    if !probes.is_empty() {
        run.probe_sentences = probes;
    }
    run.validate().map_err(|e| e.to_string())?;
    if first_loss_runs.is_some()
        && (events || run.export_dir.is_some() || run.checkpoint_dir.is_some())
    {
        return Err(
            "--first-loss only times start-ups: leave out --events, --out and --checkpoint-dir"
                .into(),
        );
    }
    Ok(TrainCommand {
        run,
        device,
        events,
        first_loss_runs,
    })
}

/// Resolves `--model`: an HF model directory (one holding `config.json`), or the name of a
/// folder inside the models directory.
fn model_dir(config: &Config, value: &str) -> Result<PathBuf, String> {
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

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag} expects a number, not \u{201c}{text}\u{201d}"))
}

/// Runs `jigsaw-lab train`; `Ok(true)` when the run finished, `Ok(false)` when it failed,
/// diverged or was cancelled (standard error says which). With `--first-loss`, `Ok(true)`
/// when every run reached its first loss point.
pub fn train(args: &[String], config: &Config) -> Result<bool, String> {
    let command = parse_train_args(args, config)?;
    let opening = Instant::now();
    let device = config
        .open_device(command.device)
        .map_err(|e| format!("--device: {e}"))?;
    if let Some(runs) = command.first_loss_runs {
        return Ok(time_first_loss(&command.run, &device, runs, opening));
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
/// its first loss point, and prints each one's [`StartTimes`]; `opened` is when opening
/// the device began. True when every run reached a loss point.
fn time_first_loss(
    config: &TrainConfig,
    device: &trainer::device::ComputeDevice,
    runs: usize,
    opened: Instant,
) -> bool {
    let device_s = opened.elapsed().as_secs_f64();
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

/// The `train` progress bar on standard error: redrawn in place on a terminal, a line every
/// 5% of the steps otherwise (a log file).
struct Progress {
    terminal: bool,
    started: Instant,
    steps_planned: usize,
    first_step: usize,
    last_line: usize,
}

impl Progress {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            started: Instant::now(),
            steps_planned: 0,
            first_step: 0,
            last_line: 0,
        }
    }

    fn show(&mut self, event: &Event) {
        let mut err = std::io::stderr().lock();
        let line_end = if self.terminal { "\r\x1b[K" } else { "" };
        match event {
            Event::Started {
                device,
                params_total,
                params_trainable,
                steps_planned,
                train_examples,
                resumed_from_step,
                ..
            } => {
                self.steps_planned = *steps_planned;
                self.first_step = resumed_from_step.unwrap_or(0);
                self.started = Instant::now();
                let _ = writeln!(
                    err,
                    "Training on {device}: {train_examples} sentences, {steps_planned} steps, \
                     {params_trainable} of {params_total} parameters trained{}",
                    resumed_from_step
                        .map(|s| format!(", resuming after step {s}"))
                        .unwrap_or_default()
                );
            }
            Event::Step {
                step,
                epoch,
                loss,
                lr,
                examples_per_sec,
                ..
            } => {
                let every = (self.steps_planned / 20).max(1);
                if !self.terminal && *step != self.steps_planned && step - self.last_line < every {
                    return;
                }
                self.last_line = *step;
                let done = step.saturating_sub(self.first_step).max(1) as f64;
                let left = self.steps_planned.saturating_sub(*step) as f64;
                let eta = self.started.elapsed().as_secs_f64() / done * left;
                let width = 24;
                let filled = (step * width / self.steps_planned.max(1)).min(width);
                let _ = write!(
                    err,
                    "{line_end}[{}{}] {step}/{} epoch {epoch} loss {loss:.4} lr {lr:.1e} \
                     {examples_per_sec:.0} ex/s ETA {}{}",
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    self.steps_planned,
                    clock(eta),
                    if self.terminal { "" } else { "\n" }
                );
            }
            Event::Eval {
                step,
                split,
                loss,
                accuracy,
            } => {
                let name = match split {
                    EvalSplit::Validation => "validation",
                    EvalSplit::PrivateTest => "SST-2 dev",
                };
                let _ = writeln!(
                    err,
                    "{line_end}step {step}: {name} loss {loss:.4}, accuracy {:.2}%",
                    accuracy * 100.0
                );
            }
            Event::Checkpoint { step } => {
                let _ = writeln!(err, "{line_end}checkpoint saved at step {step}");
            }
            Event::Finished { metrics } => {
                let kept = metrics.kept_step.map_or(String::new(), |step| {
                    format!(" (the model of step {step}, the best on validation)")
                });
                let _ = writeln!(
                    err,
                    "{line_end}finished in {}: validation accuracy {:.2}%, SST-2 dev accuracy {:.2}%{kept}",
                    clock(metrics.seconds),
                    metrics.validation_accuracy * 100.0,
                    metrics.private_test_accuracy * 100.0
                );
            }
            Event::Diverged { step, loss } => {
                let loss = loss.map_or("not a number".to_string(), |l| format!("{l:.3e}"));
                let _ = writeln!(
                    err,
                    "{line_end}diverged at step {step} (loss {loss}): lower the learning rate"
                );
            }
            Event::Failed { reason } => {
                let _ = writeln!(err, "{line_end}failed: {reason}");
            }
            Event::Cancelled { step } => {
                let _ = writeln!(err, "{line_end}cancelled after step {step}");
            }
            Event::Attention { .. } => {}
        }
    }
}

/// Seconds as m:ss (or h:mm:ss).
fn clock(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Usage text of the `predict` subcommand.
pub const PREDICT_USAGE: &str = "\
Usage: jigsaw-lab predict [--model DIR|NAME] [--max-len N] SENTENCE...

Classifies each sentence with the model in DIR (default: the default model, whose head is
untrained) and prints {\"results\": [...]} as JSON: tokens, ids, logits, probabilities, label.";

/// Runs `jigsaw-lab predict`.
pub fn predict(args: &[String], config: &Config) -> Result<(), String> {
    let mut model = config.models_dir.join(DEFAULT_MODEL);
    let mut max_len = None;
    let mut sentences = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--model" | "--model-dir" => {
                model = model_dir(config, iter.next().ok_or("--model needs a value")?)?
            }
            "--max-len" => {
                max_len = Some(number(
                    "--max-len",
                    iter.next().ok_or("--max-len needs a value")?,
                )?);
            }
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option \u{201c}{flag}\u{201d}"));
            }
            sentence => sentences.push(sentence.to_string()),
        }
    }
    if sentences.is_empty() {
        return Err("give at least one sentence to classify".into());
    }
    let predictor = load_predictor(config, &model, max_len)?;
    let results = sentences
        .iter()
        .map(|s| predictor.predict(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let json = serde_json::json!({ "model_dir": model, "results": results });
    println!("{json}");
    Ok(())
}

/// Loads the model in `dir` for `predict` and `inspect` on the device JIGSAW_DEVICE chooses.
fn load_predictor(
    config: &Config,
    dir: &Path,
    max_len: Option<usize>,
) -> Result<trainer::inference::Predictor, String> {
    let device = config
        .open_device(config.device)
        .map_err(|e| format!("JIGSAW_DEVICE: {e}"))?;
    trainer::inference::Predictor::load(dir, max_len, device.device()).map_err(|e| e.to_string())
}

/// Usage text of the `inspect` subcommand.
pub const INSPECT_USAGE: &str = "\
Usage: jigsaw-lab inspect [--model DIR|NAME] [--json] SENTENCE

Runs the base encoder (no classification head) of the model in DIR (default: the default
model) on one sentence. With --json it prints one JSON object: tokens, ids, cls (the last
layer's first-token vector), mean (the mask-aware mean of the last layer's vectors) and
attentions [layer][head][query][key]. Without it, a readable summary.";

/// Runs `jigsaw-lab inspect`.
pub fn inspect(args: &[String], config: &Config) -> Result<(), String> {
    let mut model = config.models_dir.join(DEFAULT_MODEL);
    let mut json = false;
    let mut sentences = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--model" => model = model_dir(config, iter.next().ok_or("--model needs a value")?)?,
            "--json" => json = true,
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option \u{201c}{flag}\u{201d}"));
            }
            sentence => sentences.push(sentence.to_string()),
        }
    }
    let [sentence] = sentences.as_slice() else {
        return Err("give exactly one sentence to inspect (quote it)".into());
    };
    let predictor = load_predictor(config, &model, None)?;
    let inspection = predictor.inspect(sentence).map_err(|e| e.to_string())?;
    if json {
        let line = serde_json::to_string(&inspection).map_err(|e| e.to_string())?;
        println!("{line}");
        return Ok(());
    }
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    println!("model: {}", model.display());
    for (token, id) in inspection.tokens.iter().zip(&inspection.ids) {
        println!("  {id:>7}  {token}");
    }
    println!(
        "[CLS] vector: {} values, norm {:.4}; mean-pooled: norm {:.4}",
        inspection.cls.len(),
        norm(&inspection.cls),
        norm(&inspection.mean)
    );
    println!(
        "attention: {} layers x {} heads over {} tokens (use --json for the matrices)",
        inspection.attentions.len(),
        inspection.attentions.first().map_or(0, Vec::len),
        inspection.tokens.len()
    );
    Ok(())
}

/// Usage text of the `bench` subcommand.
pub const BENCH_USAGE: &str = "\
Usage: jigsaw-lab bench [options]

Measures training-step throughput (forward, backward and AdamW update of full fine-tuning,
fp32) on the device JIGSAW_DEVICE chooses, for BERT-family models built from their
configuration with random weights (nothing is downloaded). Inputs are full-length random
token ids and random labels from a fixed seed.

  --models LIST           comma-separated: minilm (6 layers, hidden 384, 12 heads, ffn
                          1536), bert-base (12 layers, hidden 768, 12 heads, ffn 3072);
                          default minilm,bert-base
  --shapes LIST           comma-separated SEQxBATCH (default 128x32,64x64)
  --warmup N              untimed steps first (default 5; a GPU's first steps compile
                          and autotune kernels)
  --windows N             timed windows; the medians are reported (default 5)
  --steps-per-window N    steps per timed window (default 10)
  --seed N                seed of weights, inputs and dropout (default 42)
  --optimizer NAME        per-tensor or flat AdamW (default auto: flat on a GPU)

A table goes to standard error and one JSON record per configuration to standard output:
card, date, model, impl, dtype, batch, seq, examples_per_s, step_ms_median, peak_mem_mb
(null where the backend does not report memory), memory_after_warmup_mb and
memory_by_window_mb (the GPU allocator's reservation, or on the CPU the process's resident
memory, after the warm-up and after each window: flat when nothing grows), device,
phases (forward_backward_ms, optimizer_ms, dispatch_ms: medians of one more window that
waits for the device after each phase; dispatch is the host time to issue a step, which on a
GPU shows whether the host's dispatch bounds the step), warmup_steps, warmup_s, windows,
steps_per_window. bench/torch_reference.py writes the same records for PyTorch.";

/// Parses `bench` options.
pub fn parse_bench_args(args: &[String]) -> Result<BenchOptions, String> {
    let mut options = BenchOptions::default();
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--models" => options.models = list(value()?)?,
            "--shapes" => options.shapes = list(value()?)?,
            "--warmup" => options.warmup = number(flag, value()?)?,
            "--windows" => options.windows = number(flag, value()?)?,
            "--steps-per-window" => options.steps_per_window = number(flag, value()?)?,
            "--seed" => options.seed = number(flag, value()?)?,
            "--optimizer" => {
                options.optimizer = value()?.parse().map_err(|e| format!("--optimizer: {e}"))?
            }
            other => return Err(format!("unknown option \u{201c}{other}\u{201d}")),
        }
    }
    options.validate()?;
    Ok(options)
}

fn list<T: std::str::FromStr<Err = String>>(text: &str) -> Result<Vec<T>, String> {
    text.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// Runs `jigsaw-lab bench`; `Ok(true)` when every configuration was measured.
pub fn bench(args: &[String], config: &Config) -> Result<bool, String> {
    let options = parse_bench_args(args)?;
    let device = config
        .open_device(config.device)
        .map_err(|e| format!("JIGSAW_DEVICE: {e}"))?;
    eprintln!(
        "jigsaw-lab bench on {}: {} warm-up steps, {} windows of {} steps",
        device.description(),
        options.warmup,
        options.windows,
        options.steps_per_window
    );
    let mut all_ok = true;
    let records = trainer::bench::run(
        &options,
        &device,
        &mut |record| {
            if let Ok(line) = serde_json::to_string(record) {
                println!("{line}");
            }
            eprintln!(
                "  {} {}: {:.1} ms/step, {:.1} examples/s",
                record.model,
                Shape {
                    seq: record.seq,
                    batch: record.batch
                },
                record.step_ms_median,
                record.examples_per_s
            );
        },
        &mut |model, shape, reason| {
            all_ok = false;
            eprintln!("  {} {shape}: failed: {reason}", model.name());
        },
    );
    eprint!("\n{}", trainer::bench::table(&records));
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::load(|name| (name == "JIGSAW_MODELS_DIR").then(|| "/tmp".to_string())).unwrap()
    }

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn options_parse_into_a_run() {
        let command = parse_train_args(
            &args(
                "--lr 3e-5 --batch-size 16 --epochs 2 --lora-r 8 --seed 7 --data /data/sst2 \
                 --device cpu --out /tmp/out --events",
            ),
            &config(),
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
        let timing = parse_train_args(&args("--first-loss 3"), &config()).unwrap();
        assert_eq!(timing.first_loss_runs, Some(3));
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
            ("--first-loss 0", "at least 1 run"),
            ("--first-loss many", "--first-loss expects a number"),
            ("--first-loss 2 --events", "only times start-ups"),
            ("--first-loss 2 --out /tmp/x", "only times start-ups"),
        ] {
            let error = parse_train_args(&args(text), &config()).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn bench_options_parse_and_bad_ones_are_clear() {
        let options = parse_bench_args(&args(
            "--models minilm --shapes 64x32,128x32 --warmup 2 --windows 3 --steps-per-window 2",
        ))
        .unwrap();
        assert_eq!(options.models, [trainer::bench::BenchModel::MiniLmL6]);
        assert_eq!(
            options.shapes,
            [
                Shape { seq: 64, batch: 32 },
                Shape {
                    seq: 128,
                    batch: 32
                }
            ]
        );
        assert_eq!(
            (options.warmup, options.windows, options.steps_per_window),
            (2, 3, 2)
        );
        assert_eq!(parse_bench_args(&[]).unwrap(), BenchOptions::default());
        for (text, needle) in [
            ("--models gpt2", "gpt2"),
            ("--shapes 128", "SEQxBATCH"),
            ("--windows 0", "at least 1"),
            ("--warmup", "--warmup needs a value"),
            ("--fast", "unknown option"),
        ] {
            let error = parse_bench_args(&args(text)).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
