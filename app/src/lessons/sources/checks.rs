//! The checks that keep the lessons' numbers honest: each statement with a number cites a
//! source, each source is cited, and each measured, setting or dataset source still agrees
//! with the record, the code or the files it names.

use super::*;
use crate::lessons::content::{FILES, body_of};
use std::path::{Path, PathBuf};

/// A statement of a lesson: a sentence, a list item's sentence, a table row or a heading.
#[derive(Debug)]
struct Statement {
    /// The lesson file it is in.
    file: &'static str,
    /// Its Markdown text, markers included.
    text: String,
    /// The sources its markers cite (a table's header cites for every row).
    cites: Vec<String>,
}

/// Every statement of every lesson body.
fn statements() -> Vec<Statement> {
    let mut all = Vec::new();
    for (file, text) in FILES {
        let body = body_of(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (text, inherited) in blocks(body) {
            let mut cites = cited_ids(&text);
            cites.extend(inherited);
            all.push(Statement { file, text, cites });
        }
    }
    all
}

/// The ids cited by the markers in a piece of text.
fn cited_ids(text: &str) -> Vec<String> {
    markers(text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .into_iter()
        .flat_map(|(_, ids)| ids.into_iter().map(str::to_string))
        .collect()
}

/// Splits a Markdown body into statements, each with the ids it inherits (from a table's
/// header row). Fenced code blocks are left out: they show inputs and outputs, and the
/// sentence that introduces them carries the source.
fn blocks(body: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut paragraph = String::new();
    let mut in_fence = false;
    let mut table_header: Option<Vec<String>> = None;
    let flush = |paragraph: &mut String, out: &mut Vec<(String, Vec<String>)>| {
        for sentence in sentences(paragraph) {
            out.push((sentence, Vec::new()));
        }
        paragraph.clear();
    };
    for line in body.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            flush(&mut paragraph, &mut out);
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if trimmed.starts_with('|') {
            flush(&mut paragraph, &mut out);
            if trimmed.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
                continue;
            }
            match &table_header {
                None => {
                    let ids = cited_ids(trimmed);
                    out.push((trimmed.to_string(), Vec::new()));
                    table_header = Some(ids);
                }
                Some(ids) => out.push((trimmed.to_string(), ids.clone())),
            }
            continue;
        }
        table_header = None;
        if trimmed.is_empty() {
            flush(&mut paragraph, &mut out);
        } else if trimmed.starts_with('#') || starts_list_item(trimmed) {
            flush(&mut paragraph, &mut out);
            paragraph.push_str(trimmed);
            if trimmed.starts_with('#') {
                flush(&mut paragraph, &mut out);
            }
        } else {
            if !paragraph.is_empty() {
                paragraph.push(' ');
            }
            paragraph.push_str(trimmed);
        }
    }
    flush(&mut paragraph, &mut out);
    out
}

/// Whether a line opens a list item ("- ", "* ", "1. ").
fn starts_list_item(line: &str) -> bool {
    if line.starts_with("- ") || line.starts_with("* ") {
        return true;
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && line[digits..].starts_with(". ")
}

/// Splits text into sentences: after '.', '?' or '!' (and any closing '*', ')' or quote)
/// when the next word starts with a capital letter.
fn sentences(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], '.' | '?' | '!') {
            let mut end = i + 1;
            while end < chars.len() && matches!(chars[end], '*' | ')' | '"' | '\u{201d}') {
                end += 1;
            }
            let next_word = chars[end..].iter().skip_while(|c| c.is_whitespace());
            let spaced = chars.get(end).is_some_and(|c| c.is_whitespace());
            if spaced && next_word.clone().next().is_some_and(|c| c.is_uppercase()) {
                out.push(
                    chars[start..end]
                        .iter()
                        .collect::<String>()
                        .trim()
                        .to_string(),
                );
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    let last: String = chars[start..].iter().collect::<String>().trim().to_string();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

/// The numbers a statement states: digit runs that are not part of a name (L6, fp32,
/// SST-2, GPT-3, H200, v2). Markers are left out.
fn stated_numbers(text: &str) -> Vec<String> {
    let without_markers: String = markers(text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .into_iter()
        .map(|(piece, _)| piece)
        .collect::<Vec<_>>()
        .join(" ");
    let chars: Vec<char> = without_markers.chars().collect();
    let is_name_char = |c: char| c.is_alphabetic() || c == '_';
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_digit() || is_number_joint(&chars, i)) {
            i += 1;
        }
        // An exponent: "5e-5", "1e3".
        if matches!(chars.get(i), Some('e' | 'E')) {
            let sign = usize::from(matches!(chars.get(i + 1), Some('-' | '+')));
            if chars.get(i + 1 + sign).is_some_and(char::is_ascii_digit) {
                i += 1 + sign;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
            }
        }
        let before = start.checked_sub(1).map(|j| chars[j]);
        let part_of_name = match before {
            Some(c) if is_name_char(c) => true,
            Some('-') => start >= 2 && is_name_char(chars[start - 2]),
            _ => false,
        };
        if !part_of_name {
            numbers.push(chars[start..i].iter().collect());
        }
    }
    numbers
}

/// Whether the ',' or '.' at `i` joins two digit groups of one number ("1,953", "0.65").
fn is_number_joint(chars: &[char], i: usize) -> bool {
    matches!(chars[i], ',' | '.')
        && i > 0
        && chars[i - 1].is_ascii_digit()
        && chars.get(i + 1).is_some_and(char::is_ascii_digit)
}

#[test]
fn numbers_in_names_are_not_statements() {
    assert!(stated_numbers("all-MiniLM-L6-v2 on SST-2 with fp32 on an H200").is_empty());
    assert!(stated_numbers("GPT-3 and BERT-base").is_empty());
    assert_eq!(stated_numbers("22.7M parameters"), ["22.7"]);
    assert_eq!(stated_numbers("1,953 examples/s, 0.65%"), ["1,953", "0.65"]);
    assert_eq!(stated_numbers("lr 5e-5 [src:x-1]"), ["5e-5"]);
    assert_eq!(stated_numbers("GPT-3 175B"), ["175"]);
}

#[test]
fn statements_split_at_sentences_and_tables_inherit_their_header() {
    let body = "## Title\n\nOne is 1. Two is here. e.g. 3 stays.\n\n- item 4 [src:a]\n  goes on.\n\n| h [src:b] |\n|---|\n| 5 |\n\n```\n6\n```\n";
    let found = blocks(body);
    let texts: Vec<&str> = found.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "## Title",
            "One is 1.",
            "Two is here. e.g. 3 stays.",
            "- item 4 [src:a] goes on.",
            "| h [src:b] |",
            "| 5 |"
        ]
    );
    assert_eq!(found[5].1, ["b"]);
}

#[test]
fn every_number_in_a_lesson_cites_a_source() {
    let unsourced: Vec<String> = statements()
        .into_iter()
        .filter(|s| s.cites.is_empty() && !stated_numbers(&s.text).is_empty())
        .map(|s| format!("{}: {}", s.file, s.text))
        .collect();
    assert!(
        unsourced.is_empty(),
        "{} statements state a number without a [src:id] marker:\n{}",
        unsourced.len(),
        unsourced.join("\n")
    );
}

#[test]
fn every_marker_names_a_source_and_every_source_is_cited() {
    let sources = parse_sources(SOURCES_FILE).unwrap();
    let mut cited = std::collections::BTreeSet::new();
    for (file, text) in FILES {
        let body = body_of(text).unwrap();
        let found = cite(body, &sources).unwrap_or_else(|e| panic!("{file}: {e}"));
        cited.extend(found.sources.iter().map(|(id, _)| id.to_string()));
    }
    let unused: Vec<&String> = sources.keys().filter(|id| !cited.contains(*id)).collect();
    assert!(unused.is_empty(), "sources no lesson cites: {unused:?}");
}

#[test]
fn a_checked_value_appears_where_it_is_cited() {
    let sources = parse_sources(SOURCES_FILE).unwrap();
    let statements = statements();
    for (id, source) in &sources {
        let value = match source {
            Source::Measured(m) => &m.value,
            Source::Setting(s) => &s.value,
            Source::Dataset(d) => &d.value,
            Source::Citation(_) | Source::Worked(_) => continue,
        };
        let shown = statements
            .iter()
            .filter(|s| s.cites.iter().any(|c| c == id))
            .any(|s| {
                stated_numbers(&s.text)
                    .iter()
                    .any(|n| same_number(n, value))
            });
        assert!(
            shown,
            "no statement that cites {id} states its value {value}"
        );
    }
}

/// Whether two written numbers are the same number ("5e-5" and "0.00005", "1,953" and
/// "1953").
fn same_number(a: &str, b: &str) -> bool {
    match (parse_written_number(a), parse_written_number(b)) {
        (Some((x, _)), Some((y, _))) => (x - y).abs() <= 1e-12 * x.abs().max(1.0),
        _ => false,
    }
}

/// The repository root (the app crate's parent).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether a record's field equals a TOML value from a source's `select`.
fn field_matches(record: &serde_json::Value, key: &str, wanted: &toml::Value) -> bool {
    let Some(found) = record.get(key) else {
        return false;
    };
    match wanted {
        toml::Value::String(text) => found.as_str() == Some(text),
        toml::Value::Integer(n) => found.as_i64() == Some(*n),
        toml::Value::Float(x) => found.as_f64() == Some(*x),
        toml::Value::Boolean(b) => found.as_bool() == Some(*b),
        _ => false,
    }
}

#[test]
fn measured_sources_match_their_records() {
    let sources = parse_sources(SOURCES_FILE).unwrap();
    for (id, source) in &sources {
        let Source::Measured(m) = source else {
            continue;
        };
        let path = repo_root().join(&m.record);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{id}: cannot read {}: {e}", path.display()));
        let records: Vec<serde_json::Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{id}: {} is not a JSON list: {e}", m.record));
        let chosen: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| m.select.iter().all(|(k, v)| field_matches(r, k, v)))
            .collect();
        assert_eq!(
            chosen.len(),
            1,
            "{id}: `select` must pick exactly one record of {}",
            m.record
        );
        let recorded = chosen[0]
            .get(&m.field)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{id}: the record has no number in {}", m.field));
        let (written, decimals) = parse_written_number(&m.value)
            .unwrap_or_else(|| panic!("{id}: value {} is not a number", m.value));
        let tolerance = 0.5 * 10f64.powi(-(decimals as i32)) + 1e-9;
        assert!(
            (recorded - written).abs() <= tolerance,
            "{id}: the lesson says {} but {} records {recorded}",
            m.value,
            m.record
        );
    }
}

/// The app's settings that lessons quote, by the name a source gives them.
fn setting_value(name: &str) -> Option<f64> {
    use run_protocol::settings::{
        DEFAULT_LEARNING_RATE_FULL, DEFAULT_LEARNING_RATE_LORA, DEFAULT_LORA_RANK, LoraSettings,
        RunSettings,
    };
    let defaults = RunSettings::default();
    Some(match name {
        "default-learning-rate-full" => DEFAULT_LEARNING_RATE_FULL,
        "default-learning-rate-lora" => DEFAULT_LEARNING_RATE_LORA,
        "default-lora-rank" => DEFAULT_LORA_RANK as f64,
        "default-lora-alpha" => LoraSettings::default_alpha(DEFAULT_LORA_RANK),
        "default-lora-dropout" => LoraSettings::DEFAULT_DROPOUT,
        "default-batch-size" => defaults.batch_size as f64,
        "default-epochs" => defaults.epochs as f64,
        "default-warmup-ratio" => defaults.warmup_ratio,
        "default-max-len" => defaults.max_len as f64,
        "default-seed" => defaults.seed as f64,
        "validation-sentences" => trainer::data::SplitOptions::default().validation_size as f64,
        "viewer-max-tokens" => run_protocol::VIEWER_MAX_TOKENS as f64,
        _ => return None,
    })
}

#[test]
fn setting_sources_match_the_code() {
    for (id, source) in parse_sources(SOURCES_FILE).unwrap() {
        let Source::Setting(s) = source else {
            continue;
        };
        let actual = setting_value(&s.setting)
            .unwrap_or_else(|| panic!("{id}: no setting called {}", s.setting));
        assert!(
            same_number(&s.value, &actual.to_string()),
            "{id}: the lesson says {} = {} but the app uses {actual}",
            s.setting,
            s.value
        );
    }
}

/// The SST-2 folder of the tests: `JIGSAW_SST2_DIR`, or `../shared/data/sst2` beside the
/// repository.
fn sst2_dir() -> PathBuf {
    std::env::var_os("JIGSAW_SST2_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data/sst2"))
}

/// Counts a TSV split's sentences, and those labelled positive where it has labels.
fn count_split(name: &str) -> (usize, usize) {
    let path = sst2_dir().join(format!("{name}.tsv"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set JIGSAW_SST2_DIR to the SST-2 folder)",
            path.display()
        )
    });
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let label = header.iter().position(|h| *h == "label");
    let rows: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let positive = label.map_or(0, |column| {
        rows.iter()
            .filter(|row| row.split('\t').nth(column) == Some("1"))
            .count()
    });
    (rows.len(), positive)
}

#[test]
fn dataset_sources_match_the_files() {
    for (id, source) in parse_sources(SOURCES_FILE).unwrap() {
        let Source::Dataset(d) = source else {
            continue;
        };
        let actual = match d.count.as_str() {
            "train-sentences" => count_split("train").0,
            "dev-sentences" => count_split("dev").0,
            "test-sentences" => count_split("test").0,
            "dev-positive" => count_split("dev").1,
            other => panic!("{id}: no count called {other}"),
        };
        assert!(
            same_number(&d.value, &actual.to_string()),
            "{id}: the lesson says {} but the files have {actual}",
            d.value
        );
    }
}

#[test]
fn markers_render_as_numbered_links_and_a_sources_list() {
    let sources = parse_sources(
        "[sources.a]\nkind = \"worked\"\nwhat = \"2 + 2\"\n\
         [sources.b]\nkind = \"citation\"\nby = \"X 2020\"\ntitle = \"T <i>\"\nurl = \"https://e.org\"\n",
    )
    .unwrap();
    let cited = cite("one [src:b] two [src:a,b] three", &sources).unwrap();
    assert!(
        cited
            .markdown
            .contains("href=\"#source-b\" aria-label=\"source 1\">[1]")
    );
    assert!(
        cited
            .markdown
            .contains("href=\"#source-a\" aria-label=\"source 2\">[2]")
    );
    let html = sources_section(&cited.sources);
    assert!(html.contains("<li id=\"source-b\">X 2020, <a href=\"https://e.org\""));
    assert!(html.contains("T &lt;i&gt;"), "{html}");
    assert!(cite("[src:nope]", &sources).unwrap_err().contains("nope"));
    assert!(cite("[src:a", &sources).is_err());
    assert!(parse_sources("[sources.c]\nkind = \"worked\"\nwhat = \"x\"\nextra = 1\n").is_err());
}
