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

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::App;
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

/// What a replica adds to [`App`] in the replica mode.
pub struct Replica {
    /// Random per process: names the lease holder.
    pub id: String,
    pub bus: Bus,
    pub health: Arc<Health>,
    pub lease: Lease,
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
        })
    }
}

/// The replica's caches, as the bus's receiver.
struct AppSink(Weak<App>);

#[async_trait::async_trait]
impl Sink for AppSink {
    async fn apply(&self, event: Event) {
        if let Some(app) = self.0.upgrade() {
            app.apply_remote(event).await;
        }
    }
}

/// Starts the bus, the store probe, the lease and its release on shutdown.
pub fn start(app: &Arc<App>) {
    let Some(r) = app.replica.clone() else { return };
    r.bus.start(Arc::new(AppSink(Arc::downgrade(app))));

    // PostgreSQL reachability, every second, with the same short timeout as Redis calls.
    let weak = Arc::downgrade(app);
    let health = r.health.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { return };
            let ok = matches!(
                tokio::time::timeout(bus::REDIS_TIMEOUT, app.store.ping()).await,
                Ok(Ok(()))
            );
            health.set_durable(ok);
        }
    });

    let weak = Arc::downgrade(app);
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
                if let Some(app) = weak.upgrade() {
                    app.took_chores().await;
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
