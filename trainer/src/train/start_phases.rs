//! Start-up timing: how long each phase before a run's first loss point took.

use std::time::Instant;

/// Logs, at debug level, how long each phase of a run's start took, to find where the wait
/// before the first loss point goes.
pub(super) struct StartPhases {
    since: Instant,
    last: Instant,
}

impl StartPhases {
    /// Phases timed from `since`.
    pub(super) fn new(since: Instant) -> Self {
        Self { since, last: since }
    }

    /// Logs `phase` as ended now.
    pub(super) fn done(&mut self, phase: &str) {
        let now = Instant::now();
        tracing::debug!(
            phase,
            took_ms = (now - self.last).as_millis() as u64,
            since_start_ms = (now - self.since).as_millis() as u64,
            "run start"
        );
        self.last = now;
    }
}
