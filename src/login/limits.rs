//! The per-account failure cap with growing delays (persisted, so a restart does not reset
//! it); the counting itself is in the short-lived state (`crate::state`).
//!
//! An account's failures fall in two pools: those from browsers the account knows (a
//! trusted device or a `nidan_seen` cookie of this user) and those from anywhere else.
//! Delays grow per pool, so strangers guessing the password delay only strangers; the cap
//! counts both pools together, and strangers can never use the share kept for the known
//! browser (SECURITY 6, 40).

use std::sync::Arc;

use crate::config::LoginLimits;
use crate::state::{Ephemeral, FAILURE_SECS, FailurePolicy, FailureTicket, Outcome, Reserve};
use crate::store::Store;

/// Counts failed passwords and codes per account, across all source addresses and, in
/// the replica mode, across replicas.
///
/// Each attempt reserves its place before the password is checked, and the reservation
/// counts as a failure until the verdict: parallel guesses cannot slip past the count
/// (SECURITY 7). Failures are also written to the durable store, which seeds the count
/// when the short-lived state knows nothing of the account (a restart).
pub struct FailureLimiter {
    store: Store,
    state: Arc<dyn Ephemeral>,
    policy: FailurePolicy,
}

/// Permission for one attempt; report its outcome with `failed`, `succeeded` or `abandon`.
/// One dropped without an outcome (an early return, a cancelled request) is abandoned in the
/// background, so its reservation never counts as a failure until it lapses.
#[must_use]
pub struct Attempt {
    ticket: FailureTicket,
    /// Where to abandon it if it is dropped unsettled; `None` once settled.
    unsettled: Option<Arc<dyn Ephemeral>>,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(state) = self.unsettled.take() else {
            return;
        };
        let ticket = self.ticket.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let now = crate::time::now();
                if let Err(e) = state.failure_settle(&ticket, Outcome::Abandoned, now).await {
                    tracing::error!(error = %e, "a dropped login attempt could not be released");
                }
            });
        }
    }
}

/// Why no attempt may be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Seconds to wait.
    Wait(u64),
    /// The count could not be read: nothing is decided (503), never "allowed".
    Busy,
}

impl Refusal {
    pub fn wait(self) -> Option<u64> {
        match self {
            Refusal::Wait(s) => Some(s),
            Refusal::Busy => None,
        }
    }
}

impl FailureLimiter {
    pub fn new(store: Store, state: Arc<dyn Ephemeral>, cfg: &LoginLimits) -> Self {
        Self {
            store,
            state,
            policy: FailurePolicy {
                max: cfg.max_failures_per_account,
                reserve_known: cfg.reserve_for_known_browsers,
                free: cfg.free_failures,
                base_delay: cfg.base_delay.as_secs(),
                max_delay: cfg.max_delay.as_secs(),
            },
        }
    }

    /// An attempt, or why not. For clients that are not a browser the account knows
    /// (Basic auth, passkeys, strangers).
    pub async fn begin(&self, user: &str, now: i64) -> Result<Attempt, Refusal> {
        self.begin_as(user, false, now).await
    }

    /// As `begin`, counting in the known browsers' pool when `known`.
    pub async fn begin_as(&self, user: &str, known: bool, now: i64) -> Result<Attempt, Refusal> {
        for _ in 0..2 {
            let r = self
                .state
                .failure_reserve(user, known, &self.policy, now)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "the failure count could not be read");
                    Refusal::Busy
                })?;
            match r {
                Reserve::Granted(ticket) => {
                    return Ok(Attempt {
                        ticket,
                        unsettled: Some(self.state.clone()),
                    });
                }
                Reserve::Wait(s) => return Err(Refusal::Wait(s)),
                Reserve::Unseeded => self.seed(user, now).await?,
            }
        }
        Err(Refusal::Busy)
    }

    /// First sight of the account here: the store remembers failures across restarts.
    async fn seed(&self, user: &str, now: i64) -> Result<(), Refusal> {
        let since = now - FAILURE_SECS;
        let read = |known| self.store.failures_since(user, known, since);
        let (Ok(strangers), Ok(known)) = (read(false).await, read(true).await) else {
            tracing::error!("the failure count could not be read from the store");
            return Err(Refusal::Busy);
        };
        self.state
            .failure_seed(user, &strangers, &known, now)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the failure count could not be seeded");
                Refusal::Busy
            })
    }

    async fn settle(&self, attempt: &mut Attempt, outcome: Outcome, now: i64) {
        attempt.unsettled = None;
        if let Err(e) = self
            .state
            .failure_settle(&attempt.ticket, outcome, now)
            .await
        {
            // The reservation still counts as a failure until it lapses: fail closed.
            tracing::error!(error = %e, "a login attempt could not be settled");
        }
    }

    /// Records a failure (durably, before the answer goes out).
    pub async fn failed(&self, mut attempt: Attempt, now: i64) {
        self.settle(&mut attempt, Outcome::Failed, now).await;
        let t = &attempt.ticket;
        if let Err(e) = self.store.record_failure(&t.account, t.known, now).await {
            tracing::error!(error = %e, "could not record a login failure");
        }
    }

    /// A full login succeeded: delays start over for its pool (the owner's success from a
    /// known browser does not lift the delays strangers earned).
    pub async fn succeeded(&self, mut attempt: Attempt) {
        self.settle(&mut attempt, Outcome::Succeeded, crate::time::now())
            .await;
        let t = &attempt.ticket;
        if let Err(e) = self.store.clear_failures(&t.account, t.known).await {
            tracing::error!(error = %e, "could not clear login failures");
        }
    }

    /// Releases the account without counting anything (e.g. the step was incomplete).
    pub async fn abandon(&self, mut attempt: Attempt) {
        self.settle(&mut attempt, Outcome::Abandoned, crate::time::now())
            .await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::state::memory::MemoryState;
    use crate::window::Window;

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
    fn the_audit_window_stays_within_its_byte_budget() {
        let budget = 128 * 1024;
        let w = Window::with_budget(30, Duration::from_secs(60), budget);
        // The audit's keys: an event and a network (or up to 64 characters of a non-IP).
        for i in 0..2_000 {
            let key = format!("login_failed {i:0>64}");
            for _ in 0..30 {
                let _ = w.hit(&key, 0);
            }
        }
        let used = w.bytes();
        assert!(used <= budget, "{used} > {budget}");
        assert!(
            used > budget / 2,
            "{used}: the bytes bound it, not the count"
        );
    }

    fn limiter(store: &Store, cfg: &LoginLimits) -> FailureLimiter {
        FailureLimiter::new(store.clone(), Arc::new(MemoryState::new()), cfg)
    }

    /// Attempts dropped without an outcome (an early return, a cancelled request) are
    /// released, not left to count as failures until they lapse.
    #[tokio::test]
    async fn a_dropped_attempt_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("l.db")).await.unwrap();
        let no_delays = LoginLimits {
            free_failures: 4,
            ..limits()
        };
        let lim = limiter(&store, &no_delays);
        let now = crate::time::now();
        // Strangers' three places (cap 4, one kept for known browsers), all reserved: a
        // fourth waits.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(lim.begin("u", now).await.unwrap());
        }
        assert!(
            lim.begin("u", now).await.is_err(),
            "three reservations count"
        );
        drop(held);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match lim.begin("u", now).await {
                Ok(a) => {
                    lim.abandon(a).await;
                    break;
                }
                Err(_) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "dropped attempts still count"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn strangers_delay_strangers_not_the_known_browser() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("l.db")).await.unwrap();
        let lim = limiter(&store, &limits());
        // Cap 4, one kept for the known browser: strangers get 3, then wait an hour.
        for t in [0, 1, 3] {
            let a = lim.begin("u", t).await.unwrap();
            lim.failed(a, t).await;
        }
        assert_eq!(lim.begin("u", 10).await.err(), Some(Refusal::Wait(3_590)));
        // The known browser has no delay of its own yet and may fail once.
        let a = lim.begin_as("u", true, 10).await.unwrap();
        lim.failed(a, 10).await;
        // Now the cap of 4 is reached for everyone.
        assert_eq!(
            lim.begin_as("u", true, 11).await.err(),
            Some(Refusal::Wait(3_589))
        );
        // A restart (fresh short-lived state) remembers both pools.
        let again = limiter(&store, &limits());
        assert!(again.begin_as("u", true, 11).await.is_err());
        assert!(again.begin_as("u", true, 3_601).await.is_ok());
    }

    #[tokio::test]
    async fn delays_grow_then_cap_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("l.db")).await.unwrap();
        let strangers_only = LoginLimits {
            reserve_for_known_browsers: 0,
            ..limits()
        };
        let lim = limiter(&store, &strangers_only);
        for t in [0, 0] {
            let a = lim.begin("u", t).await.unwrap();
            lim.failed(a, t).await;
        }
        // Two free failures used: the third must wait 1 s, the fourth 2 s.
        assert_eq!(lim.begin("u", 0).await.err(), Some(Refusal::Wait(1)));
        let a = lim.begin("u", 1).await.unwrap();
        lim.failed(a, 1).await;
        assert_eq!(lim.begin("u", 2).await.err(), Some(Refusal::Wait(1)));
        let a = lim.begin("u", 3).await.unwrap();
        lim.failed(a, 3).await;
        // Cap of 4 per hour reached: wait until the oldest is an hour old.
        assert_eq!(lim.begin("u", 100).await.err(), Some(Refusal::Wait(3_500)));
        // A new limiter over the same store (a restart) remembers.
        let again = limiter(&store, &strangers_only);
        assert_eq!(
            again.begin("u", 100).await.err(),
            Some(Refusal::Wait(3_500))
        );
        assert!(again.begin("u", 3_601).await.is_ok());
    }
}
