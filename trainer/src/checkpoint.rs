//! Checkpoints: the model, the optimizer's state and the run's progress, written together
//! so a run resumes exactly where it stopped. The learning-rate schedule is a function of the
//! step, and data order and dropout are functions of the seed and the step, so the step is
//! all the schedule and the data need. A checkpoint resumes only the run that wrote it:
//! the [`ResumeKey`] it holds must equal the run's.
//!
//! A checkpoint is written to `latest.partial/` and then swapped in, so a crash while
//! writing leaves the previous one intact. The one before it is kept as `previous/`: a
//! caller that stores the run's events more slowly than checkpoints are written can resume
//! from the newest checkpoint its stored events reach, and a run whose newest checkpoint
//! is damaged resumes from the one before (see [`candidates`]).

use crate::model::SequenceClassifier;
use burn::module::Module;
use run_protocol::RunSettings;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a run stood when its checkpoint was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps completed.
    pub step: usize,
    /// The settings the run was started with; a checkpoint only resumes the same run.
    pub settings: StoredKey,
    /// Last validation loss and accuracy, if any evaluation ran.
    pub last_validation: Option<(f64, f64)>,
    /// The evaluation with the best validation accuracy so far, when the run keeps its
    /// best model; that model's weights are in [`BEST_MODEL_FILE`].
    #[serde(default)]
    pub best: Option<BestEvaluation>,
}

/// The settings that decide a run's trajectory and what it keeps: a checkpoint resumes
/// only a run whose key equals the one it was written with.
///
/// The key is derived from the run's [`RunSettings`] by serde: their JSON, less the fields
/// that do not change the trajectory ([`NOT_IN_KEY`]: the model's name, which `model_dir`
/// resolves; the LoRA fields, which the resolved `method` replaces; the probe sentence),
/// plus the engine's own settings. A settings field added later is in the key at once;
/// the checkpoints written before it then no longer resume, unless the field is added to
/// [`NOT_IN_KEY`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeKey {
    /// The model directory the run started from, as displayed.
    pub model_dir: String,
    /// The run's settings.
    pub settings: RunSettings,
    /// Sentences carved out of train for validation.
    pub validation_size: usize,
    /// Whether the run finishes with the model of its best validation evaluation.
    pub keep_best: bool,
}

/// The fields of [`RunSettings`] that are not part of a [`ResumeKey`].
const NOT_IN_KEY: [&str; 5] = [
    "model",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "probe_sentence",
];

impl ResumeKey {
    /// The key as a checkpoint stores it: one JSON object of the settings in the key.
    pub fn to_json(&self) -> serde_json::Value {
        let mut fields = match serde_json::to_value(&self.settings) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => unreachable!("RunSettings serialize to a JSON object"),
        };
        for name in NOT_IN_KEY {
            fields.remove(name);
        }
        let engine = [
            ("model_dir", serde_json::json!(self.model_dir)),
            ("method", serde_json::json!(self.settings.method())),
            ("validation_size", serde_json::json!(self.validation_size)),
            ("keep_best", serde_json::json!(self.keep_best)),
        ];
        for (name, value) in engine {
            fields.insert(name.to_string(), value);
        }
        serde_json::Value::Object(fields)
    }

    /// The key in the one line of text that checkpoints stored before it was JSON.
    fn legacy_text(&self) -> String {
        let settings = &self.settings;
        format!(
            "model={} method={:?} lr={} batch={} epochs={} warmup={} max_len={} subset={:?} validation={} seed={}{}",
            self.model_dir,
            settings.method(),
            settings.learning_rate,
            settings.batch_size,
            settings.epochs,
            settings.warmup_ratio,
            settings.max_len,
            settings.train_subset,
            self.validation_size,
            settings.seed,
            if self.keep_best { " keep_best" } else { "" }
        )
    }

    /// The key as it reads back from a checkpoint. serde_json reads floats back only to
    /// within a unit in the last place unless built for exact round trips, but the same
    /// text always reads back as the same value.
    fn as_read_back(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.to_json().to_string()).ok()
    }
}

/// A checkpoint's [`ResumeKey`] as its `progress.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredKey {
    /// The key as one line of text, as checkpoints written before the JSON key hold it;
    /// they still resume the same run.
    Legacy(String),
    /// The key's fields, as JSON (see [`ResumeKey::to_json`]).
    Key(serde_json::Value),
}

impl StoredKey {
    /// The stored form of `key`.
    pub fn of(key: &ResumeKey) -> Self {
        Self::Key(key.to_json())
    }

    /// Whether the checkpoint holding this key was written by the run of `key`.
    pub fn is_for(&self, key: &ResumeKey) -> bool {
        match self {
            Self::Key(stored) => key.as_read_back().as_ref() == Some(stored),
            Self::Legacy(text) => *text == key.legacy_text(),
        }
    }
}

/// An evaluation whose model a run keeps (see `TrainConfig::keep_best`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestEvaluation {
    /// The step after which it ran.
    pub step: usize,
    /// Validation loss.
    pub loss: f64,
    /// Validation accuracy, 0..1.
    pub accuracy: f64,
}

/// The per-tensor optimizer's state file in a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// The flat optimizer's state file in a checkpoint.
pub const FLAT_OPTIMIZER_FILE: &str = "optimizer.flat";
/// The kept best model's weights in a checkpoint, when the run keeps one.
pub const BEST_MODEL_FILE: &str = "best.bpk";

/// A checkpoint found on disk.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Its directory.
    pub dir: PathBuf,
    /// What it holds.
    pub progress: Progress,
}

impl Saved {
    /// The complete checkpoint in `dir`, if there is one (its `progress.json` is written last).
    pub fn read(dir: &Path) -> Result<Option<Saved>, String> {
        let file = dir.join("progress.json");
        if !file.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        let progress: Progress =
            serde_json::from_str(&text).map_err(|e| io(&file, format!("not a checkpoint: {e}")))?;
        Ok(Some(Saved {
            dir: dir.to_path_buf(),
            progress,
        }))
    }

    /// The model weights file.
    pub fn model_file(&self) -> PathBuf {
        self.dir.join("model.bpk")
    }

    /// The per-tensor optimizer's state file.
    pub fn optimizer_file(&self) -> PathBuf {
        self.dir.join(OPTIMIZER_FILE)
    }

    /// The flat optimizer's state file (a checkpoint holds this one or the other).
    pub fn flat_optimizer_file(&self) -> PathBuf {
        self.dir.join(FLAT_OPTIMIZER_FILE)
    }

    /// The kept best model's weights, when `progress.best` is set: the checkpoint's own
    /// model file when the best evaluation ran at its step, else [`BEST_MODEL_FILE`].
    pub fn best_model_file(&self) -> PathBuf {
        match self.progress.best {
            Some(best) if best.step == self.progress.step => self.model_file(),
            _ => self.dir.join(BEST_MODEL_FILE),
        }
    }
}

fn io(path: &Path, error: impl std::fmt::Display) -> String {
    format!("{}: {error}", path.display())
}

/// Writes a checkpoint of `model`, the optimizer's state (`save_optimizer` writes it into
/// the directory it is given), the kept best model if any (none when it is `model`
/// itself: see [`Saved::best_model_file`]), and `progress` into `root`.
///
/// `own_latest` is the step of the checkpoint in `root` that this run wrote last or resumed
/// from, if that is the latest one: when it kept the same best model, its file is linked
/// instead of written again. (A checkpoint left by another attempt at the run is never
/// linked from: its weights need not be this run's.)
pub fn save(
    root: &Path,
    model: &SequenceClassifier,
    save_optimizer: impl FnOnce(&Path) -> Result<(), String>,
    best_model: Option<&SequenceClassifier>,
    progress: &Progress,
    own_latest: Option<usize>,
) -> Result<(), String> {
    let partial = root.join("latest.partial");
    let latest = root.join("latest");
    let previous = root.join("previous");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| io(&partial, e))?;
    model
        .clone()
        .save_file(partial.join("model.bpk"))
        .map_err(|e| io(&partial.join("model.bpk"), e))?;
    save_optimizer(&partial)?;
    if let Some(best) = best_model {
        let file = partial.join(BEST_MODEL_FILE);
        // The kept model changes only when an evaluation beats it, so most checkpoints can
        // link the previous checkpoint's copy instead of writing the same weights again.
        let unchanged = progress
            .best
            .zip(own_latest)
            .and_then(|(evaluation, step)| kept_model_file(&latest, step, evaluation));
        let linked = unchanged.is_some_and(|source| std::fs::hard_link(source, &file).is_ok());
        if !linked {
            best.clone().save_file(&file).map_err(|e| io(&file, e))?;
        }
    }
    let json = serde_json::to_string_pretty(progress).map_err(|e| io(&partial, e))?;
    std::fs::write(partial.join("progress.json"), json)
        .map_err(|e| io(&partial.join("progress.json"), e))?;
    // The newest complete checkpoint becomes `previous`. When there is no `latest` (a
    // write killed between the two renames), `previous` is the newest one: it stays.
    if latest.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| io(&previous, e))?;
        }
        std::fs::rename(&latest, &previous).map_err(|e| io(&latest, e))?;
    }
    std::fs::rename(&partial, &latest).map_err(|e| io(&partial, e))?;
    Ok(())
}

/// The file in the checkpoint `dir` that holds the kept model of `evaluation`, if that
/// checkpoint is the one of `step` and kept the same model.
fn kept_model_file(dir: &Path, step: usize, evaluation: BestEvaluation) -> Option<PathBuf> {
    let saved = Saved::read(dir).ok()??;
    (saved.progress.step == step && saved.progress.best.map(|b| b.step) == Some(evaluation.step))
        .then(|| saved.best_model_file())
        .filter(|file| file.is_file())
}

/// Loads `model`'s weights from the checkpoint file `path`, reading the whole file now.
///
/// burn's own `try_load_file` reads each tensor from the path only when it is first used
/// (so does its optimizer's `load`; [`read_whole`] serves both).
/// A checkpoint's files are renamed and removed as later checkpoints are written (and a kept
/// model's file may be linked from there), so a model not used at once, such as a run's
/// kept best, would later read whatever file has taken that path.
pub fn load_model(model: SequenceClassifier, path: &Path) -> Result<SequenceClassifier, String> {
    let record =
        burn::store::ModuleRecord::from_bytes(read_whole(path)?).map_err(|e| io(path, e))?;
    model.try_load_record(record).map_err(|e| io(path, e))
}

/// The bytes of the checkpoint file `path`, read into memory.
pub fn read_whole(path: &Path) -> Result<burn::tensor::Bytes, String> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Ok(burn::tensor::Bytes::from_bytes_vec(bytes))
}

/// The complete checkpoints under `root` whose step is at most `at_most` (any step when
/// `None`), newest first: the run resumes from the first of them that loads. A checkpoint
/// whose progress file cannot be read (a damaged disk, a file cut short) is skipped with a
/// warning, so the one before it is tried.
pub fn candidates(root: &Path, at_most: Option<usize>) -> Vec<Saved> {
    ["latest", "previous"]
        .iter()
        .filter_map(|name| match Saved::read(&root.join(name)) {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(%error, "skipping a checkpoint that cannot be read");
                None
            }
        })
        .filter(|saved| at_most.is_none_or(|limit| saved.progress.step <= limit))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::AdamWConfig;
    use burn::tensor::Device;
    use run_protocol::{LoraSettings, Method};

    fn tiny_model() -> SequenceClassifier {
        let config = crate::model::config::parse_config(
            r#"{"model_type":"bert","vocab_size":50,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":32,"type_vocab_size":2}"#,
            Path::new("config.json"),
        )
        .unwrap();
        SequenceClassifier::new(&config, 2, &Device::flex().autodiff())
    }

    /// The key of a run of the tiny test settings.
    fn key() -> ResumeKey {
        ResumeKey {
            model_dir: "tests/fixtures/tiny-bert".into(),
            settings: RunSettings {
                model: "tiny-bert".into(),
                learning_rate: 2e-3,
                batch_size: 8,
                epochs: 2,
                max_len: 16,
                seed: 11,
                ..RunSettings::default()
            },
            validation_size: 16,
            keep_best: false,
        }
    }

    /// [`key`] with its settings changed by `change`.
    fn key_with(change: impl FnOnce(&mut RunSettings)) -> ResumeKey {
        let mut key = key();
        change(&mut key.settings);
        key
    }

    /// Writes a checkpoint at `step` whose kept model is from `best_step`, if any, as a run
    /// whose own latest checkpoint is that of `own_latest`.
    fn save_at(
        root: &Path,
        model: &SequenceClassifier,
        step: usize,
        best_step: Option<usize>,
        own_latest: Option<usize>,
    ) {
        let optimizer = AdamWConfig::new().init();
        let progress = Progress {
            step,
            settings: StoredKey::of(&key()),
            last_validation: None,
            best: best_step.map(|step| BestEvaluation {
                step,
                loss: 0.5,
                accuracy: 0.8,
            }),
        };
        let save_optimizer = |dir: &Path| {
            let file = dir.join(OPTIMIZER_FILE);
            optimizer.save(&file).map_err(|e| io(&file, e))
        };
        let best_model = best_step.filter(|&b| b != step).map(|_| model);
        save(
            root,
            model,
            save_optimizer,
            best_model,
            &progress,
            own_latest,
        )
        .unwrap();
    }

    #[test]
    fn the_newest_checkpoint_within_reach_is_found() {
        let temp = tempfile::tempdir().unwrap();
        let model = tiny_model();
        for step in [10, 20, 30] {
            save_at(temp.path(), &model, step, None, None);
        }
        let steps = |at_most| {
            candidates(temp.path(), at_most)
                .iter()
                .map(|s| s.progress.step)
                .collect::<Vec<_>>()
        };
        assert_eq!(steps(None), [30, 20]);
        assert_eq!(steps(Some(30)), [30, 20]);
        assert_eq!(steps(Some(25)), [20]);
        assert!(steps(Some(15)).is_empty());
        // A damaged progress file leaves the checkpoint before it.
        std::fs::write(temp.path().join("latest/progress.json"), "{\"step\": 3").unwrap();
        assert_eq!(steps(None), [20]);
    }

    /// What a SIGKILL leaves at each point of [`save`]: a half-written `latest.partial`
    /// beside the complete checkpoints, or (between the two renames) no `latest` at all.
    #[test]
    fn a_checkpoint_write_killed_midway_leaves_the_complete_ones_to_resume_from() {
        let temp = tempfile::tempdir().unwrap();
        let model = tiny_model();
        for step in [10, 20] {
            save_at(temp.path(), &model, step, None, None);
        }
        let partial = temp.path().join("latest.partial");
        std::fs::create_dir_all(&partial).unwrap();
        let whole = std::fs::read(temp.path().join("latest/model.bpk")).unwrap();
        std::fs::write(partial.join("model.bpk"), &whole[..whole.len() / 3]).unwrap();
        let steps = || {
            candidates(temp.path(), None)
                .iter()
                .map(|s| s.progress.step)
                .collect::<Vec<_>>()
        };
        assert_eq!(steps(), [20, 10], "the half-written one is not a candidate");
        // Killed after `latest` became `previous`, before the new one was renamed in.
        std::fs::remove_dir_all(temp.path().join("previous")).unwrap();
        std::fs::rename(temp.path().join("latest"), temp.path().join("previous")).unwrap();
        assert_eq!(steps(), [20]);
        let saved = candidates(temp.path(), None).remove(0);
        assert!(load_model(tiny_model(), &saved.model_file()).is_ok());
        // The next save clears what the killed one left and writes a complete checkpoint.
        save_at(temp.path(), &model, 30, None, None);
        assert!(!partial.exists());
        assert_eq!(steps(), [30, 20]);
    }

    #[test]
    fn a_checkpoint_resumes_only_the_run_of_its_key() {
        let temp = tempfile::tempdir().unwrap();
        save_at(temp.path(), &tiny_model(), 10, None, None);
        let stored = candidates(temp.path(), None)[0].progress.settings.clone();
        assert!(matches!(stored, StoredKey::Key(_)), "{stored:?}");
        assert!(stored.is_for(&key()));
        let others = [
            key_with(|s| s.learning_rate = 1e-3),
            key_with(|s| s.set_method(Method::Lora(LoraSettings::new(4, 8.0)))),
            key_with(|s| s.set_method(Method::Lora(LoraSettings::new(4, 3.0)))),
            key_with(|s| s.train_subset = Some(100)),
            ResumeKey {
                keep_best: true,
                ..key()
            },
        ];
        for other in others {
            assert!(!stored.is_for(&other), "{other:?}");
        }
        // What does not change the trajectory is not in the key.
        let same = [
            key_with(|s| s.probe_sentence = "a fine film .".into()),
            key_with(|s| s.model = "tiny-bert-copy".into()),
            // Without a rank there is no LoRA, whatever its alpha.
            key_with(|s| s.lora_alpha = Some(3.0)),
        ];
        for same in same {
            assert!(stored.is_for(&same), "{same:?}");
        }

        // Whatever the settings' floats, a key read back is the key written.
        for i in 1..500 {
            let key = key_with(|s| {
                s.learning_rate = f64::from(i) * 1.234_567_891e-7;
                s.warmup_ratio = 1.0 / f64::from(i + 2);
            });
            let text = serde_json::to_string(&StoredKey::of(&key)).unwrap();
            let stored: StoredKey = serde_json::from_str(&text).unwrap();
            assert!(stored.is_for(&key), "{text}");
        }
    }

    #[test]
    fn a_checkpoint_with_the_key_of_earlier_versions_still_resumes_its_run() {
        // The JSON key as the version before the derived key wrote it.
        let json = r#"{
            "step": 10,
            "settings": {"model_dir": "tests/fixtures/tiny-bert", "method": "Full",
                "learning_rate": 0.002, "batch_size": 8, "epochs": 2, "warmup_ratio": 0.1,
                "max_len": 16, "train_subset": null, "seed": 11, "validation_size": 16,
                "keep_best": false},
            "last_validation": null
        }"#;
        let progress: Progress = serde_json::from_str(json).unwrap();
        assert!(progress.settings.is_for(&key()));
        assert!(!progress.settings.is_for(&key_with(|s| s.epochs = 3)));
        let lora = key_with(|s| s.set_method(Method::Lora(LoraSettings::new(4, 8.0))));
        let stored = lora.to_json();
        assert_eq!(
            stored["method"],
            serde_json::json!({"Lora": {"rank": 4, "alpha": 8.0, "dropout": 0.1}})
        );
        for name in NOT_IN_KEY {
            assert!(stored.get(name).is_none(), "{name} in {stored}");
        }
    }

    #[test]
    fn a_checkpoint_with_the_settings_as_text_still_resumes_its_run() {
        let json = r#"{
            "step": 10,
            "settings": "model=tests/fixtures/tiny-bert method=Full lr=0.002 batch=8 epochs=2 warmup=0.1 max_len=16 subset=None validation=16 seed=11",
            "last_validation": [0.6, 0.7]
        }"#;
        let progress: Progress = serde_json::from_str(json).unwrap();
        assert!(progress.settings.is_for(&key()));
        let keeping = ResumeKey {
            keep_best: true,
            ..key()
        };
        assert!(!progress.settings.is_for(&keeping));
        let lora = ResumeKey {
            keep_best: true,
            ..key_with(|s| s.set_method(Method::Lora(LoraSettings::new(4, 8.0))))
        };
        let text = "model=tests/fixtures/tiny-bert method=Lora(LoraSettings { rank: 4, alpha: 8.0, dropout: 0.1 }) lr=0.002 batch=8 epochs=2 warmup=0.1 max_len=16 subset=None validation=16 seed=11 keep_best";
        assert!(StoredKey::Legacy(text.into()).is_for(&lora));
        assert!(!StoredKey::Legacy(text.into()).is_for(&key()));
    }

    #[cfg(unix)]
    #[test]
    fn an_unchanged_kept_model_is_linked_not_written_again() {
        use std::os::unix::fs::MetadataExt;
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        let inode = |path: PathBuf| std::fs::metadata(path).unwrap().ino();
        let model = tiny_model();

        save_at(root, &model, 10, Some(10), None);
        let best_at_10 = inode(root.join("latest/model.bpk"));
        save_at(root, &model, 20, Some(10), Some(10));
        assert_eq!(inode(root.join("latest").join(BEST_MODEL_FILE)), best_at_10);
        save_at(root, &model, 30, Some(10), Some(20));
        assert_eq!(inode(root.join("latest").join(BEST_MODEL_FILE)), best_at_10);
        let saved = candidates(root, None).remove(0);
        let loaded = load_model(tiny_model(), &saved.best_model_file()).unwrap();
        let weights = |m: &SequenceClassifier| m.layers[0].attention.query.weight.val().into_data();
        assert_ne!(
            weights(&tiny_model()),
            weights(&model),
            "fresh models differ"
        );
        assert_eq!(
            weights(&loaded),
            weights(&model),
            "the linked file holds the kept model"
        );

        // A new best is written afresh.
        save_at(root, &model, 40, Some(35), Some(30));
        assert_ne!(inode(root.join("latest").join(BEST_MODEL_FILE)), best_at_10);
        // So is a best whose latest checkpoint this run did not write (another attempt's).
        save_at(root, &model, 50, Some(35), Some(20));
        assert_ne!(
            inode(root.join("latest").join(BEST_MODEL_FILE)),
            inode(root.join("previous").join(BEST_MODEL_FILE))
        );
    }
}
