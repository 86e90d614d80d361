//! A run's sentences as the model takes them: tokenized splits, training sentences
//! tokenized as batches first need them, padding, and labels as tensors.

use crate::data::Example;
use crate::tokenize::{
    Encoding, TextEncoder, TokenBatch, TokenizeError, pad_to_multiple, padded_length,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

/// Tokenized sentences with their labels.
pub(super) struct EncodedSplit {
    /// The sentences' encodings.
    pub(super) encodings: Vec<Encoding>,
    /// Their labels, in the same order (0 = negative, 1 = positive).
    pub(super) labels: Vec<u8>,
}

impl EncodedSplit {
    /// Tokenizes `examples` at once, on every core.
    pub(super) fn encode(
        tokenizer: &TextEncoder,
        examples: &[Example],
    ) -> Result<Self, TokenizeError> {
        Ok(Self {
            encodings: examples
                .par_iter()
                .map(|e| tokenizer.encode(&e.sentence))
                .collect::<Result<_, _>>()?,
            labels: examples.iter().map(|e| e.label).collect(),
        })
    }
}

/// The training sentences, each tokenized the first time a batch needs it: a run's first
/// loss point does not wait for all 67,349 of SST-2's, and later epochs reuse them.
pub(super) struct TrainingSentences {
    examples: Vec<Example>,
    encodings: Vec<Option<Encoding>>,
}

impl TrainingSentences {
    /// The sentences of `examples`, none tokenized yet.
    pub(super) fn new(examples: Vec<Example>) -> Self {
        let encodings = vec![None; examples.len()];
        Self {
            examples,
            encodings,
        }
    }

    /// How many there are.
    pub(super) fn len(&self) -> usize {
        self.examples.len()
    }

    /// The encodings of the sentences at `indices`, tokenizing those not seen yet.
    pub(super) fn batch(
        &mut self,
        tokenizer: &TextEncoder,
        indices: &[usize],
    ) -> Result<Vec<Encoding>, TokenizeError> {
        let missing: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| self.encodings[i].is_none())
            .collect();
        let encoded = missing
            .par_iter()
            .map(|&i| tokenizer.encode(&self.examples[i].sentence))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, encoding) in missing.into_iter().zip(encoded) {
            self.encodings[i] = Some(encoding);
        }
        Ok(indices
            .iter()
            .filter_map(|&i| self.encodings[i].clone())
            .collect())
    }

    /// For each number of columns `padding` can give a batch, in increasing order, that
    /// number and up to `batch_size` of these sentences padded to exactly that many.
    /// Sentences are tokenized in order until every length has its batch or none are left;
    /// a length no sentence pads to is left out.
    pub(super) fn one_batch_per_length(
        &mut self,
        tokenizer: &TextEncoder,
        padding: &Padding,
        batch_size: usize,
    ) -> Result<Vec<(usize, Vec<usize>)>, TokenizeError> {
        /// Sentences tokenized at a time while looking.
        const CHUNK: usize = 1024;
        let mut lengths: Vec<usize> = (1..=padding.cap)
            .map(|tokens| padding.columns(tokens))
            .collect();
        lengths.dedup();
        let mut batches: Vec<(usize, Vec<usize>)> =
            lengths.into_iter().map(|len| (len, Vec::new())).collect();
        let all: Vec<usize> = (0..self.len()).collect();
        for chunk in all.chunks(CHUNK) {
            if batches.iter().all(|(_, batch)| batch.len() == batch_size) {
                break;
            }
            let encodings = self.batch(tokenizer, chunk)?;
            for (&index, encoding) in chunk.iter().zip(&encodings) {
                let columns = padding.columns(encoding.ids.len());
                if let Some((_, batch)) = batches.iter_mut().find(|(len, _)| *len == columns)
                    && batch.len() < batch_size
                {
                    batch.push(index);
                }
            }
        }
        batches.retain(|(_, batch)| !batch.is_empty());
        Ok(batches)
    }

    /// The labels of the sentences at `indices`.
    pub(super) fn labels(&self, indices: &[usize]) -> Vec<u8> {
        indices.iter().map(|&i| self.examples[i].label).collect()
    }
}

/// How batches are padded: with which token, to a multiple of how many columns, and to at
/// most how many.
pub(super) struct Padding {
    /// The tokenizer's padding token.
    pub(super) pad_id: u32,
    /// Sequence lengths are rounded up to a multiple of this.
    pub(super) multiple: usize,
    /// The longest sequence, in tokens.
    pub(super) cap: usize,
}

impl Padding {
    /// `encodings` padded into one batch.
    pub(super) fn apply(&self, encodings: &[Encoding]) -> TokenBatch {
        pad_to_multiple(encodings, self.pad_id, self.multiple, self.cap)
    }

    /// The columns of a batch whose longest sentence has `tokens` tokens.
    pub(super) fn columns(&self, tokens: usize) -> usize {
        padded_length(tokens, self.multiple, self.cap)
    }
}

/// `labels` as a tensor of class indices on `device`.
pub(super) fn labels_tensor(labels: &[u8], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    Tensor::from_data(TensorData::new(values, [labels.len()]), device)
}
