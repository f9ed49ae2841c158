//! Sessions: 256-bit random IDs handed to the browser, stored only as SHA-256 in the
//! durable store, read through an in-memory cache, with idle and absolute timeouts enforced
//! here on every request (SECURITY 18–19).

pub mod cookie;
pub mod device;
pub mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use crate::secret;
use crate::store::{SessionRecord, Store, StoreError};

/// How often (seconds) a session's last-seen time is written back to the store.
const TOUCH_EVERY: i64 = 30;

/// A session as the hot path sees it.
pub struct LiveSession {
    pub record: SessionRecord,
    last_seen: AtomicI64,
    last_written: AtomicI64,
}

impl LiveSession {
    pub fn last_seen(&self) -> i64 {
        self.last_seen.load(Ordering::Relaxed)
    }
}

/// What a new session needs to know about the login.
pub struct NewSession<'a> {
    pub user_id: &'a str,
    pub two_step: bool,
    pub methods: String,
    pub device_id: Option<String>,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

pub struct Sessions {
    store: Store,
    /// Keyed by the SHA-256 of the cookie value (the store keeps its hex form).
    cache: Cache<[u8; 32], Arc<LiveSession>>,
    idle: i64,
    absolute: i64,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

impl Sessions {
    pub fn new(store: Store, idle: Duration, absolute: Duration) -> Self {
        Self {
            store,
            cache: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(idle)
                .build(),
            idle: secs(idle),
            absolute: secs(absolute),
        }
    }

    /// Starts a session (committed before returning); returns the cookie value.
    pub async fn create(
        &self,
        s: NewSession<'_>,
        now: i64,
    ) -> Result<(String, Arc<LiveSession>), StoreError> {
        let token = secret::random_token(32);
        let record = SessionRecord {
            id_hash: secret::token_hash(&token),
            user_id: s.user_id.to_owned(),
            created: now,
            auth_time: now,
            last_seen: now,
            expires: now + self.absolute,
            two_step: s.two_step,
            methods: s.methods,
            device_id: s.device_id,
            ip: s.ip.to_owned(),
            user_agent: s.user_agent.chars().take(256).collect(),
        };
        self.store.insert_session(&record).await?;
        let live = Arc::new(LiveSession {
            last_seen: AtomicI64::new(now),
            last_written: AtomicI64::new(now),
            record: slim(record),
        });
        self.cache.insert(key_of(&token), live.clone()).await;
        Ok((token, live))
    }

    /// The live session for a cookie value, or `None` (unknown, expired, idle too long, or
    /// the store failed: fail closed). Counts as activity.
    pub async fn check(&self, token: &str, now: i64) -> Option<Arc<LiveSession>> {
        if token.len() != 43 {
            return None;
        }
        let key = key_of(token);
        let live = match self.cache.get(&key).await {
            Some(l) => l,
            None => {
                // Only IDs we issued are in the store; unknown ones never enter the cache.
                let record = self.store.session(&hex::encode(key)).await.ok()??;
                let live = Arc::new(LiveSession {
                    last_seen: AtomicI64::new(record.last_seen),
                    last_written: AtomicI64::new(record.last_seen),
                    record: slim(record),
                });
                self.cache.insert(key, live.clone()).await;
                live
            }
        };
        if now >= live.record.expires || now - live.last_seen() >= self.idle {
            self.cache.invalidate(&key).await;
            let _ = self.store.delete_session(&hex::encode(key)).await;
            return None;
        }
        live.last_seen.fetch_max(now, Ordering::Relaxed);
        let written = live.last_written.load(Ordering::Relaxed);
        if now - written >= TOUCH_EVERY
            && live
                .last_written
                .compare_exchange(written, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let store = self.store.clone();
            tokio::spawn(async move {
                let _ = store.touch_session(&hex::encode(key), now).await;
            });
        }
        Some(live)
    }

    /// Ends the session for a cookie value.
    pub async fn end(&self, token: &str) -> Result<(), StoreError> {
        let key = key_of(token);
        self.store.delete_session(&hex::encode(key)).await?;
        self.cache.invalidate(&key).await;
        Ok(())
    }

    /// Ends every session of a user (password change, setting change, account disabled).
    pub async fn end_user(&self, user_id: &str) -> Result<usize, StoreError> {
        let gone = self.store.delete_user_sessions(user_id).await?;
        for hash in &gone {
            if let Some(key) = hex::decode(hash)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
            {
                self.cache.invalidate(&key).await;
            }
        }
        Ok(gone.len())
    }

    /// Drops expired sessions from the store (run periodically).
    pub async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        self.store.purge_sessions(now, self.idle).await
    }

    pub fn cached(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// The cache key of a cookie value: its SHA-256 (`secret::token_hash` is the hex of it).
fn key_of(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// What the hot path keeps of a session: the address, browser and hash stay in the store
/// (about a third of an entry's memory).
fn slim(mut r: SessionRecord) -> SessionRecord {
    r.id_hash = String::new();
    r.ip = String::new();
    r.user_agent = String::new();
    r
}
