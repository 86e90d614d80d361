//! Token, position and (where the family has them) token-type embeddings, summed and
//! layer-normalised; ELECTRA and DeBERTa project embeddings narrower than the hidden size up
//! to it (ELECTRA after the LayerNorm, DeBERTa before).

use super::config::{EncoderConfig, Family};
use super::dropout;
use super::lora::token_wise;
use super::precision::Precision;
use crate::cpu;
use crate::fusable::{self, DistinctWords};
use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::{Device, Int, Tensor};

/// The input embeddings of an encoder.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// One vector per vocabulary entry.
    pub word: Embedding,
    /// One vector per position; `None` where only relative positions count (DeBERTa-v3).
    pub position: Option<Embedding>,
    /// One vector per segment; `None` for DistilBERT.
    pub token_type: Option<Embedding>,
    /// LayerNorm over the sum.
    pub norm: LayerNorm,
    /// Projection from the embedding size up to the hidden size, where they differ.
    pub projection: Option<Linear>,
    dropout: Dropout,
    /// The projection comes before the LayerNorm (DeBERTa), not after the dropout
    /// (ELECTRA).
    #[module(skip)]
    project_first: bool,
    /// Padding positions are zeroed after the LayerNorm (DeBERTa).
    #[module(skip)]
    zero_padding: bool,
    #[module(skip)]
    position_offset: usize,
    /// RoBERTa gives padding tokens this position (its padding index).
    #[module(skip)]
    padding_position: Option<usize>,
    /// The LayerNorm's epsilon (burn keeps the module's own private).
    #[module(skip)]
    norm_epsilon: f64,
}

impl Embeddings {
    /// Randomly initialised embeddings for `config`.
    pub fn new(config: &EncoderConfig, device: &Device) -> Self {
        let width = config.embedding_size;
        let deberta = config.family == Family::DebertaV2;
        let norm_width = if deberta { config.hidden_size } else { width };
        Self {
            word: EmbeddingConfig::new(config.vocab_size, width).init(device),
            position: config
                .absolute_positions
                .then(|| EmbeddingConfig::new(config.max_position_embeddings, width).init(device)),
            token_type: (config.type_vocab_size > 0)
                .then(|| EmbeddingConfig::new(config.type_vocab_size, width).init(device)),
            norm: LayerNormConfig::new(norm_width)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            projection: (width != config.hidden_size).then(|| {
                LinearConfig::new(width, config.hidden_size)
                    .with_bias(!deberta)
                    .init(device)
            }),
            dropout: DropoutConfig::new(config.hidden_dropout).init(),
            project_first: deberta,
            zero_padding: deberta,
            position_offset: config.position_offset(),
            padding_position: (config.family == Family::Roberta).then_some(config.pad_token_id),
            norm_epsilon: config.layer_norm_eps,
        }
    }

    /// Embeds `[batch, seq]` token ids (and segment ids) into `[batch, seq, hidden]`;
    /// `mask` is 1 for real tokens and 0 for padding. `type_ids` of `None` puts every token
    /// in segment 0. With `words` (a GPU training batch's), the word embeddings' gradient is
    /// summed as [`fusable::embedding`] does.
    ///
    /// Rows every sequence shares are added as one broadcast slice rather than looked up
    /// per token: the positions (except RoBERTa's, which depend on the padding) and the
    /// single segment. The values are the same; the backward pass then sums the gradient
    /// over the batch instead of scattering every token's gradient into the same few rows,
    /// which a GPU does with contended atomic adds (the slowest kernel per launch of a
    /// MiniLM step in a profile on an H200, docs/benchmarks.md).
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        type_ids: Option<Tensor<2, Int>>,
        mask: Tensor<2>,
        words: Option<&DistinctWords>,
    ) -> Tensor<3> {
        let [_, seq_len] = ids.dims();
        let [_, hidden] = self.word.weight.dims();
        let device = ids.device();
        let offset = self.position_offset;
        let positions = match (&self.position, self.padding_position) {
            (None, _) => None,
            (Some(position), None) => Some(
                position
                    .weight
                    .val()
                    .narrow(0, offset, seq_len)
                    .reshape([1, seq_len, hidden]),
            ),
            (Some(position), Some(padding)) => {
                // As HF's RoBERTa: real tokens count up from the offset, padding sits at its
                // index.
                let counting =
                    Tensor::<1, Int>::arange(offset as i64..(offset + seq_len) as i64, &device)
                        .reshape([1, seq_len]);
                let real = counting.float() * mask.clone();
                let ids = (real + (mask.clone().neg() + 1.0) * padding as f64).int();
                Some(position.forward(ids))
            }
        };
        let mut sum = match words {
            Some(words) => fusable::embedding(&self.word, ids, words),
            None => self.word.forward(ids),
        };
        if let Some(positions) = positions {
            sum = sum + positions;
        }
        if let Some(token_type) = &self.token_type {
            sum = sum
                + match type_ids {
                    Some(type_ids) => token_type.forward(type_ids),
                    None => token_type
                        .weight
                        .val()
                        .narrow(0, 0, 1)
                        .reshape([1, 1, hidden]),
                };
        }
        if let (Some(projection), true) = (&self.projection, self.project_first) {
            sum = token_wise(projection, sum, Precision::Fp32);
        }
        let mut out = cpu::layer_norm(&self.norm, self.norm_epsilon, sum);
        if self.zero_padding {
            let [batch, seq_len, width] = out.dims();
            out = out
                * mask
                    .reshape([batch, seq_len, 1])
                    .expand([batch, seq_len, width]);
        }
        let out = dropout::apply(&self.dropout, out);
        match (&self.projection, self.project_first) {
            (Some(projection), false) => token_wise(projection, out, Precision::Fp32),
            _ => out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::parse_config;
    use burn::tensor::TensorData;
    use std::path::Path;

    fn embeddings(model_type: &str, device: &Device) -> Embeddings {
        let config = parse_config(
            &format!(
                r#"{{"model_type":"{model_type}","vocab_size":40,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":24,"type_vocab_size":2,"pad_token_id":1,"hidden_dropout_prob":0.0}}"#
            ),
            Path::new("config.json"),
        )
        .unwrap();
        Embeddings::new(&config, device)
    }

    /// The broadcast rows give the values and the gradients of a lookup per token.
    #[test]
    fn shared_rows_broadcast_like_a_lookup_per_token() {
        let device = Device::flex().autodiff();
        for model_type in ["bert", "roberta"] {
            let layer = embeddings(model_type, &device);
            let ids = Tensor::<2, Int>::from_data(
                TensorData::new(vec![2i64, 5, 7, 1, 3, 9, 11, 13], [2, 4]),
                &device,
            );
            let mask = Tensor::<2>::from_data(
                TensorData::new(vec![1.0f32, 1., 1., 0., 1., 1., 1., 1.], [2, 4]),
                &device,
            );
            let zeros = Tensor::<2, Int>::zeros([2, 4], &device);
            let broadcast = layer.forward(ids.clone(), None, mask.clone(), None);
            let looked_up = match model_type {
                // Every row looked up per token, positions included (dropout is 0 here).
                "bert" => {
                    let positions = Tensor::<1, Int>::arange(0..4, &device)
                        .reshape([1, 4])
                        .expand([2, 4]);
                    let token_type = layer.token_type.as_ref().unwrap();
                    layer.norm.forward(
                        layer.word.forward(ids)
                            + layer.position.as_ref().unwrap().forward(positions)
                            + token_type.forward(zeros),
                    )
                }
                // RoBERTa's positions depend on the padding and stay a lookup.
                _ => layer.forward(ids, Some(zeros), mask, None),
            };
            let difference = (broadcast.clone() - looked_up.clone())
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(
                difference < 1e-6,
                "{model_type}: values differ by {difference}"
            );

            let weights = Tensor::<3>::from_data(
                TensorData::new(
                    (0..64).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
                    [2, 4, 8],
                ),
                &device,
            );
            let grads_broadcast = (broadcast * weights.clone()).sum().backward();
            let grads_looked_up = (looked_up * weights).sum().backward();
            for (name, param) in [
                ("position", &layer.position.as_ref().unwrap().weight),
                ("token type", &layer.token_type.as_ref().unwrap().weight),
                ("word", &layer.word.weight),
            ] {
                let a = param.grad(&grads_broadcast).unwrap();
                let b = param.grad(&grads_looked_up).unwrap();
                let difference = (a - b).abs().max().into_scalar::<f32>();
                assert!(
                    difference < 1e-5,
                    "{model_type} {name}: gradients differ by {difference}"
                );
            }
        }
    }
}
