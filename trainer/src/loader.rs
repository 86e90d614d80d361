//! Loading an HF model directory (`config.json`, `model.safetensors` or `pytorch_model.bin`,
//! `tokenizer.json`) into a [`SequenceClassifier`]. The checkpoint key names of every
//! family are mapped onto our module tree in the `keys` module, and nowhere else.
//!
//! `pytorch_model.bin` is read by burn's pickle reader, which understands the tensors and
//! dictionaries `torch.save` writes and never runs code from the file.
//!
//! Every problem is a [`LoadError`] that names the file and, where there is one, the tensor.

use crate::model::{EncoderConfig, SequenceClassifier, config::parse_config};
use crate::tokenize::{TextEncoder, TokenizeError};
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{
    FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};
use burn::tensor::{DType, Device};
use regex::Regex;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

mod keys;

use keys::{expected_shapes, ignorable, map_key, rules};

/// Why a model directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A required file is absent.
    #[error("{0}: file not found")]
    Missing(PathBuf),
    /// `config.json` is unreadable or describes something we cannot build.
    #[error("{0}")]
    Config(String),
    /// The weights file is unreadable or does not fit the configuration.
    #[error("{path}{}: {reason}", key.as_ref().map(|k| format!(", tensor \u{201c}{k}\u{201d}")).unwrap_or_default())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// The tensor at fault, if one is.
        key: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// `tokenizer.json` could not be used.
    #[error(transparent)]
    Tokenizer(#[from] TokenizeError),
}

/// What loading did, for logs and the UI.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Tensors loaded from the checkpoint.
    pub loaded: usize,
    /// Parameters the checkpoint lacked and that start from random values (a new head).
    pub initialized: Vec<String>,
    /// Checkpoint tensors not used (position ids, pre-training heads).
    pub ignored: Vec<String>,
}

/// A model ready to train or run, with its tokenizer.
#[derive(Debug)]
pub struct LoadedModel {
    /// The network.
    pub model: SequenceClassifier,
    /// Its architecture.
    pub config: EncoderConfig,
    /// Its tokenizer, truncating to the requested length.
    pub tokenizer: TextEncoder,
    /// What loading did.
    pub report: LoadReport,
}

/// Reads only `config.json` of a model directory.
pub fn read_config(dir: &Path) -> Result<EncoderConfig, LoadError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::Missing(path.clone()),
        _ => LoadError::Config(format!("{}: {e}", path.display())),
    })?;
    parse_config(&text, &path).map_err(LoadError::Config)
}

/// Loads the model in `dir` with a `num_labels`-way head, its tokenizer truncating at
/// `max_len` tokens (at most what the position embeddings allow).
pub fn load(
    dir: &Path,
    num_labels: usize,
    max_len: usize,
    device: &Device,
) -> Result<LoadedModel, LoadError> {
    let config = read_config(dir)?;
    if max_len > config.max_sequence_len() {
        return Err(LoadError::Config(format!(
            "{}: max_len {max_len} is longer than the model's {} positions",
            dir.join("config.json").display(),
            config.max_sequence_len()
        )));
    }
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(LoadError::Missing(tokenizer_path));
    }
    let tokenizer = TextEncoder::from_file(&tokenizer_path, max_len)?;
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(LoadError::Config(format!(
            "{}: the tokenizer has {} tokens but the model's vocabulary holds {}",
            tokenizer_path.display(),
            tokenizer.vocab_size(),
            config.vocab_size
        )));
    }
    let mut model = SequenceClassifier::new(&config, num_labels, device);
    let report = load_weights(&mut model, &config, num_labels, &WeightsFile::find(dir)?)?;
    Ok(LoadedModel {
        model,
        config,
        tokenizer,
        report,
    })
}

/// The weights file of a model directory, in either format HF writes.
enum WeightsFile {
    /// `model.safetensors`, preferred when both are present.
    Safetensors(PathBuf),
    /// `pytorch_model.bin`.
    Pytorch(PathBuf),
}

impl WeightsFile {
    /// The weights file in `dir`.
    fn find(dir: &Path) -> Result<Self, LoadError> {
        let safetensors = dir.join("model.safetensors");
        let pytorch = dir.join("pytorch_model.bin");
        if safetensors.is_file() {
            Ok(Self::Safetensors(safetensors))
        } else if pytorch.is_file() {
            Ok(Self::Pytorch(pytorch))
        } else {
            Err(LoadError::Weights {
                path: safetensors,
                key: None,
                reason: "file not found, and there is no pytorch_model.bin either".into(),
            })
        }
    }

    fn path(&self) -> &Path {
        match self {
            Self::Safetensors(path) | Self::Pytorch(path) => path,
        }
    }

    /// Every tensor's name, dtype and shape, checked to lie inside the file.
    fn tensors(&self) -> Result<BTreeMap<String, TensorInfo>, LoadError> {
        match self {
            Self::Safetensors(path) => read_header(path),
            Self::Pytorch(path) => read_pickle_index(path),
        }
    }

    /// Loads the tensors into `model`, renaming keys with `remapper`.
    fn load_into(
        &self,
        model: &mut SequenceClassifier,
        remapper: KeyRemapper,
    ) -> Result<burn::store::ApplyResult, String> {
        match self {
            Self::Safetensors(path) => {
                let mut store = SafetensorsStore::from_file(path)
                    .remap(remapper)
                    .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
                    .allow_partial(true);
                model.load_from(&mut store).map_err(|e| e.to_string())
            }
            Self::Pytorch(path) => {
                // The PyTorch store applies PyTorchToBurnAdapter itself.
                let mut store = PytorchStore::from_file(path)
                    .remap(remapper)
                    .allow_partial(true);
                model.load_from(&mut store).map_err(|e| e.to_string())
            }
        }
    }
}

/// One tensor of a checkpoint as its index describes it.
#[derive(Debug)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
}

/// Lists the tensors of a `pytorch_model.bin` without reading their data.
fn read_pickle_index(path: &Path) -> Result<BTreeMap<String, TensorInfo>, LoadError> {
    let reader = PytorchReader::new(path).map_err(|e| LoadError::Weights {
        path: path.to_path_buf(),
        key: None,
        reason: format!("not a readable PyTorch checkpoint ({e}); is it truncated?"),
    })?;
    Ok(reader
        .tensors()
        .iter()
        .map(|(name, tensor)| {
            (
                name.clone(),
                TensorInfo {
                    dtype: format!("{:?}", tensor.dtype()),
                    shape: tensor.shape().to_vec(),
                },
            )
        })
        .collect())
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Reads and checks a safetensors header: names, dtypes, shapes, and that every tensor's
/// bytes are inside the file (a truncated download is caught here).
fn read_header(path: &Path) -> Result<BTreeMap<String, TensorInfo>, LoadError> {
    let fail = |key: Option<&str>, reason: String| LoadError::Weights {
        path: path.to_path_buf(),
        key: key.map(str::to_string),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::Missing(path.to_path_buf()),
        _ => fail(None, e.to_string()),
    })?;
    let file_len = file
        .metadata()
        .map_err(|e| fail(None, e.to_string()))?
        .len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| {
        fail(
            None,
            "the file is too short to be a safetensors file".into(),
        )
    })?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > 100 << 20 || 8 + header_len > file_len {
        return Err(fail(
            None,
            format!(
                "the header claims {header_len} bytes but the file has {file_len}; it is truncated or not a safetensors file"
            ),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| fail(None, e.to_string()))?;
    let mut entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| fail(None, format!("the header is not valid JSON: {e}")))?;
    entries.remove("__metadata__");
    let data_len = file_len - 8 - header_len;
    let mut parsed = BTreeMap::new();
    for (key, value) in entries {
        let entry: HeaderEntry = serde_json::from_value(value)
            .map_err(|e| fail(Some(&key), format!("malformed header entry: {e}")))?;
        let [start, end] = entry.data_offsets;
        if start > end || end > data_len {
            return Err(fail(
                Some(&key),
                format!(
                    "its data ends at byte {end} but the file holds only {data_len} bytes of data; the file is truncated"
                ),
            ));
        }
        parsed.insert(
            key,
            TensorInfo {
                dtype: entry.dtype,
                shape: entry.shape,
            },
        );
    }
    Ok(parsed)
}

/// Checks the checkpoint against the model, then loads it into `model`.
fn load_weights(
    model: &mut SequenceClassifier,
    config: &EncoderConfig,
    num_labels: usize,
    weights: &WeightsFile,
) -> Result<LoadReport, LoadError> {
    let path = weights.path();
    let header = weights.tensors()?;
    let fail = |key: &str, reason: String| LoadError::Weights {
        path: path.to_path_buf(),
        key: Some(key.to_string()),
        reason,
    };
    let compiled: Vec<(Regex, String)> = rules(config.family)
        .iter()
        .map(|(from, to)| {
            (
                Regex::new(from).expect("the key rules are valid regexes"),
                to.to_string(),
            )
        })
        .collect();
    let expected = expected_shapes(config, num_labels);
    let mut report = LoadReport::default();
    let mut found = BTreeMap::new();
    let mut skip_head = Vec::new();
    for (key, entry) in &header {
        if ignorable(config, key) {
            report.ignored.push(key.clone());
            continue;
        }
        let target = map_key(&compiled, key);
        if !expected.contains_key(&target) {
            return Err(fail(
                key,
                format!("unexpected tensor for a {} model", config.model_type()),
            ));
        }
        if !matches!(entry.dtype.as_str(), "F32" | "F16" | "BF16") {
            return Err(fail(
                key,
                format!("dtype {} is not a floating-point type", entry.dtype),
            ));
        }
        let want = &expected[&target];
        if &entry.shape != want {
            if target.starts_with("head.") {
                // A head trained for another label count: start a fresh one.
                skip_head.push(key.clone());
                report.ignored.push(key.clone());
                continue;
            }
            return Err(fail(
                key,
                format!(
                    "shape {:?} does not match the configuration's {:?}",
                    entry.shape, want
                ),
            ));
        }
        found.insert(target, key.clone());
    }
    for target in expected.keys() {
        if !found.contains_key(target) {
            if target.starts_with("head.") {
                report.initialized.push(target.clone());
            } else {
                return Err(LoadError::Weights {
                    path: path.to_path_buf(),
                    key: Some(target.clone()),
                    reason: "missing from the checkpoint".into(),
                });
            }
        }
    }

    let mut remapper = compiled;
    for key in skip_head.iter().chain(report.ignored.iter()) {
        // Send unused tensors to a name no parameter has, so they are never read.
        remapper.insert(
            0,
            (
                Regex::new(&format!("^{}$", regex::escape(key))).expect("escaped"),
                format!("unused.{key}"),
            ),
        );
    }
    let result = weights
        .load_into(model, KeyRemapper::from_compiled_patterns(remapper))
        .map_err(|reason| LoadError::Weights {
            path: path.to_path_buf(),
            key: None,
            reason,
        })?;
    if let Some(error) = result.errors.first() {
        return Err(LoadError::Weights {
            path: path.to_path_buf(),
            key: None,
            reason: error.to_string(),
        });
    }
    report.loaded = result.applied.len();
    if report.loaded != found.len() {
        return Err(LoadError::Weights {
            path: path.to_path_buf(),
            key: None,
            reason: format!(
                "{} tensors matched but {} were loaded",
                found.len(),
                report.loaded
            ),
        });
    }
    Ok(report)
}
