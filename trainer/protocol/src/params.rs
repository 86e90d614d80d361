//! Parameter arithmetic from an architecture's shapes: how many weights a model has and
//! how many a LoRA run trains. The engine reports these counts and the LoRA widget shows
//! them, so both use this one definition.

use crate::settings::{LoraSettings, Method};
use serde::{Deserialize, Serialize};

/// The checkpoint families the engine can load, from `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    /// BERT and its relatives that keep its layout (MiniLM is a BERT).
    Bert,
    /// DistilBERT: no token types, no pooler, a ReLU pre-classifier.
    DistilBert,
    /// RoBERTa: positions offset past the padding index, a tanh classification head.
    Roberta,
    /// ELECTRA discriminators: BERT's encoder behind smaller embeddings projected up to the
    /// hidden size, and a GELU classification head.
    Electra,
    /// DeBERTa-v2 and v3: disentangled attention over relative positions (shared relative
    /// embeddings), optionally no absolute positions, a GELU pooler and a linear classifier.
    DebertaV2,
}

impl Family {
    /// The family's name as the pages show it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Bert => "BERT",
            Family::DistilBert => "DistilBERT",
            Family::Roberta => "RoBERTa",
            Family::Electra => "ELECTRA",
            Family::DebertaV2 => "DeBERTa-v2/v3",
        }
    }
}

/// The sizes of an encoder that decide its parameter count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// Which family's head.
    pub family: Family,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Feed-forward inner size.
    pub intermediate_size: usize,
    /// Width of the token embeddings (the hidden size, except where ELECTRA and DeBERTa
    /// project smaller embeddings up).
    pub embedding_size: usize,
    /// Absolute position embeddings; 0 when the model has none (DeBERTa-v3).
    pub max_position_embeddings: usize,
    /// Token type (segment) vocabulary; 0 when the family has none.
    pub type_vocab_size: usize,
    /// Rows of the relative-position table all layers share; 0 when there is none.
    pub relative_positions: usize,
    /// Whether that table has its own LayerNorm.
    pub relative_norm: bool,
    /// Hidden-to-hidden projections of the relative positions in every layer, beside the
    /// query and key projections (DeBERTa without shared attention keys); usually 0.
    pub position_projections: usize,
}

/// Parameter counts of a model as configured for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamCounts {
    /// All parameters, adapters included.
    pub total: usize,
    /// Parameters the optimizer updates.
    pub trainable: usize,
}

/// A weight matrix of every encoder layer that LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraTarget {
    /// Attention query projection.
    Query,
    /// Attention key projection.
    Key,
    /// Attention value projection.
    Value,
    /// Attention output projection.
    AttentionOutput,
    /// Feed-forward expansion.
    FfnIn,
    /// Feed-forward projection back.
    FfnOut,
}

/// The targets training uses: attention query and value.
pub const DEFAULT_LORA_TARGETS: [LoraTarget; 2] = [LoraTarget::Query, LoraTarget::Value];

/// Adapter parameters of rank `rank` on `targets` in every layer: r × (d_in + d_out) each.
pub fn lora_adapter_params(shape: &ModelShape, rank: usize, targets: &[LoraTarget]) -> usize {
    let (h, i) = (shape.hidden_size, shape.intermediate_size);
    let per_layer: usize = targets
        .iter()
        .map(|target| match target {
            LoraTarget::Query
            | LoraTarget::Key
            | LoraTarget::Value
            | LoraTarget::AttentionOutput => rank * (h + h),
            LoraTarget::FfnIn | LoraTarget::FfnOut => rank * (h + i),
        })
        .sum();
    shape.num_layers * per_layer
}

/// Whether LoRA trains the head's dense layer as well as its output layer. PEFT trains the
/// `classifier` module for sequence classification: RoBERTa's and ELECTRA's hold both
/// layers, BERT's pretrained pooler and DistilBERT's pre-classifier stay frozen. DeBERTa's
/// pooler is not in its pre-training checkpoints, so it starts random and trains too (a
/// frozen random layer would only scramble the first token).
pub fn lora_trains_head_dense(family: Family) -> bool {
    match family {
        Family::Roberta | Family::Electra | Family::DebertaV2 => true,
        Family::Bert | Family::DistilBert => false,
    }
}

/// Counts parameters for `method` from the architecture's shapes. Under LoRA the adapters
/// train with the head as [`lora_trains_head_dense`] says.
pub fn param_counts(shape: &ModelShape, num_labels: usize, method: Method) -> ParamCounts {
    let h = shape.hidden_size;
    let i = shape.intermediate_size;
    let e = shape.embedding_size;
    let linear = |d_in: usize, d_out: usize| d_in * d_out + d_out;
    let norm = 2 * h;
    let lookups = (shape.vocab_size + shape.max_position_embeddings + shape.type_vocab_size) * e;
    // ELECTRA normalises the small embeddings and projects them up (with a bias); DeBERTa
    // projects them up (without one) and normalises at the hidden size.
    let embeddings = lookups
        + match (shape.family, e == h) {
            (_, true) => norm,
            (Family::Electra, false) => 2 * e + linear(e, h),
            (_, false) => e * h + norm,
        };
    let relative = shape.relative_positions * h + if shape.relative_norm { norm } else { 0 };
    let layer =
        (4 + shape.position_projections) * linear(h, h) + norm + linear(h, i) + linear(i, h) + norm;
    let head = linear(h, h) + linear(h, num_labels);
    let base = embeddings + relative + shape.num_layers * layer + head;
    match method {
        Method::Full => ParamCounts {
            total: base,
            trainable: base,
        },
        Method::Lora(LoraSettings { rank, .. }) => {
            let adapters = lora_adapter_params(shape, rank, &DEFAULT_LORA_TARGETS);
            let trained_head = if lora_trains_head_dense(shape.family) {
                head
            } else {
                linear(h, num_labels)
            };
            ParamCounts {
                total: base + adapters,
                trainable: adapters + trained_head,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// all-MiniLM-L6-v2's config.json.
    const MINILM: ModelShape = ModelShape {
        family: Family::Bert,
        vocab_size: 30_522,
        hidden_size: 384,
        num_layers: 6,
        intermediate_size: 1_536,
        embedding_size: 384,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        relative_positions: 0,
        relative_norm: false,
        position_projections: 0,
    };

    /// microsoft/deberta-v3-base's config.json: 128,100 tokens, 256 position buckets, no
    /// absolute positions, a pooler as wide as the hidden size.
    const DEBERTA_V3_BASE: ModelShape = ModelShape {
        family: Family::DebertaV2,
        vocab_size: 128_100,
        hidden_size: 768,
        num_layers: 12,
        intermediate_size: 3_072,
        embedding_size: 768,
        max_position_embeddings: 0,
        type_vocab_size: 0,
        relative_positions: 512,
        relative_norm: true,
        position_projections: 0,
    };

    #[test]
    fn deberta_v3_base_has_its_published_size() {
        // 183,831,552 is what transformers 5.24's DebertaV2Model counts for this config (the
        // model card's 86M backbone plus 98M of embeddings); then the pooler and classifier.
        let full = param_counts(&DEBERTA_V3_BASE, 2, Method::Full);
        assert_eq!(full.total, 183_831_552 + 768 * 768 + 768 + 768 * 2 + 2);
    }

    #[test]
    fn minilm_has_its_published_size() {
        // 22,713,216 in the checkpoint (pooler included) plus the 384 x 2 classifier.
        let full = param_counts(&MINILM, 2, Method::Full);
        assert_eq!(full.total, 22_713_216 + 384 * 2 + 2);
        assert_eq!(full.trainable, full.total);
    }

    #[test]
    fn lora_trains_adapters_and_classifier_only() {
        let lora = param_counts(&MINILM, 2, Method::Lora(LoraSettings::new(16, 32.0)));
        let adapters = 6 * 2 * 16 * (384 + 384);
        assert_eq!(
            lora_adapter_params(&MINILM, 16, &DEFAULT_LORA_TARGETS),
            adapters
        );
        assert_eq!(lora.trainable, adapters + 384 * 2 + 2);
        assert_eq!(
            lora.total,
            param_counts(&MINILM, 2, Method::Full).total + adapters
        );
    }
}
