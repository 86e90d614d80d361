//! `jigsaw-lab instructor add NAME`: creates an instructor account from the class
//! computer's terminal (or gives an existing one a new password, which signs out every
//! session of that account).

use crate::config::Config;
use std::io::{BufRead, IsTerminal, Write};

/// The environment variable that supplies the password without the prompt.
pub(crate) const PASSWORD_VAR: &str = "JIGSAW_INSTRUCTOR_PASSWORD";

/// The shortest password accepted.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;

/// Runs `instructor add USERNAME`; returns whether the account was stored.
pub fn add_instructor(username: &str, config: &Config) -> Result<bool, String> {
    let username =
        app::auth::ssr::clean_name(username, "The username").map_err(|e| e.to_string())?;
    let password = match std::env::var(PASSWORD_VAR) {
        Ok(password) if !password.is_empty() => password,
        _ => read_password(&username)?,
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    let hash = app::auth::ssr::hash_password_now(&password)?;
    let (name, hash) = (&username, &hash);
    let created = crate::db::with_database(config, |pool| async move {
        let existed: Option<i64> =
            sqlx::query_scalar("SELECT id FROM instructors WHERE username = $1")
                .bind(name)
                .fetch_optional(&pool)
                .await?;
        sqlx::query(
            "INSERT INTO instructors (username, password_hash) VALUES ($1, $2) \
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, \
             session_epoch = instructors.session_epoch + 1",
        )
        .bind(name)
        .bind(hash)
        .execute(&pool)
        .await?;
        Ok::<bool, sqlx::Error>(existed.is_none())
    })?;
    if created {
        println!(
            "Instructor \u{201c}{username}\u{201d} created. Sign in at http://{}/instructor/sign-in",
            config.bind
        );
    } else {
        println!(
            "Instructor \u{201c}{username}\u{201d} has a new password; their sessions are signed out."
        );
    }
    Ok(true)
}

/// Reads one line from standard input, prompting when it is a terminal.
fn read_password(username: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        print!("Password for {username} (shown as you type): ");
        let _ = std::io::stdout().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
