//! "I've got it" check-ins: students tell the class a lesson made sense, and everyone sees
//! how many have. The first round trip from a browser to the database.

use crate::error::AppError;
use leptos::prelude::*;

/// How many check-ins a lesson has received.
#[server(prefix = "/api", endpoint = "checkins")]
pub async fn checkin_count(slug: String) -> Result<i64, AppError> {
    let pool = crate::db::pool()?;
    ssr::ensure_lesson(&slug)?;
    Ok(ssr::count(&pool, &slug).await?)
}

/// Records one check-in for a lesson and returns the new total. A student who joined a
/// class counts once per lesson, however often they click; a visitor's clicks each count,
/// but only so many a minute from one address.
#[server(prefix = "/api", endpoint = "checkin")]
pub async fn check_in(slug: String) -> Result<i64, AppError> {
    let pool = crate::db::pool()?;
    ssr::ensure_lesson(&slug)?;
    let student = match crate::auth::ssr::caller(&pool).await? {
        crate::auth::ssr::Caller::Student(student) => Some(student.id),
        _ => None,
    };
    if student.is_none() {
        let address = crate::throttle::client_address().await;
        if let Err(wait) = crate::throttle::throttles()?
            .anonymous_checkins
            .begin(&[address])
        {
            return Err(AppError::busy(
                format!(
                    "Many check-ins came from this computer. Join your class to be counted once \
                     per lesson, or try again in {} s.",
                    crate::error::wait_secs(wait)
                ),
                wait,
            ));
        }
    }
    sqlx::query(
        "INSERT INTO lesson_checkins (lesson_slug, student_id) VALUES ($1, $2) \
         ON CONFLICT (lesson_slug, student_id) DO NOTHING",
    )
    .bind(&slug)
    .bind(student)
    .execute(&pool)
    .await?;
    Ok(ssr::count(&pool, &slug).await?)
}

#[cfg(feature = "ssr")]
mod ssr {
    use crate::db::DbPool;
    use crate::error::AppError;
    use crate::lessons::content;

    /// Rejects slugs that name no lesson.
    pub fn ensure_lesson(slug: &str) -> Result<(), AppError> {
        if content::catalog().iter().any(|l| l.summary.slug == slug) {
            Ok(())
        } else {
            Err(AppError::NotFound("There is no such lesson to check in to.".into()).respond())
        }
    }

    /// Counts a lesson's check-ins.
    pub async fn count(pool: &DbPool, slug: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM lesson_checkins WHERE lesson_slug = $1")
            .bind(slug)
            .fetch_one(pool)
            .await
    }
}
