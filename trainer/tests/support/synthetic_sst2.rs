//! A small SST-2-style data set for tests, shared by the trainer's tests and the HTTP-level
//! tests (which include this file by path).

use std::path::Path;

/// Writes `train.tsv`, `dev.tsv` and `test.tsv` into `sst2` (created if missing): 96 short
/// reviews whose sentiment follows from one word, so a tiny model learns them in seconds.
/// A fifth of them go to dev; test holds one unlabelled sentence, as GLUE's test file does.
pub fn write_synthetic_sst2(sst2: &Path) {
    write_synthetic_sst2_with_words(sst2, 8);
}

/// [`write_synthetic_sst2`] with `words` positive and as many negative words (at most 10),
/// each in a review of each of 6 subjects.
pub fn write_synthetic_sst2_with_words(sst2: &Path, words: usize) {
    let positive = [
        "good",
        "great",
        "funny",
        "charming",
        "beautiful",
        "witty",
        "smart",
        "sweet",
        "fresh",
        "moving",
    ];
    let negative = [
        "bad", "boring", "dull", "worst", "stale", "slow", "sad", "worse", "long", "noise",
    ];
    let subjects = [
        "the movie",
        "this film",
        "the story",
        "the cast",
        "the script",
        "the music",
    ];
    let mut train = String::from("sentence\tlabel\n");
    let mut dev = String::from("sentence\tlabel\n");
    for (i, subject) in subjects.iter().enumerate() {
        for (j, (good, bad)) in positive.iter().zip(negative).take(words).enumerate() {
            let target = if (i + j) % 5 == 0 {
                &mut dev
            } else {
                &mut train
            };
            target.push_str(&format!(
                "{subject} was {good} .\t1\n{subject} was {bad} .\t0\n"
            ));
        }
    }
    std::fs::create_dir_all(sst2).unwrap();
    std::fs::write(sst2.join("train.tsv"), train).unwrap();
    std::fs::write(sst2.join("dev.tsv"), dev).unwrap();
    std::fs::write(
        sst2.join("test.tsv"),
        "index\tsentence\n0\tthe movie was good .\n",
    )
    .unwrap();
}
