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
