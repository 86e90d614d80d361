//! Signing in (instructors), joining a class (students), and the header line that says who
//! is using the app.

use super::shared::action_error;
use crate::auth::{MAX_NAME_CHARS, SignIn, SignOut, Viewer, who_am_i};
use crate::classroom::{FindClass, JoinClass};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_location;

/// The header's account links: who is signed in, where they can go, and signing out.
#[component]
pub fn ViewerBar() -> impl IntoView {
    let location = use_location();
    // Fetched again on every navigation, so signing in or out shows at once.
    let viewer = Resource::new(move || location.pathname.get(), |_| who_am_i());
    let sign_out = ServerAction::<SignOut>::new();
    view! {
        <nav class="viewer-bar" aria-label="Account">
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match viewer.await {
                        Ok(Viewer::Instructor { username }) => view! {
                            <span class="who" data-testid="viewer">{format!("Instructor {username}")}</span>
                            <a href="/instructor">"My classes"</a>
                            <ActionForm action=sign_out attr:class="inline-form">
                                <button type="submit" class="link-button">"Sign out"</button>
                            </ActionForm>
                        }
                        .into_any(),
                        Ok(Viewer::Student { name, team, .. }) => view! {
                            <span class="who" data-testid="viewer">{format!("{name} · {team}")}</span>
                            <a href="/class">"My class"</a>
                            <a href="/quiz">"Quiz"</a>
                            <a href="/team">"Team runs"</a>
                            <ActionForm action=sign_out attr:class="inline-form">
                                <button type="submit" class="link-button">"Leave"</button>
                            </ActionForm>
                        }
                        .into_any(),
                        _ => view! {
                            <a href="/join">"Join a class"</a>
                            <a href="/instructor/sign-in">"Instructor sign-in"</a>
                        }
                        .into_any(),
                    }
                })}
            </Transition>
        </nav>
    }
}

/// `/instructor/sign-in`: username and password. The form is an island (see
/// `crate::islands::IslandsBundle`); the rest of the page is the server's.
#[component]
pub fn SignInPage() -> impl IntoView {
    view! {
        <Title text="Instructor sign-in" />
        <section class="narrow">
            <h1>"Instructor sign-in"</h1>
            <SignInForm />
            <p class="hint">
                "No account yet? The first instructor is created on the class computer with "
                <code>"jigsaw-lab instructor add <name>"</code>"."
            </p>
        </section>
    }
}

/// The sign-in form, which goes to the instructor's classes once the server accepts it.
#[cfg_attr(class_islands, island)]
#[cfg_attr(not(class_islands), component)]
fn SignInForm() -> impl IntoView {
    let sign_in = ServerAction::<SignIn>::new();
    view! {
        <ActionForm action=sign_in attr:class="stack-form">
            <label class="field">
                "Username"
                <input type="text" name="username" required maxlength=MAX_NAME_CHARS.to_string() autocomplete="username" />
            </label>
            <label class="field">
                "Password"
                <input type="password" name="password" required autocomplete="current-password" />
            </label>
            <button type="submit" disabled=move || sign_in.pending().get()>"Sign in"</button>
        </ActionForm>
        {move || action_error(sign_in.value().get())}
    }
}

/// `/join`: a student types the join code, then picks a name and a team. The forms are an
/// island (see `crate::islands::IslandsBundle`); the rest of the page is the server's.
#[component]
pub fn JoinPage() -> impl IntoView {
    view! {
        <Title text="Join a class" />
        <section class="narrow">
            <h1>"Join your class"</h1>
            <JoinForms />
        </section>
    }
}

/// The join code's form, then, once the class is found, the name and team form, which goes
/// to the class page once the server accepts it.
#[cfg_attr(class_islands, island)]
#[cfg_attr(not(class_islands), component)]
fn JoinForms() -> impl IntoView {
    let find = ServerAction::<FindClass>::new();
    let join = ServerAction::<JoinClass>::new();
    let code = RwSignal::new(String::new());
    view! {
        <form
            class="stack-form"
            on:submit=move |ev| {
                ev.prevent_default();
                find.dispatch(FindClass { code: code.get() });
            }
        >
            <label class="field">
                "Join code (from your teacher)"
                <input
                    type="text"
                    name="code"
                    required
                    maxlength="16"
                    autocomplete="off"
                    autocapitalize="characters"
                    prop:value=move || code.get()
                    on:input=move |ev| code.set(event_target_value(&ev))
                />
            </label>
            <button type="submit" disabled=move || find.pending().get()>"Find my class"</button>
        </form>
        {move || action_error(find.value().get())}
        {move || {
            find.value()
                .get()
                .and_then(Result::ok)
                .map(|class| {
                    let no_teams = class.teams.is_empty();
                    view! {
                        <h2 data-testid="class-name">{class.name}</h2>
                        {no_teams
                            .then(|| view! { <p class="hint">"Your teacher has not created the teams yet. Try again in a minute."</p> })}
                        <ActionForm action=join attr:class="stack-form">
                            <input type="hidden" name="code" prop:value=move || code.get() />
                            <label class="field">
                                "Your name as the class will see it"
                                <input type="text" name="display_name" required maxlength=MAX_NAME_CHARS.to_string() autocomplete="nickname" />
                            </label>
                            <label class="field">
                                "Your team"
                                <select name="team_id" required>
                                    {class
                                        .teams
                                        .into_iter()
                                        .map(|team| view! { <option value=team.id.to_string()>{team.name}</option> })
                                        .collect_view()}
                                </select>
                            </label>
                            <button type="submit" disabled=move || no_teams || join.pending().get()>"Join"</button>
                        </ActionForm>
                        {move || action_error(join.value().get())}
                    }
                })
        }}
    }
}
