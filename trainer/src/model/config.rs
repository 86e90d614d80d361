//! Reading an HF `config.json` into the one shape our encoder needs, whatever the family.

use run_protocol::ModelShape;
use serde::Deserialize;
use std::path::Path;

pub use run_protocol::Family;

/// Architecture hyperparameters, normalised across families.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Which family's layout and head.
    pub family: Family,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads per layer.
    pub num_heads: usize,
    /// Feed-forward inner size.
    pub intermediate_size: usize,
    /// Position embeddings available.
    pub max_position_embeddings: usize,
    /// Token type (segment) vocabulary; 0 when the family has none.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout on embeddings, attention outputs and feed-forward outputs.
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Dropout before the classifier.
    pub classifier_dropout: f64,
    /// Padding token id (RoBERTa positions start after it).
    pub pad_token_id: usize,
}

impl EncoderConfig {
    /// The sizes that decide the parameter count.
    pub fn shape(&self) -> ModelShape {
        ModelShape {
            family: self.family,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_layers: self.num_layers,
            intermediate_size: self.intermediate_size,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
        }
    }

    /// The longest sequence the position embeddings allow.
    pub fn max_sequence_len(&self) -> usize {
        match self.family {
            Family::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id + 1),
            _ => self.max_position_embeddings,
        }
    }

    /// The first position id (RoBERTa counts from `pad_token_id + 1`).
    pub fn position_offset(&self) -> usize {
        match self.family {
            Family::Roberta => self.pad_token_id + 1,
            _ => 0,
        }
    }

    /// The HF `model_type` string of this family.
    pub fn model_type(&self) -> &'static str {
        match self.family {
            Family::Bert => "bert",
            Family::DistilBert => "distilbert",
            Family::Roberta => "roberta",
        }
    }
}

/// The fields of `config.json` we read; names differ between families.
#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    // BERT / RoBERTa names
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_dropout_prob: Option<f64>,
    attention_probs_dropout_prob: Option<f64>,
    classifier_dropout: Option<f64>,
    hidden_act: Option<String>,
    // DistilBERT names
    dim: Option<usize>,
    n_layers: Option<usize>,
    n_heads: Option<usize>,
    hidden_dim: Option<usize>,
    dropout: Option<f64>,
    attention_dropout: Option<f64>,
    seq_classif_dropout: Option<f64>,
    activation: Option<String>,
    // shared
    max_position_embeddings: Option<usize>,
    pad_token_id: Option<usize>,
}

/// Parses the text of a `config.json`; `origin` names the file in errors.
pub fn parse_config(text: &str, origin: &Path) -> Result<EncoderConfig, String> {
    let raw: RawConfig = serde_json::from_str(text)
        .map_err(|e| format!("{}: not a valid config: {e}", origin.display()))?;
    let missing = |field: &str| {
        format!(
            "{}: the field \u{201c}{field}\u{201d} is missing",
            origin.display()
        )
    };
    let model_type = raw
        .model_type
        .clone()
        .ok_or_else(|| missing("model_type"))?;
    let family = match model_type.as_str() {
        "bert" => Family::Bert,
        "distilbert" => Family::DistilBert,
        "roberta" => Family::Roberta,
        other => {
            return Err(format!(
                "{}: model_type \u{201c}{other}\u{201d} is not supported; use a BERT, DistilBERT or RoBERTa checkpoint",
                origin.display()
            ));
        }
    };
    let activation = raw
        .hidden_act
        .as_deref()
        .or(raw.activation.as_deref())
        .unwrap_or("gelu");
    if activation != "gelu" {
        return Err(format!(
            "{}: activation \u{201c}{activation}\u{201d} is not supported (only exact gelu)",
            origin.display()
        ));
    }
    let config = match family {
        Family::DistilBert => EncoderConfig {
            family,
            vocab_size: raw.vocab_size.ok_or_else(|| missing("vocab_size"))?,
            hidden_size: raw.dim.ok_or_else(|| missing("dim"))?,
            num_layers: raw.n_layers.ok_or_else(|| missing("n_layers"))?,
            num_heads: raw.n_heads.ok_or_else(|| missing("n_heads"))?,
            intermediate_size: raw.hidden_dim.ok_or_else(|| missing("hidden_dim"))?,
            max_position_embeddings: raw
                .max_position_embeddings
                .ok_or_else(|| missing("max_position_embeddings"))?,
            type_vocab_size: 0,
            layer_norm_eps: 1e-12,
            hidden_dropout: raw.dropout.unwrap_or(0.1),
            attention_dropout: raw.attention_dropout.unwrap_or(0.1),
            classifier_dropout: raw.seq_classif_dropout.unwrap_or(0.2),
            pad_token_id: raw.pad_token_id.unwrap_or(0),
        },
        Family::Bert | Family::Roberta => {
            let hidden_dropout = raw.hidden_dropout_prob.unwrap_or(0.1);
            EncoderConfig {
                family,
                vocab_size: raw.vocab_size.ok_or_else(|| missing("vocab_size"))?,
                hidden_size: raw.hidden_size.ok_or_else(|| missing("hidden_size"))?,
                num_layers: raw
                    .num_hidden_layers
                    .ok_or_else(|| missing("num_hidden_layers"))?,
                num_heads: raw
                    .num_attention_heads
                    .ok_or_else(|| missing("num_attention_heads"))?,
                intermediate_size: raw
                    .intermediate_size
                    .ok_or_else(|| missing("intermediate_size"))?,
                max_position_embeddings: raw
                    .max_position_embeddings
                    .ok_or_else(|| missing("max_position_embeddings"))?,
                type_vocab_size: raw.type_vocab_size.unwrap_or(2),
                layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-12),
                hidden_dropout,
                attention_dropout: raw.attention_probs_dropout_prob.unwrap_or(0.1),
                classifier_dropout: raw.classifier_dropout.unwrap_or(hidden_dropout),
                pad_token_id: raw.pad_token_id.unwrap_or(if family == Family::Roberta {
                    1
                } else {
                    0
                }),
            }
        }
    };
    validate(&config, origin)?;
    Ok(config)
}

fn validate(config: &EncoderConfig, origin: &Path) -> Result<(), String> {
    let bad = |what: String| Err(format!("{}: {what}", origin.display()));
    for (name, value) in [
        ("vocab_size", config.vocab_size),
        ("hidden size", config.hidden_size),
        ("number of layers", config.num_layers),
        ("number of heads", config.num_heads),
        ("intermediate size", config.intermediate_size),
        ("max_position_embeddings", config.max_position_embeddings),
    ] {
        if value == 0 || value > 1 << 20 {
            return bad(format!("{name} is {value}, which is not a usable size"));
        }
    }
    if !config.hidden_size.is_multiple_of(config.num_heads) {
        return bad(format!(
            "hidden size {} is not divisible by {} heads",
            config.hidden_size, config.num_heads
        ));
    }
    if config.max_sequence_len() < 3 {
        return bad("the position embeddings leave room for fewer than 3 tokens".into());
    }
    for (name, p) in [
        ("hidden dropout", config.hidden_dropout),
        ("attention dropout", config.attention_dropout),
        ("classifier dropout", config.classifier_dropout),
    ] {
        if !(0.0..1.0).contains(&p) {
            return bad(format!("{name} is {p}; it must be in [0, 1)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{"architectures":["BertModel"],"attention_probs_dropout_prob":0.1,"gradient_checkpointing":false,"hidden_act":"gelu","hidden_dropout_prob":0.1,"hidden_size":384,"initializer_range":0.02,"intermediate_size":1536,"layer_norm_eps":1e-12,"max_position_embeddings":512,"model_type":"bert","num_attention_heads":12,"num_hidden_layers":6,"pad_token_id":0,"position_embedding_type":"absolute","transformers_version":"4.8.2","type_vocab_size":2,"use_cache":true,"vocab_size":30522}"#;

    #[test]
    fn minilm_parses_as_a_bert() {
        let config = parse_config(MINILM, Path::new("config.json")).unwrap();
        assert_eq!(config.family, Family::Bert);
        assert_eq!(
            (config.hidden_size, config.num_layers, config.num_heads),
            (384, 6, 12)
        );
        assert_eq!(config.max_sequence_len(), 512);
    }

    #[test]
    fn distilbert_and_roberta_names_are_understood() {
        let distil = r#"{"model_type":"distilbert","vocab_size":100,"dim":32,"n_layers":2,"n_heads":4,"hidden_dim":64,"max_position_embeddings":64,"activation":"gelu"}"#;
        let config = parse_config(distil, Path::new("c.json")).unwrap();
        assert_eq!(
            (config.family, config.hidden_size, config.type_vocab_size),
            (Family::DistilBert, 32, 0)
        );
        let roberta = r#"{"model_type":"roberta","vocab_size":100,"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":64,"max_position_embeddings":66,"type_vocab_size":1,"pad_token_id":1,"layer_norm_eps":1e-5}"#;
        let config = parse_config(roberta, Path::new("c.json")).unwrap();
        assert_eq!(
            (config.position_offset(), config.max_sequence_len()),
            (2, 64)
        );
    }

    #[test]
    fn bad_configs_name_the_file_and_the_field() {
        let error = parse_config("{", Path::new("m/config.json")).unwrap_err();
        assert!(
            error.starts_with("m/config.json: not a valid config"),
            "{error}"
        );
        let error = parse_config(r#"{"model_type":"gpt2"}"#, Path::new("config.json")).unwrap_err();
        assert!(error.contains("gpt2"), "{error}");
        let error = parse_config(
            r#"{"model_type":"bert","vocab_size":10}"#,
            Path::new("config.json"),
        )
        .unwrap_err();
        assert!(error.contains("hidden_size"), "{error}");
        let odd_heads = MINILM.replace("\"num_attention_heads\":12", "\"num_attention_heads\":7");
        assert!(
            parse_config(&odd_heads, Path::new("config.json"))
                .unwrap_err()
                .contains("divisible")
        );
        let zero = MINILM.replace("\"hidden_size\":384", "\"hidden_size\":0");
        assert!(parse_config(&zero, Path::new("config.json")).is_err());
    }
}
