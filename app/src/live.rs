//! Live updates over server-sent events: the event names both streams use (the server
//! sends them, the pages listen for them), the class-change broadcast the server functions
//! announce on, and, in the browser, an `EventSource` on `/api/class-events` that calls back
//! whenever the server says the class changed (phase, topics, teams, grades), so open pages
//! follow without a reload.

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

#[cfg(feature = "ssr")]
pub mod ssr {
    //! The class-change broadcast: server functions announce a change, the server streams
    //! it to the class's open pages as [`CLASS_CHANGED_EVENT`](super::CLASS_CHANGED_EVENT).

    use tokio::sync::broadcast;

    /// A change to a class that its open pages should show.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ClassChanged {
        /// The class that changed.
        pub class_id: i64,
    }

    /// The broadcast channel for class changes; the server streams it to browsers.
    #[derive(Debug, Clone)]
    pub struct ClassEvents(pub broadcast::Sender<ClassChanged>);

    impl ClassEvents {
        /// A channel with room for a burst of changes per slow listener.
        pub fn new() -> Self {
            Self(broadcast::channel(256).0)
        }
    }

    impl Default for ClassEvents {
        fn default() -> Self {
            Self::new()
        }
    }

    /// Tells every open page of `class_id` to refresh (no listeners is fine).
    pub fn announce(class_id: i64) {
        if let Some(events) = leptos::prelude::use_context::<ClassEvents>() {
            let _ = events.0.send(ClassChanged { class_id });
        }
    }
}
