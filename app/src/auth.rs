//! Accounts: instructors sign in with a username and password (argon2 hashes); students
//! join a class with its join code, a display name and a team (the joining itself is the
//! classroom's; checking the code, with its rate limit, is here). Either way the browser
//! gets a session cookie (HttpOnly, SameSite=Lax) managed by tower-sessions.
//!
//! Every server function that touches class data asks [`ssr::caller`] who is calling and
//! checks the role and the class before it reads anything.

use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The longest display name, team name or class name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Who is using the app, as the pages need to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Viewer {
    /// Not signed in and not in a class.
    Anonymous,
    /// A signed-in instructor.
    Instructor {
        /// Their sign-in name.
        username: String,
    },
    /// A student who joined a class.
    Student {
        /// Their display name.
        name: String,
        /// Their team's name.
        team: String,
        /// Their class's name.
        class_name: String,
    },
}

/// Says who the caller is.
#[server(prefix = "/api", endpoint = "whoami")]
pub async fn who_am_i() -> Result<Viewer, AppError> {
    let pool = crate::db::pool()?;
    Ok(match ssr::caller(&pool).await? {
        ssr::Caller::Anonymous => Viewer::Anonymous,
        ssr::Caller::Instructor(instructor) => Viewer::Instructor {
            username: instructor.username,
        },
        ssr::Caller::Student(student) => Viewer::Student {
            name: student.name,
            team: student.team_name,
            class_name: student.class_name,
        },
    })
}

/// Signs an instructor in and sends them to their classes.
#[server(prefix = "/api", endpoint = "sign-in")]
pub async fn sign_in(username: String, password: String) -> Result<(), AppError> {
    let pool = crate::db::pool()?;
    let username = username.trim().to_string();
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT id, password_hash FROM instructors WHERE username = $1")
            .bind(&username)
            .fetch_optional(&pool)
            .await?;
    let verified = match row {
        Some((id, hash)) => ssr::verify_password(password, hash).await?.then_some(id),
        None => {
            // Spend the same time as a real check, so timing does not reveal usernames.
            let _ = ssr::hash_password(password).await;
            None
        }
    };
    let Some(id) = verified else {
        return Err(AppError::SignInRequired("Wrong username or password.".into()).respond());
    };
    ssr::start_session(ssr::SessionUser::Instructor(id)).await?;
    leptos_axum::redirect("/instructor");
    Ok(())
}

/// Ends the caller's session, whoever they are.
#[server(prefix = "/api", endpoint = "sign-out")]
pub async fn sign_out() -> Result<(), AppError> {
    let session = ssr::session().await?;
    session.flush().await.map_err(AppError::internal)?;
    leptos_axum::redirect("/");
    Ok(())
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! Sessions, roles and the checks every server function makes.

    use super::MAX_NAME_CHARS;
    use crate::db::DbPool;
    use crate::error::AppError;
    use serde::{Deserialize, Serialize};
    use std::collections::{HashMap, VecDeque};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use tower_sessions::Session;

    /// The session key holding the signed-in user.
    const SESSION_USER: &str = "user";

    /// What a session remembers: which row of which table its owner is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub enum SessionUser {
        /// `instructors.id`.
        Instructor(i64),
        /// `students.id`.
        Student(i64),
    }

    /// A signed-in instructor.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct InstructorCaller {
        /// `instructors.id`.
        pub id: i64,
        /// Sign-in name.
        pub username: String,
    }

    /// A student in a class.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct StudentCaller {
        /// `students.id`.
        pub id: i64,
        /// Display name.
        pub name: String,
        /// Their class.
        pub class_id: i64,
        /// Their class's name.
        pub class_name: String,
        /// Their team.
        pub team_id: i64,
        /// Their team's name.
        pub team_name: String,
    }

    /// Whoever sent the request.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Caller {
        /// No session, or one whose account is gone.
        Anonymous,
        /// An instructor.
        Instructor(InstructorCaller),
        /// A student.
        Student(StudentCaller),
    }

    /// The request's session (the server's session layer always provides one).
    pub async fn session() -> Result<Session, AppError> {
        leptos_axum::extract::<Session>()
            .await
            .map_err(AppError::internal)
    }

    /// Who is calling this server function.
    pub async fn caller(pool: &DbPool) -> Result<Caller, AppError> {
        caller_of(&session().await?, pool).await
    }

    /// Who owns `session`; also used by the server's own routes (live events, CSV).
    pub async fn caller_of(session: &Session, pool: &DbPool) -> Result<Caller, AppError> {
        let user = session
            .get::<SessionUser>(SESSION_USER)
            .await
            .map_err(AppError::internal)?;
        Ok(match user {
            None => Caller::Anonymous,
            Some(SessionUser::Instructor(id)) => {
                sqlx::query_scalar::<_, String>("SELECT username FROM instructors WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                    .map_or(Caller::Anonymous, |username| {
                        Caller::Instructor(InstructorCaller { id, username })
                    })
            }
            Some(SessionUser::Student(id)) => sqlx::query_as::<_, (String, i64, String, i64, String)>(
                "SELECT s.display_name, c.id, c.name, t.id, t.name \
                 FROM students s JOIN classes c ON c.id = s.class_id JOIN teams t ON t.id = s.team_id \
                 WHERE s.id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map_or(Caller::Anonymous, |(name, class_id, class_name, team_id, team_name)| {
                Caller::Student(StudentCaller {
                    id,
                    name,
                    class_id,
                    class_name,
                    team_id,
                    team_name,
                })
            }),
        })
    }

    /// The calling instructor, or 401/403.
    pub async fn require_instructor(pool: &DbPool) -> Result<InstructorCaller, AppError> {
        instructor_only(caller(pool).await?)
    }

    /// `caller` if it is an instructor, else the 401 or 403 that says why not.
    pub fn instructor_only(caller: Caller) -> Result<InstructorCaller, AppError> {
        match caller {
            Caller::Instructor(instructor) => Ok(instructor),
            Caller::Student(_) => Err(AppError::forbidden("Only instructors can do that.")),
            Caller::Anonymous => {
                Err(AppError::SignInRequired("Sign in as an instructor first.".into()).respond())
            }
        }
    }

    /// The calling instructor if `class_id` is one of their classes, or 401/403/404.
    pub async fn require_class_owner(
        pool: &DbPool,
        class_id: i64,
    ) -> Result<InstructorCaller, AppError> {
        let instructor = require_instructor(pool).await?;
        check_class_owner(pool, &instructor, class_id).await?;
        Ok(instructor)
    }

    /// Checks that `class_id` belongs to `instructor`.
    pub async fn check_class_owner(
        pool: &DbPool,
        instructor: &InstructorCaller,
        class_id: i64,
    ) -> Result<(), AppError> {
        let owner: Option<i64> =
            sqlx::query_scalar("SELECT instructor_id FROM classes WHERE id = $1")
                .bind(class_id)
                .fetch_optional(pool)
                .await?;
        match owner {
            None => Err(AppError::not_found("There is no such class.")),
            Some(owner) if owner != instructor.id => Err(AppError::forbidden(
                "That class belongs to another instructor.",
            )),
            Some(_) => Ok(()),
        }
    }

    /// The calling student, or 401/403.
    pub async fn require_student(pool: &DbPool) -> Result<StudentCaller, AppError> {
        match caller(pool).await? {
            Caller::Student(student) => Ok(student),
            Caller::Instructor(_) => Err(AppError::forbidden(
                "This page is for students; instructors use the class dashboard.",
            )),
            Caller::Anonymous => Err(join_first()),
        }
    }

    /// The 401 for a visitor who has not joined a class.
    pub fn join_first() -> AppError {
        AppError::SignInRequired(
            "Join your class first: ask your teacher for the join code.".into(),
        )
        .respond()
    }

    /// Starts a fresh session for `user` (a new id, so an old cookie cannot be reused).
    pub async fn start_session(user: SessionUser) -> Result<(), AppError> {
        let session = session().await?;
        session.cycle_id().await.map_err(AppError::internal)?;
        session
            .insert(SESSION_USER, user)
            .await
            .map_err(AppError::internal)
    }

    /// Hashes a password with argon2id and a random salt (off the async threads).
    pub async fn hash_password(password: String) -> Result<String, AppError> {
        tokio::task::spawn_blocking(move || hash_password_now(&password))
            .await
            .map_err(AppError::internal)?
            .map_err(AppError::internal)
    }

    /// Hashes a password with argon2id and a random salt, as a PHC string.
    pub fn hash_password_now(password: &str) -> Result<String, String> {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| e.to_string())
    }

    /// Checks a password against a stored PHC string (off the async threads).
    pub async fn verify_password(password: String, hash: String) -> Result<bool, AppError> {
        tokio::task::spawn_blocking(move || {
            use argon2::password_hash::{PasswordVerifier, phc::PasswordHash};
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .map_err(AppError::internal)
    }

    /// Trims a name and checks it is 1..=64 characters without control characters; any
    /// other Unicode is kept as typed. `what` starts the error message ("Your name").
    pub fn clean_name(text: &str, what: &str) -> Result<String, AppError> {
        let name = text.trim();
        if name.is_empty() {
            return Err(AppError::bad_request(format!("{what} cannot be empty.")));
        }
        let length = name.chars().count();
        if length > MAX_NAME_CHARS {
            return Err(AppError::bad_request(format!(
                "{what} has {length} characters; at most {MAX_NAME_CHARS} fit."
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(AppError::bad_request(format!(
                "{what} cannot contain line breaks or control characters."
            )));
        }
        Ok(name.to_string())
    }

    /// Finds a class by join code (case and spaces ignored). Wrong codes count against
    /// the caller's address; too many in a row are refused for a while.
    pub async fn class_by_code(pool: &DbPool, code: &str) -> Result<i64, AppError> {
        let limiter: JoinLimiter = AppError::from_context("join limiter")?;
        let address = leptos_axum::extract::<axum::extract::ConnectInfo<SocketAddr>>()
            .await
            .map(|info| info.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if let Some(wait) = limiter.blocked_for(address) {
            return Err(AppError::bad_request(format!(
                "Too many wrong join codes from this computer. Try again in {} seconds, \
                 and check the code with your teacher.",
                wait.as_secs().max(1)
            )));
        }
        let normalized: String = code
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .flat_map(char::to_uppercase)
            .collect();
        if normalized.is_empty() {
            return Err(AppError::bad_request(
                "Type the join code your teacher gave you.",
            ));
        }
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM classes WHERE join_code = $1")
            .bind(&normalized)
            .fetch_optional(pool)
            .await?;
        match found {
            Some(id) => Ok(id),
            None => {
                limiter.record_failure(address);
                Err(AppError::not_found(format!(
                    "No class has the join code \u{201c}{}\u{201d}. Check it with your teacher.",
                    normalized.chars().take(16).collect::<String>()
                )))
            }
        }
    }

    /// Counts wrong join codes per address: more than [`JoinLimiter::MAX_FAILURES`] within
    /// [`JoinLimiter::WINDOW`] blocks that address until the oldest failure ages out.
    #[derive(Debug, Clone, Default)]
    pub struct JoinLimiter(Arc<Mutex<HashMap<IpAddr, VecDeque<Instant>>>>);

    impl JoinLimiter {
        /// Wrong codes allowed per window.
        pub const MAX_FAILURES: usize = 10;
        /// The window wrong codes are counted over.
        pub const WINDOW: Duration = Duration::from_secs(300);

        /// How long `address` must still wait, if it is blocked.
        pub fn blocked_for(&self, address: IpAddr) -> Option<Duration> {
            let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let entry = failures.entry(address).or_default();
            let now = Instant::now();
            while entry
                .front()
                .is_some_and(|t| now.duration_since(*t) > Self::WINDOW)
            {
                entry.pop_front();
            }
            (entry.len() >= Self::MAX_FAILURES).then(|| {
                Self::WINDOW.saturating_sub(now.duration_since(*entry.front().unwrap_or(&now)))
            })
        }

        /// Records one wrong code from `address`.
        pub fn record_failure(&self, address: IpAddr) {
            let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
            failures
                .entry(address)
                .or_default()
                .push_back(Instant::now());
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names_are_trimmed_bounded_and_keep_unicode() {
            assert_eq!(clean_name("  Zoë 😀 ", "Name").unwrap(), "Zoë 😀");
            assert!(clean_name("   ", "Name").is_err());
            assert!(clean_name(&"x".repeat(65), "Name").is_err());
            assert!(clean_name(&"é".repeat(64), "Name").is_ok());
            assert!(clean_name("a\nb", "Name").is_err());
        }

        #[test]
        fn passwords_verify_only_against_their_own_hash() {
            let hash = hash_password_now("correct horse").unwrap();
            assert!(hash.starts_with("$argon2id$"));
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            assert!(
                rt.block_on(verify_password("correct horse".into(), hash.clone()))
                    .unwrap()
            );
            assert!(!rt.block_on(verify_password("wrong".into(), hash)).unwrap());
        }

        #[test]
        fn the_join_limiter_blocks_after_too_many_failures() {
            let limiter = JoinLimiter::default();
            let address = IpAddr::V4(Ipv4Addr::LOCALHOST);
            for _ in 0..JoinLimiter::MAX_FAILURES {
                assert!(limiter.blocked_for(address).is_none());
                limiter.record_failure(address);
            }
            assert!(limiter.blocked_for(address).is_some());
            assert!(
                limiter
                    .blocked_for(IpAddr::V4(Ipv4Addr::BROADCAST))
                    .is_none()
            );
        }
    }
}
