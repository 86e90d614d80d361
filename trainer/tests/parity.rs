//! Numerical parity with HF transformers (eager attention, fp32, CPU), against fixtures
//! computed by `fixtures/make_fixtures.py`, and the loader's answers to broken checkpoints.

use burn::tensor::{Device, Tensor};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use trainer::inference::Predictor;
use trainer::loader;
use trainer::model::{BatchTensors, SequenceClassifier};
use trainer::tokenize::{TokenBatch, pad};

/// This package's directory, read when the test runs (cargo sets it), so a test binary
/// built from another checkout sharing the target directory still finds its files.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    manifest_dir().join("tests/fixtures")
}

/// The default model `make setup` installs.
fn minilm_dir() -> PathBuf {
    let models = std::env::var_os("JIGSAW_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../data/models"));
    let dir = models.join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the default model is missing at {}; run `make setup`",
        dir.display()
    );
    dir
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap()
}

fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let worst = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < TOLERANCE,
        "{what}: max abs difference {worst:e} exceeds {TOLERANCE:e}"
    );
}

fn flatten(nested: &serde_json::Value) -> Vec<f32> {
    match nested {
        serde_json::Value::Array(items) => items.iter().flat_map(flatten).collect(),
        serde_json::Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("unexpected fixture value {other}"),
    }
}

#[derive(Deserialize)]
struct MiniLmFixture {
    sentences: Vec<SentenceFixture>,
}

#[derive(Deserialize)]
struct SentenceFixture {
    text: String,
    tokens: Vec<String>,
    input_ids: Vec<u32>,
    cls: Vec<f32>,
    mean_pooled: Vec<f32>,
    attentions: serde_json::Value,
}

#[test]
fn minilm_matches_transformers_token_for_token_and_within_1e_4() {
    let device = Device::flex();
    let loaded = loader::load(&minilm_dir(), 2, 512, &device).unwrap();
    let fixture: MiniLmFixture = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("minilm_parity.json")).unwrap(),
    )
    .unwrap();
    assert!(fixture.sentences.len() >= 3);
    for sentence in fixture.sentences {
        let encoding = loaded.tokenizer.encode(&sentence.text).unwrap();
        assert_eq!(encoding.tokens, sentence.tokens, "{}", sentence.text);
        assert_eq!(encoding.ids, sentence.input_ids, "{}", sentence.text);
        let batch = BatchTensors::new(&pad(&[encoding], loaded.tokenizer.pad_id()), &device);
        let output = loaded.model.encode(&batch, true);
        let what = |part: &str| format!("{part} of \u{201c}{}\u{201d}", sentence.text);
        assert_close(
            &values(SequenceClassifier::first_token(&output.hidden)),
            &sentence.cls,
            &what("[CLS]"),
        );
        assert_close(
            &values(SequenceClassifier::mean_pooled(&output.hidden, &batch.mask)),
            &sentence.mean_pooled,
            &what("mean-pooled vector"),
        );
        let attentions: Vec<f32> = output.attentions.into_iter().flat_map(values).collect();
        assert_close(
            &attentions,
            &flatten(&sentence.attentions),
            &what("attention probabilities"),
        );
    }
}

#[test]
fn inspect_reports_what_transformers_computes() {
    let fixture: MiniLmFixture = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("minilm_parity.json")).unwrap(),
    )
    .unwrap();
    let predictor = Predictor::load(&minilm_dir(), None, &Device::flex()).unwrap();
    let sentence = &fixture.sentences[0];
    let inspection = predictor.inspect(&sentence.text).unwrap();
    assert_eq!(inspection.tokens, sentence.tokens);
    assert_eq!(inspection.ids, sentence.input_ids);
    assert_close(&inspection.cls, &sentence.cls, "inspect [CLS]");
    assert_close(&inspection.mean, &sentence.mean_pooled, "inspect mean");
    let seq = sentence.tokens.len();
    assert_eq!(inspection.attentions.len(), 6);
    assert!(
        inspection
            .attentions
            .iter()
            .all(|layer| layer.len() == 12 && layer.iter().all(|head| head.len() == seq))
    );
    let attentions: Vec<f32> = inspection.attentions.concat().concat().concat();
    assert_close(
        &attentions,
        &flatten(&sentence.attentions),
        "inspect attentions",
    );
}

#[test]
fn unhappiness_splits_into_known_pieces() {
    let loaded = loader::load(&minilm_dir(), 2, 128, &Device::flex()).unwrap();
    let encoding = loaded.tokenizer.encode("unhappiness").unwrap();
    assert_eq!(
        encoding.tokens,
        ["[CLS]", "un", "##ha", "##pp", "##iness", "[SEP]"]
    );
    let long = "good ".repeat(400);
    let encoding = loaded.tokenizer.encode(&long).unwrap();
    assert!(encoding.truncated);
    assert_eq!(encoding.ids.len(), 128);
    assert_eq!(encoding.tokens.last().map(String::as_str), Some("[SEP]"));
}

#[derive(Deserialize)]
struct TinyFixture {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    #[serde(default)]
    token_type_ids: Option<Vec<Vec<u32>>>,
    logits: Vec<Vec<f32>>,
    cls_hidden: Vec<Vec<f32>>,
    attentions: serde_json::Value,
}

fn tiny_batch(fixture: &TinyFixture) -> TokenBatch {
    let rows = fixture.input_ids.len();
    let seq_len = fixture.input_ids[0].len();
    TokenBatch {
        ids: fixture.input_ids.concat(),
        type_ids: fixture
            .token_type_ids
            .clone()
            .map_or_else(|| vec![0; rows * seq_len], |t| t.concat()),
        mask: fixture.attention_mask.concat(),
        batch_size: rows,
        seq_len,
    }
}

fn check_tiny(name: &str) {
    check_tiny_in(name, &fixtures().join(name));
}

/// Checks the model in `dir` against the reference numbers of the tiny model `name`.
fn check_tiny_in(name: &str, dir: &Path) {
    let all: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny_reference.json")).unwrap(),
    )
    .unwrap();
    let fixture: TinyFixture = serde_json::from_value(all[name].clone()).unwrap();
    let device = Device::flex();
    let loaded = loader::load(dir, 2, 32, &device).unwrap();
    assert!(
        loaded.report.initialized.is_empty(),
        "{name}: {:?}",
        loaded.report
    );
    let batch = BatchTensors::new(&tiny_batch(&fixture), &device);
    let output = loaded.model.encode(&batch, true);
    let cls = values(SequenceClassifier::first_token(&output.hidden));
    assert_close(
        &cls,
        &fixture.cls_hidden.concat(),
        &format!("{name} first-token vectors"),
    );
    let logits = values(
        loaded
            .model
            .head
            .forward(SequenceClassifier::first_token(&output.hidden)),
    );
    assert_close(&logits, &fixture.logits.concat(), &format!("{name} logits"));
    // Fixture attentions are [layer][batch][head][q][k]; ours are per layer [batch, head, q, k].
    let attentions: Vec<f32> = output.attentions.into_iter().flat_map(values).collect();
    assert_close(
        &attentions,
        &flatten(&fixture.attentions),
        &format!("{name} attentions"),
    );
}

#[test]
fn tiny_bert_matches_transformers() {
    check_tiny("tiny-bert");
}

#[test]
fn tiny_distilbert_matches_transformers() {
    check_tiny("tiny-distilbert");
}

#[test]
fn tiny_roberta_matches_transformers() {
    check_tiny("tiny-roberta");
}

#[test]
fn tiny_electra_matches_transformers() {
    check_tiny("tiny-electra");
}

/// DeBERTa-v3's settings: log-bucketed relative positions shared through the query and
/// key projections, no absolute positions, embeddings projected up to the hidden size.
#[test]
fn tiny_deberta_v3_matches_transformers() {
    check_tiny("tiny-deberta-v3");
}

/// DeBERTa-v2's other branches: absolute positions and segments, positions with their own
/// projections, plain clamped distances, no LayerNorm on the relative table.
#[test]
fn tiny_deberta_v2_matches_transformers() {
    check_tiny("tiny-deberta-v2");
}

/// Every tiny model, each family's branches covered.
const TINY_MODELS: [&str; 6] = [
    "tiny-bert",
    "tiny-distilbert",
    "tiny-roberta",
    "tiny-electra",
    "tiny-deberta-v3",
    "tiny-deberta-v2",
];

/// The parameter arithmetic the web pages show agrees with the model the engine builds,
/// for every family, fully fine-tuned and under LoRA.
#[test]
fn parameter_counts_match_the_built_models() {
    use burn::module::Module;
    use run_protocol::{LoraSettings, Method};
    for name in TINY_MODELS {
        let device = Device::flex();
        let loaded = loader::load(&fixtures().join(name), 2, 32, &device).unwrap();
        let counts = trainer::train::param_counts(&loaded.config, 2, Method::Full);
        assert_eq!(counts.total, loaded.model.num_params(), "{name}");
        let lora = LoraSettings::new(4, 8.0);
        let adapted = loaded.model.with_lora(lora, &device);
        let counts = trainer::train::param_counts(&loaded.config, 2, Method::Lora(lora));
        assert_eq!(counts.total, adapted.num_params(), "{name} with LoRA");
    }
}

/// A temporary copy of the tiny model `name` whose weights are only `pytorch_model.bin`.
fn pickle_only_copy(name: &str) -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "pytorch_model.bin"] {
        std::fs::copy(fixtures().join(name).join(file), temp.path().join(file)).unwrap();
    }
    temp
}

#[test]
fn pytorch_model_bin_loads_the_same_weights_for_every_family() {
    for name in TINY_MODELS {
        check_tiny_in(name, pickle_only_copy(name).path());
    }
}

#[test]
fn a_broken_pytorch_model_bin_is_reported_not_a_panic() {
    let temp = pickle_only_copy("tiny-bert");
    let path = temp.path().join("pytorch_model.bin");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = load_error(temp.path());
    assert!(
        error.contains("pytorch_model.bin") && error.contains("truncated"),
        "{error}"
    );
    std::fs::remove_file(&path).unwrap();
    let error = load_error(temp.path());
    assert!(
        error.contains("model.safetensors") && error.contains("pytorch_model.bin"),
        "{error}"
    );
}

/// A temporary directory with tiny-bert's config and tokenizer but no weights yet.
fn tiny_bert_without_weights() -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(
            fixtures().join("tiny-bert").join(file),
            temp.path().join(file),
        )
        .unwrap();
    }
    temp
}

/// Copies `tiny-bert` to a temporary directory and lets `edit` rewrite its safetensors
/// header (a JSON object of tensor entries) before writing a consistent file back: the data
/// of each remaining entry is copied and its offsets recomputed.
fn broken_copy(
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> tempfile::TempDir {
    let temp = tiny_bert_without_weights();
    let bytes = std::fs::read(fixtures().join("tiny-bert/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data = &bytes[8 + header_len..];
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    header.remove("__metadata__");
    edit(&mut header);
    let mut new_data = Vec::new();
    for entry in header.values_mut() {
        let offsets = entry["data_offsets"].as_array().unwrap();
        let (start, end) = (
            offsets[0].as_u64().unwrap() as usize,
            offsets[1].as_u64().unwrap() as usize,
        );
        let new_start = new_data.len();
        new_data.extend_from_slice(&data[start..end]);
        entry["data_offsets"] = serde_json::json!([new_start, new_data.len()]);
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&new_data);
    std::fs::write(temp.path().join("model.safetensors"), out).unwrap();
    temp
}

fn load_error(dir: &Path) -> String {
    match loader::load(dir, 2, 32, &Device::flex()) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(error) => error.to_string(),
    }
}

const QUERY: &str = "bert.encoder.layer.0.attention.self.query.weight";

#[test]
fn a_missing_tensor_is_named() {
    let dir = broken_copy(|h| {
        h.remove(QUERY).unwrap();
    });
    let error = load_error(dir.path());
    assert!(
        error.contains("model.safetensors")
            && error.contains("layers.0.attention.query.weight")
            && error.contains("missing"),
        "{error}"
    );
}

#[test]
fn an_unexpected_tensor_is_named() {
    let dir = broken_copy(|h| {
        let entry = h.get(QUERY).unwrap().clone();
        h.insert(
            "bert.encoder.layer.0.attention.self.gate.weight".into(),
            entry,
        );
    });
    let error = load_error(dir.path());
    assert!(
        error.contains("attention.self.gate.weight") && error.contains("unexpected"),
        "{error}"
    );
}

#[test]
fn shape_and_dtype_mismatches_are_named() {
    let dir = broken_copy(|h| {
        h.get_mut(QUERY).unwrap()["shape"] = serde_json::json!([16, 64]);
    });
    let error = load_error(dir.path());
    assert!(error.contains(QUERY) && error.contains("shape"), "{error}");
    let dir = broken_copy(|h| {
        h.get_mut(QUERY).unwrap()["dtype"] = serde_json::json!("I32");
    });
    let error = load_error(dir.path());
    assert!(error.contains(QUERY) && error.contains("I32"), "{error}");
}

#[test]
fn a_truncated_file_is_reported_not_a_panic() {
    let temp = tiny_bert_without_weights();
    let bytes = std::fs::read(fixtures().join("tiny-bert/model.safetensors")).unwrap();
    std::fs::write(
        temp.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let error = load_error(temp.path());
    assert!(
        error.contains("model.safetensors") && error.contains("truncated"),
        "{error}"
    );
    std::fs::write(temp.path().join("model.safetensors"), &bytes[..4]).unwrap();
    assert!(load_error(temp.path()).contains("too short"));
}

#[test]
fn bad_configs_and_missing_files_are_reported() {
    let temp = tempfile::tempdir().unwrap();
    let error = load_error(temp.path());
    assert!(error.contains("config.json: file not found"), "{error}");
    std::fs::write(temp.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let error = load_error(temp.path());
    assert!(
        error.contains("config.json") && error.contains("gpt2"),
        "{error}"
    );
    std::fs::copy(
        fixtures().join("tiny-bert/config.json"),
        temp.path().join("config.json"),
    )
    .unwrap();
    let error = load_error(temp.path());
    assert!(error.contains("tokenizer.json: file not found"), "{error}");
}

#[test]
fn a_base_checkpoint_gets_a_fresh_head() {
    let dir = broken_copy(|h| {
        h.retain(|key, _| !key.starts_with("classifier."));
    });
    let loaded = loader::load(dir.path(), 2, 32, &Device::flex()).unwrap();
    assert_eq!(
        loaded.report.initialized,
        ["head.out.bias", "head.out.weight"]
    );
}

/// The tensor names of a safetensors file (its header's keys, buffers left out).
fn safetensors_keys(path: &Path) -> std::collections::BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap();
    let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + length]).unwrap();
    header
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key != "__metadata__" && !key.ends_with("position_ids"))
        .collect()
}

#[test]
fn exported_hf_directories_load_back_with_the_same_logits() {
    let all: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny_reference.json")).unwrap(),
    )
    .unwrap();
    for name in TINY_MODELS {
        let fixture: TinyFixture = serde_json::from_value(all[name].clone()).unwrap();
        let device = Device::flex();
        let source = fixtures().join(name);
        let original = loader::load(&source, 2, 32, &device).unwrap();
        let out = tempfile::tempdir().unwrap();
        trainer::export::export_hf(&original.model, original.config.family, &source, out.path())
            .unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["id2label"]["1"], "positive", "{name}");
        // Under transformers' own names, prefix included: the fixture's key set exactly.
        assert_eq!(
            safetensors_keys(&out.path().join("model.safetensors")),
            safetensors_keys(&source.join("model.safetensors")),
            "{name}"
        );
        let exported = loader::load(out.path(), 2, 32, &device).unwrap();
        assert!(
            exported.report.initialized.is_empty() && exported.report.ignored.is_empty(),
            "{name}: {:?}",
            exported.report
        );
        let batch = BatchTensors::new(&tiny_batch(&fixture), &device);
        assert_close(
            &values(exported.model.forward(&batch)),
            &fixture.logits.concat(),
            &format!("{name} logits after export"),
        );
    }
}
