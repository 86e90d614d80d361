//! The lesson catalogue: types shared by server and browser, and the server functions that
//! serve lessons. The lesson text itself is data in `app/content/lessons/*.md`, and the
//! sources its numbers cite are data in `app/content/sources.toml`.

use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// A lesson as listed on the home page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LessonSummary {
    /// Stable URL segment: the lesson lives at `/lessons/<slug>`.
    pub slug: String,
    /// Title shown on the card and the page.
    pub title: String,
    /// One sentence saying what the lesson is about.
    pub summary: String,
    /// Estimated study time in minutes.
    pub minutes: u32,
}

/// A check-your-understanding question that closes a lesson.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// The question as students see it.
    pub prompt: String,
}

/// An interactive widget a lesson can end with, named in its front matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Widget {
    /// Text to WordPiece pieces with the default model's tokenizer.
    TokenizerPlayground,
    /// Examples, batch size, epochs, warmup ratio to step counts.
    StepsCalculator,
    /// A sentence's attention maps from the default model, per layer and head.
    AttentionViewer,
    /// Rank and target matrices to LoRA's trainable parameters.
    LoraCounter,
    /// A sentence's [CLS] vector and the classification head's probabilities.
    ClsDemo,
    /// Training vs validation loss of one of the viewer's own finished runs.
    RunCurves,
}

/// A whole lesson, ready to render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lesson {
    /// Card data: slug, title, summary, time.
    pub summary: LessonSummary,
    /// The body rendered from Markdown to HTML on the server.
    pub html: String,
    /// The questions that end the lesson.
    pub questions: Vec<Question>,
    /// The widget shown after the text, if the lesson has one.
    pub widget: Option<Widget>,
}

/// Lists every lesson in teaching order.
#[server(prefix = "/api", endpoint = "lessons")]
pub async fn list_lessons() -> Result<Vec<LessonSummary>, AppError> {
    Ok(content::catalog()
        .iter()
        .map(|lesson| lesson.summary.clone())
        .collect())
}

/// Returns one lesson by its slug.
#[server(prefix = "/api", endpoint = "lesson")]
pub async fn get_lesson(slug: String) -> Result<Lesson, AppError> {
    find_lesson(&slug)
}

/// The lesson called `slug`, read from the catalog at once (the lesson page renders it so
/// on the server; see `LessonPage`), or a 404.
#[cfg(feature = "ssr")]
pub fn find_lesson(slug: &str) -> Result<Lesson, AppError> {
    content::catalog()
        .iter()
        .find(|lesson| lesson.summary.slug == slug)
        .map(|lesson| Lesson {
            summary: lesson.summary.clone(),
            html: lesson.html.clone(),
            questions: lesson
                .questions
                .iter()
                .map(|q| Question {
                    prompt: q.prompt.clone(),
                })
                .collect(),
            widget: lesson.widget,
        })
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "There is no lesson called \u{201c}{}\u{201d}. Pick one from the home page.",
                truncate_for_message(slug)
            ))
            .respond()
        })
}

/// Shortens user input before it is echoed in an error message.
#[cfg(feature = "ssr")]
fn truncate_for_message(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}\u{2026}", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(feature = "ssr")]
pub mod sources;

#[cfg(feature = "ssr")]
pub mod content {
    //! Parses the lesson files embedded at build time.

    use super::{LessonSummary, Widget};
    use serde::Deserialize;
    use std::sync::OnceLock;

    /// The lesson files in teaching order (file name, contents).
    pub(crate) const FILES: &[(&str, &str)] = &[
        (
            "01-fine-tuning.md",
            include_str!("../../content/lessons/01-fine-tuning.md"),
        ),
        (
            "02-tokenization.md",
            include_str!("../../content/lessons/02-tokenization.md"),
        ),
        (
            "03-attention.md",
            include_str!("../../content/lessons/03-attention.md"),
        ),
        (
            "04-cls-token.md",
            include_str!("../../content/lessons/04-cls-token.md"),
        ),
        (
            "05-model-choice.md",
            include_str!("../../content/lessons/05-model-choice.md"),
        ),
        (
            "06-hyperparameters.md",
            include_str!("../../content/lessons/06-hyperparameters.md"),
        ),
        (
            "07-lora.md",
            include_str!("../../content/lessons/07-lora.md"),
        ),
        (
            "08-overfitting.md",
            include_str!("../../content/lessons/08-overfitting.md"),
        ),
    ];

    /// A question with the instructor's model answer (never sent to students here).
    #[derive(Debug, Clone, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct QuestionWithAnswer {
        /// The question as students see it.
        pub prompt: String,
        /// The model answer instructors grade against.
        pub answer: String,
        /// How students answer it in the quiz; free text unless the file says otherwise.
        #[serde(default)]
        pub kind: QuestionKind,
        /// The right number, for `kind = "number"`.
        #[serde(default)]
        pub expected: Option<f64>,
        /// The options, for `kind = "choice"`.
        #[serde(default)]
        pub choices: Vec<String>,
        /// The right option, for `kind = "choice"`.
        #[serde(default)]
        pub correct: Option<String>,
        /// Points the question is worth (default 2 for free text, 1 for auto-graded).
        #[serde(default)]
        pub points: Option<f64>,
    }

    /// How a quiz question is answered and graded.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum QuestionKind {
        /// Free text, graded by the instructor.
        #[default]
        Text,
        /// A number, graded automatically against `expected`.
        Number,
        /// One of `choices`, graded automatically against `correct`.
        Choice,
    }

    impl QuestionWithAnswer {
        /// Checks that an auto-graded question carries what grading needs.
        fn check(&self) -> Result<(), String> {
            match self.kind {
                QuestionKind::Text => Ok(()),
                QuestionKind::Number if self.expected.is_some_and(f64::is_finite) => Ok(()),
                QuestionKind::Number => {
                    Err(format!("\"{}\" needs a finite `expected`", self.prompt))
                }
                QuestionKind::Choice => match &self.correct {
                    Some(correct) if self.choices.len() >= 2 && self.choices.contains(correct) => {
                        Ok(())
                    }
                    _ => Err(format!(
                        "\"{}\" needs at least two `choices` and a `correct` one among them",
                        self.prompt
                    )),
                },
            }
        }

        /// Points the question is worth.
        pub fn max_points(&self) -> f64 {
            self.points.unwrap_or(match self.kind {
                QuestionKind::Text => 2.0,
                QuestionKind::Number | QuestionKind::Choice => 1.0,
            })
        }
    }

    /// The TOML front matter at the top of a lesson file.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FrontMatter {
        slug: String,
        title: String,
        summary: String,
        minutes: u32,
        #[serde(default)]
        widget: Option<Widget>,
        questions: Vec<QuestionWithAnswer>,
    }

    /// A parsed lesson file.
    #[derive(Debug, Clone)]
    pub struct LessonFile {
        /// Card data.
        pub summary: LessonSummary,
        /// Body as HTML.
        pub html: String,
        /// Questions with model answers.
        pub questions: Vec<QuestionWithAnswer>,
        /// The widget shown after the text.
        pub widget: Option<Widget>,
    }

    /// Every lesson, parsed once. The files are checked by this crate's tests, so a broken
    /// file fails the build's test run rather than a class.
    pub fn catalog() -> &'static [LessonFile] {
        static CATALOG: OnceLock<Vec<LessonFile>> = OnceLock::new();
        CATALOG.get_or_init(|| {
            FILES
                .iter()
                .filter_map(|(name, text)| match parse(text) {
                    Ok(lesson) => Some(lesson),
                    Err(error) => {
                        tracing::error!(file = name, %error, "lesson file skipped");
                        None
                    }
                })
                .collect()
        })
    }

    /// Parses one lesson file: `+++` TOML front matter, then a Markdown body.
    pub fn parse(text: &str) -> Result<LessonFile, String> {
        let (front, body) = split_front_matter(text)?;
        let front: FrontMatter = toml::from_str(front).map_err(|e| e.to_string())?;
        if front.questions.is_empty() {
            return Err("a lesson needs at least one question".into());
        }
        for question in &front.questions {
            question.check()?;
        }
        Ok(LessonFile {
            summary: LessonSummary {
                slug: front.slug,
                title: front.title,
                summary: front.summary,
                minutes: front.minutes,
            },
            html: render_body(body)?,
            questions: front.questions,
            widget: front.widget,
        })
    }

    /// Splits a lesson file into its TOML front matter and its Markdown body.
    fn split_front_matter(text: &str) -> Result<(&str, &str), String> {
        let rest = text
            .strip_prefix("+++\n")
            .ok_or("the file must start with a +++ line")?;
        rest.split_once("\n+++\n")
            .ok_or_else(|| "the front matter has no closing +++ line".to_string())
    }

    /// A lesson file's Markdown body.
    #[cfg(test)]
    pub(crate) fn body_of(text: &str) -> Result<&str, String> {
        split_front_matter(text).map(|(_, body)| body)
    }

    /// Renders a lesson body: its `[src:…]` markers become numbered links, and the list of
    /// the sources it cites closes it.
    fn render_body(body: &str) -> Result<String, String> {
        let cited = super::sources::cite(body, super::sources::catalog())?;
        let mut html = markdown_to_html(&cited.markdown);
        html.push_str(&super::sources::sources_section(&cited.sources));
        Ok(html)
    }

    /// Renders trusted lesson Markdown (tables and strikethrough on) to HTML.
    fn markdown_to_html(markdown: &str) -> String {
        use pulldown_cmark::{Options, Parser, html};
        let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
        let mut out = String::with_capacity(markdown.len() * 2);
        html::push_html(&mut out, Parser::new_ext(markdown, options));
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_lesson_file_parses() {
            for (name, text) in FILES {
                let lesson = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(lesson.html.contains("<h2>"), "{name} has no sections");
                assert!(!lesson.summary.summary.is_empty(), "{name} has no summary");
                for q in &lesson.questions {
                    assert!(
                        !q.prompt.trim().is_empty() && !q.answer.trim().is_empty(),
                        "{name}"
                    );
                }
            }
            assert_eq!(catalog().len(), FILES.len());
        }

        #[test]
        fn slugs_are_the_stable_urls_in_teaching_order() {
            let slugs: Vec<_> = catalog().iter().map(|l| l.summary.slug.as_str()).collect();
            assert_eq!(
                slugs,
                [
                    "fine-tuning",
                    "tokenization",
                    "attention",
                    "cls-token",
                    "model-choice",
                    "hyperparameters",
                    "lora",
                    "overfitting"
                ]
            );
        }

        #[test]
        fn each_lesson_ends_with_two_questions() {
            for lesson in catalog() {
                assert_eq!(lesson.questions.len(), 2, "{}", lesson.summary.slug);
            }
        }

        #[test]
        fn malformed_files_are_errors_not_panics() {
            assert!(parse("no front matter").is_err());
            assert!(parse("+++\nslug = \"x\"\n").is_err());
            assert!(parse("+++\nslug = 3\n+++\nbody").is_err());
            let no_questions = "+++\nslug = \"a\"\ntitle = \"A\"\nsummary = \"s\"\nminutes = 1\nquestions = []\n+++\n## Body\n";
            assert!(parse(no_questions).is_err());
            let bad_choice = "+++\nslug = \"a\"\ntitle = \"A\"\nsummary = \"s\"\nminutes = 1\n[[questions]]\nprompt = \"p\"\nanswer = \"a\"\nkind = \"choice\"\nchoices = [\"x\", \"y\"]\ncorrect = \"z\"\n+++\n## Body\n";
            assert!(parse(bad_choice).unwrap_err().contains("correct"));
            let no_expected = "+++\nslug = \"a\"\ntitle = \"A\"\nsummary = \"s\"\nminutes = 1\n[[questions]]\nprompt = \"p\"\nanswer = \"a\"\nkind = \"number\"\n+++\n## Body\n";
            assert!(parse(no_expected).unwrap_err().contains("expected"));
        }

        #[test]
        fn tables_render() {
            let text = "+++\nslug = \"a\"\ntitle = \"A\"\nsummary = \"s\"\nminutes = 1\n[[questions]]\nprompt = \"p\"\nanswer = \"a\"\n+++\n| a | b |\n|---|---|\n| 1 | 2 |\n";
            assert!(parse(text).unwrap().html.contains("<table>"));
        }
    }
}
