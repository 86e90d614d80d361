//! End-to-end training runs on the CPU with the tiny BERT fixture and a small synthetic
//! SST-2-shaped dataset: the loop learns, is reproducible from its seed, can be cancelled,
//! and reports what it did. Two runs use the real all-MiniLM-L6-v2 and the real SST-2 files:
//! a short full fine-tuning run that must reach 75% on SST-2 dev, and a learning rate far too
//! high that must visibly fail. The benchmark's training step is checked on the fixture.
//!
//! burn's CPU backend keeps one random generator per process, so these tests take turns
//! (see [`one_at_a_time`]) to keep each run's dropout masks its own.

#[path = "support/synthetic_sst2.rs"]
#[allow(dead_code)] // shared with the HTTP-level tests
mod synthetic_sst2;

use run_protocol::{EvalSplit, Event, LoraSettings, Method, Precision, RunSettings};
use std::path::{Path, PathBuf};
use synthetic_sst2::write_synthetic_sst2_with_words;
use trainer::device::{DeviceChoice, select};
use trainer::inference::Predictor;
use trainer::optim::OptimizerChoice;
use trainer::train::{CancelToken, TrainConfig, train};

/// This package's directory, read when the test runs (cargo sets it), so a test binary
/// built from another checkout sharing the target directory still finds its files.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// Serialises the runs of this file: they share the CPU backend's random generator.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tiny_bert() -> PathBuf {
    manifest_dir().join("tests/fixtures/tiny-bert")
}

/// A temporary folder holding the synthetic SST-2 files.
fn tiny_sst2() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_sst2_with_words(dir.path(), 10);
    dir
}

fn config(data: &Path) -> TrainConfig {
    TrainConfig {
        model_dir: tiny_bert(),
        sst2_dir: data.to_path_buf(),
        validation_size: 16,
        eval_every: Some(10),
        probe_sentences: vec!["the movie was not good .".into()],
        settings: RunSettings {
            learning_rate: 2e-3,
            batch_size: 8,
            epochs: 12,
            warmup_ratio: 0.1,
            max_len: 16,
            seed: 11,
            ..RunSettings::default()
        },
        ..TrainConfig::default()
    }
}

fn run(config: &TrainConfig) -> Vec<Event> {
    let _turn = one_at_a_time();
    let device = select(DeviceChoice::Cpu).unwrap();
    let mut events = Vec::new();
    train(config, &device, &CancelToken::default(), &mut |e| {
        events.push(e)
    });
    events
}

fn losses(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_fine_tuning_run_learns_and_reports_every_step() {
    let data = tiny_sst2();
    let events = run(&config(data.path()));
    let Some(Event::Started {
        steps_planned,
        params_trainable,
        params_total,
        train_examples,
        ..
    }) = events.first()
    else {
        panic!("the first event is Started: {:?}", events.first());
    };
    assert_eq!(params_trainable, params_total);
    assert_eq!(*steps_planned, train_examples.div_ceil(8) * 12);
    assert_eq!(losses(&events).len(), *steps_planned);

    let validation = validation_evaluations(&events);
    assert!(validation.len() >= 4, "{validation:?}");
    let (first, last) = (validation[0], *validation.last().unwrap());
    assert!(last.1 < first.1, "validation loss falls: {validation:?}");
    assert!(
        last.2 >= 0.75,
        "the words decide the label, so the model should learn them: {validation:?}"
    );

    let attention = events.iter().find_map(|e| match e {
        Event::Attention {
            tokens, matrices, ..
        } => Some((tokens.clone(), matrices.clone())),
        _ => None,
    });
    let (tokens, matrices) = attention.expect("attention maps are reported");
    // The maps before training wait for the first loss point, so the curve starts at once.
    let first_loss = events
        .iter()
        .position(|e| matches!(e, Event::Step { .. }))
        .unwrap();
    assert!(
        matches!(&events[first_loss + 1], Event::Attention { step: 0, .. }),
        "{:?}",
        &events[..=first_loss + 1]
    );
    assert_eq!(matrices.len(), 2, "one entry per layer");
    assert_eq!(matrices[0].len(), 4, "one matrix per head");
    assert_eq!(matrices[0][0].len(), tokens.len() * tokens.len());
    let row_sum: f32 = matrices[0][0][..tokens.len()].iter().sum();
    assert!(
        (row_sum - 1.0).abs() < 1e-4,
        "attention rows are probabilities: {row_sum}"
    );

    match events.last() {
        Some(Event::Finished { metrics }) => {
            assert_eq!(metrics.steps, *steps_planned);
            assert!((0.0..=1.0).contains(&metrics.private_test_accuracy));
        }
        other => panic!("the run ends with Finished: {other:?}"),
    }
    let lrs: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step { lr, .. } => Some(*lr),
            _ => None,
        })
        .collect();
    let peak = lrs.iter().cloned().fold(0.0, f64::max);
    assert!(
        (peak - 2e-3).abs() < 1e-9 && lrs[0] == 0.0 && *lrs.last().unwrap() < peak / 5.0,
        "{lrs:?}"
    );
}

/// The validation evaluations of a run, as (step, loss, accuracy).
fn validation_evaluations(events: &[Event]) -> Vec<(usize, f64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Eval {
                step,
                split: EvalSplit::Validation,
                loss,
                accuracy,
            } => Some((*step, *loss, *accuracy)),
            _ => None,
        })
        .collect()
}

/// The numbers of every Step event, without the throughput (a timing).
fn step_numbers(events: &[Event]) -> Vec<(usize, f64, f64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step {
                step,
                loss,
                lr,
                grad_norm,
                ..
            } => Some((*step, *loss, *lr, *grad_norm)),
            _ => None,
        })
        .collect()
}

#[test]
fn reading_losses_back_in_windows_reports_the_same_steps() {
    let data = tiny_sst2();
    let mut every_step = config(data.path());
    every_step.settings.epochs = 2;
    every_step.readback_every = Some(1);
    let windowed = TrainConfig {
        readback_every: Some(4),
        ..every_step.clone()
    };
    let (a, b) = (run(&every_step), run(&windowed));
    assert!(step_numbers(&a).len() > 8);
    assert_eq!(step_numbers(&a), step_numbers(&b));
    // Evaluations still follow the steps they measure.
    let order = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Step { step, .. } => Some(format!("s{step}")),
                Event::Eval { step, .. } => Some(format!("e{step}")),
                _ => None,
            })
            .collect()
    };
    assert_eq!(order(&a), order(&b));
}

#[test]
fn the_same_seed_gives_the_same_run_on_the_cpu() {
    let data = tiny_sst2();
    let mut short = config(data.path());
    short.settings.epochs = 2;
    let first = losses(&run(&short));
    let second = losses(&run(&short));
    assert!(!first.is_empty());
    assert_eq!(first, second);
    short.settings.seed = 12;
    assert_ne!(first, losses(&run(&short)));
}

/// bf16 and f16 matrix products (f32 weights and optimizer) learn what fp32 learns, and
/// DeBERTa's relative-position products run in them too. f16 scales the loss by 2^16 for
/// the backward pass and the gradients back down before clipping: the gradient norms it
/// reports are f32's, not 65,536 times them (clipping and AdamW would hide a missing
/// unscale from the loss curve).
#[test]
fn bf16_and_f16_products_learn_like_fp32() {
    let data = tiny_sst2();
    let fp32 = step_numbers(&run(&config(data.path())));
    for precision in [Precision::Bf16, Precision::F16] {
        let mut low = config(data.path());
        low.settings.precision = precision;
        let events = run(&low);
        let steps = step_numbers(&events);
        assert_eq!(steps.len(), fp32.len(), "{precision:?}");
        // The first step differs from f32's only by rounding.
        let (loss, fp32_loss) = (steps[0].1, fp32[0].1);
        assert!(
            (loss - fp32_loss).abs() < 0.02,
            "{precision:?}: first loss {loss} vs {fp32_loss}"
        );
        let (norm, fp32_norm) = (steps[0].3, fp32[0].3);
        assert!(
            (norm / fp32_norm - 1.0).abs() < 0.05,
            "{precision:?}: first gradient norm {norm} vs {fp32_norm}"
        );
        // No step of this small model overflows f16 at the scale (a skipped one reports a
        // norm of 0).
        assert!(steps.iter().all(|step| step.3 > 0.0), "{precision:?}");
        let validation = validation_evaluations(&events);
        let (first, last) = (validation[0], *validation.last().unwrap());
        assert!(last.1 < first.1, "{precision:?}: {validation:?}");
        assert!(
            last.2 >= 0.75,
            "{precision:?} learns the words as fp32 does: {validation:?}"
        );
    }
    // DeBERTa's relative-position terms in bf16, and LoRA's branches in f16.
    let mut deberta = config(data.path());
    deberta.model_dir = manifest_dir().join("tests/fixtures/tiny-deberta-v3");
    deberta.settings.precision = Precision::Bf16;
    deberta.settings.epochs = 6;
    let events = run(&deberta);
    assert!(
        matches!(events.last(), Some(Event::Finished { .. })),
        "{:?}",
        events.last()
    );
    let validation = validation_evaluations(&events);
    assert!(
        validation.last().unwrap().1 < validation[0].1,
        "{validation:?}"
    );
    let mut lora = config(data.path());
    lora.settings
        .set_method(Method::Lora(LoraSettings::new(4, 8.0)));
    lora.settings.precision = Precision::F16;
    lora.settings.epochs = 2;
    let events = run(&lora);
    assert!(
        matches!(events.last(), Some(Event::Finished { .. })),
        "{:?}",
        events.last()
    );
}

/// ELECTRA and both DeBERTa variants fine-tune like BERT: the validation loss falls under
/// full fine-tuning, and LoRA trains the adapters and the whole head (their head has no
/// pretrained pooler worth freezing), then exports a model that loads and predicts.
/// The model a run exported to `export`/model, loaded, and what it says of a sentence.
fn exported_prediction(export: &Path) -> (Predictor, trainer::inference::Prediction) {
    let predictor =
        Predictor::load(&export.join("model"), None, &burn::tensor::Device::flex()).unwrap();
    let prediction = predictor.predict("the movie was good .").unwrap();
    (predictor, prediction)
}

#[test]
fn electra_and_deberta_fine_tune_fully_and_with_lora() {
    let data = tiny_sst2();
    for name in ["tiny-electra", "tiny-deberta-v3", "tiny-deberta-v2"] {
        let mut full = config(data.path());
        full.model_dir = manifest_dir().join("tests/fixtures").join(name);
        full.settings.epochs = 6;
        let events = run(&full);
        assert!(
            matches!(events.last(), Some(Event::Finished { .. })),
            "{name}: {:?}",
            events.last()
        );
        let validation = validation_evaluations(&events);
        let (first, last) = (validation[0], *validation.last().unwrap());
        assert!(
            last.1 < first.1,
            "{name}: validation loss falls: {validation:?}"
        );

        let mut lora = full.clone();
        lora.settings
            .set_method(Method::Lora(LoraSettings::new(4, 8.0)));
        lora.settings.epochs = 2;
        let export = tempfile::tempdir().unwrap();
        lora.export_dir = Some(export.path().join("model"));
        let events = run(&lora);
        let Some(Event::Started {
            params_trainable, ..
        }) = events.first()
        else {
            panic!("{name}: {:?}", events.first());
        };
        // Adapters: 2 layers x (query, value) x 4 x (32 + 32); head: 32x32+32 and 32x2+2.
        assert_eq!(*params_trainable, 2 * 2 * 4 * 64 + 1056 + 66, "{name}");
        assert!(
            matches!(events.last(), Some(Event::Finished { .. })),
            "{name}: {:?}",
            events.last()
        );
        let (predictor, prediction) = exported_prediction(export.path());
        assert!(predictor.head_trained(), "{name}");
        assert!(
            (prediction.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5,
            "{name}"
        );
    }
}

#[test]
fn lora_trains_a_small_share_of_the_parameters() {
    let data = tiny_sst2();
    let mut lora = config(data.path());
    lora.settings
        .set_method(Method::Lora(LoraSettings::new(4, 8.0)));
    lora.settings.epochs = 3;
    let export = tempfile::tempdir().unwrap();
    lora.export_dir = Some(export.path().join("model"));
    let events = run(&lora);
    let Some(Event::Started {
        params_trainable,
        params_total,
        ..
    }) = events.first()
    else {
        panic!("{:?}", events.first());
    };
    // Adapters: 2 layers x (query, value) x 4 x (32 + 32); classifier: 32x2+2.
    assert_eq!(*params_trainable, 2 * 2 * 4 * 64 + 66);
    assert!(params_trainable < params_total);
    assert!(
        matches!(events.last(), Some(Event::Finished { .. })),
        "{:?}",
        events.last()
    );
    // The adapters are merged into the exported weights, which load and predict.
    let (_, prediction) = exported_prediction(export.path());
    assert!((prediction.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert!(["negative", "positive"].contains(&prediction.label.as_str()));
    assert_eq!(prediction.tokens.first().map(String::as_str), Some("[CLS]"));
}

#[test]
fn a_cancelled_run_stops_before_its_next_step() {
    let data = tiny_sst2();
    let _turn = one_at_a_time();
    let device = select(DeviceChoice::Cpu).unwrap();
    let cancel = CancelToken::default();
    let mut events = Vec::new();
    let mut steps = 0;
    let result = train(&config(data.path()), &device, &cancel.clone(), &mut |e| {
        if matches!(e, Event::Step { .. }) {
            steps += 1;
            if steps == 3 {
                cancel.cancel();
            }
        }
        events.push(e);
    });
    assert!(result.is_none());
    assert_eq!(events.last(), Some(&Event::Cancelled { step: 3 }));
}

#[test]
fn a_run_stops_at_its_time_limit_and_finishes_with_its_model() {
    let data = tiny_sst2();
    let export = tempfile::tempdir().unwrap();
    let limited = TrainConfig {
        time_limit: Some(std::time::Duration::ZERO),
        export_dir: Some(export.path().to_path_buf()),
        keep_best: true,
        ..config(data.path())
    };
    let events = run(&limited);
    // One step, its evaluation, then the finish: test evaluation and export.
    assert_eq!(losses(&events).len(), 1, "{events:?}");
    assert_eq!(validation_evaluations(&events).len(), 1);
    let Some(Event::Finished { metrics }) = events.last() else {
        panic!("the run finishes: {:?}", events.last());
    };
    assert_eq!(metrics.steps, 1);
    assert_eq!(metrics.stopped_at_time_limit, Some(0));
    assert!(export.path().join("config.json").is_file());

    // A run that ends within its limit does not say it stopped.
    let roomy = TrainConfig {
        time_limit: Some(std::time::Duration::from_secs(3600)),
        ..config(data.path())
    };
    let Some(Event::Finished { metrics }) = run(&roomy).last().cloned() else {
        panic!("the run finishes");
    };
    assert_eq!(metrics.stopped_at_time_limit, None);
}

#[test]
fn setup_problems_end_the_run_with_a_clear_failure() {
    let data = tiny_sst2();
    let mut missing_model = config(data.path());
    missing_model.model_dir = PathBuf::from("/nonexistent/model");
    let events = run(&missing_model);
    assert!(
        matches!(&events[..], [Event::Failed { reason }] if reason.contains("/nonexistent/model/config.json")),
        "{events:?}"
    );

    let mut missing_data = config(data.path());
    missing_data.sst2_dir = PathBuf::from("/nonexistent/sst2");
    let events = run(&missing_data);
    assert!(
        matches!(&events[..], [Event::Failed { reason }] if reason.contains("/nonexistent/sst2/train.tsv")),
        "{events:?}"
    );

    let mut bad_lr = config(data.path());
    bad_lr.settings.learning_rate = f64::INFINITY;
    assert!(
        matches!(&run(&bad_lr)[..], [Event::Failed { reason }] if reason.contains("learning rate"))
    );
}

#[test]
fn the_flat_optimizer_trains_like_the_per_tensor_one() {
    let data = tiny_sst2();
    let mut per_tensor = config(data.path());
    per_tensor.settings.epochs = 2;
    per_tensor.optimizer = OptimizerChoice::PerTensor;
    let flat = TrainConfig {
        optimizer: OptimizerChoice::Flat,
        test_each_epoch: true,
        ..per_tensor.clone()
    };
    let expected = run(&per_tensor);
    let actual = run(&flat);
    let (expected_losses, actual_losses) = (losses(&expected), losses(&actual));
    assert_eq!(expected_losses.len(), actual_losses.len());
    assert!(!expected_losses.is_empty());
    for (step, (want, got)) in expected_losses.iter().zip(&actual_losses).enumerate() {
        assert!(
            (want - got).abs() <= 1e-3 * want.abs().max(1.0),
            "step {}: per-tensor loss {want}, flat {got}",
            step + 1
        );
    }
    // test_each_epoch adds SST-2 dev after the first epoch; the second is the final one.
    let tests = |events: &[Event]| {
        events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Eval {
                        split: EvalSplit::PrivateTest,
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!((tests(&expected), tests(&actual)), (1, 2));

    let mut lora = flat.clone();
    lora.settings
        .set_method(Method::Lora(LoraSettings::new(4, 8.0)));
    assert!(
        matches!(&run(&lora)[..], [Event::Failed { reason }] if reason.contains("full fine-tuning only")),
        "a LoRA run with the flat optimizer fails with a clear reason"
    );
}

#[test]
fn a_stopped_run_resumes_exactly_from_its_checkpoint() {
    for optimizer in [OptimizerChoice::PerTensor, OptimizerChoice::Flat] {
        stop_and_resume(optimizer);
    }
}

/// Stops a two-epoch run two steps into its second epoch and resumes it from the
/// checkpoint of the first epoch's end.
fn stop_and_resume(optimizer: OptimizerChoice) {
    let data = tiny_sst2();
    let checkpoints = tempfile::tempdir().unwrap();
    let mut plain = config(data.path());
    plain.settings.epochs = 2;
    plain.eval_every = None;
    plain.optimizer = optimizer;
    let uninterrupted = run(&plain);
    let all_losses = losses(&uninterrupted);
    let steps_per_epoch = all_losses.len() / 2;

    let mut saving = plain.clone();
    saving.checkpoint_dir = Some(checkpoints.path().to_path_buf());
    let device = select(DeviceChoice::Cpu).unwrap();
    let cancel = CancelToken::default();
    let mut first_part = Vec::new();
    {
        let _turn = one_at_a_time();
        train(&saving, &device, &cancel.clone(), &mut |event| {
            if matches!(event, Event::Step { step, .. } if step == steps_per_epoch + 2) {
                cancel.cancel();
            }
            first_part.push(event);
        });
    }
    assert!(
        first_part.contains(&Event::Checkpoint {
            step: steps_per_epoch
        }),
        "{first_part:?}"
    );
    assert_eq!(
        first_part.last(),
        Some(&Event::Cancelled {
            step: steps_per_epoch + 2
        })
    );

    let resumed = run(&saving);
    assert!(
        matches!(resumed.first(), Some(Event::Started { resumed_from_step: Some(s), .. }) if *s == steps_per_epoch),
        "{:?}",
        resumed.first()
    );
    let first_resumed_step = resumed.iter().find_map(|e| match e {
        Event::Step { step, .. } => Some(*step),
        _ => None,
    });
    assert_eq!(
        first_resumed_step,
        Some(steps_per_epoch + 1),
        "no gap, no repeat"
    );
    assert_eq!(
        losses(&resumed),
        all_losses[steps_per_epoch..],
        "the resumed steps repeat the uninterrupted run exactly"
    );
    assert_eq!(
        resumed
            .iter()
            .rev()
            .find(|e| matches!(e, Event::Eval { .. })),
        uninterrupted
            .iter()
            .rev()
            .find(|e| matches!(e, Event::Eval { .. })),
    );

    let mut other = saving.clone();
    other.settings.learning_rate = 1e-3;
    let refused = run(&other);
    assert!(
        matches!(&refused[..], [Event::Failed { reason }] if reason.contains("other settings")),
        "{refused:?}"
    );

    // A checkpoint written before the settings were stored as JSON, with them as one line
    // of text, still resumes its run (here at its last step, so it only finishes).
    let progress_file = checkpoints.path().join("latest/progress.json");
    let mut progress: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&progress_file).unwrap()).unwrap();
    progress["settings"] = format!(
        "model={} method=Full lr=0.002 batch=8 epochs=2 warmup=0.1 max_len=16 subset=None \
         validation=16 seed=11",
        tiny_bert().display()
    )
    .into();
    std::fs::write(&progress_file, progress.to_string()).unwrap();
    let from_text = run(&saving);
    assert!(
        matches!(from_text.first(), Some(Event::Started { resumed_from_step: Some(s), .. }) if *s == 2 * steps_per_epoch),
        "{from_text:?}"
    );
    assert!(
        matches!(from_text.last(), Some(Event::Finished { .. })),
        "{from_text:?}"
    );
    let refused = run(&other);
    assert!(
        matches!(&refused[..], [Event::Failed { reason }] if reason.contains("other settings")),
        "{refused:?}"
    );
}

#[test]
fn a_damaged_checkpoint_resumes_from_the_one_before_it() {
    let data = tiny_sst2();
    let checkpoints = tempfile::tempdir().unwrap();
    let mut saving = config(data.path());
    saving.settings.epochs = 2;
    saving.eval_every = None;
    saving.checkpoint_dir = Some(checkpoints.path().to_path_buf());
    let whole = run(&saving);
    let all_losses = losses(&whole);
    let steps_per_epoch = all_losses.len() / 2;
    let resumed_from = |events: &[Event]| match events.first() {
        Some(Event::Started {
            resumed_from_step, ..
        }) => *resumed_from_step,
        other => panic!("{other:?}"),
    };

    // The newest checkpoint's weights cut short, as a crash mid-write on a full disk
    // leaves them: the run resumes from the epoch-1 checkpoint and repeats epoch 2 exactly.
    let model_file = checkpoints.path().join("latest/model.bpk");
    let bytes = std::fs::read(&model_file).unwrap();
    std::fs::write(&model_file, &bytes[..bytes.len() / 2]).unwrap();
    let after_cut = run(&saving);
    assert_eq!(
        resumed_from(&after_cut),
        Some(steps_per_epoch),
        "{after_cut:?}"
    );
    assert_eq!(losses(&after_cut), all_losses[steps_per_epoch..]);
    assert!(matches!(after_cut.last(), Some(Event::Finished { .. })));

    // Both checkpoints unreadable (garbage progress files): the run starts afresh and
    // still finishes, rather than failing.
    for name in ["latest", "previous"] {
        std::fs::write(
            checkpoints.path().join(name).join("progress.json"),
            "{\"ste",
        )
        .unwrap();
    }
    let afresh = run(&saving);
    assert_eq!(resumed_from(&afresh), None);
    assert_eq!(losses(&afresh), all_losses);
    assert!(matches!(afresh.last(), Some(Event::Finished { .. })));
}

#[test]
fn keep_best_finishes_with_the_best_validated_model_and_resumes_with_it() {
    let data = tiny_sst2();
    let mut keeping = config(data.path());
    keeping.keep_best = true;
    keeping.settings.learning_rate = 5e-3;
    let events = run(&keeping);
    let Some(Event::Finished { metrics }) = events.last() else {
        panic!("the run finishes: {:?}", events.last());
    };
    let evaluations: Vec<(usize, f64)> = validation_evaluations(&events)
        .into_iter()
        .map(|(step, _, accuracy)| (step, accuracy))
        .collect();
    let best = evaluations
        .iter()
        .fold(None::<(usize, f64)>, |kept, &(step, accuracy)| match kept {
            Some((_, best)) if accuracy <= best => kept,
            _ => Some((step, accuracy)),
        })
        .expect("the run evaluates");
    assert_eq!(metrics.validation_accuracy, best.1, "{evaluations:?}");
    let last_step = evaluations.last().unwrap().0;
    assert_eq!(
        metrics.kept_step,
        (best.0 != last_step).then_some(best.0),
        "{evaluations:?}"
    );
    assert!(
        metrics.kept_step.is_some(),
        "this run peaks before its end, so the test covers a kept model: {evaluations:?}"
    );

    // Stopped at its best evaluation (the checkpoint's model is the best one) or one step
    // after it (the best is saved beside it) and resumed, it keeps the same model.
    for stop_at in [best.0, best.0 + 1] {
        let checkpoints = tempfile::tempdir().unwrap();
        let mut saving = keeping.clone();
        saving.checkpoint_dir = Some(checkpoints.path().to_path_buf());
        saving.checkpoint_every = Some(std::time::Duration::ZERO);
        let device = select(DeviceChoice::Cpu).unwrap();
        let cancel = CancelToken::default();
        {
            let _turn = one_at_a_time();
            train(&saving, &device, &cancel.clone(), &mut |event| {
                if matches!(event, Event::Step { step, .. } if step == stop_at) {
                    cancel.cancel();
                }
            });
        }
        let resumed = run(&saving);
        let Some(Event::Finished { metrics: resumed }) = resumed.last() else {
            panic!("the resumed run finishes: {:?}", resumed.last());
        };
        assert_eq!(
            (
                resumed.kept_step,
                resumed.validation_accuracy,
                resumed.private_test_accuracy
            ),
            (
                metrics.kept_step,
                metrics.validation_accuracy,
                metrics.private_test_accuracy
            ),
            "stopped at step {stop_at}"
        );
    }
}

/// The default model `make setup` installs: `JIGSAW_MODELS_DIR`, else `<repo>/data/models`.
fn minilm_dir() -> PathBuf {
    let models = std::env::var_os("JIGSAW_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../data/models"));
    let dir = models.join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the default model is missing at {}; run `make setup` or set JIGSAW_MODELS_DIR",
        dir.display()
    );
    dir
}

/// The GLUE SST-2 files, found as the server finds them: `JIGSAW_SST2_DIR`, else
/// `../shared/data/sst2` beside the repository when present, else `<repo>/data/sst2`.
fn sst2_dir() -> PathBuf {
    let repo = manifest_dir().join("..");
    let dir = std::env::var_os("JIGSAW_SST2_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shared = repo.join("../shared/data/sst2");
            if shared.is_dir() {
                shared
            } else {
                repo.join("data/sst2")
            }
        });
    for file in ["train.tsv", "dev.tsv"] {
        assert!(
            dir.join(file).is_file(),
            "SST-2 is missing: no {} (set JIGSAW_SST2_DIR to a folder with the GLUE SST-2 TSVs)",
            dir.join(file).display()
        );
    }
    dir
}

/// A short full fine-tuning run of all-MiniLM-L6-v2 on real SST-2: 1,000 training
/// sentences, one epoch, max_len 64, a small validation split, no attention probes.
fn minilm_sst2_run() -> TrainConfig {
    TrainConfig {
        model_dir: minilm_dir(),
        sst2_dir: sst2_dir(),
        validation_size: 100,
        eval_every: None,
        probe_sentences: Vec::new(),
        checkpoint_dir: None,
        checkpoint_every: None,
        export_dir: None,
        readback_every: None,
        resume_at_most: None,
        optimizer: OptimizerChoice::Auto,
        test_each_epoch: false,
        keep_best: false,
        time_limit: None,
        settings: RunSettings {
            learning_rate: MINILM_LR,
            batch_size: MINILM_BATCH,
            epochs: 1,
            warmup_ratio: 0.1,
            max_len: 64,
            train_subset: Some(1_000),
            seed: 42,
            ..RunSettings::default()
        },
    }
}

/// Peak learning rate and batch size of the short runs: the run form's quick recipe for a
/// CPU (see docs/benchmarks.md for what other choices measured).
const MINILM_LR: f64 = run_protocol::estimate::QUICK_LEARNING_RATE;
const MINILM_BATCH: usize = run_protocol::estimate::QUICK_BATCH_SIZE;

fn private_test_accuracy(events: &[Event]) -> Option<f64> {
    events.iter().find_map(|e| match e {
        Event::Eval {
            split: EvalSplit::PrivateTest,
            accuracy,
            ..
        } => Some(*accuracy),
        _ => None,
    })
}

/// What the run form opens on for a class with three minutes per run on a 2-core CPU
/// (`run_protocol::estimate::sized_to_budget` at the CPU's typical speed), trained here as
/// the worker trains it (a 2,000-sentence validation split, validation every 400 steps and
/// at the epoch's end, the best model kept), reaches the SST-2 dev accuracy the form
/// promises.
#[test]
fn the_budget_sized_cpu_form_reaches_the_accuracy_it_promises() {
    use run_protocol::estimate::{
        CPU_EXAMPLES_PER_SECOND, QUICK_MIN_SENTENCES, VALIDATE_EVERY, sized_to_budget,
    };
    const VALIDATION: usize = 2_000;
    let budget_seconds = 3.0 * 60.0;
    let train_examples = 67_349 - VALIDATION;
    let suggestion = sized_to_budget(
        budget_seconds,
        CPU_EXAMPLES_PER_SECOND,
        train_examples,
        VALIDATION,
    );
    let sentences = suggestion
        .settings
        .train_subset
        .expect("a subset on the CPU");
    assert!(
        sentences >= QUICK_MIN_SENTENCES && !suggestion.over_budget,
        "{suggestion:?}"
    );
    let config = TrainConfig {
        settings: RunSettings {
            probe_sentence: String::new(),
            ..suggestion.settings.clone()
        },
        validation_size: VALIDATION,
        eval_every: Some(VALIDATE_EVERY),
        keep_best: true,
        ..minilm_sst2_run()
    };
    let started = std::time::Instant::now();
    let events = run(&config);
    let seconds = started.elapsed().as_secs_f64();
    let Some(Event::Finished { metrics }) = events.last() else {
        panic!("the run finishes: {:?}", events.last());
    };
    let accuracy = private_test_accuracy(&events).expect("SST-2 dev is evaluated at the end");
    assert_eq!(accuracy, metrics.private_test_accuracy);
    eprintln!(
        "budget 3 min on the CPU: {sentences} SST-2 sentences, 1 epoch, batch {MINILM_BATCH}, \
         lr {MINILM_LR}: SST-2 dev {:.2}%, validation {:.2}%, {seconds:.0} s (estimated {:.0} s)",
        accuracy * 100.0,
        metrics.validation_accuracy * 100.0,
        suggestion.seconds
    );
    assert!(
        accuracy * 100.0 >= suggestion.dev_accuracy,
        "SST-2 dev accuracy {:.2}% is below the {}% the form promises",
        accuracy * 100.0,
        suggestion.dev_accuracy
    );
}

/// With lr 1e-2 (100 times the 1e-4 above) ten steps wreck the pretrained weights. Measured
/// on the CPU (seed 42): the loss goes 0.69, 0.70, 0.67, then jumps to 6.1 once warm-up ends
/// and stays between 0.6 and 3.9; it never exceeds the divergence threshold, so the run
/// finishes rather than ending with Diverged, and SST-2 dev accuracy is 50.9%, exactly the
/// share of positive sentences: the model answers "positive" for everything. So lr 1e-2 is
/// a clear failure to learn, not a Diverged event.
#[test]
fn a_learning_rate_of_1e_2_fails_to_learn() {
    let config = TrainConfig {
        settings: RunSettings {
            learning_rate: 1e-2,
            train_subset: Some(HIGH_LR_SENTENCES),
            ..minilm_sst2_run().settings
        },
        ..minilm_sst2_run()
    };
    let events = run(&config);
    let steps = losses(&events);
    eprintln!("lr 1e-2 losses: {steps:?}; last event {:?}", events.last());
    let Some(Event::Finished { metrics }) = events.last() else {
        panic!(
            "lr 1e-2 was measured to finish (its loss stays finite and below the divergence \
             threshold): {:?}",
            events.last()
        );
    };
    assert_eq!(metrics.steps, HIGH_LR_SENTENCES.div_ceil(MINILM_BATCH));
    assert!(
        metrics.private_test_accuracy < 0.60,
        "SST-2 dev accuracy {:.2}% after lr 1e-2 should be near chance (about 50%)",
        metrics.private_test_accuracy * 100.0
    );
    let peak = steps.iter().cloned().fold(0.0, f64::max);
    assert!(
        peak > 2.0,
        "the loss should jump far above chance (ln 2 = 0.69) once the rate peaks: {steps:?}"
    );
}

/// Training sentences of the lr 1e-2 run: a few steps are enough to see it fail.
const HIGH_LR_SENTENCES: usize = 160;

#[test]
fn the_benchmark_times_real_training_steps_on_the_cpu() {
    use trainer::bench::{BenchOptions, Shape, measure};
    let _turn = one_at_a_time();
    let device = select(DeviceChoice::Cpu).unwrap();
    let tiny = trainer::loader::read_config(&tiny_bert()).unwrap();
    let options = BenchOptions {
        warmup: 1,
        windows: 3,
        steps_per_window: 2,
        ..BenchOptions::default()
    };
    let record = measure(
        &tiny,
        "tiny-bert",
        Shape { seq: 16, batch: 4 },
        Precision::Fp32,
        &options,
        &device,
    );
    assert_eq!(
        (record.implementation.as_str(), record.dtype.as_str()),
        ("burn-flex", "fp32")
    );
    let bf16 = measure(
        &tiny,
        "tiny-bert",
        Shape { seq: 16, batch: 4 },
        Precision::Bf16,
        &options,
        &device,
    );
    assert_eq!(bf16.dtype, "bf16");
    assert!(bf16.step_ms_median.is_finite() && bf16.step_ms_median > 0.0);
    assert_eq!((record.seq, record.batch), (16, 4));
    assert!(record.examples_per_s.is_finite() && record.examples_per_s > 0.0);
    assert!(record.step_ms_median.is_finite() && record.step_ms_median > 0.0);
    let phases = &record.phases;
    for (phase, ms) in [
        ("forward and backward", phases.forward_backward_ms),
        ("optimizer", phases.optimizer_ms),
        ("dispatch", phases.dispatch_ms),
    ] {
        assert!(ms.is_finite() && ms > 0.0, "{phase}: {ms} ms");
    }
    assert_eq!(
        record.peak_mem_mb, None,
        "the CPU backend reports no memory pools"
    );
    assert_eq!(record.card, device.card());
    // On the CPU the memory readings are the process's resident memory: one per window.
    assert_eq!(record.memory_by_window_mb.len(), 3);
    assert!(record.memory_after_warmup_mb.is_some_and(|mb| mb > 1.0));
    let json = serde_json::to_value(&record).unwrap();
    for field in [
        "card",
        "date",
        "model",
        "impl",
        "dtype",
        "batch",
        "seq",
        "examples_per_s",
        "peak_mem_mb",
        "step_ms_median",
        "phases",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
}

/// The process's resident memory in bytes, from /proc/self/statm.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf only reads a system setting.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page_size).unwrap()
}

/// Once the CPU backend is chosen, tensor-sized buffers freed on a worker thread (where the
/// server trains) stay resident for the next step to reuse instead of going back to the
/// kernel, and `return_freed_cpu_memory` (called when a run ends) gives them back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_cpu_buffers_are_kept_for_reuse_until_a_run_returns_them() {
    const MIB: usize = 1 << 20;
    let _turn = one_at_a_time();
    let _cpu = select(DeviceChoice::Cpu).unwrap();
    std::thread::spawn(|| {
        let before = resident_bytes();
        // Eight buffers the size of a MiniLM word-embedding gradient, written so that
        // their pages are resident.
        let buffers: Vec<Vec<u8>> = (1..=8).map(|fill| vec![fill; 48 * MIB]).collect();
        let filled = resident_bytes();
        assert!(filled >= before + 300 * MIB, "{before} -> {filled}");
        drop(buffers);
        let kept = resident_bytes();
        assert!(
            kept + 64 * MIB >= filled,
            "freed buffers went back to the kernel at once: {filled} -> {kept}"
        );
        trainer::device::return_freed_cpu_memory();
        let returned = resident_bytes();
        assert!(
            returned + 256 * MIB <= kept,
            "freed buffers were not given back: {kept} -> {returned}"
        );
    })
    .join()
    .unwrap();
}
