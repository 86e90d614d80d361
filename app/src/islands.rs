//! The pages that load an islands bundle instead of the whole app, and their script tags.
//! Such a page is rendered on the server like any other; in the browser only its islands
//! (`#[island]` components) come to life. Each group of pages has a bundle of its own
//! (`frontend` built with that group's feature; `build.rs` says which islands each holds),
//! so a page downloads its own islands' code and not every other page's.

use leptos::prelude::*;

/// An islands bundle: `/pkg/<name>.js` and `.wasm`, with the islands of one group of pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IslandsBundle {
    /// The lesson list (no island) and the lessons: a lesson's widget, claims box and
    /// check-in button (`lessons-islands`).
    Lessons,
    /// The join and sign-in forms everyone starts from, and the student's class and quiz
    /// (`class-islands`).
    Class,
    /// The team's runs and a run's page (`runs-islands`).
    Runs,
    /// The instructor's pages: the class list, a class's own page (its dashboard, claims
    /// and runs), the models, the training data (no island) and grading
    /// (`instructor-islands`).
    Instructor,
}

impl IslandsBundle {
    /// Every bundle.
    pub const ALL: [IslandsBundle; 4] = [Self::Lessons, Self::Class, Self::Runs, Self::Instructor];

    /// The bundle's files under `/pkg`, without their extension.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lessons => "jigsaw-lab-lessons",
            Self::Class => "jigsaw-lab-class",
            Self::Runs => "jigsaw-lab-runs",
            Self::Instructor => "jigsaw-lab-instructor",
        }
    }

    /// The bundle the page at `path` loads instead of the whole app, if any: every page
    /// has one; a path that is no page (the 404 page) loads the whole app. The router takes
    /// a path with a trailing slash for the same page, so this does too.
    pub fn for_page(path: &str) -> Option<Self> {
        let path = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        match path {
            "/" => Some(Self::Lessons),
            _ if path.starts_with("/lessons/") => Some(Self::Lessons),
            "/join" | "/instructor/sign-in" | "/class" | "/quiz" => Some(Self::Class),
            "/instructor" => Some(Self::Instructor),
            _ if path.starts_with("/instructor/") => Some(Self::Instructor),
            "/team" => Some(Self::Runs),
            _ if path.starts_with("/runs/") => Some(Self::Runs),
            _ => None,
        }
    }
}

/// Loads `bundle` and hydrates the page's islands, then marks the body
/// `data-hydrated="true"`, as the whole app does once it has hydrated. A page without
/// islands fetches no WebAssembly at all.
#[component]
pub fn IslandScripts(bundle: IslandsBundle) -> impl IntoView {
    // Outside islands, the browser hydrates nothing, so resources need not be sent along
    // with the page; each island turns this back on while it renders.
    if let Some(context) = Owner::current_shared_context() {
        context.set_is_hydrating(false);
    }
    let start = format!(
        "({})(\"/pkg/{}\");",
        include_str!("islands.js"),
        bundle.name()
    );
    view! { <script type="module">{start}</script> }
}
