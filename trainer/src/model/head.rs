//! The sequence-classification head on the first token ([CLS] or `<s>`), in each family's
//! own form.

use super::config::{EncoderConfig, Family};
use super::dropout;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Device, Tensor};

/// How the first token's vector becomes logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStyle {
    /// BERT: pooler dense + tanh, dropout, linear.
    BertPooler,
    /// DistilBERT: pre-classifier dense + ReLU, dropout, linear.
    DistilBert,
    /// RoBERTa: dropout, dense + tanh, dropout, linear.
    Roberta,
    /// ELECTRA's head and DeBERTa's pooler with its classifier: dropout, dense + GELU,
    /// dropout, linear.
    Gelu,
}

/// Dense layer, activation and the final linear layer to the labels.
#[derive(Module, Debug)]
pub struct ClassificationHead {
    /// Hidden-to-hidden layer (BERT's and DeBERTa's pooler, DistilBERT's pre-classifier,
    /// RoBERTa's and ELECTRA's dense).
    pub dense: Linear,
    /// Hidden-to-labels layer.
    pub out: Linear,
    dropout: Dropout,
    /// Dropout on the first token before the dense layer (RoBERTa, ELECTRA, DeBERTa).
    input_dropout: Dropout,
    #[module(skip)]
    style: HeadStyle,
}

impl ClassificationHead {
    /// A randomly initialised head with `num_labels` outputs.
    pub fn new(config: &EncoderConfig, num_labels: usize, device: &Device) -> Self {
        Self {
            dense: LinearConfig::new(config.hidden_size, config.hidden_size).init(device),
            out: LinearConfig::new(config.hidden_size, num_labels).init(device),
            dropout: DropoutConfig::new(config.classifier_dropout).init(),
            input_dropout: DropoutConfig::new(config.head_input_dropout).init(),
            style: match config.family {
                Family::Bert => HeadStyle::BertPooler,
                Family::DistilBert => HeadStyle::DistilBert,
                Family::Roberta => HeadStyle::Roberta,
                Family::Electra | Family::DebertaV2 => HeadStyle::Gelu,
            },
        }
    }

    /// Logits `[batch, labels]` from the first token's vectors `[batch, hidden]`.
    pub fn forward(&self, first_token: Tensor<2>) -> Tensor<2> {
        let hidden = match self.style {
            HeadStyle::BertPooler => self.dense.forward(first_token).tanh(),
            HeadStyle::DistilBert => relu(self.dense.forward(first_token)),
            HeadStyle::Roberta => self
                .dense
                .forward(dropout::apply(&self.input_dropout, first_token))
                .tanh(),
            HeadStyle::Gelu => gelu(
                self.dense
                    .forward(dropout::apply(&self.input_dropout, first_token)),
            ),
        };
        self.out.forward(dropout::apply(&self.dropout, hidden))
    }
}
