//! Token, position and (where the family has them) token-type embeddings, summed and
//! layer-normalised.

use super::config::{EncoderConfig, Family};
use super::dropout;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor};

/// The input embeddings of an encoder.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// One vector per vocabulary entry.
    pub word: Embedding,
    /// One vector per position.
    pub position: Embedding,
    /// One vector per segment; `None` for DistilBERT.
    pub token_type: Option<Embedding>,
    /// LayerNorm over the sum.
    pub norm: LayerNorm,
    dropout: Dropout,
    #[module(skip)]
    position_offset: usize,
    /// RoBERTa gives padding tokens this position (its padding index).
    #[module(skip)]
    padding_position: Option<usize>,
}

impl Embeddings {
    /// Randomly initialised embeddings for `config`.
    pub fn new(config: &EncoderConfig, device: &Device) -> Self {
        Self {
            word: EmbeddingConfig::new(config.vocab_size, config.hidden_size).init(device),
            position: EmbeddingConfig::new(config.max_position_embeddings, config.hidden_size)
                .init(device),
            token_type: (config.type_vocab_size > 0).then(|| {
                EmbeddingConfig::new(config.type_vocab_size, config.hidden_size).init(device)
            }),
            norm: LayerNormConfig::new(config.hidden_size)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            dropout: DropoutConfig::new(config.hidden_dropout).init(),
            position_offset: config.position_offset(),
            padding_position: (config.family == Family::Roberta).then_some(config.pad_token_id),
        }
    }

    /// Embeds `[batch, seq]` token ids (and segment ids) into `[batch, seq, hidden]`;
    /// `mask` is 1 for real tokens and 0 for padding.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        type_ids: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> Tensor<3> {
        let [_, seq_len] = ids.dims();
        let device = ids.device();
        let offset = self.position_offset as i64;
        let mut positions = Tensor::<1, Int>::arange(offset..offset + seq_len as i64, &device)
            .reshape([1, seq_len]);
        if let Some(padding) = self.padding_position {
            // As HF's RoBERTa: real tokens count up from the offset, padding sits at its index.
            let real = positions.float() * mask.clone();
            positions = (real + (mask.neg() + 1.0) * padding as f64).int();
        }
        let mut sum = self.word.forward(ids) + self.position.forward(positions);
        if let Some(token_type) = &self.token_type {
            sum = sum + token_type.forward(type_ids);
        }
        dropout::apply(&self.dropout, self.norm.forward(sum))
    }
}
