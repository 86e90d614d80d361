//! Throttles for guesses: wrong join codes and wrong passwords. Each attempt is counted when
//! it starts (so simultaneous attempts cannot all slip under the limit); after a few free
//! failures the key must wait, and the wait doubles with each further failure up to a cap.
//! A success forgets or refunds the attempt. Idle entries are pruned, so the maps stay small.

use crate::error::AppError;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a [`FailureThrottle`] counts and waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts a key may fail in a row before it must wait.
    pub free_failures: u32,
    /// The first wait; each further failure doubles it.
    pub first_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
    /// A key idle this long starts afresh.
    pub forget_after: Duration,
}

impl Backoff {
    /// The wait after `failures` failures in a row (none while they are free).
    pub fn wait_after(&self, failures: u32) -> Duration {
        if failures < self.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free_failures).min(30);
        self.first_wait
            .saturating_mul(1 << doublings)
            .min(self.max_wait)
    }
}

/// One key's recent failures.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Instant,
}

/// Counts failed attempts per key (an address, an account) and makes keys that keep failing
/// wait, with [`Backoff`]'s doubling delays.
#[derive(Debug, Clone)]
pub struct FailureThrottle<K> {
    policy: Backoff,
    entries: Arc<Mutex<HashMap<K, Failures>>>,
}

/// Entries beyond this many trigger a prune of the idle ones.
const PRUNE_ABOVE: usize = 1024;

impl<K: Eq + Hash + Clone> FailureThrottle<K> {
    /// An empty throttle with `policy`.
    pub fn new(policy: Backoff) -> Self {
        Self {
            policy,
            entries: Arc::default(),
        }
    }

    /// The policy it applies.
    pub fn policy(&self) -> Backoff {
        self.policy
    }

    /// Starts one attempt for each of `keys`, atomically: if any key must still wait, nothing
    /// is counted and the longest wait is returned; otherwise each key's attempt counts as a
    /// failure until [`FailureThrottle::forget`] or [`FailureThrottle::refund`] says it was not.
    pub fn begin(&self, keys: &[K]) -> Result<(), Duration> {
        self.begin_at(keys, Instant::now())
    }

    fn begin_at(&self, keys: &[K], now: Instant) -> Result<(), Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > PRUNE_ABOVE {
            let forget_after = self.policy.forget_after;
            entries.retain(|_, f| now.duration_since(f.last) < forget_after);
        }
        let wait = keys
            .iter()
            .filter_map(|key| entries.get(key))
            .filter(|f| now.duration_since(f.last) < self.policy.forget_after)
            .map(|f| f.blocked_until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if !wait.is_zero() {
            return Err(wait);
        }
        for key in keys {
            let entry = entries.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
                blocked_until: now,
            });
            if now.duration_since(entry.last) >= self.policy.forget_after {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
            entry.blocked_until = now + self.policy.wait_after(entry.count);
        }
        Ok(())
    }

    /// Forgets `key`'s failures (its owner proved who they are).
    pub fn forget(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }

    /// Un-counts one attempt of `key` that turned out right, keeping its other failures.
    pub fn refund(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(key) {
            entry.count = entry.count.saturating_sub(1);
            entry.blocked_until = entry.last + self.policy.wait_after(entry.count);
            if entry.count == 0 {
                entries.remove(key);
            }
        }
    }

    /// How many keys it tracks now (for tests).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether it tracks no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The throttles the server keeps for the whole process, provided to every server function.
#[derive(Debug, Clone)]
pub struct Throttles {
    /// Wrong join codes per client address. Ten free, then 1, 2, 4, 8 and at most 15 s: a
    /// class behind one proxy address is slowed by a typing student, never locked out,
    /// while guessing a six-letter code stays hopeless.
    pub join_codes: FailureThrottle<IpAddr>,
    /// Wrong passwords per account (lower-cased username): five free, then doubling from 1 s
    /// to at most 5 minutes.
    pub sign_in_accounts: FailureThrottle<String>,
    /// Wrong passwords per client address: twenty free, then doubling to at most a minute.
    pub sign_in_addresses: FailureThrottle<IpAddr>,
    /// "I've got it" clicks of visitors who have not joined a class, per address (each is a
    /// row): twenty free, then doubling to at most a minute. Students count once per lesson.
    pub anonymous_checkins: FailureThrottle<IpAddr>,
}

impl Default for Throttles {
    fn default() -> Self {
        Self {
            join_codes: FailureThrottle::new(Backoff {
                free_failures: 10,
                first_wait: Duration::from_secs(1),
                max_wait: Duration::from_secs(15),
                forget_after: Duration::from_secs(300),
            }),
            sign_in_accounts: FailureThrottle::new(Backoff {
                free_failures: 5,
                first_wait: Duration::from_secs(1),
                max_wait: Duration::from_secs(300),
                forget_after: Duration::from_secs(3600),
            }),
            sign_in_addresses: FailureThrottle::new(Backoff {
                free_failures: 20,
                first_wait: Duration::from_secs(1),
                max_wait: Duration::from_secs(60),
                forget_after: Duration::from_secs(3600),
            }),
            anonymous_checkins: FailureThrottle::new(Backoff {
                free_failures: 20,
                first_wait: Duration::from_secs(1),
                max_wait: Duration::from_secs(60),
                forget_after: Duration::from_secs(600),
            }),
        }
    }
}

/// The address the request came from (the proxy's, behind one); unspecified when unknown.
pub async fn client_address() -> IpAddr {
    leptos_axum::extract::<axum::extract::ConnectInfo<SocketAddr>>()
        .await
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The process's throttles, from the server function's context.
pub fn throttles() -> Result<Throttles, AppError> {
    AppError::from_context("throttles")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> FailureThrottle<u32> {
        FailureThrottle::new(Backoff {
            free_failures: 3,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(10),
            forget_after: Duration::from_secs(60),
        })
    }

    #[test]
    fn waits_double_after_the_free_failures_up_to_the_cap() {
        let policy = throttle().policy();
        let waits: Vec<u64> = (0..9).map(|n| policy.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 10, 10]);
        assert_eq!(policy.wait_after(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn a_burst_gets_exactly_the_free_attempts_through() {
        let throttle = throttle();
        let now = Instant::now();
        let passed = (0..13)
            .filter(|_| throttle.begin_at(&[7], now).is_ok())
            .count();
        assert_eq!(passed, 3);
        assert_eq!(throttle.begin_at(&[7], now), Err(Duration::from_secs(1)));
        // Another key is not affected, and after the wait the key may try once more.
        assert!(throttle.begin_at(&[8], now).is_ok());
        let later = now + Duration::from_secs(1);
        assert!(throttle.begin_at(&[7], later).is_ok());
        assert_eq!(throttle.begin_at(&[7], later), Err(Duration::from_secs(2)));
    }

    #[test]
    fn a_blocked_key_blocks_a_combined_attempt_without_counting_the_others() {
        let throttle = throttle();
        let now = Instant::now();
        for _ in 0..3 {
            throttle.begin_at(&[1], now).unwrap();
        }
        assert!(throttle.begin_at(&[2, 1], now).is_err());
        // Key 2 was not counted by the refused attempt.
        for _ in 0..3 {
            assert!(throttle.begin_at(&[2], now).is_ok());
        }
    }

    #[test]
    fn success_forgets_or_refunds() {
        let throttle = throttle();
        let now = Instant::now();
        for _ in 0..3 {
            throttle.begin_at(&[1], now).unwrap();
        }
        throttle.refund(&1);
        assert!(
            throttle.begin_at(&[1], now).is_ok(),
            "a refund frees one attempt"
        );
        throttle.forget(&1);
        assert!(throttle.is_empty());
    }

    #[test]
    fn idle_keys_start_afresh_and_are_pruned() {
        let throttle = throttle();
        let now = Instant::now();
        for _ in 0..3 {
            throttle.begin_at(&[1], now).unwrap();
        }
        let much_later = now + Duration::from_secs(61);
        assert!(throttle.begin_at(&[1], much_later).is_ok());
        for key in 2..1100 {
            throttle.begin_at(&[key], now).unwrap();
        }
        assert_eq!(throttle.len(), 1099);
        throttle.begin_at(&[5000], much_later).unwrap();
        assert_eq!(throttle.len(), 2, "only the keys seen recently are kept");
    }
}
