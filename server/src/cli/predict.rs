//! `jigsaw-lab predict` and `jigsaw-lab inspect`: a model's predictions and its encoder's
//! vectors and attention, from the terminal.

use super::{model_dir, number};
use crate::config::{self, Config};
use clap::Args;
use std::path::Path;

/// The options of `jigsaw-lab predict`.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// An HF model directory, or the name of a folder in JIGSAW_MODELS_DIR [default:
    /// all-MiniLM-L6-v2, whose head is untrained]
    #[arg(
        long,
        alias = "model-dir",
        value_name = "DIR|NAME",
        allow_hyphen_values = true
    )]
    model: Option<String>,

    /// Longest sequence in tokens; longer sentences are truncated [default: 128, or the
    /// model's positions when fewer]
    #[arg(long, value_name = "N", value_parser = number::<usize>, allow_hyphen_values = true)]
    max_len: Option<usize>,

    /// The sentences to classify (quote each one)
    #[arg(value_name = "SENTENCE")]
    sentences: Vec<String>,
}

impl PredictArgs {
    /// Runs `jigsaw-lab predict`: prints the results as one JSON object.
    pub fn run(self, config: &Config) -> Result<bool, String> {
        let model = model_dir(config, self.model.as_deref())?;
        if self.sentences.is_empty() {
            return Err("give at least one sentence to classify".into());
        }
        let predictor = load_predictor(config, &model, self.max_len)?;
        let results = self
            .sentences
            .iter()
            .map(|s| predictor.predict(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let json = serde_json::json!({ "model_dir": model, "results": results });
        println!("{json}");
        Ok(true)
    }
}

/// The options of `jigsaw-lab inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// An HF model directory, or the name of a folder in JIGSAW_MODELS_DIR [default:
    /// all-MiniLM-L6-v2]
    #[arg(long, value_name = "DIR|NAME", allow_hyphen_values = true)]
    model: Option<String>,

    /// Print one JSON object instead of a readable summary
    #[arg(long)]
    json: bool,

    /// The sentence to inspect (exactly one; quote it)
    #[arg(value_name = "SENTENCE")]
    sentences: Vec<String>,
}

impl InspectArgs {
    /// Runs `jigsaw-lab inspect`: prints the encoder's view of the sentence.
    pub fn run(self, config: &Config) -> Result<bool, String> {
        let model = model_dir(config, self.model.as_deref())?;
        let [sentence] = self.sentences.as_slice() else {
            return Err("give exactly one sentence to inspect (quote it)".into());
        };
        let predictor = load_predictor(config, &model, None)?;
        let inspection = predictor.inspect(sentence).map_err(|e| e.to_string())?;
        if self.json {
            let line = serde_json::to_string(&inspection).map_err(|e| e.to_string())?;
            println!("{line}");
            return Ok(true);
        }
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        println!("model: {}", model.display());
        for (token, id) in inspection.tokens.iter().zip(&inspection.ids) {
            println!("  {id:>7}  {token}");
        }
        println!(
            "[CLS] vector: {} values, norm {:.4}; mean-pooled: norm {:.4}",
            inspection.cls.len(),
            norm(&inspection.cls),
            norm(&inspection.mean)
        );
        println!(
            "attention: {} layers x {} heads over {} tokens (use --json for the matrices)",
            inspection.attentions.len(),
            inspection.attentions.first().map_or(0, Vec::len),
            inspection.tokens.len()
        );
        Ok(true)
    }
}

/// Loads the model in `dir` for `predict` and `inspect` on the device JIGSAW_DEVICE chooses.
fn load_predictor(
    config: &Config,
    dir: &Path,
    max_len: Option<usize>,
) -> Result<trainer::inference::Predictor, String> {
    let device = config
        .open_device(config.device)
        .map_err(|e| format!("{}: {e}", config::DEVICE.env))?;
    trainer::inference::Predictor::load(dir, max_len, device.device()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command, describe};
    use clap::Parser;

    /// Parses `jigsaw-lab ARGS`, or says why not.
    fn parse(args: &str) -> Result<Option<Command>, String> {
        let args = std::iter::once("jigsaw-lab").chain(args.split_whitespace());
        Ok(Cli::try_parse_from(args).map_err(|e| describe(&e))?.command)
    }

    #[test]
    fn sentences_and_options_parse() {
        let Ok(Some(Command::Predict(args))) = parse("predict --max-len 16 one two") else {
            panic!("predict did not parse");
        };
        assert_eq!(args.max_len, Some(16));
        assert_eq!(args.sentences, ["one", "two"]);
        let Ok(Some(Command::Predict(args))) = parse("predict --model-dir /m x") else {
            panic!("predict --model-dir did not parse");
        };
        assert_eq!(args.model.as_deref(), Some("/m"));
        let Ok(Some(Command::Inspect(args))) = parse("inspect --json x") else {
            panic!("inspect did not parse");
        };
        assert!(args.json);
        assert_eq!(args.sentences, ["x"]);
    }

    #[test]
    fn bad_options_are_clear() {
        for (args, needle) in [
            ("predict --max-len x s", "--max-len expects a number"),
            ("predict --model", "--model needs a value"),
            (
                "inspect --colour x",
                "unknown option \u{201c}--colour\u{201d}",
            ),
        ] {
            let error = parse(args).unwrap_err();
            assert!(error.contains(needle), "{args}: {error}");
        }
    }
}
