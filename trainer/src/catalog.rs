//! What a model folder is and whether the engine can use it: the summary the instructor's
//! Models page and `jigsaw-lab models list` show, and the check a new model passes before
//! teams see it (its config, tokenizer and weights load, and it classifies two sentences on
//! the CPU with finite scores).

use crate::inference::Predictor;
use crate::loader::{self, LoadError};
use crate::model::Family;
use run_protocol::Method;
use serde::Serialize;
use std::path::Path;

/// The sentences a new model must classify before it is added.
pub const CHECK_SENTENCES: [&str; 2] = [
    "a gorgeous , witty , seductive movie .",
    "the movie was not good .",
];

/// Whether `dir` holds what an HF model folder needs: config, weights and tokenizer.
pub fn is_model_folder(dir: &Path) -> bool {
    missing_files(dir).is_empty()
}

/// The files an HF model folder needs that `dir` lacks, as people name them.
pub fn missing_files(dir: &Path) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !dir.join("config.json").is_file() {
        missing.push("config.json");
    }
    if !["model.safetensors", "pytorch_model.bin"]
        .iter()
        .any(|file| dir.join(file).is_file())
    {
        missing.push("model.safetensors or pytorch_model.bin");
    }
    if !dir.join("tokenizer.json").is_file() {
        missing.push("tokenizer.json");
    }
    missing
}

/// One model folder, described from its files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    /// The family, from `model_type`.
    pub family: Family,
    /// Parameters with a two-label head.
    pub params: usize,
    /// Rows of the token embedding (`vocab_size`).
    pub vocab_size: usize,
    /// The longest input in tokens the positions allow.
    pub max_len: usize,
    /// Bytes of every file in the folder.
    pub disk_bytes: u64,
}

/// Describes the model folder `dir` from its config and file sizes, without loading its
/// weights.
pub fn describe(dir: &Path) -> Result<ModelSummary, LoadError> {
    let config = loader::read_config(dir)?;
    Ok(ModelSummary {
        family: config.family,
        params: crate::train::param_counts(&config, 2, Method::Full).total,
        vocab_size: config.vocab_size,
        max_len: config.max_sequence_len(),
        disk_bytes: disk_bytes(dir),
    })
}

/// Loads the model folder `dir` on the CPU and classifies [`CHECK_SENTENCES`] with it:
/// what a folder must pass before teams may train it. The error says what is wrong.
pub fn check(dir: &Path) -> Result<ModelSummary, LoadError> {
    let summary = describe(dir)?;
    let predictor = Predictor::load(dir, None, &burn::tensor::Device::flex())?;
    for sentence in CHECK_SENTENCES {
        let prediction = predictor.predict(sentence)?;
        if prediction.logits.iter().any(|score| !score.is_finite()) {
            return Err(LoadError::Config(format!(
                "the model gives non-finite scores for \u{201c}{sentence}\u{201d}; its weights are damaged"
            )));
        }
    }
    Ok(summary)
}

/// Bytes of the regular files under `dir` (0 when it cannot be read).
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => disk_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn every_tiny_family_passes_the_check() {
        for (name, family) in [
            ("tiny-bert", Family::Bert),
            ("tiny-distilbert", Family::DistilBert),
            ("tiny-roberta", Family::Roberta),
            ("tiny-electra", Family::Electra),
            ("tiny-deberta-v3", Family::DebertaV2),
            ("tiny-deberta-v2", Family::DebertaV2),
        ] {
            let summary = check(&fixture(name)).unwrap();
            assert_eq!(summary.family, family, "{name}");
            assert!(
                summary.params > 10_000 && summary.vocab_size > 200,
                "{name}"
            );
            let files: u64 = std::fs::read_dir(fixture(name))
                .unwrap()
                .map(|entry| entry.unwrap().metadata().unwrap().len())
                .sum();
            assert_eq!(summary.disk_bytes, files, "{name}");
        }
    }

    #[test]
    fn a_folder_with_damaged_weights_fails_the_check() {
        let temp = tempfile::tempdir().unwrap();
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::copy(fixture("tiny-bert").join(file), temp.path().join(file)).unwrap();
        }
        let weights = temp.path().join("model.safetensors");
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        let error = check(temp.path()).unwrap_err().to_string();
        assert!(error.contains("truncated"), "{error}");
        std::fs::remove_file(temp.path().join("tokenizer.json")).unwrap();
        let error = check(temp.path()).unwrap_err().to_string();
        assert!(error.contains("tokenizer.json: file not found"), "{error}");
    }
}
