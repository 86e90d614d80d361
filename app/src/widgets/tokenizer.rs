//! The tokenizer playground: a sentence in, the default model's WordPiece pieces out,
//! colored and numbered by the word they came from, with their ids and a few counts.

use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One piece of a tokenized sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// The piece as the vocabulary spells it (`##` marks a continuation).
    pub text: String,
    /// Its id in the vocabulary.
    pub id: u32,
    /// Index of the word it came from; `None` for special tokens.
    pub word: Option<u32>,
}

/// A tokenized sentence with its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizedText {
    /// Every piece, special tokens included.
    pub pieces: Vec<Piece>,
    /// How many pieces are `[UNK]`.
    pub unknown: usize,
    /// How many words the sentence had.
    pub words: usize,
    /// Whether the text was cut to the model's length.
    pub truncated: bool,
    /// That length, in tokens.
    pub max_len: usize,
}

impl TokenizedText {
    /// Non-special pieces per word.
    pub fn pieces_per_word(&self) -> f64 {
        let pieces = self.pieces.iter().filter(|p| p.word.is_some()).count();
        pieces as f64 / self.words.max(1) as f64
    }
}

/// The default model's tokenizer, put into the request context by the server.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct DefaultTokenizer(pub std::sync::Arc<trainer::tokenize::TextEncoder>);

/// Splits `text` into the default model's pieces.
#[server(prefix = "/api", endpoint = "tokenize")]
pub async fn tokenize_text(text: String) -> Result<TokenizedText, AppError> {
    crate::models::check_sentence(&text)?;
    let DefaultTokenizer(tokenizer) = AppError::from_context("tokenizer")?;
    let encoding = tokenizer
        .encode(&text)
        .map_err(|e| AppError::BadRequest(e.to_string()).respond())?;
    let pieces: Vec<Piece> = encoding
        .tokens
        .iter()
        .zip(&encoding.ids)
        .zip(&encoding.word_ids)
        .map(|((text, &id), &word)| Piece {
            text: text.clone(),
            id,
            word,
        })
        .collect();
    let mut words: Vec<u32> = pieces.iter().filter_map(|p| p.word).collect();
    words.dedup();
    Ok(TokenizedText {
        unknown: pieces.iter().filter(|p| p.text == "[UNK]").count(),
        words: words.len(),
        pieces,
        truncated: encoding.truncated,
        max_len: tokenizer.max_len(),
    })
}

/// A text box and the pieces the tokenizer makes of it.
#[component]
pub fn TokenizerPlayground() -> impl IntoView {
    let text = RwSignal::new("unhappiness is a strange word".to_string());
    let tokenize = ServerAction::<TokenizeText>::new();
    view! {
        <section class="widget tokenizer-playground">
            <h2>"Try it: the tokenizer playground"</h2>
            <p>
                "Type any sentence, even made-up words, and see the pieces all-MiniLM-L6-v2 reads. "
                "Pieces of the same word share a color and a word number; the number under each piece is its id."
            </p>
            <super::shared::SentenceForm
                text
                label="Split into tokens"
                pending=tokenize.pending()
                on_submit=move |text| {
                    tokenize.dispatch(TokenizeText { text });
                }
            />
            {move || super::shared::action_result(tokenize.value().get(), |result| view! { <TokenizedView result /> }.into_any())}
        </section>
    }
}

/// The pieces and counts of one tokenization.
#[component]
fn TokenizedView(result: TokenizedText) -> impl IntoView {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let summary = format!(
        "{} for {} ({:.2} pieces per word), {} unknown ([UNK])",
        plural(result.pieces.len(), "piece", "pieces"),
        plural(result.words, "word", "words"),
        result.pieces_per_word(),
        result.unknown
    );
    let truncated = result.truncated.then(|| {
        view! {
            <p class="notice">
                {format!("The text was longer than the model's {} tokens, so it was cut there.", result.max_len)}
            </p>
        }
    });
    view! {
        <ol class="pieces" data-testid="pieces">
            {result
                .pieces
                .into_iter()
                .map(|piece| {
                    let hue = piece.word.map_or(0, |w| (w * 67 + 200) % 360);
                    // The color groups a word's pieces at a glance; the word number says
                    // the same in text, for whoever cannot tell the colors apart.
                    let word = piece
                        .word
                        .map_or_else(|| "special".to_string(), |w| format!("word {}", w + 1));
                    view! {
                        <li
                            class="piece"
                            class:special=piece.word.is_none()
                            style=format!("--hue: {hue}")
                        >
                            <span class="piece-text">{piece.text}</span>
                            <span class="piece-id"><span class="visually-hidden">"id "</span>{piece.id}</span>
                            <span class="piece-word">{word}</span>
                        </li>
                    }
                })
                .collect_view()}
        </ol>
        <p class="piece-summary">{summary}</p>
        {truncated}
    }
}
