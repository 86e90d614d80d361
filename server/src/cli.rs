//! `jigsaw-lab train`: a fine-tuning run from the terminal, printing each event as a JSON
//! line. It uses the same engine the web app's worker drives. Also `predict` and `bench`.

use crate::config::{Config, DEFAULT_MODEL};
use std::path::PathBuf;
use trainer::bench::{BenchOptions, Shape};
use trainer::train::{CancelToken, Method, TrainConfig};

/// Usage text of the `train` subcommand.
pub const TRAIN_USAGE: &str = "\
Usage: jigsaw-lab train [options]

  --model NAME          model directory under JIGSAW_MODELS_DIR (default all-MiniLM-L6-v2)
  --lr X                peak learning rate (default 2e-5)
  --batch-size N        sentences per step (default 32)
  --epochs N            passes over the training data (default 3)
  --warmup-ratio X      share of steps warming up, 0..1 (default 0.1)
  --max-len N           longest sequence in tokens (default 64)
  --train-subset N      train on N sentences only
  --validation-size N   sentences carved out of train for validation (default 2000)
  --eval-every N        evaluate every N steps as well as at each epoch end
  --lora-rank R         train LoRA adapters of rank R instead of all weights
  --lora-alpha A        LoRA alpha (default 2 x rank)
  --seed N              seed for data order, dropout and the new head (default 42)
  --probe TEXT          a sentence whose attention maps are reported (repeatable)
  --export-dir DIR      write the fine-tuned model to DIR as an HF directory at the end
  --checkpoint-dir DIR  keep checkpoints in DIR (each epoch and every 10 minutes); a run
                        started again with the same settings resumes from the latest one

Settings such as JIGSAW_DEVICE, JIGSAW_MODELS_DIR and JIGSAW_SST2_DIR apply as for serve.
Events go to standard output, one JSON object per line.";

/// Parses `train` options into a run configuration.
pub fn parse_train_args(args: &[String], config: &Config) -> Result<TrainConfig, String> {
    let mut run = TrainConfig {
        model_dir: config.models_dir.join(DEFAULT_MODEL),
        sst2_dir: config.sst2_dir.clone(),
        ..TrainConfig::default()
    };
    let mut lora_rank: Option<usize> = None;
    let mut lora_alpha: Option<f64> = None;
    let mut probes = Vec::new();
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => run.model_dir = safe_model_dir(config, value()?)?,
            "--lr" => run.learning_rate = number(flag, value()?)?,
            "--batch-size" => run.batch_size = number(flag, value()?)?,
            "--epochs" => run.epochs = number(flag, value()?)?,
            "--warmup-ratio" => run.warmup_ratio = number(flag, value()?)?,
            "--max-len" => run.max_len = number(flag, value()?)?,
            "--train-subset" => run.train_subset = Some(number(flag, value()?)?),
            "--validation-size" => run.validation_size = number(flag, value()?)?,
            "--eval-every" => run.eval_every = Some(number(flag, value()?)?),
            "--lora-rank" => lora_rank = Some(number(flag, value()?)?),
            "--lora-alpha" => lora_alpha = Some(number(flag, value()?)?),
            "--seed" => run.seed = number(flag, value()?)?,
            "--probe" => probes.push(value()?.clone()),
            "--checkpoint-dir" => run.checkpoint_dir = Some(PathBuf::from(value()?)),
            "--export-dir" => run.export_dir = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option \u{201c}{other}\u{201d}")),
        }
    }
    if let Some(rank) = lora_rank {
        run.method = Method::Lora {
            rank,
            alpha: lora_alpha.unwrap_or(2.0 * rank as f64),
        };
    } else if lora_alpha.is_some() {
        return Err("--lora-alpha needs --lora-rank".into());
    }
    if !probes.is_empty() {
        run.probe_sentences = probes;
    }
    run.validate().map_err(|e| e.to_string())?;
    Ok(run)
}

/// Resolves a model name to a directory inside the models directory (no path tricks).
fn safe_model_dir(config: &Config, name: &str) -> Result<PathBuf, String> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!(
            "\u{201c}{name}\u{201d} is not a model name; use a folder name inside JIGSAW_MODELS_DIR"
        ));
    }
    let dir = config.models_dir.join(name);
    if !dir.is_dir() {
        return Err(format!(
            "no model called \u{201c}{name}\u{201d} in {}",
            config.models_dir.display()
        ));
    }
    Ok(dir)
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag} expects a number, not \u{201c}{text}\u{201d}"))
}

/// Runs `jigsaw-lab train`; `Ok(true)` when the run finished, `Ok(false)` when it failed,
/// diverged or was cancelled (the events say which).
pub fn train(args: &[String], config: &Config) -> Result<bool, String> {
    let run = parse_train_args(args, config)?;
    let device =
        trainer::device::select(config.device).map_err(|e| format!("JIGSAW_DEVICE: {e}"))?;
    let cancel = CancelToken::default();
    let mut emit = |event: trainer::events::Event| {
        if let Ok(line) = serde_json::to_string(&event) {
            println!("{line}");
        }
    };
    Ok(trainer::train::train(&run, &device, &cancel, &mut emit).is_some())
}

/// Usage text of the `predict` subcommand.
pub const PREDICT_USAGE: &str = "\
Usage: jigsaw-lab predict [--model-dir DIR] [--max-len N] SENTENCE...

Classifies each sentence with the model in DIR (default: the default model, whose head is
untrained) and prints {\"results\": [...]} as JSON: tokens, ids, logits, probabilities, label.";

/// Runs `jigsaw-lab predict`.
pub fn predict(args: &[String], config: &Config) -> Result<(), String> {
    let mut model_dir = config.models_dir.join(DEFAULT_MODEL);
    let mut max_len = None;
    let mut sentences = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--model-dir" => {
                model_dir = PathBuf::from(iter.next().ok_or("--model-dir needs a value")?)
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
    let device =
        trainer::device::select(config.device).map_err(|e| format!("JIGSAW_DEVICE: {e}"))?;
    let predictor = trainer::inference::Predictor::load(&model_dir, max_len, device.device())
        .map_err(|e| e.to_string())?;
    let results = sentences
        .iter()
        .map(|s| predictor.predict(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let json = serde_json::json!({ "model_dir": model_dir, "results": results });
    println!("{json}");
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

A table goes to standard error and one JSON record per configuration to standard output:
card, date, model, impl, dtype, batch, seq, examples_per_s, step_ms_median, peak_mem_mb
(null where the backend does not report memory), device, warmup_steps, warmup_s, windows,
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
    let device =
        trainer::device::select(config.device).map_err(|e| format!("JIGSAW_DEVICE: {e}"))?;
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
        let run = parse_train_args(
            &args("--lr 3e-5 --batch-size 16 --epochs 2 --lora-rank 8 --seed 7"),
            &config(),
        )
        .unwrap();
        assert_eq!(run.learning_rate, 3e-5);
        assert_eq!((run.batch_size, run.epochs, run.seed), (16, 2, 7));
        assert_eq!(
            run.method,
            Method::Lora {
                rank: 8,
                alpha: 16.0
            }
        );
    }

    #[test]
    fn bad_options_are_clear() {
        for (text, needle) in [
            ("--lr abc", "--lr expects a number"),
            ("--lr NaN", "learning rate"),
            ("--batch-size -3", "--batch-size expects a number"),
            ("--epochs", "--epochs needs a value"),
            ("--model ../etc", "not a model name"),
            ("--model nothing-here", "no model called"),
            ("--colour blue", "unknown option"),
            ("--lora-alpha 4", "--lora-alpha needs --lora-rank"),
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
