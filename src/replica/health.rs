//! Whether the shared stores answer, and whether the local caches may still be trusted.
//!
//! A replica that cannot hear Redis may miss revocations published meanwhile; one that
//! cannot reach PostgreSQL cannot read anything fresh. Either way the cached sessions,
//! devices, settings and Basic credentials keep serving for `storage.outage_grace`, then
//! stop counting: every decision reads the durable store again, and fails closed (503)
//! when that is down too.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

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
        }
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

    /// May a cached entry still decide? Yes unless a store has been down longer than the
    /// grace.
    pub fn cache_trusted(&self) -> bool {
        let grace = i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX / 2);
        let now = self.now_ms();
        [&self.durable, &self.redis].iter().all(|p| {
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
        h.set_durable(true);
        h.set_redis(true);
        assert!(h.all_ok() && h.cache_trusted());
        h.set_redis(false);
        assert_eq!(h.redis(), Status::Down);
        assert!(h.cache_trusted(), "within the grace");
        std::thread::sleep(Duration::from_millis(100));
        // A later failure does not restart the grace.
        h.set_redis(false);
        std::thread::sleep(Duration::from_millis(80));
        assert!(!h.cache_trusted(), "past the grace");
        h.set_redis(true);
        assert!(h.cache_trusted() && h.all_ok());
        h.set_durable(false);
        std::thread::sleep(Duration::from_millis(160));
        assert!(!h.cache_trusted());
        assert_eq!(h.durable(), Status::Down);
    }
}
