//! Checking an SST-2 folder before the server uses it: the three GLUE files with their
//! headers, columns and labels, enough rows to train, and whether they are byte for byte
//! the GLUE release (by sha256).

use super::{DataError, read_labelled, read_test};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The files of an SST-2 folder, as GLUE distributes them.
pub const SST2_FILES: [&str; 3] = ["train.tsv", "dev.tsv", "test.tsv"];

/// The GLUE release of SST-2: each file's name, rows (header left out) and sha256.
pub const GLUE_RELEASE: [(&str, usize, &str); 3] = [
    (
        "train.tsv",
        67_349,
        "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    ),
    (
        "dev.tsv",
        872,
        "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    ),
    (
        "test.tsv",
        1_821,
        "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13",
    ),
];

/// The fewest training sentences a folder may hold beyond the validation split.
pub const MIN_TRAIN_SENTENCES: usize = 32;

/// What a checked SST-2 folder holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sst2Summary {
    /// Labelled training sentences in train.tsv (before the validation split).
    pub train_rows: usize,
    /// Of those, the positive ones.
    pub train_positive: usize,
    /// Labelled sentences in dev.tsv.
    pub dev_rows: usize,
    /// Unlabelled sentences in test.tsv.
    pub test_rows: usize,
    /// Whether all three files are the GLUE release, byte for byte.
    pub glue_release: bool,
}

/// Checks the SST-2 folder `dir` for runs that carve `validation_size` sentences out of
/// train. A folder whose files have the GLUE release's row counts but other contents is
/// refused as damaged; other well-formed files are accepted and reported as not GLUE's.
pub fn check_sst2(dir: &Path, validation_size: usize) -> Result<Sst2Summary, DataError> {
    let missing: Vec<&str> = SST2_FILES
        .iter()
        .copied()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if !missing.is_empty() {
        let (last, rest) = missing.split_last().expect("one is missing");
        let names = if rest.is_empty() {
            format!("{last} is")
        } else {
            format!("{} and {last} are", rest.join(", "))
        };
        return Err(DataError::Options(if missing.len() == SST2_FILES.len() {
            format!("SST-2 is not installed: {names} missing")
        } else {
            format!("SST-2 needs train.tsv, dev.tsv and test.tsv; {names} missing")
        }));
    }
    let train = read_labelled(&dir.join("train.tsv"))?;
    let dev = read_labelled(&dir.join("dev.tsv"))?;
    let test = read_test(&dir.join("test.tsv"))?;
    if test.is_empty() {
        return Err(DataError::Malformed {
            path: dir.join("test.tsv"),
            line: 2,
            reason: "the file has a header but no sentences".into(),
        });
    }
    let needed = validation_size + MIN_TRAIN_SENTENCES;
    if train.len() < needed {
        return Err(DataError::Options(format!(
            "train.tsv holds {} sentences; runs need at least {needed} ({validation_size} for \
             validation and {MIN_TRAIN_SENTENCES} to train on)",
            train.len()
        )));
    }
    for label in [0, 1] {
        if !train.iter().any(|e| e.label == label) {
            return Err(DataError::Options(format!(
                "train.tsv has no sentence labelled {label} ({}); a classifier needs both",
                super::LABELS[usize::from(label)]
            )));
        }
    }
    let rows = [train.len(), dev.len(), test.len()];
    let mut glue_release = true;
    for ((name, glue_rows, glue_sha), rows) in GLUE_RELEASE.iter().zip(rows) {
        let path = dir.join(name);
        let digest = sha256_of(&path)?;
        if digest != *glue_sha {
            glue_release = false;
            if rows == *glue_rows {
                return Err(DataError::Options(format!(
                    "{name} has the {glue_rows} rows of the GLUE release but not its contents \
                     (sha256 {digest}, GLUE's is {glue_sha}): the file is damaged or edited; \
                     take it from SST-2.zip again"
                )));
            }
        }
    }
    Ok(Sst2Summary {
        train_rows: train.len(),
        train_positive: train.iter().filter(|e| e.label == 1).count(),
        dev_rows: dev.len(),
        test_rows: test.len(),
        glue_release,
    })
}

/// The sha256 of the file at `path`, in lower-case hex.
fn sha256_of(path: &Path) -> Result<String, DataError> {
    let mut file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(train_rows: usize, dev: &str, test: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut train = String::from("sentence\tlabel\n");
        for i in 0..train_rows {
            train.push_str(&format!("sentence number {i} \t{}\n", i % 2));
        }
        std::fs::write(dir.path().join("train.tsv"), train).unwrap();
        std::fs::write(dir.path().join("dev.tsv"), dev).unwrap();
        std::fs::write(dir.path().join("test.tsv"), test).unwrap();
        dir
    }

    const DEV: &str = "sentence\tlabel\na fine film \t1\na dull one \t0\n";
    const TEST: &str = "index\tsentence\n0\tsomething\n";

    #[test]
    fn a_small_well_formed_folder_is_accepted_as_not_glue() {
        let dir = folder(150, DEV, TEST);
        let summary = check_sst2(dir.path(), 20).unwrap();
        assert_eq!(
            summary,
            Sst2Summary {
                train_rows: 150,
                train_positive: 75,
                dev_rows: 2,
                test_rows: 1,
                glue_release: false
            }
        );
    }

    #[test]
    fn each_problem_is_named() {
        let dir = folder(150, DEV, TEST);
        let too_few = check_sst2(dir.path(), 2_000).unwrap_err().to_string();
        assert!(
            too_few.contains("train.tsv holds 150 sentences"),
            "{too_few}"
        );

        let bad_dev = folder(150, "sentence\tlabel\nfine \t7\n", TEST);
        let message = check_sst2(bad_dev.path(), 20).unwrap_err().to_string();
        assert!(
            message.contains("dev.tsv, line 2: the label must be 0 or 1"),
            "{message}"
        );

        let bad_test = folder(150, DEV, "sentence\tlabel\n");
        let message = check_sst2(bad_test.path(), 20).unwrap_err().to_string();
        assert!(message.contains("test.tsv, line 1"), "{message}");

        std::fs::remove_file(dir.path().join("dev.tsv")).unwrap();
        std::fs::remove_file(dir.path().join("test.tsv")).unwrap();
        let missing = check_sst2(dir.path(), 20).unwrap_err().to_string();
        assert!(
            missing.contains("dev.tsv and test.tsv are missing"),
            "{missing}"
        );
    }

    #[test]
    fn a_single_label_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let train: String = std::iter::once("sentence\tlabel\n".to_string())
            .chain((0..200).map(|i| format!("good {i} \t1\n")))
            .collect();
        std::fs::write(dir.path().join("train.tsv"), train).unwrap();
        std::fs::write(dir.path().join("dev.tsv"), DEV).unwrap();
        std::fs::write(dir.path().join("test.tsv"), TEST).unwrap();
        let message = check_sst2(dir.path(), 20).unwrap_err().to_string();
        assert!(
            message.contains("no sentence labelled 0 (negative)"),
            "{message}"
        );
    }

    /// The real files, when present, are the GLUE release; one changed byte is caught.
    #[test]
    fn the_glue_release_is_recognised_and_a_damaged_copy_refused() {
        let real = std::env::var_os("JIGSAW_SST2_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sst2")
            });
        if !real.join("train.tsv").is_file() {
            eprintln!("skipped: no SST-2 at {}", real.display());
            return;
        }
        let summary = check_sst2(&real, 2_000).unwrap();
        assert!(summary.glue_release);
        assert_eq!(
            (summary.train_rows, summary.dev_rows, summary.test_rows),
            (67_349, 872, 1_821)
        );

        let copy = tempfile::tempdir().unwrap();
        for name in SST2_FILES {
            std::fs::copy(real.join(name), copy.path().join(name)).unwrap();
        }
        let dev = std::fs::read_to_string(copy.path().join("dev.tsv")).unwrap();
        std::fs::write(
            copy.path().join("dev.tsv"),
            dev.replacen("\t1\n", "\t0\n", 1),
        )
        .unwrap();
        let message = check_sst2(copy.path(), 2_000).unwrap_err().to_string();
        assert!(
            message.contains("dev.tsv has the 872 rows of the GLUE release"),
            "{message}"
        );
    }
}
