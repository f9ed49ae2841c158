//! Several replicas (`storage.postgres` + `storage.redis`): what one replica must tell the
//! others, and what only one of them may do.
//!
//! - [`bus`]: every revocation is published on Redis after its durable write; every replica
//!   drops the entry from its caches (SECURITY 37's epoch bump included), and a replica that
//!   (re)connects flushes them, since pub/sub forgets what it could not deliver.
//! - [`lease`]: the periodic chores with side effects run on the lease holder only.
//! - [`health`]: whether each store answers; past `storage.outage_grace` of an outage the
//!   caches stop deciding.
//!
//! In the single-machine mode (SQLite) none of this exists and nothing changes.

pub mod bus;
pub mod health;
pub mod lease;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Replicated;
pub use bus::{BadUrl, Bus, Sink};
pub use health::{Health, Status};
pub use lease::Lease;

/// The format of bus messages; a replica treats a message of another version (or one it
/// cannot read) as [`Event::Flush`], which is always safe.
pub const VERSION: u32 = 1;

/// How long the chores lease lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// One revocation, as published. Small: IDs only, never a secret (session IDs travel as the
/// SHA-256 the store keeps, device IDs are not secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    /// Sessions ended, by the hex SHA-256 of their cookie value.
    Sessions { ids: Vec<String> },
    /// Trusted devices revoked, by device ID.
    Devices { ids: Vec<String> },
    /// A user's 2-step setting changed.
    Setting { user: String },
    /// Some password or account changed: every cached Basic credential goes.
    Basic,
    /// The users file changed and the chores holder has applied the consequences: reload
    /// it now rather than at the next interval.
    Users,
    /// Admin-API phone changes: read them again from the store.
    Phones,
    /// Drop everything cached.
    Flush,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    #[serde(flatten)]
    event: Event,
}

impl Event {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Wire {
            v: VERSION,
            event: self.clone(),
        })
        .unwrap_or_else(|_| br#"{"v":1,"t":"flush"}"#.to_vec())
    }

    pub fn decode(bytes: &[u8]) -> Event {
        match serde_json::from_slice::<Wire>(bytes) {
            Ok(w) if w.v == VERSION => w.event,
            _ => Event::Flush,
        }
    }
}

/// What a replica adds to the gateway in the replica mode.
pub struct Replica {
    /// Random per process: names the lease holder.
    pub id: String,
    pub bus: Bus,
    pub health: Arc<Health>,
    pub lease: Lease,
    /// Revocation broadcasts received (sessions, devices, setting, Basic).
    received: AtomicI64,
    count: std::sync::Mutex<Count>,
}

/// The durable revocation count against the broadcasts received: a broadcast that never
/// arrives (its publisher cut off from Redis, or killed before it published) leaves the
/// count ahead for good, and then the caches are flushed.
#[derive(Default)]
struct Count {
    /// The durable count and the received count at the last look; `None` before the first.
    last: Option<(i64, i64)>,
    /// Revocations counted but not (yet) received.
    owed: i64,
    /// Looks in a row that found something owed.
    owed_for: u32,
}

/// Looks (one a second) a deficit may last before it counts as lost, not in flight.
const OWED_LOOKS: u32 = 1;

impl Replica {
    /// A broadcast of one revocation arrived.
    pub fn received_revocation(&self) {
        self.received.fetch_add(1, Ordering::SeqCst);
    }

    /// The caches were flushed (a reconnect, an overflow): nothing is owed any more.
    pub fn flushed(&self) {
        if let Ok(mut c) = self.count.lock() {
            *c = Count::default();
        }
    }

    /// Compares the durable count `n` with what arrived, and says whether to flush the
    /// caches.
    pub fn check_count(&self, n: i64) -> Look {
        let received = self.received.load(Ordering::SeqCst);
        let Ok(mut c) = self.count.lock() else {
            return Look::Lost;
        };
        let Some((last_n, last_received)) = c.last else {
            // What was cached before this first look may predate a revocation counted
            // before it, which no later comparison can see: start from empty caches.
            c.last = Some((n, received));
            return Look::First;
        };
        c.last = Some((n, received));
        c.owed = (c.owed + (n - last_n) - (received - last_received)).max(0);
        if c.owed == 0 {
            c.owed_for = 0;
            return Look::Even;
        }
        c.owed_for += 1;
        if c.owed_for > OWED_LOOKS {
            *c = Count {
                last: Some((n, received)),
                ..Count::default()
            };
            return Look::Lost;
        }
        Look::Even
    }
}

/// What one look at the durable revocation count found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Nothing owed (or owed for too short a time to be lost).
    Even,
    /// The first look (at start, or after a flush): flush, then compare from here.
    First,
    /// A revocation was counted that no broadcast brought: flush.
    Lost,
}

impl Replica {
    pub fn new(cfg: &Replicated, grace: Duration) -> Result<Self, BadUrl> {
        let client = bus::client(cfg.redis_url.expose_str().ok_or(BadUrl)?)?;
        let health = Arc::new(Health::new(grace));
        let id = crate::secret::random_token(12);
        Ok(Self {
            bus: Bus::new(client.clone(), &cfg.key_prefix, health.clone()),
            lease: Lease::new(client, &cfg.key_prefix, &id, LEASE_TTL),
            health,
            id,
            received: AtomicI64::new(0),
            count: std::sync::Mutex::new(Count::default()),
        })
    }
}

/// What a replica does with what it hears: the composition root hands one in (the chores),
/// so this module knows nothing above the state it carries.
#[async_trait::async_trait]
pub trait Listener: Send + Sync {
    /// Applies what another replica published (or a flush after a reconnect).
    async fn apply_remote(&self, event: Event);
    /// This replica has just taken the chores lease.
    async fn took_chores(&self);
}

/// The replica's caches, as the bus's receiver.
struct ListenerSink {
    replica: Arc<Replica>,
    listener: Weak<dyn Listener>,
}

#[async_trait::async_trait]
impl Sink for ListenerSink {
    async fn apply(&self, event: Event) {
        if let Some(listener) = self.listener.upgrade() {
            match &event {
                Event::Sessions { .. }
                | Event::Devices { .. }
                | Event::Setting { .. }
                | Event::Basic => self.replica.received_revocation(),
                Event::Flush => self.replica.flushed(),
                Event::Users | Event::Phones => {}
            }
            listener.apply_remote(event).await;
        }
    }
}

/// Starts the bus, the store probe, the lease and its release on shutdown. `store` is
/// probed for the durable revocation count; `listener` applies what arrives.
pub fn start(r: &Arc<Replica>, store: crate::store::Store, listener: Weak<dyn Listener>) {
    let r = r.clone();
    r.bus.start(Arc::new(ListenerSink {
        replica: r.clone(),
        listener: listener.clone(),
    }));

    // PostgreSQL reachability, every second, with the same short timeout as Redis calls.
    let weak = listener.clone();
    let health = r.health.clone();
    let replica = r.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(listener) = weak.upgrade() else {
                return;
            };
            // The probe reads the revocation count: reachability and lost broadcasts at once.
            let counted =
                tokio::time::timeout(bus::REDIS_TIMEOUT, store.revocations_counted()).await;
            health.set_durable(matches!(counted, Ok(Ok(_))));
            if let Ok(Ok(n)) = counted {
                match replica.check_count(n) {
                    Look::Even => {}
                    Look::First => listener.apply_remote(Event::Flush).await,
                    Look::Lost => {
                        tracing::warn!(
                            "a revocation was counted that no broadcast brought: flushing the caches"
                        );
                        listener.apply_remote(Event::Flush).await;
                    }
                }
            }
        }
    });

    let weak = listener;
    let replica = r.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(replica.lease.period());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was = false;
        loop {
            tick.tick().await;
            let held = replica.lease.tick().await;
            if held && !was {
                tracing::info!("this replica now runs the periodic chores");
                if let Some(listener) = weak.upgrade() {
                    listener.took_chores().await;
                }
            } else if was && !held {
                tracing::info!("this replica no longer runs the periodic chores");
            }
            was = held;
        }
    });

    // Give the lease up on shutdown so another replica takes over without waiting for it
    // to expire (pingora drains connections meanwhile).
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = quit.recv() => {}
        }
        r.lease.release().await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> Replica {
        let cfg = Replicated {
            postgres_url: crate::config::Secret(b"postgres://x@127.0.0.1:1/x".to_vec()),
            postgres_max_connections: 1,
            redis_url: crate::config::Secret(b"redis://127.0.0.1:1/0".to_vec()),
            key_prefix: "t".into(),
        };
        Replica::new(&cfg, Duration::from_secs(60)).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn a_counted_revocation_no_broadcast_brought_flushes() {
        let r = replica();
        // The first look flushes: a session cached before it may have been revoked before
        // it, and no later comparison would see that (a replica that cached a login, then
        // took its first look after the logout elsewhere, kept the session).
        assert_eq!(r.check_count(10), Look::First);
        // Counted and received alike: nothing owed.
        r.received_revocation();
        assert_eq!(r.check_count(11), Look::Even);
        // One in flight for one look is not lost yet…
        assert_eq!(r.check_count(12), Look::Even);
        // …it arrives: nothing owed.
        r.received_revocation();
        assert_eq!(r.check_count(12), Look::Even);
        // One that never arrives: flushed on the second look that still owes it.
        assert_eq!(r.check_count(13), Look::Even);
        assert_eq!(r.check_count(13), Look::Lost);
        // Owed nothing after the flush.
        assert_eq!(r.check_count(13), Look::Even);
        // A flush from the bus (reconnect) forgives what was owed, and the look after it
        // starts again from flushed caches.
        assert_eq!(r.check_count(14), Look::Even);
        r.flushed();
        assert_eq!(r.check_count(14), Look::First);
        assert_eq!(r.check_count(14), Look::Even);
    }

    #[test]
    fn messages_are_small_versioned_and_unknown_ones_flush() {
        let e = Event::Sessions {
            ids: vec!["ab".into()],
        };
        let bytes = e.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).ok(),
            Some(r#"{"v":1,"t":"sessions","ids":["ab"]}"#)
        );
        assert_eq!(Event::decode(&bytes), e);
        for e in [
            Event::Devices { ids: vec![] },
            Event::Setting { user: "u".into() },
            Event::Basic,
            Event::Users,
            Event::Phones,
            Event::Flush,
        ] {
            assert_eq!(Event::decode(&e.encode()), e);
        }
        assert_eq!(
            Event::decode(br#"{"v":2,"t":"sessions","ids":[]}"#),
            Event::Flush
        );
        assert_eq!(Event::decode(br#"{"v":1,"t":"new_kind"}"#), Event::Flush);
        assert_eq!(Event::decode(b"garbage"), Event::Flush);
    }
}
