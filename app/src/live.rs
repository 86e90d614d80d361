//! Live class updates in the browser: an `EventSource` on `/api/class-events` that calls
//! back whenever the server says the class changed (phase, topics, teams, grades), so open
//! pages follow without a reload. On the server this does nothing.

/// The server-sent event name for "this class changed; fetch it again".
pub const CLASS_CHANGED_EVENT: &str = "class-changed";

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
