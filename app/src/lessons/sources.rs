//! Where each number in a lesson comes from.
//!
//! `app/content/sources.toml` names every source a lesson may cite: a paper or model card, a
//! measurement of this project in a record file of the repository, a setting of this app, a
//! count in the SST-2 files, or arithmetic worked on the page. A lesson cites them with
//! `[src:id]` (or `[src:a,b]`) after the statement; the marker becomes a numbered link, and
//! the lesson ends with the list of the sources it cites. The tests in `checks` hold every
//! number in a lesson to a source, and every checkable source to its record.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The sources file, embedded at build time.
const SOURCES_FILE: &str = include_str!("../../content/sources.toml");

/// One source a lesson can cite.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// A paper, a model card or a dataset's description, with an address to open.
    Citation(Citation),
    /// A measurement of this project, kept in a record file of the repository.
    Measured(Measured),
    /// A setting of this app (a form default, a split size), checked against the code.
    Setting(Setting),
    /// A count in the SST-2 files, checked against the files.
    Dataset(DatasetCount),
    /// Arithmetic shown on the page, from numbers the page gives with their sources.
    Worked(Worked),
}

/// A published source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Citation {
    /// Who published it and when: "Hu et al. 2021".
    pub by: String,
    /// Its title.
    pub title: String,
    /// Where a student can read it.
    pub url: String,
}

/// A number this project measured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    /// What was measured, in words a student follows.
    pub what: String,
    /// The machine it was measured on.
    pub machine: String,
    /// The day it was measured (UTC).
    pub date: String,
    /// The record file, relative to the repository root (`bench/results.json`).
    pub record: String,
    /// Fields that pick exactly one record in that file.
    pub select: BTreeMap<String, toml::Value>,
    /// The record's field that holds the number.
    pub field: String,
    /// The number as the lesson writes it ("90.94", "1,953").
    pub value: String,
}

/// A number that is a setting of this app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// What the setting is, in words.
    pub what: String,
    /// The setting's name in the checks (`default-learning-rate-lora`).
    pub setting: String,
    /// Its value as the lesson writes it.
    pub value: String,
}

/// A count in the SST-2 files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetCount {
    /// What is counted, in words.
    pub what: String,
    /// The count's name in the checks (`train-sentences`, `dev-positive`).
    pub count: String,
    /// The count as the lesson writes it.
    pub value: String,
}

/// Arithmetic the page shows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worked {
    /// What is worked out, and from what.
    pub what: String,
}

/// The sources file: id to source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    sources: BTreeMap<String, Source>,
}

/// Parses a sources file.
fn parse_sources(text: &str) -> Result<BTreeMap<String, Source>, String> {
    toml::from_str::<SourcesFile>(text)
        .map(|file| file.sources)
        .map_err(|e| format!("sources.toml: {e}"))
}

/// Every source, parsed once. An unreadable file leaves no sources, so every lesson that
/// cites one is skipped with a logged error, and the tests fail.
pub fn catalog() -> &'static BTreeMap<String, Source> {
    static SOURCES: OnceLock<BTreeMap<String, Source>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        parse_sources(SOURCES_FILE).unwrap_or_else(|error| {
            tracing::error!(%error, "lesson sources unreadable");
            BTreeMap::new()
        })
    })
}

/// The text that opens a citation marker.
pub const MARKER_START: &str = "[src:";

/// Splits a lesson body at its `[src:…]` markers: the text between them, and each marker's
/// ids. Errors name a marker that is not closed or names no source.
pub fn markers(body: &str) -> Result<Vec<(&str, Vec<&str>)>, String> {
    let mut pieces = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find(MARKER_START) {
        let after = &rest[start + MARKER_START.len()..];
        let end = after
            .find(']')
            .ok_or_else(|| format!("a {MARKER_START} marker is not closed"))?;
        let ids: Vec<&str> = after[..end].split(',').map(str::trim).collect();
        if ids.iter().any(|id| id.is_empty()) {
            return Err(format!(
                "an empty source id in {MARKER_START}{}]",
                &after[..end]
            ));
        }
        pieces.push((&rest[..start], ids));
        rest = &after[end + 1..];
    }
    pieces.push((rest, Vec::new()));
    Ok(pieces)
}

/// A lesson body with its markers turned into numbered links, and the sources it cites in
/// the order of their first citation.
#[derive(Debug)]
pub struct Cited<'a> {
    /// The Markdown body, each marker replaced by a superscript link.
    pub markdown: String,
    /// The cited sources, numbered from 1 in this order.
    pub sources: Vec<(&'a str, &'a Source)>,
}

/// Replaces a body's markers with links to the numbered list of its sources.
pub fn cite<'a>(body: &str, sources: &'a BTreeMap<String, Source>) -> Result<Cited<'a>, String> {
    let mut markdown = String::with_capacity(body.len());
    let mut cited: Vec<(&'a str, &'a Source)> = Vec::new();
    for (text, ids) in markers(body)? {
        markdown.push_str(text);
        for id in ids {
            let (key, source) = sources
                .get_key_value(id)
                .ok_or_else(|| format!("{MARKER_START}{id}] names no source in sources.toml"))?;
            let number = match cited.iter().position(|(cited_id, _)| *cited_id == key) {
                Some(index) => index + 1,
                None => {
                    cited.push((key.as_str(), source));
                    cited.len()
                }
            };
            markdown.push_str(&format!(
                "<sup class=\"cite\"><a href=\"#source-{key}\" aria-label=\"source {number}\">[{number}]</a></sup>"
            ));
        }
    }
    Ok(Cited {
        markdown,
        sources: cited,
    })
}

/// The HTML list of sources that closes a lesson.
pub fn sources_section(sources: &[(&str, &Source)]) -> String {
    if sources.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<section class=\"sources\" aria-labelledby=\"sources-title\">\
         <h2 id=\"sources-title\">Sources</h2><ol>",
    );
    for (id, source) in sources {
        html.push_str(&format!("<li id=\"source-{id}\">{}</li>", describe(source)));
    }
    html.push_str("</ol></section>");
    html
}

/// One source as a student reads it in the list.
fn describe(source: &Source) -> String {
    match source {
        Source::Citation(c) => format!(
            "{}, <a href=\"{}\" rel=\"noopener\">{}</a>",
            escape(&c.by),
            escape(&c.url),
            escape(&c.title)
        ),
        Source::Measured(m) => format!(
            "Measured by this project: {}. {}, {}. Recorded in <code>{}</code> ({}): {} = {}.",
            escape(&m.what),
            escape(&m.machine),
            escape(&m.date),
            escape(&m.record),
            escape(
                &m.select
                    .iter()
                    .map(|(key, value)| format!("{key} {}", plain(value)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            escape(&m.field),
            escape(&m.value)
        ),
        Source::Setting(s) => format!(
            "A setting of this app: {} = {}.",
            escape(&s.what),
            escape(&s.value)
        ),
        Source::Dataset(d) => format!(
            "Counted in the SST-2 files of this class: {}: {}.",
            escape(&d.what),
            escape(&d.value)
        ),
        Source::Worked(w) => format!("Worked out on this page: {}.", escape(&w.what)),
    }
}

/// A TOML value as plain text (strings without quotes).
fn plain(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number as a lesson writes it ("1,953", "90.94%", "5e-5") as a value and its decimal
/// places, or None when it is not a number.
pub fn parse_written_number(text: &str) -> Option<(f64, usize)> {
    let cleaned: String = text
        .trim()
        .trim_end_matches('%')
        .chars()
        .filter(|c| *c != ',')
        .collect();
    let value: f64 = cleaned.parse().ok()?;
    let decimals = match cleaned.split_once('.') {
        Some((_, fraction)) if !fraction.contains(['e', 'E']) => fraction.len(),
        _ => 0,
    };
    value.is_finite().then_some((value, decimals))
}

#[cfg(test)]
mod checks;
