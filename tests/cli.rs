//! The `jigsaw-lab` command line against the real binary: `train` with its progress and one
//! JSON line of final metrics, `predict` and `inspect` on the model it exported, and clear
//! errors for bad options. It trains the tiny random BERT on a synthetic set on the CPU.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use support::*;

/// Runs `jigsaw-lab ARGS` with the tests' settings in a fresh data directory.
fn jigsaw(data_dir: &Path, args: &[&str]) -> Output {
    command(data_dir).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tiny_bert() -> String {
    repo_root()
        .join("trainer/tests/fixtures/tiny-bert")
        .display()
        .to_string()
}

/// Runs `jigsaw-lab train` on the CPU with the tiny BERT on the SST-2 files in `sst2`, with
/// `options` besides.
fn train_tiny(data_dir: &Path, sst2: &str, options: &[&str]) -> Output {
    let model = tiny_bert();
    let mut args = vec![
        "train", "--model", &model, "--data", sst2, "--device", "cpu",
    ];
    args.extend_from_slice(options);
    jigsaw(data_dir, &args)
}

#[test]
fn train_exports_a_model_that_predict_and_inspect_read() {
    let temp = tempfile::tempdir().unwrap();
    let sst2 = temp.path().join("sst2");
    write_synthetic_sst2(&sst2);
    let out = temp.path().join("trained");
    let (sst2, out_dir) = (sst2.display().to_string(), out.display().to_string());
    let trained = train_tiny(
        temp.path(),
        &sst2,
        &[
            "--lr",
            "2e-3",
            "--batch-size",
            "8",
            "--epochs",
            "8",
            "--max-len",
            "16",
            "--validation-size",
            "16",
            "--seed",
            "11",
            "--out",
            &out_dir,
        ],
    );
    let (stdout, stderr) = (text(&trained.stdout), text(&trained.stderr));
    assert!(trained.status.success(), "{stderr}");
    // Standard output holds exactly one line: the final metrics.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let metrics: Value = serde_json::from_str(lines[0]).unwrap();
    for field in [
        "steps",
        "validation_accuracy",
        "validation_loss",
        "private_test_accuracy",
        "seconds",
    ] {
        assert!(metrics[field].is_number(), "{field} in {metrics}");
    }
    assert!(
        metrics["validation_accuracy"].as_f64().unwrap() > 0.7,
        "the tiny model learns the separable task: {metrics}"
    );
    // Standard error shows the run's progress in words.
    assert!(stderr.contains("Training on CPU"), "{stderr}");
    assert!(stderr.contains("validation loss"), "{stderr}");
    assert!(stderr.contains("finished in"), "{stderr}");

    let predicted = jigsaw(
        temp.path(),
        &["predict", "--model", &out_dir, "the story was charming ."],
    );
    assert!(predicted.status.success(), "{}", text(&predicted.stderr));
    let prediction: Value = serde_json::from_slice(&predicted.stdout).unwrap();
    let result = &prediction["results"][0];
    assert_eq!(result["label"], "positive", "{prediction}");
    let probs: Vec<f64> = result["probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{probs:?}");

    let inspected = jigsaw(
        temp.path(),
        &[
            "inspect",
            "--model",
            &out_dir,
            "--json",
            "the film was dull .",
        ],
    );
    assert!(inspected.status.success(), "{}", text(&inspected.stderr));
    let inspection: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let tokens = inspection["tokens"].as_array().unwrap().len();
    assert_eq!(inspection["ids"].as_array().unwrap().len(), tokens);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let hidden = config["hidden_size"].as_u64().unwrap() as usize;
    assert_eq!(inspection["cls"].as_array().unwrap().len(), hidden);
    assert_eq!(inspection["mean"].as_array().unwrap().len(), hidden);
    let attentions = inspection["attentions"].as_array().unwrap();
    assert_eq!(
        attentions.len() as u64,
        config["num_hidden_layers"].as_u64().unwrap()
    );
    for layer in attentions {
        for head in layer.as_array().unwrap() {
            let rows = head.as_array().unwrap();
            assert_eq!(rows.len(), tokens);
            for row in rows {
                let sum: f64 = row
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_f64().unwrap())
                    .sum();
                assert!((sum - 1.0).abs() < 1e-4, "an attention row sums to {sum}");
            }
        }
    }
}

#[test]
fn bad_command_lines_get_a_clear_message_and_no_panic() {
    let temp = tempfile::tempdir().unwrap();
    let model = tiny_bert();
    for (args, needle) in [
        (vec!["train", "--lr", "NaN"], "learning rate"),
        (
            vec!["train", "--batch-size", "-3"],
            "--batch-size expects a number",
        ),
        (vec!["train", "--model", "/nowhere"], "no model at"),
        (vec!["train", "--device", "tpu"], "not a device choice"),
        (vec!["train", "--lora-alpha", "8"], "need --lora-r"),
        (
            vec![
                "train", "--model", &model, "--data", "/nowhere", "--device", "cpu",
            ],
            "/nowhere",
        ),
        (vec!["predict", "--model", &model], "at least one sentence"),
        (vec!["inspect", "--model", &model], "exactly one sentence"),
        (
            vec!["inspect", "--model", &model, "--colour", "x"],
            "unknown option",
        ),
    ] {
        let output = jigsaw(temp.path(), &args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn first_loss_times_each_start_in_one_process() {
    let temp = tempfile::tempdir().unwrap();
    let sst2 = temp.path().join("sst2");
    write_synthetic_sst2(&sst2);
    let timed = train_tiny(
        temp.path(),
        &sst2.display().to_string(),
        &["--validation-size", "16", "--first-loss", "2"],
    );
    let (stdout, stderr) = (text(&timed.stdout), text(&timed.stderr));
    assert!(timed.status.success(), "{stderr}");
    let runs: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(runs.len(), 2, "{stdout}");
    for (number, run) in (1..).zip(&runs) {
        assert_eq!(run["run"], number, "{run}");
        let started = run["started_s"].as_f64().unwrap();
        let first_loss = run["first_loss_s"].as_f64().unwrap();
        assert!(0.0 < started && started <= first_loss, "{run}");
    }
    // Only the first run opens the device; the second finds it open.
    assert!(runs[0]["device_s"].as_f64().unwrap() >= 0.0, "{stdout}");
    assert!(runs[1]["device_s"].is_null(), "{stdout}");
    assert!(!stderr.contains("failed"), "{stderr}");
}
