//! SST-2 (GLUE) data: reading the TSVs, carving a seeded stratified validation split out of
//! train so the official dev set can serve as a private test set, and train subsets for
//! quick runs.

use crate::rng::SeededRng;
use std::path::{Path, PathBuf};

mod check;
pub use check::{GLUE_RELEASE, MIN_TRAIN_SENTENCES, SST2_FILES, Sst2Summary, check_sst2};

/// Labels of SST-2, in the order of their ids (0 negative, 1 positive).
pub const LABELS: [&str; 2] = ["negative", "positive"];

/// One labelled sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The sentence (lower-cased and tokenized by the treebank).
    pub sentence: String,
    /// 0 = negative, 1 = positive.
    pub label: u8,
}

/// Why a data file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line does not have the expected shape.
    #[error("{path}, line {line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The options cannot be met by the data.
    #[error("{0}")]
    Options(String),
}

/// Reads a labelled GLUE SST-2 file (`train.tsv` or `dev.tsv`: header `sentence<TAB>label`).
pub fn read_labelled(path: &Path) -> Result<Vec<Example>, DataError> {
    let text = read(path)?;
    let mut lines = text.lines().enumerate();
    let malformed = |line: usize, reason: String| DataError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    match lines.next() {
        Some((_, header)) if header.trim_end() == "sentence\tlabel" => {}
        Some((_, header)) => {
            return Err(malformed(
                1,
                format!(
                    "expected the header \u{201c}sentence<TAB>label\u{201d}, found \u{201c}{}\u{201d}",
                    shorten(header)
                ),
            ));
        }
        None => return Err(malformed(1, "the file is empty".into())),
    }
    let mut examples = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (sentence, label) = line.rsplit_once('\t').ok_or_else(|| {
            malformed(
                number,
                "expected two tab-separated columns, sentence and label".into(),
            )
        })?;
        let label = match label.trim() {
            "0" => 0,
            "1" => 1,
            other => {
                return Err(malformed(
                    number,
                    format!(
                        "the label must be 0 or 1, found \u{201c}{}\u{201d}",
                        shorten(other)
                    ),
                ));
            }
        };
        if sentence.trim().is_empty() {
            return Err(malformed(number, "the sentence is empty".into()));
        }
        examples.push(Example {
            sentence: sentence.to_string(),
            label,
        });
    }
    if examples.is_empty() {
        return Err(malformed(2, "the file has a header but no examples".into()));
    }
    Ok(examples)
}

/// Reads the unlabelled GLUE test file (`test.tsv`: header `index<TAB>sentence`).
pub fn read_test(path: &Path) -> Result<Vec<(u32, String)>, DataError> {
    let text = read(path)?;
    let mut lines = text.lines().enumerate();
    let malformed = |line: usize, reason: String| DataError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    match lines.next() {
        Some((_, header)) if header.trim_end() == "index\tsentence" => {}
        _ => {
            return Err(malformed(
                1,
                "expected the header \u{201c}index<TAB>sentence\u{201d}".into(),
            ));
        }
    }
    let mut rows = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (id, sentence) = line.split_once('\t').ok_or_else(|| {
            malformed(
                number,
                "expected two tab-separated columns, index and sentence".into(),
            )
        })?;
        let id = id.trim().parse().map_err(|_| {
            malformed(
                number,
                format!(
                    "the index must be a whole number, found \u{201c}{}\u{201d}",
                    shorten(id)
                ),
            )
        })?;
        rows.push((id, sentence.to_string()));
    }
    Ok(rows)
}

fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// How to split SST-2 for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitOptions {
    /// Sentences carved out of train for validation (default 2,000).
    pub validation_size: usize,
    /// Train on only this many sentences (after the validation split), for quick runs.
    pub train_subset: Option<usize>,
    /// Seed for the split and the subset.
    pub seed: u64,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            validation_size: 2_000,
            train_subset: None,
            seed: 42,
        }
    }
}

/// SST-2 divided for one run.
#[derive(Debug, Clone)]
pub struct Sst2Splits {
    /// What the model trains on.
    pub train: Vec<Example>,
    /// Carved out of train; evaluated during the run and shown on the public leaderboard.
    pub validation: Vec<Example>,
    /// The official GLUE dev set, used as the private test set.
    pub private_test: Vec<Example>,
}

/// Reads `train.tsv` and `dev.tsv` from `dir` and splits them.
pub fn load_sst2(dir: &Path, options: &SplitOptions) -> Result<Sst2Splits, DataError> {
    let train = read_labelled(&dir.join("train.tsv"))?;
    let private_test = read_labelled(&dir.join("dev.tsv"))?;
    let (train, validation) = split(train, options)?;
    Ok(Sst2Splits {
        train,
        validation,
        private_test,
    })
}

/// Splits `examples` into (train, validation), keeping each label's share in both, then
/// keeps a stratified `train_subset` of train when asked.
pub fn split(
    examples: Vec<Example>,
    options: &SplitOptions,
) -> Result<(Vec<Example>, Vec<Example>), DataError> {
    if options.validation_size == 0 || options.validation_size >= examples.len() {
        return Err(DataError::Options(format!(
            "the validation split must hold between 1 and {} sentences, not {}",
            examples.len().saturating_sub(1),
            options.validation_size
        )));
    }
    let mut rng = SeededRng::new(options.seed);
    let (validation, train) = stratified_take(examples, options.validation_size, &mut rng);
    let train = match options.train_subset {
        None => train,
        Some(0) => {
            return Err(DataError::Options(
                "the train subset must hold at least one sentence".into(),
            ));
        }
        Some(n) if n >= train.len() => train,
        Some(n) => stratified_take(train, n, &mut rng).0,
    };
    Ok((train, validation))
}

/// Takes `count` examples with the labels in the same proportion as `examples`; returns
/// (taken, rest), each in a seeded shuffled order.
fn stratified_take(
    examples: Vec<Example>,
    count: usize,
    rng: &mut SeededRng,
) -> (Vec<Example>, Vec<Example>) {
    let total = examples.len();
    let (mut positives, mut negatives): (Vec<_>, Vec<_>) =
        examples.into_iter().partition(|e| e.label == 1);
    rng.shuffle(&mut positives);
    rng.shuffle(&mut negatives);
    let take_positive = ((count as f64) * positives.len() as f64 / total as f64).round() as usize;
    let take_positive = take_positive
        .min(positives.len())
        .max(count.saturating_sub(negatives.len()));
    let take_negative = count - take_positive;
    let rest_positive = positives.split_off(take_positive);
    let rest_negative = negatives.split_off(take_negative);
    let mut taken: Vec<_> = positives.into_iter().chain(negatives).collect();
    let mut rest: Vec<_> = rest_positive.into_iter().chain(rest_negative).collect();
    rng.shuffle(&mut taken);
    rng.shuffle(&mut rest);
    (taken, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content.as_bytes()).unwrap();
        file
    }

    fn examples(positives: usize, negatives: usize) -> Vec<Example> {
        (0..positives)
            .map(|i| Example {
                sentence: format!("good {i}"),
                label: 1,
            })
            .chain((0..negatives).map(|i| Example {
                sentence: format!("bad {i}"),
                label: 0,
            }))
            .collect()
    }

    #[test]
    fn reads_a_labelled_file() {
        let f = file("sentence\tlabel\nit 's a charming journey . \t1\na dull mess \t0\n");
        let rows = read_labelled(f.path()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            Example {
                sentence: "it 's a charming journey . ".into(),
                label: 1
            }
        );
        assert_eq!(rows[1].label, 0);
    }

    #[test]
    fn malformed_rows_name_the_file_and_line() {
        let f = file("sentence\tlabel\nfine\t1\nno label here\n");
        let error = read_labelled(f.path()).unwrap_err().to_string();
        assert!(
            error.contains(&f.path().display().to_string()) && error.contains("line 3"),
            "{error}"
        );
        let f = file("sentence\tlabel\nfine\t1\nodd\t7\n");
        assert!(
            read_labelled(f.path())
                .unwrap_err()
                .to_string()
                .contains("line 3: the label must be 0 or 1")
        );
        let f = file("text\tlabel\nfine\t1\n");
        assert!(
            read_labelled(f.path())
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        let f = file("index\tsentence\nx\thello\n");
        assert!(
            read_test(f.path())
                .unwrap_err()
                .to_string()
                .contains("line 2")
        );
        let missing = read_labelled(Path::new("/nonexistent/train.tsv"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/train.tsv"), "{missing}");
    }

    #[test]
    fn the_validation_split_is_stratified_seeded_and_disjoint() {
        let options = SplitOptions {
            validation_size: 100,
            train_subset: None,
            seed: 3,
        };
        let (train, validation) = split(examples(600, 400), &options).unwrap();
        assert_eq!(validation.len(), 100);
        assert_eq!(train.len(), 900);
        assert_eq!(validation.iter().filter(|e| e.label == 1).count(), 60);
        assert!(validation.iter().all(|v| !train.contains(v)));
        let (train_again, validation_again) = split(examples(600, 400), &options).unwrap();
        assert_eq!((train, validation), (train_again, validation_again));
        let other = SplitOptions { seed: 4, ..options };
        assert_ne!(
            split(examples(600, 400), &other).unwrap().1,
            split(
                examples(600, 400),
                &SplitOptions {
                    seed: 3,
                    ..other.clone()
                }
            )
            .unwrap()
            .1
        );
    }

    #[test]
    fn a_train_subset_keeps_the_label_balance() {
        let options = SplitOptions {
            validation_size: 100,
            train_subset: Some(90),
            seed: 1,
        };
        let (train, _) = split(examples(600, 400), &options).unwrap();
        assert_eq!(train.len(), 90);
        assert_eq!(train.iter().filter(|e| e.label == 1).count(), 54);
    }

    #[test]
    fn impossible_options_are_errors() {
        let too_big = SplitOptions {
            validation_size: 10,
            ..Default::default()
        };
        assert!(split(examples(5, 5), &too_big).is_err());
        let zero_subset = SplitOptions {
            validation_size: 2,
            train_subset: Some(0),
            seed: 0,
        };
        assert!(split(examples(5, 5), &zero_subset).is_err());
    }

    #[test]
    fn the_real_sst2_files_load_when_present() {
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        );
        let dir = manifest.join("../../shared/data/sst2");
        if !dir.join("train.tsv").is_file() {
            eprintln!("SST-2 not found at {}; skipped", dir.display());
            return;
        }
        let splits = load_sst2(&dir, &SplitOptions::default()).unwrap();
        assert_eq!(splits.train.len() + splits.validation.len(), 67_349);
        assert_eq!(splits.validation.len(), 2_000);
        assert_eq!(splits.private_test.len(), 872);
        assert_eq!(read_test(&dir.join("test.tsv")).unwrap().len(), 1_821);
    }
}
