//! Writing a fine-tuned model as an HF directory (`config.json` with the SST-2 labels,
//! `model.safetensors` under the family's own key names, `tokenizer.json`), which HF
//! transformers loads with `AutoModelForSequenceClassification`. LoRA branches are merged
//! into the weights first.

use crate::data::LABELS;
use crate::model::{Family, SequenceClassifier};
use burn::store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};
use std::path::{Path, PathBuf};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot export to {path}: {reason}")]
pub struct ExportError {
    /// The file being written or read.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Our module paths back to each family's checkpoint names, applied in order. burn's
/// adapter has already renamed LayerNorm's gamma/beta to weight/bias.
fn rules(family: Family) -> Vec<(&'static str, String)> {
    let bert_layers = |attention_self: &'static str| {
        vec![
            (
                r"^layers\.(\d+)\.attention\.(query|key|value)\.",
                attention_self,
            ),
            (
                r"^layers\.(\d+)\.attention\.output\.",
                "encoder.layer.$1.attention.output.dense.",
            ),
            (
                r"^layers\.(\d+)\.attention\.norm\.",
                "encoder.layer.$1.attention.output.LayerNorm.",
            ),
            (
                r"^layers\.(\d+)\.ffn_in\.",
                "encoder.layer.$1.intermediate.dense.",
            ),
            (
                r"^layers\.(\d+)\.ffn_out\.",
                "encoder.layer.$1.output.dense.",
            ),
            (
                r"^layers\.(\d+)\.ffn_norm\.",
                "encoder.layer.$1.output.LayerNorm.",
            ),
        ]
    };
    let (prefix, per_family): (&str, Vec<(&str, &str)>) = match family {
        Family::Bert => ("bert.", bert_layers("encoder.layer.$1.attention.self.$2.")),
        Family::Roberta => (
            "roberta.",
            bert_layers("encoder.layer.$1.attention.self.$2."),
        ),
        Family::Electra => {
            let mut rules = bert_layers("encoder.layer.$1.attention.self.$2.");
            rules.push((r"^embeddings\.projection\.", "embeddings_project."));
            ("electra.", rules)
        }
        Family::DebertaV2 => {
            let mut rules = bert_layers("encoder.layer.$1.attention.self.${2}_proj.");
            rules.extend([
                (
                    r"^layers\.(\d+)\.attention\.position_(query|key)\.",
                    "encoder.layer.$1.attention.self.pos_${2}_proj.",
                ),
                (r"^embeddings\.projection\.", "embeddings.embed_proj."),
                (r"^relative\.table\.", "encoder.rel_embeddings."),
                (r"^relative\.norm\.", "encoder.LayerNorm."),
            ]);
            ("deberta.", rules)
        }
        Family::DistilBert => (
            "distilbert.",
            vec![
                (
                    r"^layers\.(\d+)\.attention\.query\.",
                    "transformer.layer.$1.attention.q_lin.",
                ),
                (
                    r"^layers\.(\d+)\.attention\.key\.",
                    "transformer.layer.$1.attention.k_lin.",
                ),
                (
                    r"^layers\.(\d+)\.attention\.value\.",
                    "transformer.layer.$1.attention.v_lin.",
                ),
                (
                    r"^layers\.(\d+)\.attention\.output\.",
                    "transformer.layer.$1.attention.out_lin.",
                ),
                (
                    r"^layers\.(\d+)\.attention\.norm\.",
                    "transformer.layer.$1.sa_layer_norm.",
                ),
                (
                    r"^layers\.(\d+)\.ffn_in\.",
                    "transformer.layer.$1.ffn.lin1.",
                ),
                (
                    r"^layers\.(\d+)\.ffn_out\.",
                    "transformer.layer.$1.ffn.lin2.",
                ),
                (
                    r"^layers\.(\d+)\.ffn_norm\.",
                    "transformer.layer.$1.output_layer_norm.",
                ),
            ],
        ),
    };
    // The head's layers, outside the family prefix except BERT's pooler.
    let head: [(&str, String); 2] = match family {
        Family::Bert => [
            (r"^head\.dense\.", format!("{prefix}pooler.dense.")),
            (r"^head\.out\.", "classifier.".into()),
        ],
        Family::DistilBert => [
            (r"^head\.dense\.", "pre_classifier.".into()),
            (r"^head\.out\.", "classifier.".into()),
        ],
        Family::Roberta | Family::Electra => [
            (r"^head\.dense\.", "classifier.dense.".into()),
            (r"^head\.out\.", "classifier.out_proj.".into()),
        ],
        Family::DebertaV2 => [
            (r"^head\.dense\.", "pooler.dense.".into()),
            (r"^head\.out\.", "classifier.".into()),
        ],
    };
    let mut rules: Vec<(&'static str, String)> = vec![
        (r"^embeddings\.word\.", "embeddings.word_embeddings.".into()),
        (
            r"^embeddings\.position\.",
            "embeddings.position_embeddings.".into(),
        ),
        (
            r"^embeddings\.token_type\.",
            "embeddings.token_type_embeddings.".into(),
        ),
        (r"^embeddings\.norm\.", "embeddings.LayerNorm.".into()),
    ];
    rules.extend(
        per_family
            .into_iter()
            .map(|(from, to)| (from, to.to_string())),
    );
    rules.extend(head);
    // Everything but the head lives under the family prefix.
    rules.push((
        r"^(embeddings|embeddings_project|encoder|transformer)\.",
        format!("{prefix}$1."),
    ));
    rules
}

/// Writes `model` (fine-tuned from the HF directory `source`) to `out` as an HF directory.
pub fn export_hf(
    model: &SequenceClassifier,
    family: Family,
    source: &Path,
    out: &Path,
) -> Result<(), ExportError> {
    let fail = |path: &Path, reason: String| ExportError {
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(out).map_err(|e| fail(out, e.to_string()))?;

    let config_path = source.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| fail(&config_path, e.to_string()))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(&config_path, e.to_string()))?;
    let object = config
        .as_object_mut()
        .ok_or_else(|| fail(&config_path, "the config is not a JSON object".into()))?;
    let architecture = match family {
        Family::Bert => "BertForSequenceClassification",
        Family::DistilBert => "DistilBertForSequenceClassification",
        Family::Roberta => "RobertaForSequenceClassification",
        Family::Electra => "ElectraForSequenceClassification",
        Family::DebertaV2 => "DebertaV2ForSequenceClassification",
    };
    object.insert("architectures".into(), serde_json::json!([architecture]));
    object.insert(
        "id2label".into(),
        LABELS
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), serde_json::json!(l)))
            .collect(),
    );
    object.insert(
        "label2id".into(),
        LABELS
            .iter()
            .enumerate()
            .map(|(i, l)| (l.to_string(), serde_json::json!(i)))
            .collect(),
    );
    object.insert(
        "problem_type".into(),
        serde_json::json!("single_label_classification"),
    );
    let config_out = out.join("config.json");
    let pretty =
        serde_json::to_string_pretty(&config).map_err(|e| fail(&config_out, e.to_string()))?;
    std::fs::write(&config_out, pretty + "\n").map_err(|e| fail(&config_out, e.to_string()))?;

    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "spm.model",
    ] {
        let from = source.join(name);
        if from.is_file() {
            std::fs::copy(&from, out.join(name)).map_err(|e| fail(&from, e.to_string()))?;
        }
    }

    let weights = out.join("model.safetensors");
    let remapper =
        KeyRemapper::from_patterns(rules(family)).map_err(|e| fail(&weights, e.to_string()))?;
    let mut store = SafetensorsStore::from_file(&weights)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remapper)
        .metadata("format", "pt");
    model
        .clone()
        .merge_lora()
        .save_into(&mut store)
        .map_err(|e| fail(&weights, e.to_string()))?;
    Ok(())
}
