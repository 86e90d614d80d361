//! Running a model on sentences: labels and probabilities, one sentence at a time (no
//! padding), for "try your model" and for checking an export against HF transformers; and
//! the base encoder's vectors and attention for `jigsaw-lab inspect`.

use crate::data::LABELS;
use crate::loader::{self, LoadError};
use crate::model::{BatchTensors, SequenceClassifier};
use crate::tokenize::{Encoding, TextEncoder, TokenizeError, pad};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use serde::Serialize;
use std::path::Path;

/// What the model says about one sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The sentence.
    pub text: String,
    /// Its tokens.
    pub tokens: Vec<String>,
    /// Its token ids.
    pub input_ids: Vec<u32>,
    /// Raw scores per label.
    pub logits: Vec<f32>,
    /// Softmax of the logits.
    pub probs: Vec<f32>,
    /// The most likely label.
    pub label: String,
    /// Whether the sentence was cut to the model's length.
    pub truncated: bool,
    /// The first token's ([CLS] or `<s>`) last-layer vector, which the head reads.
    pub cls: Vec<f32>,
}

/// What the base encoder (no classification head) computes for one sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// Its tokens, special tokens included.
    pub tokens: Vec<String>,
    /// Its token ids.
    pub ids: Vec<u32>,
    /// The last layer's vector of the first token ([CLS] or `<s>`).
    pub cls: Vec<f32>,
    /// The mean of the last layer's token vectors.
    pub mean: Vec<f32>,
    /// Attention probabilities, `[layer][head][query][key]`.
    pub attentions: Vec<Vec<Vec<Vec<f32>>>>,
}

/// Attention probabilities of one sentence, `[layer][head][query * tokens + key]`.
pub fn attention_matrices(
    model: &SequenceClassifier,
    encoding: &Encoding,
    device: &Device,
) -> Vec<Vec<Vec<f32>>> {
    let batch = BatchTensors::new(&pad(std::slice::from_ref(encoding), 0), device);
    per_head(model.encode(&batch, true).attentions)
}

/// One sentence's attention tensors (`[1, heads, seq, seq]` per layer) as
/// `[layer][head][query * seq + key]`.
fn per_head(layers: Vec<Tensor<4>>) -> Vec<Vec<Vec<f32>>> {
    layers
        .into_iter()
        .map(|layer| {
            let [_, heads, seq, _] = layer.dims();
            let values = layer.into_data().try_into_vec::<f32>().unwrap_or_default();
            values
                .chunks(seq * seq)
                .take(heads)
                .map(<[f32]>::to_vec)
                .collect()
        })
        .collect()
}

/// A sentence's tokens and every layer's and head's attention over them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionMaps {
    /// The tokens, special tokens included.
    pub tokens: Vec<String>,
    /// `[layer][head][query * tokens + key]`.
    pub layers: Vec<Vec<Vec<f32>>>,
    /// Whether the sentence was cut to the model's length.
    pub truncated: bool,
}

/// A loaded model ready to classify sentences.
#[derive(Debug)]
pub struct Predictor {
    model: SequenceClassifier,
    tokenizer: TextEncoder,
    device: Device,
    head_trained: bool,
}

impl Predictor {
    /// Loads the HF directory `dir`, truncating input at `max_len` tokens (by default 128,
    /// or fewer when the model has fewer positions).
    pub fn load(dir: &Path, max_len: Option<usize>, device: &Device) -> Result<Self, LoadError> {
        let max_len = match max_len {
            Some(n) => n,
            None => loader::read_config(dir)?.max_sequence_len().min(128),
        };
        let loaded = loader::load(dir, LABELS.len(), max_len, device)?;
        Ok(Self {
            head_trained: loaded.report.initialized.is_empty(),
            model: loaded.model,
            tokenizer: loaded.tokenizer,
            device: device.clone(),
        })
    }

    /// Whether the classification head came from the checkpoint (fine-tuned) rather than
    /// starting from random weights.
    pub fn head_trained(&self) -> bool {
        self.head_trained
    }

    /// The attention maps of one sentence.
    pub fn attention(&self, text: &str) -> Result<AttentionMaps, TokenizeError> {
        let encoding = self.tokenizer.encode(text)?;
        Ok(AttentionMaps {
            layers: attention_matrices(&self.model, &encoding, &self.device),
            tokens: encoding.tokens,
            truncated: encoding.truncated,
        })
    }

    /// The base encoder's last-layer [CLS] and mean-pooled vectors and every layer's and
    /// head's attention for one sentence.
    pub fn inspect(&self, text: &str) -> Result<Inspection, TokenizeError> {
        let encoding = self.tokenizer.encode(text)?;
        let batch = BatchTensors::new(
            &pad(std::slice::from_ref(&encoding), self.tokenizer.pad_id()),
            &self.device,
        );
        let output = self.model.encode(&batch, true);
        let vector =
            |tensor: Tensor<2>| tensor.into_data().try_into_vec::<f32>().unwrap_or_default();
        let seq_len = encoding.ids.len();
        let attentions = per_head(output.attentions)
            .into_iter()
            .map(|layer| {
                layer
                    .iter()
                    .map(|head| head.chunks(seq_len).map(<[f32]>::to_vec).collect())
                    .collect()
            })
            .collect();
        Ok(Inspection {
            cls: vector(SequenceClassifier::first_token(&output.hidden)),
            mean: vector(SequenceClassifier::mean_pooled(&output.hidden, &batch.mask)),
            attentions,
            tokens: encoding.tokens,
            ids: encoding.ids,
        })
    }

    /// Classifies one sentence.
    pub fn predict(&self, text: &str) -> Result<Prediction, TokenizeError> {
        let encoding = self.tokenizer.encode(text)?;
        let batch = BatchTensors::new(
            &pad(std::slice::from_ref(&encoding), self.tokenizer.pad_id()),
            &self.device,
        );
        let hidden = self.model.encode(&batch, false).hidden;
        let cls = SequenceClassifier::first_token(&hidden);
        let logits = self.model.head.forward(cls.clone());
        let cls = cls.into_data().try_into_vec::<f32>().unwrap_or_default();
        let probs = softmax(logits.clone(), 1)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let logits = logits.into_data().try_into_vec::<f32>().unwrap_or_default();
        let best = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        Ok(Prediction {
            text: text.to_string(),
            tokens: encoding.tokens,
            input_ids: encoding.ids,
            logits,
            probs,
            label: LABELS[best].to_string(),
            truncated: encoding.truncated,
            cls,
        })
    }
}
