//! The jigsaw workflow: an instructor creates a class (with a short join code) and its
//! teams, students join it with the code, the instructor gives each team an expert topic
//! (a lesson) and moves the class through its phases: study → teach → quiz → competition.
//! Every change is announced through [`crate::live`], so open pages follow it live over
//! server-sent events.

use crate::error::AppError;
use crate::phase::Phase;
use crate::quiz::TeamScore;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One class in the instructor's list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSummary {
    /// The class's id.
    pub id: i64,
    /// The class's name.
    pub name: String,
    /// The code students type to join.
    pub join_code: String,
    /// The current phase.
    pub phase: Phase,
    /// Number of teams.
    pub teams: i64,
    /// Number of students who joined.
    pub students: i64,
}

/// A lesson as a topic someone can be assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// The lesson's slug.
    pub slug: String,
    /// The lesson's title.
    pub title: String,
}

/// A team as the instructor manages it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamAdmin {
    /// The team's id.
    pub id: i64,
    /// The team's name.
    pub name: String,
    /// Its expert topic.
    pub topic: Option<Topic>,
    /// Its members' display names.
    pub members: Vec<String>,
}

/// Everything the instructor's class page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAdmin {
    /// Name, code, phase and counts.
    pub summary: ClassSummary,
    /// The longest a run of this class trains, in minutes.
    pub run_minutes: i64,
    /// Whether the instructor closed the quiz (answers can no longer change).
    pub quiz_closed: bool,
    /// The teams with their topics and members.
    pub teams: Vec<TeamAdmin>,
    /// Every topic a team can be given, in teaching order.
    pub topics: Vec<Topic>,
    /// The quiz standings per team (named `leaderboard` on the wire).
    #[serde(rename = "leaderboard")]
    pub standings: Vec<TeamScore>,
    /// The class's latest finished runs: how long each was estimated to take and took.
    pub estimates: Vec<crate::runs::timing::EstimateCheck>,
}

/// A lesson on a student's class page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassLesson {
    /// The lesson.
    pub topic: Topic,
    /// The teams that are experts on it.
    pub expert_teams: Vec<String>,
    /// Whether it is the student's own team's topic.
    pub mine: bool,
}

/// Everything a student's class page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentClass {
    /// The class's name.
    pub class_name: String,
    /// The student's display name.
    pub name: String,
    /// The student's team.
    pub team: String,
    /// The other members of the team.
    pub teammates: Vec<String>,
    /// The current phase.
    pub phase: Phase,
    /// The team's expert topic, if assigned.
    pub topic: Option<Topic>,
    /// The lessons, the team's own first.
    pub lessons: Vec<ClassLesson>,
    /// Whether quiz answers can be changed now.
    pub quiz_open: bool,
    /// The quiz standings per team, once the quiz phase has begun (named `leaderboard` on
    /// the wire).
    #[serde(rename = "leaderboard")]
    pub standings: Vec<TeamScore>,
}

/// A class as someone holding its join code sees it before joining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassPreview {
    /// The class's name.
    pub name: String,
    /// The teams a student can join.
    pub teams: Vec<TeamOption>,
}

/// A team to pick when joining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamOption {
    /// The team's id.
    pub id: i64,
    /// The team's name.
    pub name: String,
}

/// Lists the calling instructor's classes.
#[server(prefix = "/api", endpoint = "my-classes")]
pub async fn my_classes() -> Result<Vec<ClassSummary>, AppError> {
    let pool = crate::db::pool()?;
    let instructor = crate::auth::ssr::require_instructor(&pool).await?;
    ssr::summaries(&pool, ssr::Classes::Of(instructor.id)).await
}

/// Creates a class with a fresh join code.
#[server(prefix = "/api", endpoint = "create-class")]
pub async fn create_class(name: String) -> Result<ClassSummary, AppError> {
    let pool = crate::db::pool()?;
    let instructor = crate::auth::ssr::require_instructor(&pool).await?;
    let name = crate::auth::ssr::clean_name(&name, "The class name")?;
    for _ in 0..8 {
        let code = ssr::new_join_code();
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO classes (instructor_id, name, join_code) VALUES ($1, $2, $3) \
             ON CONFLICT (join_code) DO NOTHING RETURNING id",
        )
        .bind(instructor.id)
        .bind(&name)
        .bind(&code)
        .fetch_optional(&pool)
        .await?;
        if let Some(id) = inserted {
            return ssr::summaries(&pool, ssr::Classes::Id(id))
                .await?
                .pop()
                .ok_or_else(|| AppError::internal("a class vanished right after its insert"));
        }
    }
    Err(AppError::internal("no free join code after 8 tries"))
}

/// The instructor's view of one class.
#[server(prefix = "/api", endpoint = "class-admin")]
pub async fn class_dashboard(class_id: i64) -> Result<ClassAdmin, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    let summary = ssr::summaries(&pool, ssr::Classes::Id(class_id))
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("There is no such class."))?;
    let (quiz_closed, run_minutes): (i64, i64) = sqlx::query_as(
        "SELECT CAST(quiz_closed AS INTEGER), run_minutes FROM classes WHERE id = $1",
    )
    .bind(class_id)
    .fetch_one(&pool)
    .await?;
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, name, topic_slug FROM teams WHERE class_id = $1 AND NOT hidden ORDER BY id",
    )
    .bind(class_id)
    .fetch_all(&pool)
    .await?;
    let members: Vec<(i64, String)> = sqlx::query_as(
        "SELECT team_id, display_name FROM students WHERE class_id = $1 ORDER BY display_name",
    )
    .bind(class_id)
    .fetch_all(&pool)
    .await?;
    let teams = rows
        .into_iter()
        .map(|(id, name, slug)| TeamAdmin {
            id,
            name,
            topic: slug.as_deref().and_then(ssr::topic),
            members: members
                .iter()
                .filter(|(team, _)| *team == id)
                .map(|(_, name)| name.clone())
                .collect(),
        })
        .collect();
    Ok(ClassAdmin {
        summary,
        run_minutes,
        quiz_closed: quiz_closed != 0,
        teams,
        topics: ssr::topics(),
        standings: crate::quiz::ssr::standings(&pool, class_id).await?,
        estimates: crate::runs::timing::estimate_checks(&pool, class_id, 10).await?,
    })
}

/// The longest run time an instructor can set, in minutes (ten hours).
pub const MAX_RUN_MINUTES: i64 = 600;

/// Sets how long a run of the class may train, in minutes (1 to [`MAX_RUN_MINUTES`]). A run
/// that reaches it stops and finishes with its best model so far, saying so.
#[server(prefix = "/api", endpoint = "set-run-minutes")]
pub async fn set_run_minutes(class_id: i64, minutes: i64) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    if !(1..=MAX_RUN_MINUTES).contains(&minutes) {
        return Err(AppError::bad_request(format!(
            "A run's time limit must be between 1 and {MAX_RUN_MINUTES} minutes, not {minutes}."
        )));
    }
    sqlx::query("UPDATE classes SET run_minutes = $1 WHERE id = $2")
        .bind(minutes)
        .bind(class_id)
        .execute(&pool)
        .await?;
    crate::live::ssr::announce(class_id);
    Ok(())
}

/// Adds a team to a class.
#[server(prefix = "/api", endpoint = "add-team")]
pub async fn add_team(class_id: i64, name: String) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    let name = crate::auth::ssr::clean_name(&name, "The team name")?;
    let inserted = sqlx::query(
        "INSERT INTO teams (class_id, name) VALUES ($1, $2) ON CONFLICT (class_id, name) DO NOTHING",
    )
    .bind(class_id)
    .bind(&name)
    .execute(&pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(AppError::bad_request(format!(
            "This class already has a team called \u{201c}{name}\u{201d}."
        )));
    }
    crate::live::ssr::announce(class_id);
    Ok(())
}

/// Gives the class's teams the lessons as expert topics in turn, in teaching order.
#[server(prefix = "/api", endpoint = "assign-topics")]
pub async fn assign_topics_round_robin(class_id: i64) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    let teams: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM teams WHERE class_id = $1 AND NOT hidden ORDER BY id")
            .bind(class_id)
            .fetch_all(&pool)
            .await?;
    if teams.is_empty() {
        return Err(AppError::bad_request("Add teams first."));
    }
    let topics = ssr::topics();
    let mut transaction = pool.begin().await?;
    for (index, team) in teams.iter().enumerate() {
        sqlx::query("UPDATE teams SET topic_slug = $1 WHERE id = $2")
            .bind(&topics[index % topics.len()].slug)
            .bind(team)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    crate::live::ssr::announce(class_id);
    Ok(())
}

/// Gives one team a topic by hand; an empty slug takes its topic away.
#[server(prefix = "/api", endpoint = "assign-topic")]
pub async fn assign_topic(team_id: i64, slug: String) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    let instructor = crate::auth::ssr::require_instructor(&pool).await?;
    let class_id: Option<i64> =
        sqlx::query_scalar("SELECT class_id FROM teams WHERE id = $1 AND NOT hidden")
            .bind(team_id)
            .fetch_optional(&pool)
            .await?;
    let class_id = class_id.ok_or_else(|| AppError::not_found("There is no such team."))?;
    crate::auth::ssr::check_class_owner(&pool, &instructor, class_id).await?;
    let slug = slug.trim();
    let topic = if slug.is_empty() {
        None
    } else {
        Some(ssr::topic(slug).ok_or_else(|| {
            AppError::bad_request("That is not one of the lessons; pick a topic from the list.")
        })?)
    };
    sqlx::query("UPDATE teams SET topic_slug = $1 WHERE id = $2")
        .bind(topic.map(|t| t.slug))
        .bind(team_id)
        .execute(&pool)
        .await?;
    crate::live::ssr::announce(class_id);
    Ok(())
}

/// Moves a class to another phase; every open page of the class follows.
#[server(prefix = "/api", endpoint = "set-phase")]
pub async fn set_phase(class_id: i64, phase: Phase) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    sqlx::query("UPDATE classes SET phase = $1 WHERE id = $2")
        .bind(phase.as_str())
        .bind(class_id)
        .execute(&pool)
        .await?;
    crate::live::ssr::announce(class_id);
    Ok(())
}

/// Closes the quiz (answers freeze) or opens it again.
#[server(prefix = "/api", endpoint = "set-quiz-closed")]
pub async fn set_quiz_closed(class_id: i64, closed: bool) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_class_owner(&pool, class_id).await?;
    sqlx::query("UPDATE classes SET quiz_closed = $1 WHERE id = $2")
        .bind(closed)
        .bind(class_id)
        .execute(&pool)
        .await?;
    crate::live::ssr::announce(class_id);
    Ok(())
}

/// The calling student's class page.
#[server(prefix = "/api", endpoint = "my-class")]
pub async fn my_class() -> Result<StudentClass, AppError> {
    let pool = crate::db::pool()?;
    let student = crate::auth::ssr::require_student(&pool).await?;
    let (phase, quiz_closed): (String, i64) =
        sqlx::query_as("SELECT phase, CAST(quiz_closed AS INTEGER) FROM classes WHERE id = $1")
            .bind(student.class_id)
            .fetch_one(&pool)
            .await?;
    let phase = Phase::parse(&phase).ok_or_else(|| AppError::internal("unknown phase"))?;
    let teams: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, name, topic_slug FROM teams WHERE class_id = $1 AND NOT hidden ORDER BY id",
    )
    .bind(student.class_id)
    .fetch_all(&pool)
    .await?;
    let own_slug = teams
        .iter()
        .find(|(id, _, _)| *id == student.team_id)
        .and_then(|(_, _, slug)| slug.clone());
    let mut lessons: Vec<ClassLesson> = ssr::topics()
        .into_iter()
        .map(|topic| ClassLesson {
            expert_teams: teams
                .iter()
                .filter(|(_, _, slug)| slug.as_deref() == Some(topic.slug.as_str()))
                .map(|(_, name, _)| name.clone())
                .collect(),
            mine: own_slug.as_deref() == Some(topic.slug.as_str()),
            topic,
        })
        .collect();
    // Stable sort: the team's own topic first, the rest in teaching order.
    lessons.sort_by_key(|lesson| !lesson.mine);
    let teammates = sqlx::query_scalar(
        "SELECT display_name FROM students WHERE team_id = $1 AND id <> $2 ORDER BY display_name",
    )
    .bind(student.team_id)
    .bind(student.id)
    .fetch_all(&pool)
    .await?;
    let standings = if phase.quiz_available() {
        crate::quiz::ssr::standings(&pool, student.class_id).await?
    } else {
        Vec::new()
    };
    Ok(StudentClass {
        class_name: student.class_name,
        name: student.name,
        team: student.team_name,
        teammates,
        phase,
        topic: own_slug.as_deref().and_then(ssr::topic),
        lessons,
        quiz_open: phase.quiz_available() && quiz_closed == 0,
        standings,
    })
}

/// Looks a class up by its join code, for the join form's team list.
#[server(prefix = "/api", endpoint = "find-class")]
pub async fn find_class(code: String) -> Result<ClassPreview, AppError> {
    let pool = crate::db::pool()?;
    let class_id = crate::auth::ssr::class_by_code(&pool, &code).await?;
    let name: String = sqlx::query_scalar("SELECT name FROM classes WHERE id = $1")
        .bind(class_id)
        .fetch_one(&pool)
        .await?;
    let teams = sqlx::query_as::<_, (i64, String)>(
        "SELECT id, name FROM teams WHERE class_id = $1 AND NOT hidden ORDER BY id",
    )
    .bind(class_id)
    .fetch_all(&pool)
    .await?
    .into_iter()
    .map(|(id, name)| TeamOption { id, name })
    .collect();
    Ok(ClassPreview { name, teams })
}

/// Joins a class as a student and sends them to the class page.
#[server(prefix = "/api", endpoint = "join-class")]
pub async fn join_class(code: String, display_name: String, team_id: i64) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    let class_id = crate::auth::ssr::class_by_code(&pool, &code).await?;
    let name = crate::auth::ssr::clean_name(&display_name, "Your name")?;
    let team_in_class: Option<i64> =
        sqlx::query_scalar("SELECT id FROM teams WHERE id = $1 AND class_id = $2 AND NOT hidden")
            .bind(team_id)
            .bind(class_id)
            .fetch_optional(&pool)
            .await?;
    if team_in_class.is_none() {
        return Err(AppError::bad_request(
            "Pick one of this class's teams.".to_string(),
        ));
    }
    let taken: Option<i64> =
        sqlx::query_scalar("SELECT id FROM students WHERE class_id = $1 AND display_name = $2")
            .bind(class_id)
            .bind(&name)
            .fetch_optional(&pool)
            .await?;
    if taken.is_some() {
        return Err(AppError::bad_request(format!(
            "Someone in this class is already called \u{201c}{name}\u{201d}. Add an initial or a nickname."
        )));
    }
    let student_id: i64 = sqlx::query_scalar(
        "INSERT INTO students (class_id, team_id, display_name) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(class_id)
    .bind(team_id)
    .bind(&name)
    .fetch_one(&pool)
    .await?;
    crate::auth::ssr::start_session(crate::auth::ssr::SessionUser::Student(student_id), 0).await?;
    crate::live::ssr::announce(class_id);
    leptos_axum::redirect("/class");
    Ok(())
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! Join codes, topics and the queries behind the classroom server functions.

    use super::{ClassSummary, Topic};
    use crate::db::DbPool;
    use crate::error::AppError;
    use crate::lessons::content;
    use crate::phase::Phase;
    use rand::Rng;

    /// Letters and digits that cannot be confused when read aloud or copied from a board.
    const JOIN_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    /// Characters in a join code.
    pub const JOIN_CODE_LEN: usize = 6;

    /// A fresh random join code.
    pub fn new_join_code() -> String {
        let mut rng = rand::rng();
        (0..JOIN_CODE_LEN)
            .map(|_| JOIN_CODE_ALPHABET[rng.random_range(0..JOIN_CODE_ALPHABET.len())] as char)
            .collect()
    }

    /// Every lesson as a topic, in teaching order.
    pub fn topics() -> Vec<Topic> {
        content::catalog()
            .iter()
            .map(|lesson| Topic {
                slug: lesson.summary.slug.clone(),
                title: lesson.summary.title.clone(),
            })
            .collect()
    }

    /// The topic with this slug.
    pub fn topic(slug: &str) -> Option<Topic> {
        topics().into_iter().find(|t| t.slug == slug)
    }

    /// Which classes [`summaries`] lists.
    #[derive(Debug, Clone, Copy)]
    pub enum Classes {
        /// Every class of this instructor.
        Of(i64),
        /// The class with this id.
        Id(i64),
    }

    /// The summary query for a `WHERE` condition on `c` with one `$1` parameter.
    macro_rules! summary_sql {
        ($filter:literal) => {
            concat!(
                "SELECT c.id, c.name, c.join_code, c.phase, ",
                "(SELECT COUNT(*) FROM teams t WHERE t.class_id = c.id AND NOT t.hidden), ",
                "(SELECT COUNT(*) FROM students s WHERE s.class_id = c.id) ",
                "FROM classes c WHERE ",
                $filter,
                " ORDER BY c.id DESC"
            )
        };
    }

    /// Summaries of the chosen classes, newest first.
    pub async fn summaries(pool: &DbPool, which: Classes) -> Result<Vec<ClassSummary>, AppError> {
        let (sql, value) = match which {
            Classes::Of(instructor) => (summary_sql!("c.instructor_id = $1"), instructor),
            Classes::Id(id) => (summary_sql!("c.id = $1"), id),
        };
        let rows: Vec<(i64, String, String, String, i64, i64)> =
            sqlx::query_as(sql).bind(value).fetch_all(pool).await?;
        rows.into_iter()
            .map(|(id, name, join_code, phase, teams, students)| {
                Ok(ClassSummary {
                    id,
                    name,
                    join_code,
                    phase: Phase::parse(&phase)
                        .ok_or_else(|| AppError::internal(format!("unknown phase {phase}")))?,
                    teams,
                    students,
                })
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn join_codes_are_short_and_unambiguous() {
            for _ in 0..100 {
                let code = new_join_code();
                assert_eq!(code.len(), JOIN_CODE_LEN);
                assert!(!code.contains(['0', 'O', '1', 'I']), "{code}");
            }
        }

        #[test]
        fn every_lesson_is_a_topic() {
            assert_eq!(topics().len(), 8);
            assert_eq!(topic("lora").unwrap().title, "LoRA");
            assert!(topic("nope").is_none());
        }
    }
}
