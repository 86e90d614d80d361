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
    /// Dropout on the first token before the head's dense layer (RoBERTa, ELECTRA and
    /// DeBERTa have one; 0 for BERT and DistilBERT).
    pub head_input_dropout: f64,
    /// Padding token id (RoBERTa positions start after it).
    pub pad_token_id: usize,
    /// Width of the token embeddings; smaller than the hidden size where ELECTRA or DeBERTa
    /// project them up.
    pub embedding_size: usize,
    /// Whether absolute position embeddings are added (not in DeBERTa-v3).
    pub absolute_positions: bool,
    /// DeBERTa's disentangled attention over relative positions; `None` elsewhere.
    pub relative: Option<RelativeAttention>,
}

/// How DeBERTa's attention scores relative positions (`relative_attention` in its config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelativeAttention {
    /// Log-bucketed distances when above 0 (`position_buckets`): distances within half of it
    /// stay exact, longer ones share buckets that widen logarithmically.
    pub position_buckets: usize,
    /// The longest distance told apart (`max_relative_positions`, or the position count).
    pub max_relative_positions: usize,
    /// Content-to-position scores (`"c2p"` in `pos_att_type`).
    pub content_to_position: bool,
    /// Position-to-content scores (`"p2c"` in `pos_att_type`).
    pub position_to_content: bool,
    /// The positions go through the query and key projections of each layer
    /// (`share_att_key`), not through projections of their own.
    pub share_projections: bool,
    /// The shared relative-position table has a LayerNorm (`norm_rel_ebd` "layer_norm").
    pub normalized: bool,
}

impl RelativeAttention {
    /// How far each side of a token the table reaches (HF's `pos_ebd_size`); the table has
    /// twice as many rows.
    pub fn span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets
        } else {
            self.max_relative_positions
        }
    }

    /// What divides every attention score: √(head size × the number of score terms).
    pub fn score_terms(&self) -> usize {
        1 + usize::from(self.content_to_position) + usize::from(self.position_to_content)
    }

    /// Per-layer projections the positions have of their own.
    pub fn own_projections(&self) -> usize {
        if self.share_projections {
            0
        } else {
            usize::from(self.content_to_position) + usize::from(self.position_to_content)
        }
    }
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
            embedding_size: self.embedding_size,
            max_position_embeddings: if self.absolute_positions {
                self.max_position_embeddings
            } else {
                0
            },
            type_vocab_size: self.type_vocab_size,
            relative_positions: self.relative.map_or(0, |r| 2 * r.span()),
            relative_norm: self.relative.is_some_and(|r| r.normalized),
            position_projections: self.relative.map_or(0, |r| r.own_projections()),
        }
    }

    /// A BERT-layout configuration with HF's default dropout (0.1) and no extras, as
    /// `BertConfig` with these sizes.
    pub fn bert(
        hidden_size: usize,
        num_layers: usize,
        num_heads: usize,
        intermediate_size: usize,
    ) -> Self {
        Self {
            family: Family::Bert,
            vocab_size: 30_522,
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout: 0.1,
            attention_dropout: 0.1,
            classifier_dropout: 0.1,
            head_input_dropout: 0.0,
            pad_token_id: 0,
            embedding_size: hidden_size,
            absolute_positions: true,
            relative: None,
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
            Family::Electra => "electra",
            Family::DebertaV2 => "deberta-v2",
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
    // ELECTRA and DeBERTa names
    embedding_size: Option<usize>,
    // DeBERTa names
    position_biased_input: Option<bool>,
    relative_attention: Option<bool>,
    position_buckets: Option<i64>,
    max_relative_positions: Option<i64>,
    pos_att_type: Option<serde_json::Value>,
    share_att_key: Option<bool>,
    norm_rel_ebd: Option<String>,
    conv_kernel_size: Option<usize>,
    pooler_hidden_size: Option<usize>,
    pooler_hidden_act: Option<String>,
    pooler_dropout: Option<f64>,
    cls_dropout: Option<f64>,
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
        "electra" => Family::Electra,
        "deberta-v2" => Family::DebertaV2,
        other => {
            return Err(format!(
                "{}: model_type \u{201c}{other}\u{201d} is not supported; use a BERT, DistilBERT, RoBERTa, ELECTRA or DeBERTa-v2/v3 checkpoint",
                origin.display()
            ));
        }
    };
    let activation = raw
        .hidden_act
        .as_deref()
        .or(raw.activation.as_deref())
        .unwrap_or("gelu");
    let pooler_activation = match family {
        Family::DebertaV2 => raw.pooler_hidden_act.as_deref().unwrap_or("gelu"),
        _ => "gelu",
    };
    for activation in [activation, pooler_activation] {
        if activation != "gelu" {
            return Err(format!(
                "{}: activation \u{201c}{activation}\u{201d} is not supported (only exact gelu)",
                origin.display()
            ));
        }
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
            head_input_dropout: 0.0,
            pad_token_id: raw.pad_token_id.unwrap_or(0),
            embedding_size: raw.dim.ok_or_else(|| missing("dim"))?,
            absolute_positions: true,
            relative: None,
        },
        Family::Bert | Family::Roberta | Family::Electra | Family::DebertaV2 => {
            let hidden_dropout = raw.hidden_dropout_prob.unwrap_or(0.1);
            let hidden_size = raw.hidden_size.ok_or_else(|| missing("hidden_size"))?;
            let max_position_embeddings = raw
                .max_position_embeddings
                .ok_or_else(|| missing("max_position_embeddings"))?;
            let classifier_dropout = match family {
                Family::DebertaV2 => raw.cls_dropout.unwrap_or(hidden_dropout),
                _ => raw.classifier_dropout.unwrap_or(hidden_dropout),
            };
            let relative = match family {
                Family::DebertaV2 => {
                    Some(relative_attention(&raw, max_position_embeddings, origin)?)
                }
                _ => None,
            };
            EncoderConfig {
                family,
                vocab_size: raw.vocab_size.ok_or_else(|| missing("vocab_size"))?,
                hidden_size,
                num_layers: raw
                    .num_hidden_layers
                    .ok_or_else(|| missing("num_hidden_layers"))?,
                num_heads: raw
                    .num_attention_heads
                    .ok_or_else(|| missing("num_attention_heads"))?,
                intermediate_size: raw
                    .intermediate_size
                    .ok_or_else(|| missing("intermediate_size"))?,
                max_position_embeddings,
                type_vocab_size: raw.type_vocab_size.unwrap_or(match family {
                    Family::DebertaV2 => 0,
                    _ => 2,
                }),
                layer_norm_eps: raw.layer_norm_eps.unwrap_or(match family {
                    Family::DebertaV2 => 1e-7,
                    _ => 1e-12,
                }),
                hidden_dropout,
                attention_dropout: raw.attention_probs_dropout_prob.unwrap_or(0.1),
                classifier_dropout,
                head_input_dropout: match family {
                    Family::Bert => 0.0,
                    Family::DebertaV2 => raw.pooler_dropout.unwrap_or(0.0),
                    _ => classifier_dropout,
                },
                pad_token_id: raw.pad_token_id.unwrap_or(if family == Family::Roberta {
                    1
                } else {
                    0
                }),
                embedding_size: match family {
                    Family::Electra | Family::DebertaV2 => {
                        raw.embedding_size.unwrap_or(hidden_size)
                    }
                    _ => hidden_size,
                },
                absolute_positions: family != Family::DebertaV2
                    || raw.position_biased_input.unwrap_or(true),
                relative,
            }
        }
    };
    validate(&config, origin)?;
    Ok(config)
}

/// DeBERTa's relative-attention settings, with HF's defaults; the variants this engine
/// does not implement are refused by name.
fn relative_attention(
    raw: &RawConfig,
    max_position_embeddings: usize,
    origin: &Path,
) -> Result<RelativeAttention, String> {
    let refuse = |what: &str| Err(format!("{}: {what}", origin.display()));
    if !raw.relative_attention.unwrap_or(false) {
        return refuse(
            "DeBERTa without relative attention (\u{201c}relative_attention\u{201d}: false) is not supported; every published DeBERTa-v2/v3 checkpoint uses it",
        );
    }
    if let Some(pooler) = raw
        .pooler_hidden_size
        .filter(|&p| Some(p) != raw.hidden_size)
    {
        return refuse(&format!(
            "a pooler of {pooler} units on a hidden size of {} is not supported (transformers' classifier assumes they are equal)",
            raw.hidden_size.unwrap_or(0)
        ));
    }
    if raw.conv_kernel_size.unwrap_or(0) > 0 {
        return refuse(
            "the convolution layer of DeBERTa-v2 xlarge and xxlarge (\u{201c}conv_kernel_size\u{201d}) is not supported; use a DeBERTa-v3 checkpoint",
        );
    }
    let kinds: Vec<String> = match &raw.pos_att_type {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(text)) => text
            .to_lowercase()
            .split('|')
            .map(|kind| kind.trim().to_string())
            .collect(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().unwrap_or("").to_lowercase())
            .collect(),
        Some(other) => {
            return refuse(&format!(
                "\u{201c}pos_att_type\u{201d} is {other}; it must be a list such as [\"p2c\", \"c2p\"]"
            ));
        }
    };
    if let Some(unknown) = kinds
        .iter()
        .find(|kind| !["c2p", "p2c"].contains(&kind.as_str()))
    {
        return refuse(&format!(
            "\u{201c}pos_att_type\u{201d} holds \u{201c}{unknown}\u{201d}; only c2p and p2c are supported"
        ));
    }
    let norm = raw.norm_rel_ebd.as_deref().unwrap_or("none").to_lowercase();
    let norms: Vec<&str> = norm.split('|').map(str::trim).collect();
    if let Some(unknown) = norms.iter().find(|n| !["none", "layer_norm"].contains(n)) {
        return refuse(&format!(
            "\u{201c}norm_rel_ebd\u{201d} holds \u{201c}{unknown}\u{201d}; only layer_norm is supported"
        ));
    }
    let max_relative = raw.max_relative_positions.unwrap_or(-1);
    let settings = RelativeAttention {
        position_buckets: usize::try_from(raw.position_buckets.unwrap_or(-1)).unwrap_or(0),
        max_relative_positions: usize::try_from(max_relative)
            .ok()
            .filter(|&m| m >= 1)
            .unwrap_or(max_position_embeddings),
        content_to_position: kinds.iter().any(|kind| kind == "c2p"),
        position_to_content: kinds.iter().any(|kind| kind == "p2c"),
        share_projections: raw.share_att_key.unwrap_or(false),
        normalized: norms.contains(&"layer_norm"),
    };
    if settings.span() == 0 || settings.span() > 1 << 16 {
        return refuse(&format!(
            "a relative-position span of {} is not usable",
            settings.span()
        ));
    }
    if settings.position_buckets > 0 && settings.position_buckets < 4 {
        return refuse("\u{201c}position_buckets\u{201d} must be at least 4");
    }
    if settings.position_buckets > 0
        && settings.max_relative_positions <= settings.position_buckets / 2 + 1
    {
        return refuse(&format!(
            "{} position buckets need max_relative_positions above {}, not {}",
            settings.position_buckets,
            settings.position_buckets / 2 + 1,
            settings.max_relative_positions
        ));
    }
    Ok(settings)
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
        ("embedding size", config.embedding_size),
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
        ("pooler dropout", config.head_input_dropout),
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
