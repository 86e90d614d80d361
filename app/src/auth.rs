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

/// Signs an instructor in and sends them to their classes. Wrong passwords are throttled
/// per account and per address (a few free, then doubling waits), and only a few password
/// checks run at once; either limit answers 429 with the wait.
#[server(prefix = "/api", endpoint = "sign-in")]
pub async fn sign_in(username: String, password: String) -> Result<(), AppError> {
    use crate::throttle::{client_address, throttles};
    let pool = crate::db::pool()?;
    let username = username.trim().to_string();
    let throttles = throttles()?;
    let account = username.to_lowercase();
    let address = client_address().await;
    let too_many = |wait, from: &str| {
        AppError::busy(
            format!(
                "Too many wrong passwords {from}. Try again in {} s.",
                crate::error::wait_secs(wait)
            ),
            wait,
        )
    };
    if let Err(wait) = throttles
        .sign_in_accounts
        .begin(std::slice::from_ref(&account))
    {
        return Err(too_many(wait, "for this account"));
    }
    if let Err(wait) = throttles.sign_in_addresses.begin(&[address]) {
        throttles.sign_in_accounts.refund(&account);
        return Err(too_many(wait, "from this computer"));
    }
    let row: Option<(i64, String, i64)> = sqlx::query_as(
        "SELECT id, password_hash, session_epoch FROM instructors WHERE username = $1",
    )
    .bind(&username)
    .fetch_optional(&pool)
    .await?;
    let verified = match row {
        Some((id, hash, epoch)) => ssr::verify_password(password, hash)
            .await?
            .then_some((id, epoch)),
        None => {
            // Spend the same time as a real check, so timing does not reveal usernames.
            ssr::hash_password(password).await?;
            None
        }
    };
    let Some((id, epoch)) = verified else {
        return Err(AppError::SignInRequired("Wrong username or password.".into()).respond());
    };
    throttles.sign_in_accounts.forget(&account);
    throttles.sign_in_addresses.refund(&address);
    ssr::start_session(ssr::SessionUser::Instructor(id), epoch).await?;
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
    use std::time::Duration;
    use tower_sessions::Session;

    /// The session key holding the signed-in user.
    pub const SESSION_USER: &str = "user";
    /// The session key holding the instructor's session epoch at sign-in; a password reset
    /// moves the account's epoch on, which ends the sessions signed in before it.
    const SESSION_EPOCH: &str = "epoch";

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
                let signed_in_epoch = session
                    .get::<i64>(SESSION_EPOCH)
                    .await
                    .map_err(AppError::internal)?
                    .unwrap_or(0);
                sqlx::query_as::<_, (String, i64)>(
                    "SELECT username, session_epoch FROM instructors WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
                .filter(|(_, epoch)| *epoch == signed_in_epoch)
                .map_or(Caller::Anonymous, |(username, _)| {
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

    /// The calling instructor if `class_id` is one of their classes, or 401/403/404 (404
    /// for another instructor's class, as for one that does not exist).
    pub async fn require_class_owner(
        pool: &DbPool,
        class_id: i64,
    ) -> Result<InstructorCaller, AppError> {
        let instructor = require_instructor(pool).await?;
        check_class_owner(pool, &instructor, class_id).await?;
        Ok(instructor)
    }

    /// Checks that `class_id` belongs to `instructor`. Another instructor's class gets the
    /// same 404 as a class that does not exist, so ids reveal nothing.
    pub async fn check_class_owner(
        pool: &DbPool,
        instructor: &InstructorCaller,
        class_id: i64,
    ) -> Result<(), AppError> {
        if owns_class(pool, instructor, class_id).await? {
            Ok(())
        } else {
            Err(AppError::not_found("There is no such class."))
        }
    }

    /// Whether `class_id` is one of `instructor`'s classes (false when it does not exist).
    /// Callers that found the class through a run or an answer answer "no such run" or "no
    /// such answer" when it is not.
    pub async fn owns_class(
        pool: &DbPool,
        instructor: &InstructorCaller,
        class_id: i64,
    ) -> Result<bool, AppError> {
        let owner: Option<i64> =
            sqlx::query_scalar("SELECT instructor_id FROM classes WHERE id = $1")
                .bind(class_id)
                .fetch_optional(pool)
                .await?;
        Ok(owner == Some(instructor.id))
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

    /// Starts a fresh session for `user` (a new id, so an old cookie cannot be reused);
    /// `epoch` is an instructor's session epoch (0 for students).
    pub async fn start_session(user: SessionUser, epoch: i64) -> Result<(), AppError> {
        let session = session().await?;
        session.cycle_id().await.map_err(AppError::internal)?;
        session
            .insert(SESSION_EPOCH, epoch)
            .await
            .map_err(AppError::internal)?;
        session
            .insert(SESSION_USER, user)
            .await
            .map_err(AppError::internal)
    }

    /// Password checks (argon2, about 19 MiB and a fraction of a second of a core each) that
    /// may run at once; the rest wait in line.
    pub const PASSWORD_CHECKS_AT_ONCE: usize = 2;
    /// Password checks that may wait in line; beyond this a sign-in is answered 429 at once.
    pub const PASSWORD_CHECKS_WAITING: usize = 16;

    /// Runs `work` (an argon2 hash or check) on a blocking thread once one of the
    /// [`PASSWORD_CHECKS_AT_ONCE`] slots is free, or refuses when the line is full.
    async fn with_password_slot<T: Send + 'static>(
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        use std::sync::LazyLock;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static SLOTS: LazyLock<tokio::sync::Semaphore> =
            LazyLock::new(|| tokio::sync::Semaphore::new(PASSWORD_CHECKS_AT_ONCE));
        static WAITING: AtomicUsize = AtomicUsize::new(0);
        let permit = match SLOTS.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                if WAITING.fetch_add(1, Ordering::SeqCst) >= PASSWORD_CHECKS_WAITING {
                    WAITING.fetch_sub(1, Ordering::SeqCst);
                    return Err(AppError::busy(
                        "Many people are signing in at once. Try again in 2 s.",
                        Duration::from_secs(2),
                    ));
                }
                let permit = SLOTS.acquire().await;
                WAITING.fetch_sub(1, Ordering::SeqCst);
                permit.map_err(AppError::internal)?
            }
        };
        let result = tokio::task::spawn_blocking(work)
            .await
            .map_err(AppError::internal);
        drop(permit);
        result
    }

    /// Hashes a password with argon2id and a random salt (off the async threads).
    pub async fn hash_password(password: String) -> Result<String, AppError> {
        with_password_slot(move || hash_password_now(&password))
            .await?
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
        with_password_slot(move || {
            use argon2::password_hash::{PasswordVerifier, phc::PasswordHash};
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
    }

    /// Whether `c` is invisible or reorders text: zero-width characters, joiners, bidi
    /// controls, the byte-order mark, the soft hyphen and other format characters. Such a
    /// character makes a name that looks like another one.
    pub fn is_invisible(c: char) -> bool {
        matches!(c,
            '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
            | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
            | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}' | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}')
    }

    /// Whether `name` has an invisible character outside the places where writing needs one:
    /// a joiner or non-joiner between two letters of a script that uses them (Persian,
    /// Indic), and a joiner or emoji presentation selector inside an emoji sequence.
    fn has_hidden_character(name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        let non_latin_letter =
            |c: Option<&char>| c.is_some_and(|c| c.is_alphabetic() && *c > '\u{24f}');
        let emoji_part = |c: Option<&char>| {
            c.is_some_and(|c| *c > '\u{2000}' && !c.is_alphanumeric() && !is_invisible(*c))
        };
        chars.iter().enumerate().any(|(i, &c)| {
            if !is_invisible(c) {
                return false;
            }
            let before = i.checked_sub(1).and_then(|j| chars.get(j));
            let after = chars.get(i + 1);
            let needed = match c {
                '\u{200c}' => non_latin_letter(before) && non_latin_letter(after),
                '\u{200d}' => {
                    (non_latin_letter(before) && non_latin_letter(after))
                        || (emoji_part(before) || before == Some(&'\u{fe0f}')) && emoji_part(after)
                }
                '\u{fe0e}' | '\u{fe0f}' => emoji_part(before),
                _ => false,
            };
            !needed
        })
    }

    /// Trims a name, composes it (Unicode NFC, so "Zoë" is one name however it was typed)
    /// and checks it is 1..=64 characters without control or invisible characters; any
    /// other Unicode is kept. `what` starts the error message ("Your name").
    pub fn clean_name(text: &str, what: &str) -> Result<String, AppError> {
        use unicode_normalization::UnicodeNormalization;
        let composed: String = text.nfc().collect();
        let name = composed.trim();
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
        if has_hidden_character(name) {
            return Err(AppError::bad_request(format!(
                "{what} contains an invisible character (a zero-width space, joiner or \
                 direction mark). Type it again without copying it from elsewhere."
            )));
        }
        Ok(name.to_string())
    }

    /// Finds a class by join code (case and spaces ignored). Wrong codes count against the
    /// caller's address (see [`crate::throttle::Throttles::join_codes`]); an address that
    /// keeps guessing waits a few seconds between tries.
    pub async fn class_by_code(pool: &DbPool, code: &str) -> Result<i64, AppError> {
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
        let limiter = crate::throttle::throttles()?.join_codes;
        let address = crate::throttle::client_address().await;
        if let Err(wait) = limiter.begin(&[address]) {
            return Err(AppError::busy(
                format!(
                    "Too many wrong join codes from this computer. Try again in {} s, \
                     and check the code with your teacher.",
                    crate::error::wait_secs(wait)
                ),
                wait,
            ));
        }
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM classes WHERE join_code = $1")
            .bind(&normalized)
            .fetch_optional(pool)
            .await?;
        match found {
            Some(id) => {
                limiter.refund(&address);
                Ok(id)
            }
            None => Err(AppError::not_found(format!(
                "No class has the join code \u{201c}{}\u{201d}. Check it with your teacher.",
                normalized.chars().take(16).collect::<String>()
            ))),
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
        fn names_are_composed_and_refuse_invisible_characters() {
            // "Zoë" typed with a combining diaeresis is stored as the composed letter.
            assert_eq!(clean_name("Zoe\u{308}", "Name").unwrap(), "Zo\u{eb}");
            for sneaky in [
                "Ali\u{200b}ce",
                "Alice\u{200d}",
                "\u{202e}ecilA",
                "Al\u{2066}ice",
                "Ali\u{feff}ce",
                "Al\u{ad}ice",
            ] {
                let error = clean_name(sneaky, "Your name").unwrap_err().to_string();
                assert!(error.contains("invisible"), "{sneaky:?}: {error}");
            }
            // Writing that needs a joiner keeps it: Persian, emoji sequences.
            for fine in [
                "\u{645}\u{6cc}\u{200c}\u{62e}",
                "\u{1f469}\u{200d}\u{1f52c}",
                "Sam \u{2764}\u{fe0f}",
            ] {
                assert_eq!(clean_name(fine, "Name").unwrap(), fine);
            }
        }
    }
}
