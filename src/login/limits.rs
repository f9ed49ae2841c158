//! Throttles: the per-account failure cap with growing delays (persisted, so a restart does
//! not reset it), and sliding-window counters (send limits, per-address limits).
//!
//! An account's failures fall in two pools: those from browsers the account knows (a
//! trusted device or a `nidan_seen` cookie of this user) and those from anywhere else.
//! Delays grow per pool, so strangers guessing the password delay only strangers; the cap
//! counts both pools together, and strangers can never use the share kept for the known
//! browser (SECURITY 6, 40).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::config::LoginLimits;
use crate::store::Store;

const HOUR: i64 = 3_600;

/// Failures of one account within the last hour, per pool.
#[derive(Default)]
struct Account {
    /// From browsers the account does not know.
    failures: VecDeque<i64>,
    /// From browsers the account knows.
    known: VecDeque<i64>,
}

impl Account {
    fn pool(&mut self, known: bool) -> &mut VecDeque<i64> {
        if known {
            &mut self.known
        } else {
            &mut self.failures
        }
    }
}

/// Counts failed passwords and codes per account, across all source addresses.
///
/// Attempts on one account run one at a time (the account's lock is held from the check to
/// the verdict), so parallel guesses cannot slip past the count (SECURITY 7).
pub struct FailureLimiter {
    store: Store,
    cfg: LoginLimits,
    accounts: Cache<String, Arc<AsyncMutex<Option<Account>>>>,
}

/// Permission for one attempt; report its outcome with `failed` or `succeeded`.
pub struct Attempt {
    user: String,
    known: bool,
    guard: OwnedMutexGuard<Option<Account>>,
}

impl FailureLimiter {
    pub fn new(store: Store, cfg: LoginLimits) -> Self {
        Self {
            store,
            cfg,
            accounts: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(2 * 3_600))
                .build(),
        }
    }

    /// Waits for the account's turn; returns the attempt, or the seconds to wait. For
    /// clients that are not a browser the account knows (Basic auth, passkeys, strangers).
    pub async fn begin(&self, user: &str, now: i64) -> Result<Attempt, u64> {
        self.begin_as(user, false, now).await
    }

    /// As `begin`, counting in the known browsers' pool when `known`.
    pub async fn begin_as(&self, user: &str, known: bool, now: i64) -> Result<Attempt, u64> {
        let slot = self
            .accounts
            .get_with(user.to_owned(), async { Arc::new(AsyncMutex::new(None)) })
            .await;
        let mut guard = slot.lock_owned().await;
        if guard.is_none() {
            // First sight since start: the store remembers failures across restarts.
            let failures = self
                .store
                .failures_since(user, false, now - HOUR)
                .await
                .unwrap_or_default();
            let known = self
                .store
                .failures_since(user, true, now - HOUR)
                .await
                .unwrap_or_default();
            *guard = Some(Account {
                failures: failures.into(),
                known: known.into(),
            });
        }
        let account = guard.get_or_insert_with(Account::default);
        for pool in [&mut account.failures, &mut account.known] {
            while pool.front().is_some_and(|&t| t <= now - HOUR) {
                pool.pop_front();
            }
        }
        if let Some(wait) = self.wait(account, known, now) {
            return Err(wait);
        }
        Ok(Attempt {
            user: user.to_owned(),
            known,
            guard,
        })
    }

    fn wait(&self, account: &Account, known: bool, now: i64) -> Option<u64> {
        let count = |q: &VecDeque<i64>| u32::try_from(q.len()).unwrap_or(u32::MAX);
        let max = self.cfg.max_failures_per_account;
        let (pool, cap) = if known {
            (&account.known, max)
        } else {
            (
                &account.failures,
                max.saturating_sub(self.cfg.reserve_for_known_browsers),
            )
        };
        let n = count(pool);
        let total = count(&account.failures).saturating_add(count(&account.known));
        if n >= cap || total >= max {
            // Waits until the oldest failure that counts here is an hour old.
            let oldest = if total >= max {
                match (account.failures.front(), account.known.front()) {
                    (Some(a), Some(b)) => *a.min(b),
                    (a, b) => a.or(b).copied().unwrap_or(now),
                }
            } else {
                pool.front().copied().unwrap_or(now)
            };
            return Some(secs(oldest + HOUR - now));
        }
        if n >= self.cfg.free_failures {
            let doublings = (n - self.cfg.free_failures).min(30);
            let delay = self
                .cfg
                .base_delay
                .saturating_mul(1u32 << doublings)
                .min(self.cfg.max_delay);
            let last = pool.back().copied().unwrap_or(now);
            let until = last + i64::try_from(delay.as_secs()).unwrap_or(i64::MAX / 2);
            if until > now {
                return Some(secs(until - now));
            }
        }
        None
    }

    /// Records a failure (durably, before the answer goes out).
    pub async fn failed(&self, mut attempt: Attempt, now: i64) {
        if let Some(account) = attempt.guard.as_mut() {
            account.pool(attempt.known).push_back(now);
        }
        if let Err(e) = self
            .store
            .record_failure(&attempt.user, attempt.known, now)
            .await
        {
            tracing::error!(error = %e, "could not record a login failure");
        }
    }

    /// A full login succeeded: delays start over for its pool (the owner's success from a
    /// known browser does not lift the delays strangers earned).
    pub async fn succeeded(&self, mut attempt: Attempt) {
        if let Some(account) = attempt.guard.as_mut() {
            account.pool(attempt.known).clear();
        }
        if let Err(e) = self
            .store
            .clear_failures(&attempt.user, attempt.known)
            .await
        {
            tracing::error!(error = %e, "could not clear login failures");
        }
    }

    /// Releases the account without counting anything (e.g. the step was incomplete).
    pub fn abandon(&self, attempt: Attempt) {
        drop(attempt);
    }
}

fn secs(v: i64) -> u64 {
    u64::try_from(v.max(1)).unwrap_or(1)
}

/// A sliding-window counter per key: at most `max` events per `window`.
pub struct Window {
    max: u32,
    window: i64,
    events: moka::sync::Cache<String, Arc<Mutex<VecDeque<i64>>>>,
}

impl Window {
    pub fn new(max: u32, window: Duration) -> Self {
        let window_secs = i64::try_from(window.as_secs())
            .unwrap_or(i64::MAX / 2)
            .max(1);
        Self {
            max,
            window: window_secs,
            events: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(window)
                .build(),
        }
    }

    /// The seconds until `key` may count an event again, without counting one.
    pub fn peek(&self, key: &str, now: i64) -> Result<(), u64> {
        let Some(slot) = self.events.get(key) else {
            return if self.max == 0 { Err(1) } else { Ok(()) };
        };
        let Ok(events) = slot.lock() else {
            return Err(1);
        };
        let live = events.iter().filter(|&&t| t > now - self.window).count();
        if u32::try_from(live).unwrap_or(u32::MAX) >= self.max {
            let oldest = events
                .iter()
                .find(|&&t| t > now - self.window)
                .copied()
                .unwrap_or(now);
            return Err(secs(oldest + self.window - now));
        }
        Ok(())
    }

    /// Takes back an event counted at `at` (a later budget refused the whole request).
    pub fn undo(&self, key: &str, at: i64) {
        if let Some(slot) = self.events.get(key)
            && let Ok(mut events) = slot.lock()
            && let Some(i) = events.iter().rposition(|&t| t == at)
        {
            events.remove(i);
        }
    }

    /// Counts one event in each `(window, key)` if all allow it; else counts none and
    /// returns the longest wait.
    pub fn hit_all(list: &[(&Window, &str)], now: i64) -> Result<(), u64> {
        for (i, (w, key)) in list.iter().enumerate() {
            if let Err(wait) = w.hit(key, now) {
                for (w, key) in &list[..i] {
                    w.undo(key, now);
                }
                return Err(wait);
            }
        }
        Ok(())
    }

    /// Counts one event for `key` if allowed, else returns the seconds until one is.
    pub fn hit(&self, key: &str, now: i64) -> Result<(), u64> {
        let slot = self
            .events
            .get_with(key.to_owned(), || Arc::new(Mutex::new(VecDeque::new())));
        let Ok(mut events) = slot.lock() else {
            return Err(1);
        };
        while events.front().is_some_and(|&t| t <= now - self.window) {
            events.pop_front();
        }
        if u32::try_from(events.len()).unwrap_or(u32::MAX) >= self.max {
            let oldest = events.front().copied().unwrap_or(now);
            return Err(secs(oldest + self.window - now));
        }
        events.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn window_allows_max_then_waits() {
        let w = Window::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            w.hit("a", 100).unwrap();
        }
        assert_eq!(w.hit("a", 110), Err(50));
        w.hit("b", 110).unwrap();
        w.hit("a", 160).unwrap();
    }

    fn limits() -> LoginLimits {
        LoginLimits {
            max_failures_per_account: 4,
            free_failures: 2,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_concurrent_hashes: 1,
            reserve_for_known_browsers: 1,
            id_steps_per_address: 60,
            passkey_starts_per_address: 60,
            address_window: Duration::from_secs(60),
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        }
    }

    #[test]
    fn hit_all_counts_all_or_nothing() {
        let a = Window::new(5, Duration::from_secs(60));
        let b = Window::new(1, Duration::from_secs(60));
        Window::hit_all(&[(&a, "k"), (&b, "k")], 10).unwrap();
        assert_eq!(Window::hit_all(&[(&a, "k"), (&b, "k")], 20), Err(50));
        // `a` kept only the first event: four more fit.
        for _ in 0..4 {
            a.hit("k", 20).unwrap();
        }
        assert!(a.hit("k", 20).is_err());
        assert_eq!(a.peek("k", 20), Err(50));
        assert_eq!(a.peek("other", 20), Ok(()));
    }

    #[tokio::test]
    async fn strangers_delay_strangers_not_the_known_browser() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("l.db")).await.unwrap();
        let lim = FailureLimiter::new(store.clone(), limits());
        // Cap 4, one kept for the known browser: strangers get 3, then wait an hour.
        for t in [0, 1, 3] {
            let a = lim.begin("u", t).await.unwrap();
            lim.failed(a, t).await;
        }
        assert_eq!(lim.begin("u", 10).await.err(), Some(3_590));
        // The known browser has no delay of its own yet and may fail once.
        let a = lim.begin_as("u", true, 10).await.unwrap();
        lim.failed(a, 10).await;
        // Now the cap of 4 is reached for everyone.
        assert_eq!(lim.begin_as("u", true, 11).await.err(), Some(3_589));
        // A restart remembers both pools.
        let again = FailureLimiter::new(store, limits());
        assert!(again.begin_as("u", true, 11).await.is_err());
        assert!(again.begin_as("u", true, 3_601).await.is_ok());
    }

    #[tokio::test]
    async fn delays_grow_then_cap_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("l.db")).await.unwrap();
        let strangers_only = || LoginLimits {
            reserve_for_known_browsers: 0,
            ..limits()
        };
        let lim = FailureLimiter::new(store.clone(), strangers_only());
        for t in [0, 0] {
            let a = lim.begin("u", t).await.unwrap();
            lim.failed(a, t).await;
        }
        // Two free failures used: the third must wait 1 s, the fourth 2 s.
        assert_eq!(lim.begin("u", 0).await.err(), Some(1));
        let a = lim.begin("u", 1).await.unwrap();
        lim.failed(a, 1).await;
        assert_eq!(lim.begin("u", 2).await.err(), Some(1));
        let a = lim.begin("u", 3).await.unwrap();
        lim.failed(a, 3).await;
        // Cap of 4 per hour reached: wait until the oldest is an hour old.
        assert_eq!(lim.begin("u", 100).await.err(), Some(3_500));
        // A new limiter over the same store (a restart) remembers.
        let again = FailureLimiter::new(store, strangers_only());
        assert_eq!(again.begin("u", 100).await.err(), Some(3_500));
        assert!(again.begin("u", 3_601).await.is_ok());
    }
}
