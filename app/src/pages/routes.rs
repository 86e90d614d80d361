//! Each page as a lazily loaded route. In the browser, a page's code (its components and
//! the view types they instantiate) is a WebAssembly chunk of its own, fetched when the page
//! is first shown, so a page loads only what it uses; the server renders every page at
//! once. `scripts/build-site.sh` splits the module along these routes.

use leptos::prelude::*;
use leptos_router::{LazyRoute, lazy_route};

/// Declares one route type per page, whose view is the page's component.
macro_rules! lazy_pages {
    ($($(#[$doc:meta])* $route:ident => $page:path;)*) => {
        $(
            $(#[$doc])*
            pub struct $route;

            #[lazy_route]
            impl LazyRoute for $route {
                fn data() -> Self {
                    $route
                }

                fn view(_route: Self) -> AnyView {
                    $page().into_any()
                }
            }
        )*
    };
}

lazy_pages! {
    /// `/`: the lessons.
    Home => super::HomePage;
    /// `/lessons/:slug`: one lesson.
    Lesson => super::LessonPage;
    /// `/join`: joining a class.
    Join => super::JoinPage;
    /// `/class`: a student's class.
    StudentClass => super::StudentClassPage;
    /// `/quiz`: a student's quiz.
    Quiz => super::QuizPage;
    /// `/team`: a team's runs.
    Team => super::TeamPage;
    /// `/runs/:id`: one run.
    Run => super::RunPage;
    /// `/instructor/sign-in`.
    SignIn => super::SignInPage;
    /// `/instructor`: the instructor's classes.
    InstructorHome => super::InstructorHome;
    /// `/instructor/models`.
    Models => super::ModelsPage;
    /// `/instructor/data`.
    TrainingData => super::TrainingDataPage;
    /// `/instructor/classes/:id`.
    ClassAdmin => super::ClassAdminPage;
    /// `/instructor/classes/:id/grading`.
    GradingOverview => super::GradingOverviewPage;
    /// `/instructor/classes/:id/grading/:key`.
    GradeQuestion => super::GradeQuestionPage;
}
