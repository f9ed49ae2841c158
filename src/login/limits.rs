//! Throttles: the per-account failure cap with growing delays (persisted, so a restart does
//! not reset it), and sliding-window send limits per account, per address and overall.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::config::LoginLimits;
use crate::store::Store;

const HOUR: i64 = 3_600;

/// Failures of one account within the last hour.
#[derive(Default)]
struct Account {
    failures: VecDeque<i64>,
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

    /// Waits for the account's turn; returns the attempt, or the seconds to wait.
    pub async fn begin(&self, user: &str, now: i64) -> Result<Attempt, u64> {
        let slot = self
            .accounts
            .get_with(user.to_owned(), async { Arc::new(AsyncMutex::new(None)) })
            .await;
        let mut guard = slot.lock_owned().await;
        if guard.is_none() {
            // First sight since start: the store remembers failures across restarts.
            let failures = self
                .store
                .failures_since(user, now - HOUR)
                .await
                .unwrap_or_default();
            *guard = Some(Account {
                failures: failures.into(),
            });
        }
        let account = guard.get_or_insert_with(Account::default);
        while account.failures.front().is_some_and(|&t| t <= now - HOUR) {
            account.failures.pop_front();
        }
        if let Some(wait) = self.wait(account, now) {
            return Err(wait);
        }
        Ok(Attempt {
            user: user.to_owned(),
            guard,
        })
    }

    fn wait(&self, account: &Account, now: i64) -> Option<u64> {
        let n = u32::try_from(account.failures.len()).unwrap_or(u32::MAX);
        if n >= self.cfg.max_failures_per_account {
            let oldest = account.failures.front().copied().unwrap_or(now);
            return Some(secs(oldest + HOUR - now));
        }
        if n >= self.cfg.free_failures {
            let doublings = (n - self.cfg.free_failures).min(30);
            let delay = self
                .cfg
                .base_delay
                .saturating_mul(1u32 << doublings)
                .min(self.cfg.max_delay);
            let last = account.failures.back().copied().unwrap_or(now);
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
            account.failures.push_back(now);
        }
        if let Err(e) = self.store.record_failure(&attempt.user, now).await {
            tracing::error!(error = %e, "could not record a login failure");
        }
    }

    /// A full login succeeded: delays start over.
    pub async fn succeeded(&self, mut attempt: Attempt) {
        if let Some(account) = attempt.guard.as_mut() {
            account.failures.clear();
        }
        if let Err(e) = self.store.clear_failures(&attempt.user).await {
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
        }
    }

    #[tokio::test]
    async fn delays_grow_then_cap_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("l.db")).await.unwrap();
        let lim = FailureLimiter::new(store.clone(), limits());
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
        let again = FailureLimiter::new(store, limits());
        assert_eq!(again.begin("u", 100).await.err(), Some(3_500));
        assert!(again.begin("u", 3_601).await.is_ok());
    }
}
