//! The chores lease: which replica runs the periodic work with side effects (the
//! consequences of a users-file change — revocations, phone-gone handling and its mail —
//! and the purges), so that they happen once, not once per replica.
//!
//! `SET {key_prefix}:chores <replica> NX PX ttl` takes it; the holder renews it every third
//! of the ttl (only while it still holds it) and deletes it on shutdown. A holder that stops
//! renewing stops believing it holds the lease before Redis lets it expire, so two replicas
//! never both act on it; another takes over once it has expired.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::bus::connect;

/// Renews only if this replica still holds it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Deletes only if this replica holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

pub struct Lease {
    client: redis::Client,
    key: String,
    me: String,
    ttl: Duration,
    /// Until when this replica may act as the holder (local clock), if it holds it.
    until: Mutex<Option<Instant>>,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Lease {
    pub fn new(client: redis::Client, key_prefix: &str, me: &str, ttl: Duration) -> Self {
        Self {
            client,
            key: format!("{key_prefix}:chores"),
            me: me.to_owned(),
            ttl,
            until: Mutex::new(None),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// How often [`tick`](Self::tick) should run.
    pub fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// Does this replica hold the lease now?
    pub fn held(&self) -> bool {
        self.until
            .lock()
            .ok()
            .and_then(|g| *g)
            .is_some_and(|t| Instant::now() < t)
    }

    fn set_until(&self, v: Option<Instant>) {
        if let Ok(mut g) = self.until.lock() {
            *g = v;
        }
    }

    /// Takes the lease if it is free, or renews it if held. Returns whether it is held.
    pub async fn tick(&self) -> bool {
        // Counted from before the request: Redis's ttl runs from a later moment, so ours
        // ends first. A third of the ttl is kept as margin for clock rates and delays.
        let sent = Instant::now();
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = connect(&self.client).await.ok();
        }
        let Some(conn) = guard.as_mut() else {
            self.set_until(None);
            return false;
        };
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let taken: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.me)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(conn)
            .await;
        let held = match taken {
            Ok(Some(_)) => Ok(true),
            Ok(None) => redis::Script::new(RENEW)
                .key(&self.key)
                .arg(&self.me)
                .arg(ttl_ms)
                .invoke_async::<i64>(conn)
                .await
                .map(|n| n == 1),
            Err(e) => Err(e),
        };
        match held {
            Ok(true) => {
                self.set_until(Some(sent + self.ttl * 2 / 3));
                true
            }
            Ok(false) => {
                self.set_until(None);
                false
            }
            Err(_) => {
                *guard = None;
                self.set_until(None);
                false
            }
        }
    }

    /// Gives the lease up (on shutdown), so another replica takes over at once.
    pub async fn release(&self) {
        self.set_until(None);
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = connect(&self.client).await.ok();
        }
        if let Some(conn) = guard.as_mut() {
            let _: redis::RedisResult<i64> = redis::Script::new(RELEASE)
                .key(&self.key)
                .arg(&self.me)
                .invoke_async(conn)
                .await;
        }
    }
}
