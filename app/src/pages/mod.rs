//! One module per page, and the pieces they share.

mod account;
mod claims;
mod data;
mod home;
mod instructor;
mod lesson;
mod models;
mod not_found;
#[cfg(not(all(feature = "hydrate", feature = "islands")))]
pub mod routes;
mod run;
mod runs;
mod shared;
mod student;

pub use account::{JoinPage, SignInPage, ViewerBar};
pub(crate) use data::DataMissingNotice;
pub use data::TrainingDataPage;
pub use home::HomePage;
pub use instructor::{ClassAdminPage, GradeQuestionPage, GradingOverviewPage, InstructorHome};
pub use lesson::LessonPage;
pub use models::ModelsPage;
pub use not_found::NotFound;
pub use run::RunPage;
pub use runs::TeamPage;
pub use student::{QuizPage, StudentClassPage};

/// Whether the page at `path` loads the islands bundle instead of the whole app: the lesson
/// list and the lessons, which students open most. Their only interactive parts are
/// islands (`#[island]` with the `islands` feature: the widget, the claims box and the
/// check-in button), so the browser fetches a small module, or none where a page has no
/// island. Links from these pages load the next page from the server.
#[cfg(feature = "ssr")]
pub fn uses_islands(path: &str) -> bool {
    path == "/" || path.starts_with("/lessons/")
}
