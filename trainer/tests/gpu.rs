//! The GPU code paths: burn's wgpu kernels with fusion and autotune, and the engine's GPU
//! branches (dropout masks drawn once per layer and the flat AdamW instead of the CPU fast
//! paths, matmul + softmax attention, batches padded to a multiple of 8, losses read back in
//! windows), on the adapter `JIGSAW_DEVICE=gpu` opens.
//!
//! `make test` runs this file with `JIGSAW_GPU_ALLOW_SOFTWARE=1` and
//! `JIGSAW_TEST_GPU=required`, so on a machine without a GPU Mesa's lavapipe stands in and
//! the tests must run. Without either variable and without a GPU, they say so and pass.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use run_protocol::{EvalSplit, Event, RunSettings};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use trainer::device::{BackendKind, ComputeDevice, DeviceChoice, select};
use trainer::loader::{self, LoadedModel};
use trainer::model::{BatchTensors, SequenceClassifier};
use trainer::optim::{AdamW, FlatAdamW};
use trainer::train::{CancelToken, TrainConfig, train, warm_up};

/// This package's directory, read when the test runs.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The GPU, opened once for the whole file (a wgpu device is initialised once per process),
/// or `None` when there is none and none is required.
fn gpu() -> Option<&'static ComputeDevice> {
    static GPU: OnceLock<Option<ComputeDevice>> = OnceLock::new();
    GPU.get_or_init(|| match select(DeviceChoice::Gpu) {
        Ok(device) => Some(device),
        Err(error) if std::env::var("JIGSAW_TEST_GPU").as_deref() == Ok("required") => {
            panic!("JIGSAW_TEST_GPU=required, but {error}")
        }
        Err(error) => {
            eprintln!("no GPU, so the GPU code paths are not tested here: {error}");
            None
        }
    })
    .as_ref()
}

/// Held by each test that trains: the device's random seed (dropout masks) is shared by
/// every thread, so two trainings at once would reseed each other's dropout.
fn one_trainer_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A positive and a negative sentence of two lengths (so the shorter one is padded and
/// masked), tokenized by `loaded`'s tokenizer onto `device`, with their labels.
fn two_sentences(loaded: &LoadedModel, device: &Device) -> (BatchTensors, Tensor<1, Int>) {
    let tokens = loaded
        .tokenizer
        .batch(&["a gorgeous , witty movie .", "dull ."])
        .unwrap();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), device);
    (BatchTensors::new(&tokens, device), labels)
}

#[test]
fn the_encoder_computes_on_the_gpu_what_it_computes_on_the_cpu() {
    let Some(gpu) = gpu() else { return };
    assert_eq!(gpu.kind(), BackendKind::Gpu);
    let dir = manifest_dir().join("tests/fixtures/tiny-bert");
    let cpu = Device::flex();
    let on_cpu = loader::load(&dir, 2, 32, &cpu).unwrap();
    let on_gpu = loader::load(&dir, 2, 32, gpu.device()).unwrap();
    // Two lengths, so the shorter sentence is padded and masked.
    let tokens = on_cpu
        .tokenizer
        .batch(&["a gorgeous , witty movie .", "dull ."])
        .unwrap();
    for keep_attentions in [false, true] {
        let expected = on_cpu
            .model
            .encode(&BatchTensors::new(&tokens, &cpu), keep_attentions);
        let actual = on_gpu
            .model
            .encode(&BatchTensors::new(&tokens, gpu.device()), keep_attentions);
        let difference = max_difference(&values(actual.hidden), &values(expected.hidden));
        assert!(
            difference < 1e-4,
            "hidden states differ by {difference:e} (attention maps kept: {keep_attentions})"
        );
        assert_eq!(actual.attentions.len(), expected.attentions.len());
        for (a, e) in actual.attentions.into_iter().zip(expected.attentions) {
            let difference = max_difference(&values(a), &values(e));
            assert!(difference < 1e-4, "attention maps differ by {difference:e}");
        }
    }
}

/// The tiny BERT's files copied into a folder of their own, with every dropout probability
/// set to 0, so that a training step computes the same on any device.
fn tiny_bert_without_dropout() -> tempfile::TempDir {
    let source = manifest_dir().join("tests/fixtures/tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let config = std::fs::read_to_string(source.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
    for key in ["attention_probs_dropout_prob", "hidden_dropout_prob"] {
        assert!(config[key].as_f64().unwrap() > 0.0, "{key} is already 0");
        config[key] = 0.0.into();
    }
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// Every float parameter's gradient in `grads`, in module order.
fn gradients(model: &SequenceClassifier, grads: &GradientsParams) -> Vec<f32> {
    struct Gradients<'a>(&'a GradientsParams, Vec<f32>);
    impl ModuleVisitor for Gradients<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = self
                .0
                .get::<D>(param.id)
                .expect("every parameter has a gradient");
            self.1.extend(values(grad));
        }
    }
    let mut all = Gradients(grads, Vec::new());
    model.visit(&mut all);
    all.1
}

#[test]
fn a_backward_pass_on_the_gpu_gives_the_cpus_gradients() {
    let Some(gpu) = gpu() else { return };
    let dir = tiny_bert_without_dropout();
    let step = |device: Device| {
        let loaded = loader::load(dir.path(), 2, 32, &device).unwrap();
        let (batch, labels) = two_sentences(&loaded, &device);
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(loaded.model.forward(&batch), labels);
        let grads = GradientsParams::from_grads(loss.backward(), &loaded.model);
        gradients(&loaded.model, &grads)
    };
    let _turn = one_trainer_at_a_time();
    let expected = step(Device::flex().autodiff());
    let actual = step(gpu.device().clone().autodiff());
    let largest = expected.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    assert!(
        largest > 1e-3,
        "the gradients are all about 0 (largest {largest:e})"
    );
    // The CPU's fused operations (its own erf in GELU among them) and the GPU's kernels
    // sum in other orders: through two layers the gradients differ by up to about 6e-4 of
    // the largest, as much with burn's own LayerNorm and embedding backward passes as with
    // this engine's.
    let difference = max_difference(&actual, &expected);
    assert!(
        difference < 2e-3 * largest,
        "the gradients differ by up to {difference:e} (largest {largest:e})"
    );
}

/// A run of the tiny BERT with `settings` on SST-2 (`JIGSAW_SST2_DIR`, else the shared
/// folder beside the project), carving 16 sentences out for validation.
fn tiny_bert_run(settings: RunSettings) -> TrainConfig {
    let sst2 = std::env::var_os("JIGSAW_SST2_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../../shared/data/sst2"));
    TrainConfig {
        model_dir: manifest_dir().join("tests/fixtures/tiny-bert"),
        sst2_dir: sst2,
        validation_size: 16,
        settings,
        ..TrainConfig::default()
    }
}

#[test]
fn a_short_run_trains_and_evaluates_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    let config = tiny_bert_run(RunSettings {
        learning_rate: 1e-3,
        batch_size: 8,
        epochs: 1,
        max_len: 20,
        train_subset: Some(96),
        seed: 5,
        ..RunSettings::default()
    });
    let mut events = Vec::new();
    let metrics = {
        let _turn = one_trainer_at_a_time();
        train(&config, gpu, &CancelToken::default(), &mut |e| {
            events.push(e)
        })
    };
    let failure = events.iter().find_map(|e| match e {
        Event::Failed { reason } => Some(reason.clone()),
        _ => None,
    });
    let metrics = metrics.unwrap_or_else(|| panic!("the run did not finish: {failure:?}"));
    assert_eq!(metrics.steps, 12);
    assert!(matches!(&events[0], Event::Started { backend, .. } if backend == "gpu"));
    let steps: Vec<(usize, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step { step, loss, .. } => Some((*step, *loss)),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps.iter().map(|(step, _)| *step).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>(),
        "every step is reported once, in order"
    );
    assert!(
        steps
            .iter()
            .all(|(_, loss)| loss.is_finite() && *loss > 0.0),
        "{steps:?}"
    );
    let dev = events.iter().find_map(|e| match e {
        Event::Eval {
            split: EvalSplit::PrivateTest,
            accuracy,
            ..
        } => Some(*accuracy),
        _ => None,
    });
    assert!(dev.is_some_and(|a| (0.0..=1.0).contains(&a)), "{dev:?}");
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Attention { step: 12, matrices, .. } if !matrices.is_empty())
        ),
        "the probe sentence's attention maps after the run"
    );
}

/// The step losses of a short LoRA run of the tiny BERT on the GPU with `seed`: every
/// layer's five dropouts (the LoRA branches' among them) take their masks from one draw.
fn lora_run_losses(gpu: &ComputeDevice, seed: u64) -> Vec<f64> {
    let config = tiny_bert_run(RunSettings {
        lora_rank: Some(4),
        lora_dropout: Some(0.1),
        learning_rate: 1e-3,
        batch_size: 8,
        epochs: 1,
        max_len: 20,
        train_subset: Some(48),
        seed,
        ..RunSettings::default()
    });
    let mut losses = Vec::new();
    let metrics = {
        let _turn = one_trainer_at_a_time();
        train(&config, gpu, &CancelToken::default(), &mut |e| {
            if let Event::Step { loss, .. } = e {
                losses.push(loss);
            }
        })
    };
    assert_eq!(metrics.map(|m| m.steps), Some(6));
    assert!(losses.iter().all(|loss| loss.is_finite() && *loss > 0.0));
    losses
}

#[test]
fn a_lora_run_drops_out_the_same_for_a_seed_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    let first = lora_run_losses(gpu, 11);
    let again = lora_run_losses(gpu, 11);
    let other = lora_run_losses(gpu, 12);
    let largest = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    assert!(largest(&first, &again) < 1e-4, "{first:?} vs {again:?}");
    assert!(largest(&first, &other) > 1e-4, "{first:?} vs {other:?}");
}

#[test]
fn the_warm_up_steps_at_every_length_a_batch_pads_to() {
    let Some(gpu) = gpu() else { return };
    let config = tiny_bert_run(RunSettings {
        batch_size: 4,
        max_len: 20,
        train_subset: Some(400),
        seed: 5,
        ..RunSettings::default()
    });
    let _turn = one_trainer_at_a_time();
    // On a GPU batches are padded to a multiple of 8, and to at most max_len: 8, 16 or 20.
    let done = warm_up(&config, gpu, &CancelToken::default()).unwrap();
    assert!(done.complete);
    assert_eq!(done.batches, [(8, 4), (16, 4), (20, 4)]);
    let cancel = CancelToken::default();
    cancel.cancel();
    let stopped = warm_up(&config, gpu, &cancel).unwrap();
    assert!(!stopped.complete);
    assert!(stopped.batches.is_empty());
    let broken = TrainConfig {
        model_dir: manifest_dir().join("tests/fixtures/no-such-model"),
        ..config
    };
    let error = warm_up(&broken, gpu, &CancelToken::default()).unwrap_err();
    assert!(error.contains("no-such-model"), "{error}");
}

/// Every float parameter's values, in module order.
fn parameters(model: &SequenceClassifier) -> Vec<f32> {
    struct Values(Vec<f32>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(values(param.val().inner()));
        }
    }
    let mut all = Values(Vec::new());
    model.visit(&mut all);
    all.0
}

#[test]
fn the_flat_optimizer_steps_on_the_gpu_as_the_per_tensor_one_does() {
    let Some(gpu) = gpu() else { return };
    let device = gpu.device().clone().autodiff();
    let loaded = loader::load(
        &manifest_dir().join("tests/fixtures/tiny-bert"),
        2,
        32,
        &device,
    )
    .unwrap();
    let (batch, labels) = two_sentences(&loaded, &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let _turn = one_trainer_at_a_time();
    type Step<'a> = Box<dyn FnMut(SequenceClassifier, GradientsParams) -> SequenceClassifier + 'a>;
    let train = |mut step: Step| {
        let mut model = loaded.model.clone();
        for n in 0..4 {
            // The same dropout masks in both runs.
            device.seed(100 + n);
            let loss = loss_fn.forward(model.forward(&batch), labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = step(model, grads);
        }
        parameters(&model)
    };
    let mut per_tensor = ModuleOptimizer::from(AdamW::new(1e-8, 0.01));
    let expected = train(Box::new(move |model, grads| {
        per_tensor.step(1e-3, model, grads)
    }));
    // Weight decay everywhere and no clipping, as the per-tensor optimizer above.
    let no_decay = regex::Regex::new("$^").unwrap();
    let mut flat = FlatAdamW::new(1e-8, 0.01, no_decay, None);
    let actual = train(Box::new(move |model, grads| {
        flat.step(1e-3, model, grads).0
    }));

    let moved = max_difference(&parameters(&loaded.model), &expected);
    assert!(moved > 1e-3, "the weights moved by only {moved:e}");
    let difference = max_difference(&expected, &actual);
    assert!(
        difference < 1e-5,
        "the flat and per-tensor steps differ by {difference:e}"
    );
}
