//! `jigsaw-lab bench`: training-step throughput of BERT-family models on this machine.

use super::number;
use crate::config::{self, Config};
use clap::Args;
use run_protocol::Precision;
use std::str::FromStr;
use trainer::bench::{BenchModel, BenchOptions, Shape};
use trainer::optim::OptimizerChoice;

/// The options of `jigsaw-lab bench`. Defaults come from [`BenchOptions::default`].
// The lists are written `std::vec::Vec` so that clap takes each as one comma-separated
// value rather than as a repeatable option.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Comma-separated: minilm (6 layers, hidden 384, 12 heads, ffn 1536), bert-base (12
    /// layers, hidden 768, 12 heads, ffn 3072), electra-base (bert-base's encoder, ELECTRA's
    /// head), deberta-v3-base (bert-base's sizes, disentangled attention, 128,100 tokens)
    #[arg(long, value_name = "LIST", value_parser = list::<BenchModel>,
          allow_hyphen_values = true, default_value = "minilm,bert-base")]
    models: std::vec::Vec<BenchModel>,

    /// Comma-separated SEQxBATCH
    #[arg(long, value_name = "LIST", value_parser = list::<Shape>,
          allow_hyphen_values = true, default_value = "128x32,64x64")]
    shapes: std::vec::Vec<Shape>,

    /// Untimed steps first (a GPU's first steps compile and autotune kernels)
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true,
          default_value_t = BenchOptions::default().warmup)]
    warmup: usize,

    /// Timed windows; the medians are reported
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true,
          default_value_t = BenchOptions::default().windows)]
    windows: usize,

    /// Steps per timed window
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true,
          default_value_t = BenchOptions::default().steps_per_window)]
    steps_per_window: usize,

    /// Seed of weights, inputs and dropout
    #[arg(long, value_name = "N", value_parser = number::<u64>, allow_hyphen_values = true,
          default_value_t = BenchOptions::default().seed)]
    seed: u64,

    /// AdamW one tensor at a time (per-tensor) or all at once (flat)
    ///
    /// auto: flat on a GPU, per-tensor otherwise.
    #[arg(long, value_name = "NAME", allow_hyphen_values = true,
          default_value = OptimizerChoice::default().name())]
    optimizer: OptimizerChoice,

    /// Comma-separated number formats of the matrix products: fp32, bf16, f16
    ///
    /// The weights and AdamW stay f32, as in a run; f16 is measured without a run's loss
    /// scaling.
    #[arg(long, value_name = "LIST", value_parser = list::<Precision>,
          allow_hyphen_values = true, default_value = "fp32")]
    precisions: std::vec::Vec<Precision>,
}

/// Parses a comma-separated list, skipping empty items.
fn list<T: FromStr<Err = String>>(text: &str) -> Result<Vec<T>, String> {
    text.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(str::parse)
        .collect()
}

impl BenchArgs {
    /// Checks the options; anything accepted can run.
    pub fn into_options(self) -> Result<BenchOptions, String> {
        let options = BenchOptions {
            models: self.models,
            shapes: self.shapes,
            warmup: self.warmup,
            windows: self.windows,
            steps_per_window: self.steps_per_window,
            seed: self.seed,
            optimizer: self.optimizer,
            precisions: self.precisions,
        };
        options.validate()?;
        Ok(options)
    }

    /// Runs `jigsaw-lab bench`; `Ok(true)` when every configuration was measured.
    pub fn run(self, config: &Config) -> Result<bool, String> {
        let options = self.into_options()?;
        let device = config
            .open_device(config.device)
            .map_err(|e| format!("{}: {e}", config::DEVICE.env))?;
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
                    "  {} {} {}: {:.1} ms/step, {:.1} examples/s",
                    record.model,
                    Shape {
                        seq: record.seq,
                        batch: record.batch
                    },
                    record.dtype,
                    record.step_ms_median,
                    record.examples_per_s
                );
            },
            &mut |model, shape, precision, reason| {
                all_ok = false;
                eprintln!(
                    "  {} {shape} {}: failed: {reason}",
                    model.name(),
                    precision.as_str()
                );
            },
        );
        eprint!("\n{}", trainer::bench::table(&records));
        Ok(all_ok)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command, describe};
    use super::*;
    use clap::Parser;

    /// Parses `jigsaw-lab bench OPTIONS` and checks the options as the command would.
    fn parse_bench_args(options: &str) -> Result<BenchOptions, String> {
        let args = ["jigsaw-lab", "bench"]
            .into_iter()
            .chain(options.split_whitespace());
        match Cli::try_parse_from(args).map_err(|e| describe(&e))?.command {
            Some(Command::Bench(args)) => args.into_options(),
            other => panic!("not bench: {other:?}"),
        }
    }

    #[test]
    fn bench_options_parse_and_bad_ones_are_clear() {
        let options = parse_bench_args(
            "--models minilm --shapes 64x32,128x32 --warmup 2 --windows 3 --steps-per-window 2",
        )
        .unwrap();
        assert_eq!(options.models, [BenchModel::MiniLmL6]);
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
        assert_eq!(parse_bench_args("").unwrap(), BenchOptions::default());
        let formats = parse_bench_args("--precisions fp32,bf16,F16").unwrap();
        assert_eq!(
            formats.precisions,
            [Precision::Fp32, Precision::Bf16, Precision::F16]
        );
        let last_wins = parse_bench_args("--models bert-base --models minilm,").unwrap();
        assert_eq!(last_wins.models, [BenchModel::MiniLmL6]);
        for (text, needle) in [
            ("--models gpt2", "gpt2"),
            ("--shapes 128", "SEQxBATCH"),
            ("--windows 0", "at least 1"),
            ("--warmup", "--warmup needs a value"),
            ("--seed -1", "--seed expects a number"),
            ("--fast", "unknown option"),
            (
                "--precisions fp32,int8",
                "Precision must be fp32, bf16 or f16",
            ),
        ] {
            let error = parse_bench_args(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
