//! Live updates over server-sent events: the event names both streams use (the server
//! sends them, the pages listen for them), the class-change broadcast the server functions
//! announce on, and, in the browser, an `EventSource` on `/api/class-events` that calls back
//! (or fetches a page's data again) whenever the server says the class changed (phase,
//! topics, teams, grades), so open pages follow without a reload.

/// The server-sent event name for "this class changed; fetch it again" on
/// `/api/class-events` (data: the class's id).
pub const CLASS_CHANGED_EVENT: &str = "class-changed";

/// The server-sent event name of a stored run event on `/api/runs/{id}/events` (data: the
/// event as JSON; id: its sequence number).
pub const RUN_EVENT: &str = "run";

/// The server-sent event name of a run status change on `/api/runs/{id}/events` (data: the
/// run's id).
pub const RUN_STATUS_EVENT: &str = "status";

/// While the calling component lives, calls `on_change` on every change to the class.
/// Students follow their own class (`class_id` None); instructors name theirs.
pub fn follow_class(class_id: Option<i64>, on_change: impl Fn() + 'static) {
    let url = match class_id {
        Some(id) => format!("/api/class-events?class={id}"),
        None => "/api/class-events".to_string(),
    };
    #[cfg(feature = "hydrate")]
    {
        use leptos::prelude::{StoredValue, WithValue, on_cleanup};
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;

        let Ok(source) = web_sys::EventSource::new(&url) else {
            leptos::logging::warn!("live class updates are unavailable in this browser");
            return;
        };
        let callback =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_: web_sys::MessageEvent| {
                on_change()
            });
        let _ = source.add_event_listener_with_callback(
            CLASS_CHANGED_EVENT,
            callback.as_ref().unchecked_ref(),
        );
        let listener = StoredValue::new_local((source, callback));
        on_cleanup(move || listener.with_value(|(source, _)| source.close()));
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (url, on_change);
    }
}

/// A refresh: each call fetches with `fetch` and hands the answer to `apply`, unless the
/// answer to a later call has been applied already: answers that arrive out of order never
/// take the shown state back, and a slow answer is still applied when newer calls are in
/// flight.
pub fn refresher<T, Answer>(
    fetch: impl Fn() -> Answer + 'static,
    apply: impl Fn(T) + 'static,
) -> impl Fn() + Clone + 'static
where
    T: 'static,
    Answer: std::future::Future<Output = T> + 'static,
{
    use std::{cell::Cell, rc::Rc};
    // The number of the last call, and of the last call whose answer was applied.
    let counts = Rc::new((Cell::new(0_u64), Cell::new(0_u64)));
    let (fetch, apply) = (Rc::new(fetch), Rc::new(apply));
    move || {
        let call = counts.0.get() + 1;
        counts.0.set(call);
        let (counts, apply, answer) = (counts.clone(), apply.clone(), fetch());
        leptos::task::spawn_local(async move {
            let answer = answer.await;
            if call > counts.1.get() {
                counts.1.set(call);
                apply(answer);
            }
        });
    }
}

/// Shows `fresh` in `shown` only when it differs from what is shown, so an unchanged answer
/// draws nothing again (a focused button keeps the focus, a typed sentence stays); does
/// nothing once the page that owned `shown` is gone.
pub fn show_if_changed<T: PartialEq + Send + Sync + 'static>(
    shown: leptos::prelude::RwSignal<T>,
    fresh: T,
) {
    use leptos::prelude::{Set, WithUntracked};
    if shown.try_with_untracked(|shown| shown != &fresh) == Some(true) {
        shown.set(fresh);
    }
}

/// While the calling component lives, fetches with `fetch` again on every change to the
/// student's class and hands the newest answer to `apply` (see [`refresher`]).
pub fn refetch_on_class_change<T, Answer>(
    fetch: impl Fn() -> Answer + 'static,
    apply: impl Fn(T) + 'static,
) where
    T: 'static,
    Answer: std::future::Future<Output = T> + 'static,
{
    follow_class(None, refresher(fetch, apply));
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! The class-change broadcast: server functions announce a change, the server streams
    //! it to the class's open pages as [`CLASS_CHANGED_EVENT`](super::CLASS_CHANGED_EVENT).

    use tokio::sync::broadcast;

    /// A change to a class that its open pages should show.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ClassChanged {
        /// The class that changed; `None` for every class (after this node's database
        /// listener reconnected and may have missed a change).
        pub class_id: Option<i64>,
    }

    /// The broadcast channel for class changes, which the server streams to browsers, and
    /// the notifier that tells the other nodes.
    #[derive(Debug, Clone)]
    pub struct ClassEvents(pub broadcast::Sender<ClassChanged>, pub Notifier);

    impl ClassEvents {
        /// A channel with room for a burst of changes per slow listener; `notifier` passes
        /// each change on to the other nodes.
        pub fn new(notifier: Notifier) -> Self {
            Self(broadcast::channel(256).0, notifier)
        }
    }

    /// Tells every open page of `class_id` to refresh, on this node and every other
    /// (no listeners is fine).
    pub fn announce(class_id: i64) {
        if let Some(events) = leptos::prelude::use_context::<ClassEvents>() {
            let _ = events.0.send(ClassChanged {
                class_id: Some(class_id),
            });
            events.1.notify(Notice::Class(class_id));
        }
    }

    /// The PostgreSQL channel nodes tell each other about changes on.
    pub const CHANNEL: &str = "jigsaw_lab";

    /// A change another node must pass on to its open pages. Notices carry ids only; the
    /// pages read what changed from the database.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Notice {
        /// Class `0` changed.
        Class(i64),
        /// Run `0` stored its event number `1`.
        RunEvent(i64, i64),
        /// Run `0` changed status (or was asked to stop).
        RunStatus(i64),
    }

    impl Notice {
        /// The notice from the node `origin` as the payload of a PostgreSQL notification.
        pub fn to_payload(self, origin: &str) -> String {
            match self {
                Notice::Class(id) => format!("{origin} class {id}"),
                Notice::RunEvent(id, seq) => format!("{origin} run-event {id} {seq}"),
                Notice::RunStatus(id) => format!("{origin} run-status {id}"),
            }
        }

        /// Reads a notification's payload: the node it came from and the notice; `None`
        /// for anything else.
        pub fn parse(payload: &str) -> Option<(&str, Self)> {
            let mut words = payload.split(' ');
            let origin = words.next()?;
            let kind = words.next()?;
            let mut number = || words.next()?.parse::<i64>().ok();
            let notice = match kind {
                "class" => Notice::Class(number()?),
                "run-event" => Notice::RunEvent(number()?, number()?),
                "run-status" => Notice::RunStatus(number()?),
                _ => return None,
            };
            words.next().is_none().then_some((origin, notice))
        }
    }

    /// Tells the other nodes about changes through PostgreSQL's NOTIFY. On SQLite (one
    /// machine, one node) it does nothing: the in-process broadcasts reach every page.
    #[derive(Debug, Clone)]
    pub struct Notifier {
        /// The shared database, when it is PostgreSQL.
        pool: Option<crate::db::DbPool>,
        /// This node's name in its notices, so that it skips its own.
        origin: String,
    }

    impl Notifier {
        /// A notifier over `pool`, active when the pool is PostgreSQL.
        pub fn new(pool: &crate::db::DbPool) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            Self {
                pool: crate::db::is_postgres(pool).then(|| pool.clone()),
                origin: format!("{:x}-{nanos:x}", std::process::id()),
            }
        }

        /// This node's name in its notices.
        pub fn origin(&self) -> &str {
            &self.origin
        }

        /// Sends `notice` to every node (this one included), in the background. A notice
        /// that cannot be sent is logged; the pages on other nodes then catch up when their
        /// stream reconnects.
        pub fn notify(&self, notice: Notice) {
            let Some(pool) = self.pool.clone() else {
                return;
            };
            let payload = notice.to_payload(&self.origin);
            tokio::spawn(async move {
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&pool)
                    .await;
                if let Err(error) = sent {
                    tracing::warn!(%error, ?notice, "could not notify the other nodes");
                }
            });
        }
    }

    #[cfg(test)]
    mod tests {
        use super::Notice;

        #[test]
        fn notices_travel_as_short_text() {
            for notice in [
                Notice::Class(3),
                Notice::RunEvent(7, 120),
                Notice::RunStatus(9),
            ] {
                assert_eq!(
                    Notice::parse(&notice.to_payload("a1-b2")),
                    Some(("a1-b2", notice))
                );
            }
            for bad in [
                "",
                "n class",
                "n class x",
                "n run-event 1",
                "n run-status 1 2",
                "n other 1",
            ] {
                assert_eq!(Notice::parse(bad), None, "{bad}");
            }
        }
    }
}
