//! Several replicas (`storage.postgres` + `storage.redis`): what one replica must tell the
//! others, and what only one of them may do.
//!
//! - Revocations: after its durable write, every revocation is written to the revocation
//!   log in PostgreSQL ([`announce`]) and published on Redis ([`bus`]); every replica drops
//!   the entry from its caches (SECURITY 37's epoch bump included) when the message arrives,
//!   and reads the log four times a second for what the bus did not bring ([`LogCursor`]).
//!   A revocation is acknowledged once Redis took its message, or after [`TRUST`].
//! - [`health`]: whether each store answers, and whether the caches may decide: only while
//!   this replica has heard the revocation authority within [`TRUST`] (a log read, or its
//!   own heartbeat back through the bus), and never past `storage.outage_grace` of an outage.
//! - [`lease`]: the periodic chores with side effects run on the lease holder only.
//!
//! In the single-machine mode (SQLite) none of this exists and nothing changes.

pub mod bus;
pub mod health;
pub mod lease;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

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

    /// The encoded form as text, as the revocation log keeps it.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.encode()).into_owned()
    }

    pub fn decode(bytes: &[u8]) -> Event {
        match serde_json::from_slice::<Wire>(bytes) {
            Ok(w) if w.v == VERSION => w.event,
            _ => Event::Flush,
        }
    }
}

/// How long a replica's caches may decide after it last heard the revocation authority:
/// the start of its last successful read of the revocation log, or the sending of the last
/// heartbeat it received back through Redis. A revoker whose message Redis did not take
/// waits this long after its log write before it answers.
pub const TRUST: Duration = Duration::from_millis(750);
/// How often the revocation log is read and a heartbeat is published.
pub const BEAT: Duration = Duration::from_millis(250);
/// Rows one read of the log takes at most; a fuller page flushes the caches instead.
pub const LOG_PAGE: i64 = 1_000;
/// How long log rows are kept (the chores purge older ones).
pub const LOG_KEEP: Duration = Duration::from_secs(600);
/// A read of the log that takes longer counts as failed: PostgreSQL is then down.
const LOG_TIMEOUT: Duration = Duration::from_secs(1);
/// A replica that could not read the log for this long starts again from the end of it
/// (and flushes): rows it missed may have been purged meanwhile. Well under `LOG_KEEP`.
const LOG_STALE: Duration = Duration::from_secs(60);

/// What a replica adds to the gateway in the replica mode.
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

/// Makes a revocation whose durable write is done count on every replica: logs it, then
/// publishes it, and returns once every other replica has either dropped the entry or
/// stopped trusting its cache (see [`Bus::publish_logged`]). A log write that fails is an
/// error (the caller answers 503); the message still goes out, in the background.
pub async fn announce(
    store: &crate::store::Store,
    bus: &Bus,
    event: Event,
) -> Result<(), crate::store::StoreError> {
    if let Err(e) = store.log_revocation(&event.text()).await {
        bus.publish(event);
        return Err(e);
    }
    bus.publish_logged(event, Instant::now()).await;
    Ok(())
}

/// Where this replica is in the revocation log: what it read last, and when its last
/// successful read started.
#[derive(Debug, Default)]
pub struct LogCursor {
    /// The highest `seq` applied; `None` before the first read, or after a gap.
    last: Option<i64>,
    read_at: Option<Instant>,
}

/// What the next read of the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRead {
    /// The rows after this `seq`.
    After(i64),
    /// From the end: read the highest `seq`, flush the caches (what was cached may predate
    /// a revocation no read will bring), go on from there.
    FromEnd,
}

impl LogCursor {
    pub fn next(&self, now: Instant) -> LogRead {
        match (self.last, self.read_at) {
            (Some(last), Some(at)) if now.saturating_duration_since(at) < LOG_STALE => {
                LogRead::After(last)
            }
            _ => LogRead::FromEnd,
        }
    }

    /// Takes the rows a [`LogRead::After`] read: the events to apply, oldest first, or
    /// `None` when the page was full (more may wait than a read takes: start from the end).
    pub fn rows(&mut self, rows: Vec<(i64, String)>) -> Option<Vec<Event>> {
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) >= LOG_PAGE {
            self.last = None;
            return None;
        }
        if let Some(&(seq, _)) = rows.last() {
            self.last = Some(self.last.map_or(seq, |l| l.max(seq)));
        }
        Some(
            rows.into_iter()
                .map(|(_, e)| Event::decode(e.as_bytes()))
                .collect(),
        )
    }

    /// A [`LogRead::FromEnd`] read found `latest`, and the caches were flushed.
    pub fn restarted(&mut self, latest: i64) {
        self.last = Some(latest);
    }

    /// The read that started at `started` succeeded and what it found was applied.
    pub fn done(&mut self, started: Instant) {
        self.read_at = Some(started);
    }
}

/// One read of the log: applies what it finds through `listener`; false when PostgreSQL
/// did not answer within [`LOG_TIMEOUT`]. Only the reads are timed: once rows are read,
/// they are applied before the cursor moves on.
async fn read_log(
    cursor: &mut LogCursor,
    store: &crate::store::Store,
    listener: &dyn Listener,
) -> bool {
    let started = Instant::now();
    if let LogRead::After(last) = cursor.next(started) {
        let Ok(Ok(rows)) =
            tokio::time::timeout(LOG_TIMEOUT, store.revocations_after(last, LOG_PAGE)).await
        else {
            return false;
        };
        if let Some(events) = cursor.rows(rows) {
            for event in events {
                listener.apply_remote(event).await;
            }
            cursor.done(started);
            return true;
        }
        tracing::warn!("more revocations waiting than one read takes: flushing the caches");
    }
    let Ok(Ok(latest)) = tokio::time::timeout(LOG_TIMEOUT, store.latest_revocation()).await else {
        return false;
    };
    listener.apply_remote(Event::Flush).await;
    cursor.restarted(latest);
    cursor.done(started);
    true
}

/// What a replica does with what it hears: the composition root hands one in (the chores),
/// so this module knows nothing above the state it carries.
#[async_trait::async_trait]
pub trait Listener: Send + Sync {
    /// Applies a revocation from the bus or the log (or a flush). Applying one twice is
    /// harmless: both bring every revocation.
    async fn apply_remote(&self, event: Event);
    /// This replica has just taken the chores lease.
    async fn took_chores(&self);
}

/// The replica's caches, as the bus's receiver.
struct ListenerSink(Weak<dyn Listener>);

#[async_trait::async_trait]
impl Sink for ListenerSink {
    async fn apply(&self, event: Event) {
        if let Some(listener) = self.0.upgrade() {
            listener.apply_remote(event).await;
        }
    }
}

/// Starts the bus (and its heartbeat), the reads of the revocation log (which are also the
/// PostgreSQL probe), the lease and its release on shutdown. `listener` applies what
/// arrives either way.
pub fn start(r: &Arc<Replica>, store: crate::store::Store, listener: Weak<dyn Listener>) {
    let r = r.clone();
    r.bus.start(Arc::new(ListenerSink(listener.clone())));

    let weak = listener.clone();
    let health = r.health.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursor = LogCursor::default();
        loop {
            tick.tick().await;
            let Some(listener) = weak.upgrade() else {
                return;
            };
            let started = Instant::now();
            let read = read_log(&mut cursor, &store, &*listener).await;
            health.set_durable(read);
            if read {
                health.polled(started);
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(seq: i64, e: &Event) -> (i64, String) {
        (seq, e.text())
    }

    #[test]
    fn the_log_cursor_starts_from_the_end_and_after_a_gap() {
        let t0 = Instant::now();
        let mut c = LogCursor::default();
        // Before the first read: from the end (and flush: what was cached before may
        // predate a revocation no read will bring).
        assert_eq!(c.next(t0), LogRead::FromEnd);
        c.restarted(41);
        c.done(t0);
        assert_eq!(c.next(t0), LogRead::After(41));
        // Rows apply in order and move the cursor.
        let s = Event::Sessions {
            ids: vec!["ab".into()],
        };
        let events = c.rows(vec![row(42, &s), row(44, &Event::Basic)]);
        assert_eq!(events, Some(vec![s, Event::Basic]));
        assert_eq!(c.next(t0), LogRead::After(44));
        // Nothing new: nothing moves.
        assert_eq!(c.rows(Vec::new()), Some(Vec::new()));
        assert_eq!(c.next(t0), LogRead::After(44));
        // A row nobody can read is a flush, as on the bus.
        assert_eq!(
            c.rows(vec![(45, "garbage".into())]),
            Some(vec![Event::Flush])
        );
        // A full page: more may wait than one read takes; start from the end.
        let full: Vec<_> = (46..46 + LOG_PAGE).map(|i| row(i, &Event::Basic)).collect();
        assert_eq!(c.rows(full), None);
        assert_eq!(c.next(t0), LogRead::FromEnd);
        c.restarted(5_000);
        c.done(t0);
        assert_eq!(c.next(t0 + LOG_STALE / 2), LogRead::After(5_000));
        // No successful read for a long time: rows missed meanwhile may have been purged.
        assert_eq!(c.next(t0 + LOG_STALE), LogRead::FromEnd);
    }

    /// The caches of a replica, as the log reader sees them.
    #[derive(Default)]
    struct Applied(std::sync::Mutex<Vec<Event>>);

    #[async_trait::async_trait]
    impl Listener for Applied {
        async fn apply_remote(&self, event: Event) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event);
        }
        async fn took_chores(&self) {}
    }

    impl Applied {
        fn take(&self) -> Vec<Event> {
            std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
        }
    }

    #[tokio::test]
    async fn reading_the_log_applies_what_was_logged_once_and_flushes_at_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("l.db"))
            .await
            .unwrap();
        let applied = Applied::default();
        let mut c = LogCursor::default();
        let logged = Event::Devices {
            ids: vec!["d1".into()],
        };
        store.log_revocation(&logged.text()).await.unwrap();
        // The first read flushes rather than replaying the past.
        assert!(read_log(&mut c, &store, &applied).await);
        assert_eq!(applied.take(), vec![Event::Flush]);
        assert!(read_log(&mut c, &store, &applied).await);
        assert_eq!(applied.take(), Vec::new());
        // What is logged later is applied, once.
        let s = Event::Sessions {
            ids: vec!["ab".into()],
        };
        store.log_revocation(&s.text()).await.unwrap();
        store.log_revocation(&Event::Basic.text()).await.unwrap();
        assert!(read_log(&mut c, &store, &applied).await);
        assert_eq!(applied.take(), vec![s, Event::Basic]);
        assert!(read_log(&mut c, &store, &applied).await);
        assert_eq!(applied.take(), Vec::new());
        // More than a page behind: one flush, then on from the end.
        for _ in 0..LOG_PAGE {
            store.log_revocation(&Event::Basic.text()).await.unwrap();
        }
        assert!(read_log(&mut c, &store, &applied).await);
        assert_eq!(applied.take(), vec![Event::Flush]);
        assert!(read_log(&mut c, &store, &applied).await);
        assert_eq!(applied.take(), Vec::new());
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
