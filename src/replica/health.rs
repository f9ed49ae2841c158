//! Whether the shared stores answer, and whether the local caches may still be trusted.
//!
//! The caches (sessions, devices, settings, Basic credentials) decide only while this
//! replica has heard the revocation authority within [`TRUST`]: its last successful read of
//! the revocation log *started* less than `TRUST` ago (it saw every revocation logged
//! before), or the last heartbeat it received back through Redis was *sent* less than
//! `TRUST` ago (Redis delivers in the order it processed, so every revocation Redis took
//! before that heartbeat arrived before it). Otherwise a cached entry does not count and
//! the durable store decides, or a 503 when it is known down.
//!
//! On top of that, a store down longer than `storage.outage_grace` stops the caches from
//! deciding at all (as before the log existed: the bound on what a double fault can cost).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use super::TRUST;

/// "Never", in milliseconds after `origin`.
const NEVER: i64 = i64::MIN / 4;

/// The state of one store as seen from this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Down => "down",
        }
    }
}

/// Up/down of one store: since when it is down (milliseconds after `origin`), or up.
struct Probe {
    /// -1: up; otherwise the moment it went down.
    down_since: AtomicI64,
}

impl Probe {
    fn new(up: bool) -> Self {
        Self {
            down_since: AtomicI64::new(if up { -1 } else { 0 }),
        }
    }
}

pub struct Health {
    origin: Instant,
    grace: Duration,
    durable: Probe,
    redis: Probe,
    /// When the last successful read of the revocation log started.
    polled: AtomicI64,
    /// When the last heartbeat received back through the bus was sent.
    heard: AtomicI64,
}

impl Health {
    /// Both stores start as down until a probe or the bus says otherwise: nothing is cached
    /// yet, so this costs nothing, and `/readyz` does not claim readiness before it knows.
    pub fn new(grace: Duration) -> Self {
        Self {
            origin: Instant::now(),
            grace,
            durable: Probe::new(false),
            redis: Probe::new(false),
            polled: AtomicI64::new(NEVER),
            heard: AtomicI64::new(NEVER),
        }
    }

    /// Now, as carried in a heartbeat (milliseconds after this process's origin).
    pub fn stamp(&self) -> i64 {
        self.now_ms()
    }

    /// A read of the revocation log that started at `started` succeeded, and what it found
    /// is applied.
    pub fn polled(&self, started: Instant) {
        let at = i64::try_from(started.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(NEVER);
        self.polled.fetch_max(at, Ordering::SeqCst);
    }

    /// A heartbeat stamped `sent` came back through the bus, after every message before it
    /// was applied.
    pub fn heard(&self, sent: i64) {
        self.heard
            .fetch_max(sent.min(self.now_ms()), Ordering::SeqCst);
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
    }

    fn set(&self, p: &Probe, up: bool) {
        if up {
            p.down_since.store(-1, Ordering::SeqCst);
        } else {
            // Keep the first moment of an outage, not the latest failure.
            let _ = p.down_since.compare_exchange(
                -1,
                self.now_ms(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    pub fn set_durable(&self, up: bool) {
        self.set(&self.durable, up);
    }

    pub fn set_redis(&self, up: bool) {
        self.set(&self.redis, up);
    }

    fn status(p: &Probe) -> Status {
        if p.down_since.load(Ordering::SeqCst) < 0 {
            Status::Ok
        } else {
            Status::Down
        }
    }

    pub fn durable(&self) -> Status {
        Self::status(&self.durable)
    }

    pub fn redis(&self) -> Status {
        Self::status(&self.redis)
    }

    pub fn all_ok(&self) -> bool {
        self.durable() == Status::Ok && self.redis() == Status::Ok
    }

    /// May a cached entry decide now? Only while the revocation authority was heard within
    /// [`TRUST`], and no store has been down longer than the grace.
    pub fn cache_trusted(&self) -> bool {
        self.trusted_at(self.now_ms())
    }

    fn trusted_at(&self, now: i64) -> bool {
        let trust = i64::try_from(TRUST.as_millis()).unwrap_or(0);
        let heard = now - self.polled.load(Ordering::SeqCst) < trust
            || now - self.heard.load(Ordering::SeqCst) < trust;
        let grace = i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX / 2);
        heard
            && [&self.durable, &self.redis].iter().all(|p| {
                let since = p.down_since.load(Ordering::SeqCst);
                since < 0 || now - since < grace
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_counts_for_the_grace_only() {
        let h = Health::new(Duration::from_millis(150));
        // Heard through the bus all along: only the grace is tested here.
        let beat = || h.heard(h.stamp());
        h.set_durable(true);
        h.set_redis(true);
        beat();
        assert!(h.all_ok() && h.cache_trusted());
        h.set_redis(false);
        assert_eq!(h.redis(), Status::Down);
        assert!(h.cache_trusted(), "within the grace");
        std::thread::sleep(Duration::from_millis(100));
        // A later failure does not restart the grace.
        h.set_redis(false);
        std::thread::sleep(Duration::from_millis(80));
        beat();
        assert!(!h.cache_trusted(), "past the grace");
        h.set_redis(true);
        assert!(h.cache_trusted() && h.all_ok());
        h.set_durable(false);
        std::thread::sleep(Duration::from_millis(160));
        beat();
        assert!(!h.cache_trusted());
        assert_eq!(h.durable(), Status::Down);
    }

    #[test]
    fn the_cache_decides_only_within_trust_of_a_log_read_or_a_heartbeat() {
        let h = Health::new(Duration::from_secs(60));
        h.set_durable(true);
        h.set_redis(true);
        let trust = i64::try_from(TRUST.as_millis()).unwrap_or(0);
        // Nothing heard yet: nothing cached decides.
        assert!(!h.trusted_at(0) && !h.trusted_at(10_000));
        // A log read that started at t=1000 (whenever it ended) vouches until t=1000+TRUST.
        h.polled.store(1_000, Ordering::SeqCst);
        assert!(h.trusted_at(1_000) && h.trusted_at(1_000 + trust - 1));
        assert!(!h.trusted_at(1_000 + trust));
        // A heartbeat sent at t=1500 and received back vouches until t=1500+TRUST.
        h.heard.store(1_500, Ordering::SeqCst);
        assert!(h.trusted_at(1_000 + trust));
        assert!(h.trusted_at(1_500 + trust - 1));
        assert!(!h.trusted_at(1_500 + trust));
        // An older heartbeat or read arriving late moves nothing back.
        h.heard(0);
        h.polled(h.origin);
        assert!(h.trusted_at(1_500 + trust - 1) && !h.trusted_at(1_500 + trust));
        // A heartbeat from the future (a forged payload) counts as now, no later.
        h.heard(i64::MAX / 2);
        assert!(h.heard.load(Ordering::SeqCst) < i64::MAX / 2);
        // Either source alone suffices; neither is enough past the grace.
        let h = Health::new(Duration::from_millis(1_000));
        h.set_durable(true);
        h.redis.down_since.store(0, Ordering::SeqCst);
        h.polled.store(500, Ordering::SeqCst);
        assert!(h.trusted_at(600), "Redis down, the log read vouches");
        assert!(!h.trusted_at(1_000), "Redis down for the whole grace");
    }
}
