//! BERT-family sequence classifiers: embeddings, a stack of post-LN encoder layers and a
//! classification head on the first token. One module tree serves all five families
//! (BERT, DistilBERT, RoBERTa, ELECTRA, DeBERTa-v2/v3); [`crate::loader`] maps each
//! family's checkpoint names onto it.

pub mod config;
mod dropout;
mod embedding;
mod encoder;
mod head;
mod lora;
mod precision;
mod relative;

pub use crate::fusable::DistinctWords;
pub use config::{EncoderConfig, Family, RelativeAttention};
pub use embedding::Embeddings;
pub use encoder::{EncoderLayer, SelfAttention};
pub use head::{ClassificationHead, HeadStyle};
pub use lora::{LoraBranch, LoraSettings};
pub use precision::{Precision, supported_on};
pub use relative::{RelativePositions, RelativeTable};

use crate::device::on_cpu_backend;
use crate::tokenize::TokenBatch;
use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// Added to attention scores at padding positions, so their probability is exactly 0.
const MASKED_SCORE: f32 = -1.0e9;

/// A token batch moved onto a device.
#[derive(Debug, Clone)]
pub struct BatchTensors {
    /// Token ids `[batch, seq]`.
    pub ids: Tensor<2, Int>,
    /// Segment ids `[batch, seq]`; `None` when every token is in segment 0 (single
    /// sentences), which [`Embeddings::forward`] adds as one broadcast row.
    pub type_ids: Option<Tensor<2, Int>>,
    /// 1 for real tokens, 0 for padding, `[batch, seq]` as floats.
    pub mask: Tensor<2>,
    /// The batch's distinct words where it trains on a GPU, whose word-embedding gradient
    /// they make parallel ([`DistinctWords`]); `None` elsewhere.
    pub words: Option<DistinctWords>,
}

impl BatchTensors {
    /// Copies `batch` to `device`, numbering its distinct words where `device` is a GPU
    /// with autodiff.
    pub fn new(batch: &TokenBatch, device: &Device) -> Self {
        let shape = [batch.batch_size, batch.seq_len];
        let ints = |values: &[u32]| {
            let values: Vec<i64> = values.iter().map(|&v| i64::from(v)).collect();
            Tensor::<2, Int>::from_data(TensorData::new(values, shape), device)
        };
        let mask: Vec<f32> = batch.mask.iter().map(|&m| m as f32).collect();
        Self {
            ids: ints(&batch.ids),
            type_ids: batch
                .type_ids
                .iter()
                .any(|&segment| segment != 0)
                .then(|| ints(&batch.type_ids)),
            mask: Tensor::<2>::from_data(TensorData::new(mask, shape), device),
            words: (device.is_autodiff() && !on_cpu_backend(device))
                .then(|| DistinctWords::of(&batch.ids)),
        }
    }
}

/// What the encoder produced for a batch.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// Last layer's hidden states `[batch, seq, hidden]`.
    pub hidden: Tensor<3>,
    /// Attention probabilities per layer, `[batch, heads, seq, seq]` each; empty unless asked.
    pub attentions: Vec<Tensor<4>>,
}

/// How padding is kept out of attention.
#[derive(Debug, Clone)]
pub enum PaddingMask {
    /// Added to the scores, `[batch, 1, 1, seq]`: 0 for real keys, a large negative number
    /// for padding keys (BERT, DistilBERT, RoBERTa, ELECTRA).
    KeyBias(Tensor<4>),
    /// The pairs with a padding query or key, `[batch, 1, seq, seq]`, whose scores become
    /// the lowest float, as DeBERTa masks them (a padding query then attends evenly).
    PairFill(Tensor<4, Bool>),
}

/// An encoder with a classification head.
#[derive(Module, Debug)]
pub struct SequenceClassifier {
    /// Input embeddings.
    pub embeddings: Embeddings,
    /// Encoder layers, bottom first.
    pub layers: Vec<EncoderLayer>,
    /// DeBERTa's relative-position table, shared by every layer.
    pub relative: Option<RelativeTable>,
    /// The classification head.
    pub head: ClassificationHead,
    #[module(skip)]
    num_heads: usize,
    /// The number format of the encoder's matrix products (f32 unless a run asks for less).
    #[module(skip)]
    precision: Precision,
}

impl SequenceClassifier {
    /// A randomly initialised model; load weights with [`crate::loader`].
    pub fn new(config: &EncoderConfig, num_labels: usize, device: &Device) -> Self {
        Self {
            embeddings: Embeddings::new(config, device),
            layers: (0..config.num_layers)
                .map(|_| EncoderLayer::new(config, device))
                .collect(),
            relative: config
                .relative
                .map(|settings| RelativeTable::new(config, settings, device)),
            head: ClassificationHead::new(config, num_labels, device),
            num_heads: config.num_heads,
            precision: Precision::Fp32,
        }
    }

    /// The same model with the encoder's matrix products in `precision`; the weights stay
    /// f32.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    /// Adds LoRA branches beside every layer's attention query and value projections.
    pub fn with_lora(self, settings: LoraSettings, device: &Device) -> Self {
        Self {
            layers: self
                .layers
                .into_iter()
                .map(|layer| layer.with_lora(settings, device))
                .collect(),
            ..self
        }
    }

    /// Folds every LoRA branch into its projection: the same model as plain weights.
    pub fn merge_lora(self) -> Self {
        Self {
            layers: self
                .layers
                .into_iter()
                .map(EncoderLayer::merge_lora)
                .collect(),
            ..self
        }
    }

    /// Runs the encoder. Attention probabilities are kept only when `keep_attentions` is
    /// set, so training pays nothing for them.
    pub fn encode(&self, batch: &BatchTensors, keep_attentions: bool) -> EncoderOutput {
        let [batch_size, seq_len] = batch.mask.dims();
        let mask = match &self.relative {
            None => PaddingMask::KeyBias(
                (batch.mask.clone().neg() + 1.0)
                    .mul_scalar(MASKED_SCORE)
                    .reshape([batch_size, 1, 1, seq_len]),
            ),
            Some(_) => {
                let pairs = batch.mask.clone().reshape([batch_size, 1, seq_len, 1])
                    * batch.mask.clone().reshape([batch_size, 1, 1, seq_len]);
                PaddingMask::PairFill(pairs.lower_elem(0.5))
            }
        };
        let relative = self
            .relative
            .as_ref()
            .map(|table| table.positions(batch_size, self.num_heads, seq_len));
        let mut hidden = self.embeddings.forward(
            batch.ids.clone(),
            batch.type_ids.clone(),
            batch.mask.clone(),
            batch.words.as_ref(),
        );
        let mut attentions = Vec::new();
        for layer in &self.layers {
            let (next, probabilities) = layer.forward(
                hidden,
                &mask,
                relative.as_ref(),
                keep_attentions,
                self.precision,
            );
            hidden = next;
            attentions.extend(probabilities);
        }
        EncoderOutput { hidden, attentions }
    }

    /// The first token's last-layer vectors `[batch, hidden]` ([CLS] or `<s>`).
    pub fn first_token(hidden: &Tensor<3>) -> Tensor<2> {
        let [batch_size, _, hidden_size] = hidden.dims();
        hidden
            .clone()
            .narrow(1, 0, 1)
            .reshape([batch_size, hidden_size])
    }

    /// Mask-aware mean of the last layer over real tokens, `[batch, hidden]`.
    pub fn mean_pooled(hidden: &Tensor<3>, mask: &Tensor<2>) -> Tensor<2> {
        let [batch_size, seq_len, hidden_size] = hidden.dims();
        let weights = mask.clone().reshape([batch_size, seq_len, 1]);
        let summed = (hidden.clone() * weights)
            .sum_dim(1)
            .reshape([batch_size, hidden_size]);
        let counts = mask.clone().sum_dim(1).clamp_min(1e-9);
        summed / counts
    }

    /// Logits `[batch, labels]`.
    pub fn forward(&self, batch: &BatchTensors) -> Tensor<2> {
        let output = self.encode(batch, false);
        self.head.forward(Self::first_token(&output.hidden))
    }
}
