//! Who may see which runs: a team its own, an instructor their classes'.

use super::queue::RunQueue;
use crate::db::DbPool;
use crate::error::AppError;

/// Whose runs, boards and live class events a caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewpoint {
    /// A student: their own class and team.
    Team {
        /// The student's class.
        class_id: i64,
        /// The student's team.
        team_id: i64,
    },
    /// An instructor looking at one of their classes.
    Instructor {
        /// The class.
        class_id: i64,
    },
}

impl Viewpoint {
    /// The class seen.
    pub fn class_id(self) -> i64 {
        match self {
            Viewpoint::Team { class_id, .. } | Viewpoint::Instructor { class_id } => class_id,
        }
    }
}

/// The caller's viewpoint: students see their own class (`class_id` is ignored);
/// instructors must name one of theirs.
pub async fn viewpoint(pool: &DbPool, class_id: Option<i64>) -> Result<Viewpoint, AppError> {
    viewpoint_of(pool, crate::auth::ssr::caller(pool).await?, class_id).await
}

/// [`viewpoint`] for a known caller (the server's live class events use it too).
pub async fn viewpoint_of(
    pool: &DbPool,
    caller: crate::auth::ssr::Caller,
    class_id: Option<i64>,
) -> Result<Viewpoint, AppError> {
    use crate::auth::ssr::Caller;
    match (caller, class_id) {
        (Caller::Student(student), _) => Ok(Viewpoint::Team {
            class_id: student.class_id,
            team_id: student.team_id,
        }),
        (Caller::Instructor(instructor), Some(class_id)) => {
            crate::auth::ssr::check_class_owner(pool, &instructor, class_id).await?;
            Ok(Viewpoint::Instructor { class_id })
        }
        (Caller::Instructor(_), None) => Err(AppError::bad_request("Name the class.")),
        (Caller::Anonymous, _) => Err(crate::auth::ssr::join_first()),
    }
}

/// Checks the caller may see `run_id`: a member of its team or its class's instructor, and
/// any student of its class for a claim test's run.
pub async fn check_run_access(pool: &DbPool, run_id: i64) -> Result<(), AppError> {
    let caller = crate::auth::ssr::caller(pool).await?;
    check_access(pool, &caller, run_id).await
}

/// Checks the caller may stop `run_id`: as [`check_run_access`], except that only the
/// instructor stops a claim test's run.
pub async fn check_run_control(pool: &DbPool, run_id: i64) -> Result<(), AppError> {
    let caller = crate::auth::ssr::caller(pool).await?;
    check_access(pool, &caller, run_id).await?;
    if matches!(caller, crate::auth::ssr::Caller::Student(_))
        && RunQueue::new(pool.clone())
            .owner(run_id)
            .await?
            .is_some_and(|owner| owner.claim.is_some())
    {
        return Err(AppError::forbidden(
            "Only your teacher can stop the class's claim tests.",
        ));
    }
    Ok(())
}

/// The access rule behind [`check_run_access`], for a known caller (the server's own
/// routes use it too).
pub async fn check_access(
    pool: &DbPool,
    caller: &crate::auth::ssr::Caller,
    run_id: i64,
) -> Result<(), AppError> {
    let owner = RunQueue::new(pool.clone()).owner(run_id).await?;
    use crate::auth::ssr::Caller;
    let not_found = || AppError::not_found("There is no such run.");
    match (caller, owner) {
        (Caller::Anonymous, _) => Err(crate::auth::ssr::join_first()),
        (_, None) => Err(not_found()),
        (Caller::Student(student), Some(owner)) if owner.team_id == student.team_id => Ok(()),
        // The class's claim tests are for the whole class to read (the lessons link them).
        (Caller::Student(student), Some(owner))
            if owner.claim.is_some() && owner.class_id == student.class_id =>
        {
            Ok(())
        }
        // Another team's run is not theirs to see; say so without confirming it exists.
        (Caller::Student(_), Some(_)) => Err(not_found()),
        (Caller::Instructor(instructor), Some(owner)) => {
            if crate::auth::ssr::owns_class(pool, instructor, owner.class_id).await? {
                Ok(())
            } else {
                Err(not_found())
            }
        }
    }
}
