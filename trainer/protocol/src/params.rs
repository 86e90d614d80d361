//! Parameter arithmetic from an architecture's shapes: how many weights a model has and
//! how many a LoRA run trains. The engine reports these counts and the LoRA widget shows
//! them, so both use this one definition.

use crate::settings::{LoraSettings, Method};

/// The checkpoint families the engine can load, from `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// BERT and its relatives that keep its layout (MiniLM is a BERT).
    Bert,
    /// DistilBERT: no token types, no pooler, a ReLU pre-classifier.
    DistilBert,
    /// RoBERTa: positions offset past the padding index, a tanh classification head.
    Roberta,
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
    /// Position embeddings.
    pub max_position_embeddings: usize,
    /// Token type (segment) vocabulary; 0 when the family has none.
    pub type_vocab_size: usize,
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

/// Counts parameters for `method` from the architecture's shapes. Under LoRA the head
/// trains as PEFT trains it for sequence classification: the `classifier` module only
/// (BERT's pretrained pooler and DistilBERT's pre-classifier stay frozen; RoBERTa's
/// classifier holds both its layers).
pub fn param_counts(shape: &ModelShape, num_labels: usize, method: Method) -> ParamCounts {
    let h = shape.hidden_size;
    let i = shape.intermediate_size;
    let linear = |d_in: usize, d_out: usize| d_in * d_out + d_out;
    let norm = 2 * h;
    let embeddings =
        (shape.vocab_size + shape.max_position_embeddings + shape.type_vocab_size) * h + norm;
    let layer = 4 * linear(h, h) + norm + linear(h, i) + linear(i, h) + norm;
    let head = linear(h, h) + linear(h, num_labels);
    let base = embeddings + shape.num_layers * layer + head;
    match method {
        Method::Full => ParamCounts {
            total: base,
            trainable: base,
        },
        Method::Lora(LoraSettings { rank, .. }) => {
            let adapters = lora_adapter_params(shape, rank, &DEFAULT_LORA_TARGETS);
            let trained_head = match shape.family {
                Family::Roberta => head,
                Family::Bert | Family::DistilBert => linear(h, num_labels),
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
        max_position_embeddings: 512,
        type_vocab_size: 2,
    };

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
