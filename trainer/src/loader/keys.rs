//! Each family's checkpoint key names mapped onto our module tree: the renaming rules, the
//! tensors a checkpoint may carry that no parameter needs, and the shape every parameter
//! must have.

use crate::model::{EncoderConfig, Family};
use regex::Regex;
use std::collections::BTreeMap;

/// The checkpoint-to-module key rules of one family, applied in order. Our module paths
/// keep PyTorch's `weight`/`bias` names here; burn's adapter renames LayerNorm's. BERT,
/// RoBERTa, ELECTRA and DeBERTa share BERT's layout and one list: ELECTRA adds its
/// embedding projection, DeBERTa `_proj` on the attention's names, its own projections and
/// the relative table (a key of another family that one of these rules renames is still
/// refused, as no parameter of that family has the name it gets).
pub(super) fn rules(family: Family) -> &'static [(&'static str, &'static str)] {
    match family {
        Family::Bert | Family::Roberta | Family::Electra | Family::DebertaV2 => &[
            (r"^(?:bert|roberta|electra|deberta)\.", ""),
            (r"^embeddings_project\.", "embeddings.projection."),
            (r"^embeddings\.embed_proj\.", "embeddings.projection."),
            (r"^encoder\.rel_embeddings\.", "relative.table."),
            (r"^encoder\.LayerNorm\.", "relative.norm."),
            (r"^embeddings\.word_embeddings\.", "embeddings.word."),
            (
                r"^embeddings\.position_embeddings\.",
                "embeddings.position.",
            ),
            (
                r"^embeddings\.token_type_embeddings\.",
                "embeddings.token_type.",
            ),
            (r"^embeddings\.LayerNorm\.", "embeddings.norm."),
            (
                r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)(?:_proj)?\.",
                "layers.$1.attention.$2.",
            ),
            (
                r"^encoder\.layer\.(\d+)\.attention\.self\.pos_(query|key)_proj\.",
                "layers.$1.attention.position_$2.",
            ),
            (
                r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.",
                "layers.$1.attention.output.",
            ),
            (
                r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.",
                "layers.$1.attention.norm.",
            ),
            (
                r"^encoder\.layer\.(\d+)\.intermediate\.dense\.",
                "layers.$1.ffn_in.",
            ),
            (
                r"^encoder\.layer\.(\d+)\.output\.dense\.",
                "layers.$1.ffn_out.",
            ),
            (
                r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.",
                "layers.$1.ffn_norm.",
            ),
            // BERT and DeBERTa: the pooler feeds the classifier. RoBERTa and ELECTRA:
            // classifier.dense / out_proj.
            (r"^pooler\.dense\.", "head.dense."),
            (r"^classifier\.dense\.", "head.dense."),
            (r"^classifier\.out_proj\.", "head.out."),
            (r"^classifier\.(weight|bias)$", "head.out.$1"),
        ],
        Family::DistilBert => &[
            (r"^distilbert\.", ""),
            (r"^embeddings\.word_embeddings\.", "embeddings.word."),
            (
                r"^embeddings\.position_embeddings\.",
                "embeddings.position.",
            ),
            (r"^embeddings\.LayerNorm\.", "embeddings.norm."),
            (
                r"^transformer\.layer\.(\d+)\.attention\.q_lin\.",
                "layers.$1.attention.query.",
            ),
            (
                r"^transformer\.layer\.(\d+)\.attention\.k_lin\.",
                "layers.$1.attention.key.",
            ),
            (
                r"^transformer\.layer\.(\d+)\.attention\.v_lin\.",
                "layers.$1.attention.value.",
            ),
            (
                r"^transformer\.layer\.(\d+)\.attention\.out_lin\.",
                "layers.$1.attention.output.",
            ),
            (
                r"^transformer\.layer\.(\d+)\.sa_layer_norm\.",
                "layers.$1.attention.norm.",
            ),
            (
                r"^transformer\.layer\.(\d+)\.ffn\.lin1\.",
                "layers.$1.ffn_in.",
            ),
            (
                r"^transformer\.layer\.(\d+)\.ffn\.lin2\.",
                "layers.$1.ffn_out.",
            ),
            (
                r"^transformer\.layer\.(\d+)\.output_layer_norm\.",
                "layers.$1.ffn_norm.",
            ),
            (r"^pre_classifier\.", "head.dense."),
            (r"^classifier\.", "head.out."),
        ],
    }
}

/// Checkpoint tensors that are expected and not needed: position-id buffers, the heads of
/// pre-training objectives, RoBERTa's unused pooler, and the absolute positions of a
/// DeBERTa that does not add them (transformers skips those too).
pub(super) fn ignorable(config: &EncoderConfig, key: &str) -> bool {
    let family = config.family;
    key.ends_with("position_ids")
        || key.starts_with("cls.")
        || key.starts_with("lm_head.")
        || key.starts_with("vocab_")
        || (family == Family::Roberta && key.starts_with("roberta.pooler."))
        || (family == Family::Electra
            && [
                "discriminator_predictions.",
                "generator_predictions.",
                "generator_lm_head.",
            ]
            .iter()
            .any(|head| key.starts_with(head)))
        || (family == Family::DebertaV2
            && [
                "lm_predictions.",
                "mask_predictions.",
                "deberta.embeddings.position_ids",
            ]
            .iter()
            .any(|head| key.starts_with(head)))
}

/// Every parameter of our module tree with its PyTorch-layout shape.
pub(super) fn expected_shapes(
    config: &EncoderConfig,
    num_labels: usize,
) -> BTreeMap<String, Vec<usize>> {
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let mut shapes = BTreeMap::new();
    let mut add = |path: String, shape: Vec<usize>| {
        shapes.insert(path, shape);
    };
    let linear =
        |add: &mut dyn FnMut(String, Vec<usize>), name: String, d_in: usize, d_out: usize| {
            add(format!("{name}.weight"), vec![d_out, d_in]);
            add(format!("{name}.bias"), vec![d_out]);
        };
    let norm = |add: &mut dyn FnMut(String, Vec<usize>), name: String| {
        add(format!("{name}.weight"), vec![h]);
        add(format!("{name}.bias"), vec![h]);
    };
    let e = config.embedding_size;
    add("embeddings.word.weight".into(), vec![config.vocab_size, e]);
    if config.absolute_positions {
        add(
            "embeddings.position.weight".into(),
            vec![config.max_position_embeddings, e],
        );
    }
    if config.type_vocab_size > 0 {
        add(
            "embeddings.token_type.weight".into(),
            vec![config.type_vocab_size, e],
        );
    }
    let deberta = config.family == Family::DebertaV2;
    let norm_width = if deberta { h } else { e };
    add("embeddings.norm.weight".into(), vec![norm_width]);
    add("embeddings.norm.bias".into(), vec![norm_width]);
    if e != h {
        add("embeddings.projection.weight".into(), vec![h, e]);
        if !deberta {
            add("embeddings.projection.bias".into(), vec![h]);
        }
    }
    if let Some(relative) = config.relative {
        add("relative.table.weight".into(), vec![2 * relative.span(), h]);
        if relative.normalized {
            norm(&mut add, "relative.norm".into());
        }
    }
    for layer in 0..config.num_layers {
        for part in ["query", "key", "value", "output"] {
            linear(&mut add, format!("layers.{layer}.attention.{part}"), h, h);
        }
        if let Some(relative) = config.relative.filter(|r| !r.share_projections) {
            if relative.position_to_content {
                linear(
                    &mut add,
                    format!("layers.{layer}.attention.position_query"),
                    h,
                    h,
                );
            }
            if relative.content_to_position {
                linear(
                    &mut add,
                    format!("layers.{layer}.attention.position_key"),
                    h,
                    h,
                );
            }
        }
        norm(&mut add, format!("layers.{layer}.attention.norm"));
        linear(&mut add, format!("layers.{layer}.ffn_in"), h, i);
        linear(&mut add, format!("layers.{layer}.ffn_out"), i, h);
        norm(&mut add, format!("layers.{layer}.ffn_norm"));
    }
    linear(&mut add, "head.dense".into(), h, h);
    linear(&mut add, "head.out".into(), h, num_labels);
    shapes
}

/// Maps a checkpoint key through `rules` to our module path.
pub(super) fn map_key(rules: &[(Regex, String)], key: &str) -> String {
    rules
        .iter()
        .fold(key.to_string(), |path, (pattern, replacement)| {
            pattern
                .replace_all(&path, replacement.as_str())
                .into_owned()
        })
}
