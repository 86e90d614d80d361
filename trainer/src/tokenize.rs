//! Turning sentences into token ids with the model's own `tokenizer.json`, with dynamic
//! padding: each batch is padded to its longest sentence, capped at `max_len`.
//!
//! Fixed padding and truncation stored in the file (all-MiniLM-L6-v2's pads everything to
//! 128) are switched off; truncation to `max_len` is done here and reported.

use std::path::{Path, PathBuf};
use tokenizers::{PostProcessor, Tokenizer, TruncationDirection};

/// Why a tokenizer could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// The file is missing or not a tokenizer.
    #[error("{path}: {reason}")]
    Load {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A sentence could not be encoded.
    #[error("cannot tokenize the text: {0}")]
    Encode(String),
}

/// A sentence as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// The token strings, e.g. `[CLS] un ##ha ##pp ##iness [SEP]`.
    pub tokens: Vec<String>,
    /// Segment ids (all 0 for single sentences).
    pub type_ids: Vec<u32>,
    /// For each token, the index of the word it came from (`None` for special tokens).
    pub word_ids: Vec<Option<u32>>,
    /// Whether the sentence was cut to fit `max_len`.
    pub truncated: bool,
}

/// A padded batch, row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Token ids, padded with the pad id.
    pub ids: Vec<u32>,
    /// Segment ids.
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
    /// Rows.
    pub batch_size: usize,
    /// Columns: the longest sentence, capped at `max_len`.
    pub seq_len: usize,
}

/// A model's tokenizer with padding and truncation under our control.
#[derive(Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    pad_id: u32,
    max_len: usize,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("pad_id", &self.pad_id)
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl TextEncoder {
    /// Loads `tokenizer.json`; sentences longer than `max_len` tokens are truncated.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self, TokenizeError> {
        let fail = |reason: String| TokenizeError::Load {
            path: path.to_path_buf(),
            reason,
        };
        if max_len < 3 {
            return Err(fail(format!(
                "max_len must be at least 3 tokens, not {max_len}"
            )));
        }
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| fail(e.to_string()))?;
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| {
                ["[PAD]", "<pad>"]
                    .iter()
                    .find_map(|t| tokenizer.token_to_id(t))
            })
            .ok_or_else(|| fail("the tokenizer has no padding token ([PAD] or <pad>)".into()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            tokenizer,
            pad_id,
            max_len,
        })
    }

    /// The same encoder, cutting at `max_len` tokens when that is shorter (at least 3).
    pub fn capped_at(&self, max_len: usize) -> Self {
        Self {
            max_len: self.max_len.min(max_len.max(3)),
            ..self.clone()
        }
    }

    /// The longest sequence, in tokens, this encoder produces.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The size of the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Encodes one sentence with its special tokens, truncated to `max_len`.
    pub fn encode(&self, text: &str) -> Result<Encoding, TokenizeError> {
        let mut encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        let truncated = encoding.len() > self.max_len;
        if truncated {
            let added = self
                .tokenizer
                .get_post_processor()
                .map_or(0, |p| p.added_tokens(false));
            let mut plain = self
                .tokenizer
                .encode(text, false)
                .map_err(|e| TokenizeError::Encode(e.to_string()))?;
            plain.truncate(self.max_len - added, 0, TruncationDirection::Right);
            encoding = self
                .tokenizer
                .post_process(plain, None, true)
                .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        }
        Ok(Encoding {
            ids: encoding.get_ids().to_vec(),
            tokens: encoding.get_tokens().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
            word_ids: encoding.get_word_ids().to_vec(),
            truncated,
        })
    }

    /// Encodes sentences and pads them to the longest one.
    pub fn batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch, TokenizeError> {
        let encodings = texts
            .iter()
            .map(|t| self.encode(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(pad(&encodings, self.pad_id))
    }
}

/// Pads encodings to the longest one.
pub fn pad(encodings: &[Encoding], pad_id: u32) -> TokenBatch {
    pad_to_multiple(encodings, pad_id, 1, usize::MAX)
}

/// The columns of a batch whose longest sequence has `longest` tokens: rounded up to a
/// multiple of `multiple`, but not past `cap` unless the sequence itself is longer.
pub fn padded_length(longest: usize, multiple: usize, cap: usize) -> usize {
    longest
        .div_ceil(multiple.max(1))
        .saturating_mul(multiple.max(1))
        .min(cap)
        .max(longest)
}

/// Pads encodings to the longest one rounded up to a multiple of `multiple`, but to no more
/// than `cap` columns unless a sentence is longer. A GPU then sees a few sequence lengths
/// instead of every one, so it compiles and tunes fewer kernel variants; padded positions
/// are masked, so the results do not change.
pub fn pad_to_multiple(
    encodings: &[Encoding],
    pad_id: u32,
    multiple: usize,
    cap: usize,
) -> TokenBatch {
    let longest = encodings.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let seq_len = padded_length(longest, multiple, cap);
    let mut batch = TokenBatch {
        ids: Vec::with_capacity(encodings.len() * seq_len),
        type_ids: Vec::with_capacity(encodings.len() * seq_len),
        mask: Vec::with_capacity(encodings.len() * seq_len),
        batch_size: encodings.len(),
        seq_len,
    };
    for encoding in encodings {
        let padding = seq_len - encoding.ids.len();
        batch.ids.extend(
            encoding
                .ids
                .iter()
                .copied()
                .chain(std::iter::repeat_n(pad_id, padding)),
        );
        batch.type_ids.extend(
            encoding
                .type_ids
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, padding)),
        );
        batch.mask.extend(
            std::iter::repeat_n(1, encoding.ids.len()).chain(std::iter::repeat_n(0, padding)),
        );
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding(len: usize) -> Encoding {
        Encoding {
            ids: (1..=len as u32).collect(),
            tokens: vec!["t".into(); len],
            type_ids: vec![0; len],
            word_ids: vec![None; len],
            truncated: false,
        }
    }

    #[test]
    fn padding_rounds_up_to_the_multiple_and_masks_the_extra_columns() {
        let batch = pad_to_multiple(&[encoding(5), encoding(3)], 0, 8, 64);
        assert_eq!((batch.batch_size, batch.seq_len), (2, 8));
        assert_eq!(batch.ids[..8], [1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(batch.mask[8..], [1, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(pad(&[encoding(5), encoding(3)], 0).seq_len, 5);
    }

    #[test]
    fn a_capped_encoder_cuts_at_the_cap_and_keeps_the_special_tokens() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert/tokenizer.json");
        let encoder = TextEncoder::from_file(&path, 512).unwrap();
        let capped = encoder.capped_at(8);
        assert_eq!((capped.max_len(), encoder.max_len()), (8, 512));
        assert_eq!(encoder.capped_at(1024).max_len(), 512, "never longer");
        let long = "the movie was good and the cast was witty and the ending was sad";
        let cut = capped.encode(long).unwrap();
        assert_eq!(cut.ids.len(), 8);
        assert!(cut.truncated);
        assert_eq!(cut.tokens.last().map(String::as_str), Some("[SEP]"));
        assert!(!encoder.encode(long).unwrap().truncated);
    }

    #[test]
    fn padding_stops_at_the_cap_but_never_cuts_a_sentence() {
        assert_eq!(pad_to_multiple(&[encoding(61)], 0, 8, 62).seq_len, 62);
        assert_eq!(pad_to_multiple(&[encoding(61)], 0, 8, 60).seq_len, 61);
        assert_eq!(pad_to_multiple(&[encoding(16)], 0, 8, 64).seq_len, 16);
        assert_eq!(pad_to_multiple(&[], 0, 8, 64).seq_len, 0);
    }
}
