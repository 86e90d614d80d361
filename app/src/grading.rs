//! Grading the quiz, one question at a time across the whole class: how far grading has
//! got per question, every answer to one question with the lesson's model answer, and
//! points with feedback (which override an automatic grade).

use crate::error::AppError;
use crate::quiz::QuizItem;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The longest feedback on an answer, in characters.
pub const MAX_FEEDBACK_CHARS: usize = 5_000;

/// How far grading of one question has got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionProgress {
    /// The question.
    pub item: QuizItem,
    /// Answers handed in.
    pub submitted: i64,
    /// Of those, graded.
    pub graded: i64,
}

/// Grading progress of a whole class's quiz.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuizProgress {
    /// The class's name.
    pub class_name: String,
    /// Each question's progress, in lesson order.
    pub questions: Vec<QuestionProgress>,
}

/// One answer in the grading queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerToGrade {
    /// The answer's id.
    pub id: i64,
    /// The student's display name.
    pub student: String,
    /// The student's team.
    pub team: String,
    /// The handed-in text.
    pub answer: String,
    /// When it was handed in (UTC).
    pub submitted_at: String,
    /// Points given so far.
    pub points: Option<f64>,
    /// Feedback given so far.
    pub feedback: Option<String>,
    /// "auto" or "instructor" once graded.
    pub graded_by: Option<String>,
}

/// All answers to one question in one class, for grading on one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradingQueue {
    /// The class's name.
    pub class_name: String,
    /// The question.
    pub item: QuizItem,
    /// The lesson file's model answer.
    pub model_answer: String,
    /// Every handed-in answer, ungraded first.
    pub answers: Vec<AnswerToGrade>,
}

/// Grading progress for each question of a class's quiz.
#[server(prefix = "/api", endpoint = "grading-overview")]
pub async fn grading_overview(class_id: i64) -> Result<QuizProgress, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    let counts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT a.question_key, COUNT(*), COUNT(a.points) FROM quiz_answers a \
         JOIN students s ON s.id = a.student_id \
         WHERE s.class_id = $1 AND a.answer IS NOT NULL GROUP BY a.question_key",
    )
    .bind(class_id)
    .fetch_all(&pool)
    .await?;
    let class_name: String = sqlx::query_scalar("SELECT name FROM classes WHERE id = $1")
        .bind(class_id)
        .fetch_one(&pool)
        .await?;
    let questions = crate::quiz::ssr::questions()
        .into_iter()
        .map(|(item, _)| {
            let (submitted, graded) = counts
                .iter()
                .find(|(key, _, _)| *key == item.key)
                .map_or((0, 0), |(_, s, g)| (*s, *g));
            QuestionProgress {
                item,
                submitted,
                graded,
            }
        })
        .collect();
    Ok(QuizProgress {
        class_name,
        questions,
    })
}

/// Every handed-in answer to one question in one class.
#[server(prefix = "/api", endpoint = "grading-queue")]
pub async fn answers_to_grade(class_id: i64, key: String) -> Result<GradingQueue, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    let (item, grading) = crate::quiz::ssr::question(&key)
        .ok_or_else(|| AppError::not_found("There is no such quiz question."))?;
    let class_name: String = sqlx::query_scalar("SELECT name FROM classes WHERE id = $1")
        .bind(class_id)
        .fetch_one(&pool)
        .await?;
    type Row = (
        i64,
        String,
        String,
        String,
        String,
        Option<f64>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, s.display_name, t.name, a.answer, a.submitted_at, a.points, a.feedback, a.graded_by \
         FROM quiz_answers a JOIN students s ON s.id = a.student_id JOIN teams t ON t.id = s.team_id \
         WHERE s.class_id = $1 AND a.question_key = $2 AND a.answer IS NOT NULL \
         ORDER BY (a.points IS NOT NULL), a.submitted_at, a.id",
    )
    .bind(class_id)
    .bind(&key)
    .fetch_all(&pool)
    .await?;
    Ok(GradingQueue {
        class_name,
        item,
        model_answer: grading.model_answer,
        answers: rows
            .into_iter()
            .map(
                |(id, student, team, answer, submitted_at, points, feedback, graded_by)| {
                    AnswerToGrade {
                        id,
                        student,
                        team,
                        answer,
                        submitted_at,
                        points,
                        feedback,
                        graded_by,
                    }
                },
            )
            .collect(),
    })
}

/// Gives an answer points and feedback (replacing any earlier grade, automatic or not).
#[server(prefix = "/api", endpoint = "grade-answer")]
pub async fn grade_answer(answer_id: i64, points: f64, feedback: String) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    let instructor = crate::auth::ssr::require_instructor(&pool).await?;
    let found: Option<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT s.class_id, a.question_key, a.answer FROM quiz_answers a \
         JOIN students s ON s.id = a.student_id WHERE a.id = $1",
    )
    .bind(answer_id)
    .fetch_optional(&pool)
    .await?;
    let (class_id, key, answer) =
        found.ok_or_else(|| AppError::not_found("There is no such answer."))?;
    // Another instructor's answer reads as one that does not exist.
    if !crate::auth::ssr::owns_class(&pool, &instructor, class_id).await? {
        return Err(AppError::not_found("There is no such answer."));
    }
    if answer.is_none() {
        return Err(AppError::bad_request(
            "That answer is still a draft; it can be graded once it is submitted.",
        ));
    }
    let max_points = crate::quiz::ssr::question(&key).map_or(0.0, |(item, _)| item.max_points);
    if !points.is_finite() || points < 0.0 || points > max_points {
        return Err(AppError::bad_request(format!(
            "Points must be a number from 0 to {max_points}."
        )));
    }
    let feedback = feedback.trim().to_string();
    let length = feedback.chars().count();
    if length > MAX_FEEDBACK_CHARS {
        return Err(AppError::bad_request(format!(
            "That feedback has {length} characters; at most {MAX_FEEDBACK_CHARS} fit."
        )));
    }
    sqlx::query(
        "UPDATE quiz_answers SET points = $1, feedback = $2, graded_by = 'instructor', \
         graded_at = $3 WHERE id = $4",
    )
    .bind(points)
    .bind((!feedback.is_empty()).then_some(feedback))
    .bind(crate::db::now())
    .bind(answer_id)
    .execute(&pool)
    .await?;
    crate::live::ssr::announce(class_id);
    Ok(())
}
