//! Quizzes and their standings. The questions are the lessons' own (two per lesson, from
//! the lesson files); a question the file marks `number` or `choice` is graded
//! automatically, the rest by the instructor (in the grading module). The standings rank
//! the class's teams by graded points per member.
//!
//! Students keep a draft of each answer across reloads and hand it in with "Submit"; they
//! can change it until the instructor closes the quiz.

use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The longest answer, in characters.
pub const MAX_ANSWER_CHARS: usize = 5_000;

/// How a question is answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnswerFormat {
    /// Free text.
    Text,
    /// A number.
    Number,
    /// One of these options.
    Choice(Vec<String>),
}

/// A quiz question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuizItem {
    /// Stable id: `<lesson slug>-<number>`.
    pub key: String,
    /// The lesson it comes from.
    pub lesson_title: String,
    /// The question.
    pub prompt: String,
    /// How it is answered.
    pub format: AnswerFormat,
    /// Points it is worth.
    pub max_points: f64,
}

impl QuizItem {
    /// Whether the app grades it (numbers and choices) rather than the instructor.
    pub fn auto_graded(&self) -> bool {
        !matches!(self.format, AnswerFormat::Text)
    }
}

/// A student's own answer to one question.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MyAnswer {
    /// Unsubmitted work in progress.
    pub draft: Option<String>,
    /// The handed-in answer.
    pub answer: Option<String>,
    /// When it was handed in (UTC).
    pub submitted_at: Option<String>,
    /// Points, once graded.
    pub points: Option<f64>,
    /// The grader's feedback.
    pub feedback: Option<String>,
}

/// One question with the student's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentQuizItem {
    /// The question.
    pub item: QuizItem,
    /// The student's answer and grade.
    pub mine: MyAnswer,
}

/// Whether answers can be given now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuizState {
    /// The class has not reached the quiz phase.
    NotYet,
    /// Answers can be saved and submitted.
    Open,
    /// The instructor closed the quiz; answers are final.
    Closed,
}

/// The student's quiz page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentQuiz {
    /// Whether answering is possible.
    pub state: QuizState,
    /// The questions with the student's answers (empty before the quiz phase).
    pub items: Vec<StudentQuizItem>,
}

/// One team's line in the quiz standings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamScore {
    /// The team's name.
    pub team: String,
    /// Its members.
    pub members: i64,
    /// Points of all members' graded answers.
    pub points: f64,
    /// Points per member, the ranking key.
    pub points_per_member: f64,
    /// Answers graded so far.
    pub graded_answers: i64,
}

/// The calling student's quiz.
#[server(prefix = "/api", endpoint = "my-quiz")]
pub async fn my_quiz() -> Result<StudentQuiz, AppError> {
    let pool = crate::db::pool()?;
    let student = crate::auth::ssr::require_student(&pool).await?;
    let state = ssr::state(&pool, student.class_id).await?;
    if state == QuizState::NotYet {
        return Ok(StudentQuiz {
            state,
            items: Vec::new(),
        });
    }
    let mut answers = ssr::answers_of(&pool, student.id).await?;
    let items = ssr::questions()
        .into_iter()
        .map(|(item, _)| StudentQuizItem {
            mine: answers.remove(&item.key).unwrap_or_default(),
            item,
        })
        .collect();
    Ok(StudentQuiz { state, items })
}

/// Saves the calling student's answer to one question: as a draft, or handed in when
/// `submit` is true (numbers and choices are graded at once).
#[server(prefix = "/api", endpoint = "save-answer")]
pub async fn save_answer(
    key: String,
    text: String,
    submit: bool,
) -> Result<StudentQuizItem, AppError> {
    let pool = crate::db::pool()?;
    let student = crate::auth::ssr::require_student(&pool).await?;
    match ssr::state(&pool, student.class_id).await? {
        QuizState::Open => {}
        QuizState::NotYet => return Err(AppError::bad_request("The quiz has not opened yet.")),
        QuizState::Closed => {
            return Err(AppError::bad_request(
                "Your teacher has closed the quiz; answers can no longer change.",
            ));
        }
    }
    let (item, grading) = ssr::question(&key)
        .ok_or_else(|| AppError::not_found("There is no such quiz question."))?;
    let text = text.trim().to_string();
    let length = text.chars().count();
    if length > MAX_ANSWER_CHARS {
        return Err(AppError::bad_request(format!(
            "That answer has {length} characters; at most {MAX_ANSWER_CHARS} fit. Shorten it and save again."
        )));
    }
    if submit {
        if text.is_empty() {
            return Err(AppError::bad_request("Write an answer before submitting."));
        }
        ssr::submit(&pool, student.id, &item, &grading, &text).await?;
        // The instructor's grading progress and the standings change.
        crate::live::ssr::announce(student.class_id);
    } else {
        sqlx::query(
            "INSERT INTO quiz_answers (student_id, question_key, draft, draft_saved_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (student_id, question_key) \
             DO UPDATE SET draft = excluded.draft, draft_saved_at = excluded.draft_saved_at",
        )
        .bind(student.id)
        .bind(&item.key)
        .bind(&text)
        .bind(crate::db::now())
        .execute(&pool)
        .await?;
    }
    let mine = ssr::answers_of(&pool, student.id)
        .await?
        .remove(&item.key)
        .unwrap_or_default();
    Ok(StudentQuizItem { item, mine })
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! Questions from the lesson files, grading rules and the queries behind the quiz.

    use super::{AnswerFormat, MyAnswer, QuizItem, QuizState, TeamScore};
    use crate::db::DbPool;
    use crate::error::AppError;
    use crate::lessons::content::{self, QuestionKind};
    use crate::phase::Phase;
    use std::collections::HashMap;

    /// What grading a question needs beyond what students see.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Grading {
        /// The model answer from the lesson file.
        pub model_answer: String,
        /// The right answer, for auto-graded questions.
        pub key: Option<AutoKey>,
    }

    /// The right answer to an auto-graded question.
    #[derive(Debug, Clone, PartialEq)]
    pub enum AutoKey {
        /// This number.
        Number(f64),
        /// This option.
        Choice(String),
    }

    /// Every quiz question in lesson order, with its grading data.
    pub fn questions() -> Vec<(QuizItem, Grading)> {
        content::catalog()
            .iter()
            .flat_map(|lesson| {
                lesson.questions.iter().enumerate().map(|(index, q)| {
                    let (format, key) = match q.kind {
                        QuestionKind::Text => (AnswerFormat::Text, None),
                        QuestionKind::Number => {
                            (AnswerFormat::Number, q.expected.map(AutoKey::Number))
                        }
                        QuestionKind::Choice => (
                            AnswerFormat::Choice(q.choices.clone()),
                            q.correct.clone().map(AutoKey::Choice),
                        ),
                    };
                    (
                        QuizItem {
                            key: format!("{}-{}", lesson.summary.slug, index + 1),
                            lesson_title: lesson.summary.title.clone(),
                            prompt: q.prompt.clone(),
                            format,
                            max_points: q.max_points(),
                        },
                        Grading {
                            model_answer: q.answer.clone(),
                            key,
                        },
                    )
                })
            })
            .collect()
    }

    /// The question with this key.
    pub fn question(key: &str) -> Option<(QuizItem, Grading)> {
        questions().into_iter().find(|(item, _)| item.key == key)
    }

    /// Grades an answer to an auto-graded question: points and feedback, or an error
    /// message when the answer is not of the right form.
    pub fn auto_grade(
        item: &QuizItem,
        key: &AutoKey,
        answer: &str,
    ) -> Result<(f64, String), String> {
        let correct = match key {
            AutoKey::Number(expected) => {
                let value = read_number(answer)?;
                (value - expected).abs() <= 1e-9 * expected.abs().max(1.0)
            }
            AutoKey::Choice(right) => {
                let AnswerFormat::Choice(choices) = &item.format else {
                    return Err("This question has no options.".into());
                };
                if !choices.iter().any(|c| c == answer) {
                    return Err("Pick one of the options.".into());
                }
                answer == right
            }
        };
        Ok(if correct {
            (item.max_points, "Correct.".to_string())
        } else {
            (
                0.0,
                "Not quite. Check the lesson again; you can change your answer until the quiz closes."
                    .to_string(),
            )
        })
    }

    /// Reads a number as students write it: "1000", "1 000", "1,000", "1.000.000",
    /// "100.5" and "100,5" (a decimal comma). A single comma followed by exactly three
    /// digits ("1,234") could be either separator, so it is refused with a message; with the
    /// other separator too ("1,234.5", "1.234,5") the last one is the decimal point.
    pub fn read_number(answer: &str) -> Result<f64, String> {
        const NOT_A_NUMBER: &str = "Answer with a number, for example 42 or 0.5.";
        let compact: String = answer
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '_' && *c != '\'')
            .collect();
        let commas = compact.matches(',').count();
        let points = compact.matches('.').count();
        let is_grouped = |text: &str, separator: char| {
            let mut groups = text.split(separator);
            let first = groups
                .next()
                .unwrap_or_default()
                .trim_start_matches(['-', '+']);
            (1..=3).contains(&first.len())
                && first.chars().all(|c| c.is_ascii_digit())
                && groups.all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
        };
        let plain = match (commas, points) {
            (0, _) if points > 1 && is_grouped(&compact, '.') => compact.replace('.', ""),
            (0, _) => compact,
            (_, 0) if commas > 1 && is_grouped(&compact, ',') => compact.replace(',', ""),
            (1, 0) => {
                let (whole, decimals) = compact.split_once(',').unwrap_or_default();
                let whole = whole.trim_start_matches(['-', '+']);
                if decimals.len() == 3 && !matches!(whole, "" | "0") {
                    return Err(format!(
                        "\u{201c}{}\u{201d} could mean two numbers: write it without the comma \
                         (for a thousands separator) or with a point (for a decimal point).",
                        answer.trim()
                    ));
                }
                compact.replace(',', ".")
            }
            _ => {
                let last_comma = compact.rfind(',').unwrap_or_default();
                let last_point = compact.rfind('.').unwrap_or_default();
                if last_point > last_comma && is_grouped(&compact[..last_point], ',') {
                    compact.replace(',', "")
                } else if last_comma > last_point && is_grouped(&compact[..last_comma], '.') {
                    compact.replace('.', "").replace(',', ".")
                } else {
                    return Err(NOT_A_NUMBER.into());
                }
            }
        };
        plain
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| NOT_A_NUMBER.into())
    }

    /// Hands in an answer: stores it, clears the draft and grades it when the app can.
    /// A free-text answer keeps its grade only if its text did not change.
    pub async fn submit(
        pool: &DbPool,
        student_id: i64,
        item: &QuizItem,
        grading: &Grading,
        text: &str,
    ) -> Result<(), AppError> {
        /// The stored answer and its grade: answer, points, feedback, graded by.
        type Previous = (Option<String>, Option<f64>, Option<String>, Option<String>);
        let previous: Option<Previous> = sqlx::query_as(
            "SELECT answer, points, feedback, graded_by FROM quiz_answers \
                 WHERE student_id = $1 AND question_key = $2",
        )
        .bind(student_id)
        .bind(&item.key)
        .fetch_optional(pool)
        .await?;
        let (points, feedback, graded_by) = match &grading.key {
            Some(key) => {
                let (points, feedback) =
                    auto_grade(item, key, text).map_err(AppError::bad_request)?;
                (Some(points), Some(feedback), Some("auto".to_string()))
            }
            None => match previous {
                Some((Some(old), points, feedback, graded_by)) if old == text => {
                    (points, feedback, graded_by)
                }
                _ => (None, None, None),
            },
        };
        let now = crate::db::now();
        let graded_at = points.map(|_| now.clone());
        sqlx::query(
            "INSERT INTO quiz_answers (student_id, question_key, answer, submitted_at, draft, \
             draft_saved_at, points, feedback, graded_by, graded_at) \
             VALUES ($1, $2, $3, $4, NULL, NULL, $5, $6, $7, $8) \
             ON CONFLICT (student_id, question_key) DO UPDATE SET \
             answer = excluded.answer, submitted_at = excluded.submitted_at, draft = NULL, \
             draft_saved_at = NULL, points = excluded.points, feedback = excluded.feedback, \
             graded_by = excluded.graded_by, graded_at = excluded.graded_at",
        )
        .bind(student_id)
        .bind(&item.key)
        .bind(text)
        .bind(now)
        .bind(points)
        .bind(feedback)
        .bind(graded_by)
        .bind(graded_at)
        .persistent(false) // `points` may be NULL: see `crate::db`
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Whether a class's quiz can be answered now.
    pub async fn state(pool: &DbPool, class_id: i64) -> Result<QuizState, AppError> {
        let (phase, closed): (String, i64) =
            sqlx::query_as("SELECT phase, CAST(quiz_closed AS INTEGER) FROM classes WHERE id = $1")
                .bind(class_id)
                .fetch_one(pool)
                .await?;
        Ok(match Phase::parse(&phase) {
            Some(phase) if phase.quiz_available() && closed == 0 => QuizState::Open,
            Some(phase) if phase.quiz_available() => QuizState::Closed,
            _ => QuizState::NotYet,
        })
    }

    /// A student's answers by question key.
    pub async fn answers_of(
        pool: &DbPool,
        student_id: i64,
    ) -> Result<HashMap<String, MyAnswer>, AppError> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<f64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT question_key, draft, answer, submitted_at, points, feedback \
             FROM quiz_answers WHERE student_id = $1",
        )
        .bind(student_id)
        .fetch_all(pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(key, draft, answer, submitted_at, points, feedback)| {
                (
                    key,
                    MyAnswer {
                        draft,
                        answer,
                        submitted_at,
                        points,
                        feedback,
                    },
                )
            })
            .collect())
    }

    /// The quiz standings of a class: graded points per team member, best first.
    pub async fn standings(pool: &DbPool, class_id: i64) -> Result<Vec<TeamScore>, AppError> {
        let rows: Vec<(String, i64, f64, i64)> = sqlx::query_as(
            "SELECT t.name, \
             (SELECT COUNT(*) FROM students s WHERE s.team_id = t.id), \
             COALESCE((SELECT SUM(a.points) FROM quiz_answers a JOIN students s ON s.id = a.student_id \
                       WHERE s.team_id = t.id AND a.answer IS NOT NULL), 0.0), \
             (SELECT COUNT(a.points) FROM quiz_answers a JOIN students s ON s.id = a.student_id \
              WHERE s.team_id = t.id AND a.answer IS NOT NULL) \
             FROM teams t WHERE t.class_id = $1 AND NOT t.hidden ORDER BY t.id",
        )
        .bind(class_id)
        .fetch_all(pool)
        .await?;
        let mut scores: Vec<TeamScore> = rows
            .into_iter()
            .map(|(team, members, points, graded_answers)| TeamScore {
                team,
                members,
                points,
                points_per_member: if members > 0 {
                    points / members as f64
                } else {
                    0.0
                },
                graded_answers,
            })
            .collect();
        scores.sort_by(|a, b| b.points_per_member.total_cmp(&a.points_per_member));
        Ok(scores)
    }

    /// Every handed-in answer of a class with its grade, as CSV (UTF-8, RFC 4180 quoting).
    /// Text cells starting with `=`, `+`, `-` or `@` get a leading `'` so spreadsheets
    /// show them instead of evaluating them.
    pub async fn answers_csv(pool: &DbPool, class_id: i64) -> Result<String, AppError> {
        type Row = (
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<f64>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT t.name, s.display_name, a.question_key, a.answer, a.submitted_at, a.points, \
             a.feedback, a.graded_by FROM quiz_answers a \
             JOIN students s ON s.id = a.student_id JOIN teams t ON t.id = s.team_id \
             WHERE s.class_id = $1 AND a.answer IS NOT NULL ORDER BY t.name, s.display_name, a.question_key",
        )
        .bind(class_id)
        .fetch_all(pool)
        .await?;
        let questions = questions();
        let mut csv = String::from(
            "team,student,question,lesson,prompt,answer,submitted_at,points,max_points,feedback,graded_by\r\n",
        );
        for (team, student, key, answer, submitted_at, points, feedback, graded_by) in rows {
            let item = questions
                .iter()
                .find(|(item, _)| item.key == key)
                .map(|(i, _)| i);
            let cells = [
                text_cell(&team),
                text_cell(&student),
                text_cell(&key),
                text_cell(item.map_or("", |i| i.lesson_title.as_str())),
                text_cell(item.map_or("", |i| i.prompt.as_str())),
                text_cell(answer.as_deref().unwrap_or("")),
                text_cell(submitted_at.as_deref().unwrap_or("")),
                points.map(|p| p.to_string()).unwrap_or_default(),
                item.map(|i| i.max_points.to_string()).unwrap_or_default(),
                text_cell(feedback.as_deref().unwrap_or("")),
                text_cell(graded_by.as_deref().unwrap_or("")),
            ];
            csv.push_str(&cells.join(","));
            csv.push_str("\r\n");
        }
        Ok(csv)
    }

    /// Quotes one CSV text cell, defusing spreadsheet formulas.
    fn text_cell(text: &str) -> String {
        let defused = if text.starts_with(['=', '+', '-', '@']) {
            format!("'{text}")
        } else {
            text.to_string()
        };
        format!("\"{}\"", defused.replace('"', "\"\""))
    }

    #[cfg(test)]
    mod tests;
}
