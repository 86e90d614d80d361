//! Training-step throughput: how many examples per second one full fine-tuning step
//! (forward, backward, AdamW update) processes on the chosen device, for BERT-family
//! models built from their configuration with random weights, so nothing needs downloading.
//! The matrix products run in fp32 or, when asked, in bf16 or f16 (the weights and AdamW
//! stay f32, as in a run; f16 is measured without a run's loss scaling).
//!
//! Each measured configuration gets a fresh model and optimizer, runs `warmup` untimed steps
//! (on a GPU the first ones compile shaders and autotune kernels), then `windows` timed
//! windows of `steps_per_window` steps each, with the device synchronised at both ends of
//! every window. The reported numbers are the medians over the windows. Inputs are
//! full-length random token ids (no padding) and random labels from a fixed seed; the same
//! batch is fed at every step. `bench/torch_reference.py` measures PyTorch the same way and
//! writes records of the same shape.

use crate::device::{BackendKind, ComputeDevice};
use crate::model::{BatchTensors, EncoderConfig, Precision, SequenceClassifier};
use crate::optim::{AdamW, FlatAdamW, OptimizerChoice};
use crate::rng::SeededRng;
use crate::tokenize::TokenBatch;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

/// The learning rate of every measured step (as the PyTorch reference).
const LEARNING_RATE: f64 = 2e-5;
/// AdamW weight decay, applied to every parameter (as PyTorch's `AdamW(weight_decay=0.01)`).
const WEIGHT_DECAY: f32 = 0.01;
/// Labels of the classification head.
const NUM_LABELS: usize = 2;

/// A model size to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchModel {
    /// all-MiniLM-L6-v2's shape: 6 layers, hidden 384, 12 heads, feed-forward 1536.
    MiniLmL6,
    /// bert-base-uncased's shape: 12 layers, hidden 768, 12 heads, feed-forward 3072.
    BertBase,
    /// google/electra-base-discriminator's shape: BERT-base's encoder with ELECTRA's head.
    ElectraBase,
    /// microsoft/deberta-v3-base's shape: BERT-base's sizes with disentangled attention
    /// over 256 relative-position buckets and a 128,100-token vocabulary.
    DebertaV3Base,
}

/// google/electra-base-discriminator's config.json, the sizes that matter.
const ELECTRA_BASE: &str = r#"{"model_type":"electra","vocab_size":30522,"embedding_size":768,"hidden_size":768,"num_hidden_layers":12,"num_attention_heads":12,"intermediate_size":3072,"max_position_embeddings":512,"type_vocab_size":2,"hidden_act":"gelu","hidden_dropout_prob":0.1,"attention_probs_dropout_prob":0.1,"layer_norm_eps":1e-12}"#;

/// microsoft/deberta-v3-base's config.json, the sizes that matter.
const DEBERTA_V3_BASE: &str = r#"{"model_type":"deberta-v2","vocab_size":128100,"hidden_size":768,"num_hidden_layers":12,"num_attention_heads":12,"intermediate_size":3072,"max_position_embeddings":512,"type_vocab_size":0,"hidden_act":"gelu","hidden_dropout_prob":0.1,"attention_probs_dropout_prob":0.1,"layer_norm_eps":1e-7,"relative_attention":true,"position_buckets":256,"norm_rel_ebd":"layer_norm","share_att_key":true,"pos_att_type":["p2c","c2p"],"max_relative_positions":-1,"position_biased_input":false,"pooler_hidden_size":768,"pooler_dropout":0,"pooler_hidden_act":"gelu"}"#;

impl BenchModel {
    /// The sizes measured by default, smallest first.
    pub const DEFAULT: [BenchModel; 2] = [BenchModel::MiniLmL6, BenchModel::BertBase];

    /// The name used in options and records.
    pub fn name(self) -> &'static str {
        match self {
            Self::MiniLmL6 => "minilm-l6",
            Self::BertBase => "bert-base",
            Self::ElectraBase => "electra-base",
            Self::DebertaV3Base => "deberta-v3-base",
        }
    }

    /// The architecture, as HF's `BertConfig` with these sizes (vocabulary 30522, 512
    /// positions, 2 token types, dropout 0.1).
    pub fn config(self) -> EncoderConfig {
        let published = |text: &str| {
            crate::model::config::parse_config(text, std::path::Path::new(self.name()))
                .expect("the benchmark's configs are valid")
        };
        match self {
            Self::MiniLmL6 => EncoderConfig::bert(384, 6, 12, 1536),
            Self::BertBase => EncoderConfig::bert(768, 12, 12, 3072),
            Self::ElectraBase => published(ELECTRA_BASE),
            Self::DebertaV3Base => published(DEBERTA_V3_BASE),
        }
    }
}

impl FromStr for BenchModel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "minilm" | "minilm-l6" => Ok(Self::MiniLmL6),
            "bert-base" | "bert" => Ok(Self::BertBase),
            "electra-base" | "electra" => Ok(Self::ElectraBase),
            "deberta-v3-base" | "deberta-v3" | "deberta" => Ok(Self::DebertaV3Base),
            other => Err(format!(
                "\u{201c}{other}\u{201d} is not a benchmark model; use minilm, bert-base, electra-base or deberta-v3-base"
            )),
        }
    }
}

/// Sequence length and batch size of one measurement, written `SEQxBATCH` (`128x32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Tokens per sequence.
    pub seq: usize,
    /// Sequences per step.
    pub batch: usize,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.seq, self.batch)
    }
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("\u{201c}{text}\u{201d} is not a shape; write SEQxBATCH, such as 128x32");
        let (seq, batch) = text.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let seq: usize = seq.trim().parse().map_err(|_| bad())?;
        let batch: usize = batch.trim().parse().map_err(|_| bad())?;
        if !(2..=512).contains(&seq) {
            return Err(format!(
                "the sequence length must be between 2 and 512, not {seq}"
            ));
        }
        if !(1..=4096).contains(&batch) {
            return Err(format!(
                "the batch size must be between 1 and 4096, not {batch}"
            ));
        }
        Ok(Self { seq, batch })
    }
}

/// What to measure and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Model sizes, each measured at every shape.
    pub models: Vec<BenchModel>,
    /// Shapes to measure.
    pub shapes: Vec<Shape>,
    /// Untimed steps before the first window.
    pub warmup: usize,
    /// Timed windows; the medians over them are reported.
    pub windows: usize,
    /// Steps in each window.
    pub steps_per_window: usize,
    /// Seed of the weights, the token ids, the labels and dropout.
    pub seed: u64,
    /// The AdamW implementation to step with.
    pub optimizer: OptimizerChoice,
    /// The matrix products' number formats, each measured at every model and shape.
    pub precisions: Vec<Precision>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            models: BenchModel::DEFAULT.to_vec(),
            shapes: vec![
                Shape {
                    seq: 128,
                    batch: 32,
                },
                Shape { seq: 64, batch: 64 },
            ],
            warmup: 5,
            windows: 5,
            steps_per_window: 10,
            seed: 42,
            optimizer: OptimizerChoice::Auto,
            precisions: vec![Precision::Fp32],
        }
    }
}

impl BenchOptions {
    /// Checks the options; anything accepted here can run.
    pub fn validate(&self) -> Result<(), String> {
        if self.models.is_empty() || self.shapes.is_empty() || self.precisions.is_empty() {
            return Err("name at least one model, one shape and one precision".into());
        }
        if self.windows == 0 || self.steps_per_window == 0 {
            return Err("windows and steps per window must be at least 1".into());
        }
        Ok(())
    }
}

/// One measured configuration: a JSON line of `jigsaw-lab bench`, in the same shape as
/// the records of `bench/torch_reference.py`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchRecord {
    /// The hardware: GPU adapter name, or the CPU model name.
    pub card: String,
    /// UTC date of the measurement, YYYY-MM-DD.
    pub date: String,
    /// `minilm-l6` or `bert-base`.
    pub model: String,
    /// `burn-flex`, `burn-wgpu` or `burn-cuda`.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// The matrix products' number format: `fp32`, `bf16` or `f16`.
    pub dtype: String,
    /// The AdamW implementation: `per-tensor` or `flat`.
    pub optimizer: String,
    /// Sequences per step.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Median over the windows of examples per second.
    pub examples_per_s: f64,
    /// Median over the windows of the mean step time, in milliseconds.
    pub step_ms_median: f64,
    /// The most memory the device's allocator held (reserved), in MiB, read after the warm-up
    /// and after each window; `None` where the backend does not report it (the CPU).
    pub peak_mem_mb: Option<f64>,
    /// Memory in use after the warm-up, in MiB: the device allocator's reservation on a
    /// GPU, the process's resident memory on the CPU.
    pub memory_after_warmup_mb: Option<f64>,
    /// The same reading after each window, to show whether memory stays flat.
    pub memory_by_window_mb: Vec<f64>,
    /// The device as the trainer describes it.
    pub device: String,
    /// Where a step's time goes, from one more window whose steps wait for the device
    /// after each phase (so it runs a little slower than the timed windows).
    pub phases: PhaseTimes,
    /// Untimed warm-up steps.
    pub warmup_steps: usize,
    /// Seconds the warm-up took (includes shader compilation and autotuning on a GPU).
    pub warmup_s: f64,
    /// Timed windows.
    pub windows: usize,
    /// Steps per window.
    pub steps_per_window: usize,
}

/// Median milliseconds per step of each phase of a training step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseTimes {
    /// Forward pass, loss and backward pass, until the device has finished them.
    pub forward_backward_ms: f64,
    /// The AdamW update, until the device has finished it.
    pub optimizer_ms: f64,
    /// Host time to issue a whole step (both phases) before waiting for the device. On a
    /// GPU, when this is close to the step time, the step is bound by the host's dispatch
    /// of operations rather than by the GPU's arithmetic.
    pub dispatch_ms: f64,
}

/// Measures every model at every shape in every precision, handing each record to `done`
/// as it is measured. A configuration that fails (such as running out of GPU memory) is
/// reported through `failed` and the rest still run. Returns the records.
pub fn run(
    options: &BenchOptions,
    compute: &ComputeDevice,
    done: &mut dyn FnMut(&BenchRecord),
    failed: &mut dyn FnMut(BenchModel, Shape, Precision, String),
) -> Vec<BenchRecord> {
    let mut records = Vec::new();
    let configurations = options.models.iter().flat_map(|&model| {
        options.shapes.iter().flat_map(move |&shape| {
            options
                .precisions
                .iter()
                .map(move |&precision| (model, shape, precision))
        })
    });
    for (model, shape, precision) in configurations {
        // On a thread of its own, as the server's worker trains: glibc gives such a thread
        // an allocator arena of its own, which reuses memory differently from the main
        // thread's (see `device::keep_tensor_buffers_in_the_heap`).
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    measure(
                        &model.config(),
                        model.name(),
                        shape,
                        precision,
                        options,
                        compute,
                    )
                })
                .join()
        });
        compute.device().memory_cleanup();
        match outcome {
            Ok(record) => {
                done(&record);
                records.push(record);
            }
            Err(panic) => failed(
                model,
                shape,
                precision,
                crate::train::panic_message(&*panic),
            ),
        }
    }
    records
}

/// Measures one architecture at one shape with its products in `precision`; `name` labels
/// the record.
pub fn measure(
    config: &EncoderConfig,
    name: &str,
    shape: Shape,
    precision: Precision,
    options: &BenchOptions,
    compute: &ComputeDevice,
) -> BenchRecord {
    let device = compute.device().clone().autodiff();
    device.seed(options.seed);
    let mut model = SequenceClassifier::new(config, NUM_LABELS, &device).with_precision(precision);
    let flat = options
        .optimizer
        .flat(compute.kind() == BackendKind::Gpu, true);
    let mut optimizer = if flat {
        // Weight decay on every parameter and no clipping, as the per-tensor path here.
        let no_decay = regex::Regex::new("$^").expect("a valid pattern");
        BenchOptimizer::Flat(Box::new(FlatAdamW::new(1e-8, WEIGHT_DECAY, no_decay, None)))
    } else {
        BenchOptimizer::PerTensor(ModuleOptimizer::from(AdamW::new(1e-8, WEIGHT_DECAY)))
    };
    let (batch, labels) = random_batch(config.vocab_size, shape, options.seed, &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let forward_backward = |model: &SequenceClassifier| {
        let logits = model.forward(&batch);
        let loss = loss_fn.forward(logits, labels.clone());
        GradientsParams::from_grads(loss.backward(), model)
    };
    let mut step = |model: SequenceClassifier| {
        let grads = forward_backward(&model);
        optimizer.step(model, grads)
    };
    let sync = || device.sync().expect("the device failed while training");
    let mut peak_bytes: Option<u64> = None;
    let mut memory_by_window_mb = Vec::with_capacity(options.windows);
    let mut read_memory = || {
        let pool = device.memory_pool_usage().map(|usage| usage.bytes_reserved);
        if let Some(reserved) = pool {
            peak_bytes = Some(peak_bytes.unwrap_or(0).max(reserved));
        }
        pool.or_else(resident_bytes)
            .map(|bytes| bytes as f64 / (1024.0 * 1024.0))
    };

    let started = Instant::now();
    for _ in 0..options.warmup {
        model = step(model);
    }
    sync();
    let warmup_s = started.elapsed().as_secs_f64();
    let memory_after_warmup_mb = read_memory();

    let mut step_ms = Vec::with_capacity(options.windows);
    let mut examples_per_s = Vec::with_capacity(options.windows);
    for _ in 0..options.windows {
        sync();
        let window = Instant::now();
        for _ in 0..options.steps_per_window {
            model = step(model);
        }
        sync();
        let seconds = window.elapsed().as_secs_f64();
        step_ms.push(seconds * 1e3 / options.steps_per_window as f64);
        examples_per_s.push((shape.batch * options.steps_per_window) as f64 / seconds.max(1e-12));
        memory_by_window_mb.extend(read_memory());
    }

    let (mut forward_backward_ms, mut optimizer_ms, mut dispatch_ms) = (vec![], vec![], vec![]);
    for _ in 0..options.steps_per_window {
        sync();
        let started = Instant::now();
        let grads = forward_backward(&model);
        let issued_forward_backward = started.elapsed();
        sync();
        let forward_backward_done = started.elapsed();
        let optimizer_started = Instant::now();
        model = optimizer.step(model, grads);
        let issued_optimizer = optimizer_started.elapsed();
        sync();
        forward_backward_ms.push(forward_backward_done.as_secs_f64() * 1e3);
        optimizer_ms.push(optimizer_started.elapsed().as_secs_f64() * 1e3);
        dispatch_ms.push((issued_forward_backward + issued_optimizer).as_secs_f64() * 1e3);
    }
    drop(model);
    let phases = PhaseTimes {
        forward_backward_ms: median(&mut forward_backward_ms),
        optimizer_ms: median(&mut optimizer_ms),
        dispatch_ms: median(&mut dispatch_ms),
    };

    BenchRecord {
        card: compute.card().to_string(),
        date: utc_date(std::time::SystemTime::now()),
        model: name.to_string(),
        implementation: format!("burn-{}", compute.runtime().name()),
        dtype: precision.as_str().into(),
        optimizer: if flat { "flat" } else { "per-tensor" }.into(),
        batch: shape.batch,
        seq: shape.seq,
        examples_per_s: median(&mut examples_per_s),
        step_ms_median: median(&mut step_ms),
        peak_mem_mb: peak_bytes.map(|bytes| bytes as f64 / (1024.0 * 1024.0)),
        memory_after_warmup_mb,
        memory_by_window_mb,
        device: compute.description(),
        phases,
        warmup_steps: options.warmup,
        warmup_s,
        windows: options.windows,
        steps_per_window: options.steps_per_window,
    }
}

/// The optimizer of a measurement, stepping at [`LEARNING_RATE`].
enum BenchOptimizer {
    PerTensor(ModuleOptimizer),
    Flat(Box<FlatAdamW>),
}

impl BenchOptimizer {
    fn step(&mut self, model: SequenceClassifier, grads: GradientsParams) -> SequenceClassifier {
        match self {
            Self::PerTensor(optimizer) => optimizer.step(LEARNING_RATE, model, grads),
            Self::Flat(optimizer) => optimizer.step(LEARNING_RATE, model, grads).0,
        }
    }
}

/// The resident memory of this process (Linux), or `None` where it cannot be read.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Full-length random token ids (avoiding the special ids below 1000 of BERT's
/// vocabulary), segment 0, no padding, and random labels.
fn random_batch(
    vocab_size: usize,
    shape: Shape,
    seed: u64,
    device: &Device,
) -> (BatchTensors, Tensor<1, Int>) {
    let mut rng = SeededRng::new(seed);
    let low = 1_000.min(vocab_size / 2);
    let tokens = shape.batch * shape.seq;
    let ids: Vec<u32> = (0..tokens)
        .map(|_| (low + rng.below(vocab_size - low)) as u32)
        .collect();
    let labels: Vec<i64> = (0..shape.batch)
        .map(|_| rng.below(NUM_LABELS) as i64)
        .collect();
    let tokens = TokenBatch {
        ids,
        type_ids: vec![0; tokens],
        mask: vec![1; tokens],
        batch_size: shape.batch,
        seq_len: shape.seq,
    };
    let batch = BatchTensors::new(&tokens, device);
    let labels = Tensor::from_data(TensorData::new(labels, [shape.batch]), device);
    (batch, labels)
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// `time` as a UTC calendar date, YYYY-MM-DD.
pub fn utc_date(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Howard Hinnant's days-to-civil algorithm.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The records as a table for people.
pub fn table(records: &[BenchRecord]) -> String {
    let mut out = format!(
        "{:<10} {:<9} {:<5} {:>4} {:>5} {:>10} {:>11} {:>9}  {}\n",
        "model", "impl", "dtype", "seq", "batch", "step ms", "examples/s", "peak MiB", "card"
    );
    for r in records {
        let memory = r
            .peak_mem_mb
            .map_or_else(|| "n/a".to_string(), |mb| format!("{mb:.0}"));
        out.push_str(&format!(
            "{:<10} {:<9} {:<5} {:>4} {:>5} {:>10.1} {:>11.1} {:>9}  {}\n",
            r.model,
            r.implementation,
            r.dtype,
            r.seq,
            r.batch,
            r.step_ms_median,
            r.examples_per_s,
            memory,
            r.card
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::param_counts;
    use run_protocol::Method;

    #[test]
    fn shapes_and_models_parse_and_bad_ones_say_why() {
        assert_eq!(
            "128x32".parse(),
            Ok(Shape {
                seq: 128,
                batch: 32
            })
        );
        assert_eq!(" 64X64 ".parse(), Ok(Shape { seq: 64, batch: 64 }));
        assert!("128".parse::<Shape>().unwrap_err().contains("SEQxBATCH"));
        assert!(
            "0x32"
                .parse::<Shape>()
                .unwrap_err()
                .contains("sequence length")
        );
        assert!("64x0".parse::<Shape>().unwrap_err().contains("batch size"));
        assert_eq!("minilm".parse(), Ok(BenchModel::MiniLmL6));
        assert_eq!("BERT-base".parse(), Ok(BenchModel::BertBase));
        assert_eq!("electra".parse(), Ok(BenchModel::ElectraBase));
        assert_eq!("deberta-v3-base".parse(), Ok(BenchModel::DebertaV3Base));
        assert!("gpt2".parse::<BenchModel>().unwrap_err().contains("gpt2"));
    }

    #[test]
    fn the_configs_have_the_published_sizes() {
        // all-MiniLM-L6-v2: 22.7M parameters with its pooler; bert-base-uncased: 109.5M.
        let minilm = param_counts(&BenchModel::MiniLmL6.config(), 2, Method::Full);
        assert_eq!(minilm.total, 22_713_216 + 384 * 2 + 2);
        let bert = param_counts(&BenchModel::BertBase.config(), 2, Method::Full);
        assert_eq!(bert.total, 109_482_240 + 768 * 2 + 2);
        // What transformers 5.24 counts for the same configs (bench/torch_reference.py's):
        // ELECTRA's head has as many weights as BERT's pooler and classifier.
        for (model, transformers) in [
            (BenchModel::ElectraBase, 109_483_778),
            (BenchModel::DebertaV3Base, 184_423_682),
        ] {
            let counts = param_counts(&model.config(), 2, Method::Full);
            assert_eq!(counts.total, transformers, "{}", model.name());
        }
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        let at = |secs| utc_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29");
        assert_eq!(at(1_795_651_200), "2026-11-26");
    }

    #[test]
    fn medians_take_the_middle() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
