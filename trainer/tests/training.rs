//! End-to-end training runs on the CPU with the tiny BERT fixture and a small synthetic
//! SST-2-shaped dataset: the loop learns, is reproducible from its seed, can be cancelled,
//! and reports what it did.
//!
//! burn's CPU backend keeps one random generator per process, so these tests take turns
//! (see [`one_at_a_time`]) to keep each run's dropout masks its own.

use std::path::{Path, PathBuf};
use trainer::device::{DeviceChoice, select};
use trainer::events::{EvalSplit, Event};
use trainer::inference::Predictor;
use trainer::train::{CancelToken, Method, TrainConfig, train};

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

/// Writes train/dev TSVs of short reviews whose sentiment follows from their words.
fn tiny_sst2() -> tempfile::TempDir {
    let positive = [
        "good",
        "great",
        "funny",
        "charming",
        "beautiful",
        "witty",
        "smart",
        "sweet",
        "fresh",
        "moving",
    ];
    let negative = [
        "bad", "boring", "dull", "worst", "stale", "slow", "sad", "worse", "long", "noise",
    ];
    let subjects = [
        "the movie",
        "this film",
        "the story",
        "the cast",
        "the script",
        "the music",
    ];
    let mut train = String::from("sentence\tlabel\n");
    let mut dev = String::from("sentence\tlabel\n");
    for (i, subject) in subjects.iter().enumerate() {
        for (j, (good, bad)) in positive.iter().zip(negative).enumerate() {
            let target = if (i + j) % 5 == 0 {
                &mut dev
            } else {
                &mut train
            };
            target.push_str(&format!(
                "{subject} was {good} .\t1\n{subject} was {bad} .\t0\n"
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.tsv"), train).unwrap();
    std::fs::write(dir.path().join("dev.tsv"), dev).unwrap();
    dir
}

fn config(data: &Path) -> TrainConfig {
    TrainConfig {
        model_dir: tiny_bert(),
        sst2_dir: data.to_path_buf(),
        learning_rate: 2e-3,
        batch_size: 8,
        epochs: 12,
        warmup_ratio: 0.1,
        max_len: 16,
        validation_size: 16,
        eval_every: Some(10),
        seed: 11,
        probe_sentences: vec!["the movie was not good .".into()],
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

    let validation: Vec<(f64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Eval {
                split: EvalSplit::Validation,
                loss,
                accuracy,
                ..
            } => Some((*loss, *accuracy)),
            _ => None,
        })
        .collect();
    assert!(validation.len() >= 4, "{validation:?}");
    let (first, last) = (validation[0], *validation.last().unwrap());
    assert!(last.0 < first.0, "validation loss falls: {validation:?}");
    assert!(
        last.1 >= 0.75,
        "the words decide the label, so the model should learn them: {validation:?}"
    );

    let attention = events.iter().find_map(|e| match e {
        Event::Attention {
            tokens, matrices, ..
        } => Some((tokens.clone(), matrices.clone())),
        _ => None,
    });
    let (tokens, matrices) = attention.expect("attention maps are reported");
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

#[test]
fn the_same_seed_gives_the_same_run_on_the_cpu() {
    let data = tiny_sst2();
    let mut short = config(data.path());
    short.epochs = 2;
    let first = losses(&run(&short));
    let second = losses(&run(&short));
    assert!(!first.is_empty());
    assert_eq!(first, second);
    short.seed = 12;
    assert_ne!(first, losses(&run(&short)));
}

#[test]
fn lora_trains_a_small_share_of_the_parameters() {
    let data = tiny_sst2();
    let mut lora = config(data.path());
    lora.method = Method::Lora {
        rank: 4,
        alpha: 8.0,
    };
    lora.epochs = 3;
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
    let predictor = Predictor::load(
        &export.path().join("model"),
        None,
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    let prediction = predictor.predict("the movie was good .").unwrap();
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
    bad_lr.learning_rate = f64::INFINITY;
    assert!(
        matches!(&run(&bad_lr)[..], [Event::Failed { reason }] if reason.contains("learning rate"))
    );
}

#[test]
fn a_stopped_run_resumes_exactly_from_its_checkpoint() {
    let data = tiny_sst2();
    let checkpoints = tempfile::tempdir().unwrap();
    let mut plain = config(data.path());
    plain.epochs = 2;
    plain.eval_every = None;
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
    other.learning_rate = 1e-3;
    let refused = run(&other);
    assert!(
        matches!(&refused[..], [Event::Failed { reason }] if reason.contains("other settings")),
        "{refused:?}"
    );
}
