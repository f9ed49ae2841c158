//! Sessions: 256-bit random IDs handed to the browser, stored only as SHA-256 in the
//! durable store, read through an in-memory cache, with idle and absolute timeouts enforced
//! here on every request (SECURITY 18–19).

pub mod cookie;
pub mod device;
pub mod list;
pub mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use crate::assurance::Proof;
use crate::cache::SafeCache;
use crate::secret;
use crate::store::{SessionRecord, Store, StoreError};

/// How often (seconds) a session's last-seen time is written back to the store (a quarter
/// of the idle timeout if that is shorter). With replicas, the idle timeout is checked
/// against the store's time before a session ends, so another replica's traffic counts.
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
    pub proof: Proof,
    pub methods: String,
    pub device_id: Option<String>,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The user's credentials changed since the login checked them (another replica read
    /// the new users file first): no session, as for a wrong password.
    #[error("the user's credentials changed since the login checked them")]
    Stale,
}

/// What a login sets once and every replacement of its session ID carries over.
struct Times {
    created: i64,
    auth_time: i64,
    expires: i64,
}

pub struct Sessions {
    store: Store,
    /// Keyed by the SHA-256 of the cookie value (the store keeps its hex form).
    cache: SafeCache<[u8; 32], Arc<LiveSession>>,
    idle: i64,
    absolute: i64,
    /// Replica mode: where revocations are published for the other replicas.
    bus: Option<crate::replica::Bus>,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

impl Sessions {
    pub fn new(store: Store, idle: Duration, absolute: Duration) -> Self {
        Self {
            store,
            cache: SafeCache::new(
                Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_idle(idle)
                    .build(),
            ),
            idle: secs(idle),
            absolute: secs(absolute),
            bus: None,
        }
    }

    /// Replica mode, at construction: publish revocations on `bus`; trust the cache only
    /// while `health` does.
    #[must_use]
    pub fn replicated(self, bus: crate::replica::Bus, health: Arc<crate::replica::Health>) -> Self {
        Self {
            bus: Some(bus),
            cache: self.cache.gated_by(health),
            ..self
        }
    }

    /// Another replica ended these sessions (hex SHA-256 of the cookie values).
    pub async fn drop_local(&self, hashes: &[String]) {
        self.cache.revoke(&keys_of(hashes)).await;
    }

    /// Drops every cached session (the bus reconnected: revocations may have been missed).
    pub fn flush(&self) {
        self.cache.revoke_all();
    }

    /// Tells the other replicas (replica mode), through the revocation log and the bus;
    /// returns once none of them accepts these sessions any more (`replica::announce`).
    async fn publish(&self, hashes: Vec<String>) -> Result<(), StoreError> {
        if let Some(bus) = self.bus.as_ref()
            && !hashes.is_empty()
        {
            let event = crate::replica::Event::Sessions { ids: hashes };
            crate::replica::announce(&self.store, bus, event).await?;
        }
        Ok(())
    }

    /// Starts the session of a login that proved the factors just now: the only way to
    /// fresh times (creation, `auth_time`, absolute expiry). `credential` is the digest of
    /// the user's credentials the login checked (`User::credential`): the session is stored
    /// only while it is the user's current one, else [`SessionError::Stale`]. Committed
    /// before returning; returns the cookie value.
    pub async fn create(
        &self,
        s: NewSession<'_>,
        credential: &str,
        now: i64,
    ) -> Result<(String, Arc<LiveSession>), SessionError> {
        let times = Times {
            created: now,
            auth_time: now,
            expires: now + self.absolute,
        };
        self.start(s, times, Some(credential.to_owned()), now).await
    }

    /// A new ID for an existing login (a step-up, a 2-step setting change, any privilege
    /// change): the session `old` is replaced by one that keeps its creation time,
    /// `auth_time` and absolute expiry, so a replacement never extends or refreshes a
    /// session (SECURITY 43). The caller ends `old` (alone, or with all of the user's).
    /// The credentials are the ones `old`'s login checked: a replacement is refused
    /// ([`SessionError::Stale`]) once they changed, as `old` itself is.
    pub async fn replace(
        &self,
        old: &SessionRecord,
        s: NewSession<'_>,
        now: i64,
    ) -> Result<(String, Arc<LiveSession>), SessionError> {
        let times = Times {
            created: old.created,
            auth_time: old.auth_time,
            expires: old.expires,
        };
        let s = NewSession {
            user_id: &old.user_id,
            ..s
        };
        self.start(s, times, old.credential.clone(), now).await
    }

    async fn start(
        &self,
        s: NewSession<'_>,
        times: Times,
        credential: Option<String>,
        now: i64,
    ) -> Result<(String, Arc<LiveSession>), SessionError> {
        let token = secret::random_token(32);
        let record = SessionRecord {
            id_hash: secret::token_hash(&token),
            user_id: s.user_id.to_owned(),
            created: times.created,
            auth_time: times.auth_time,
            last_seen: now,
            expires: times.expires,
            proof: s.proof,
            methods: s.methods,
            device_id: s.device_id,
            ip: s.ip.to_owned(),
            user_agent: s.user_agent.chars().take(256).collect(),
            credential,
        };
        if !self.store.insert_session_if_current(&record).await? {
            return Err(SessionError::Stale);
        }
        let live = Arc::new(LiveSession {
            last_seen: AtomicI64::new(now),
            last_written: AtomicI64::new(now),
            record: slim(record),
        });
        self.cache.insert_fresh(key_of(&token), live.clone()).await;
        Ok((token, live))
    }

    /// The live session for a cookie value: `Ok(None)` when unknown, expired or idle too
    /// long; `Err` when the store could not be read (the caller fails closed, SECURITY 36).
    /// Counts as activity.
    pub async fn check(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<Arc<LiveSession>>, StoreError> {
        self.check_as(token, now, true).await
    }

    /// Like [`Sessions::check`], without counting as activity: an idle session still idles
    /// out (an upgraded tunnel whose session is looked at again while nothing moves).
    pub async fn peek(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<Arc<LiveSession>>, StoreError> {
        self.check_as(token, now, false).await
    }

    async fn check_as(
        &self,
        token: &str,
        now: i64,
        activity: bool,
    ) -> Result<Option<Arc<LiveSession>>, StoreError> {
        if token.len() != 43 {
            return Ok(None);
        }
        let key = key_of(token);
        let mut live = match self.cache.get(&key).await {
            Some(l) => l,
            None => {
                let Some(live) = self.load(key).await? else {
                    return Ok(None);
                };
                live
            }
        };
        if now < live.record.expires
            && now - live.last_seen() >= self.idle
            && self.bus.as_ref().is_some()
        {
            // Replicas: the activity may have reached another replica, which writes it to
            // the store (every TOUCH_EVERY seconds); the store decides, not this cache.
            self.cache.forget(&key).await;
            let Some(fresh) = self.load(key).await? else {
                return Ok(None);
            };
            live = fresh;
        }
        if now >= live.record.expires || now - live.last_seen() >= self.idle {
            self.cache.forget(&key).await;
            let _ = self.store.delete_session(&hex::encode(key)).await;
            return Ok(None);
        }
        if !activity {
            return Ok(Some(live));
        }
        live.last_seen.fetch_max(now, Ordering::Relaxed);
        let written = live.last_written.load(Ordering::Relaxed);
        if now - written >= TOUCH_EVERY.min(self.idle / 4).max(1)
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
        Ok(Some(live))
    }

    /// Reads a session from the store into the cache. Only IDs we issued are in the store,
    /// so unknown ones never enter the cache. A read that raced a revocation is not cached
    /// and is read again (SECURITY 37); under a storm of revocations the last read answers
    /// this request without entering the cache. While PostgreSQL is known down (replica
    /// mode), an error at once (a 503), not a wait for the store's timeout.
    async fn load(&self, key: [u8; 32]) -> Result<Option<Arc<LiveSession>>, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let seen = self.cache.begin_fill()?;
            let Some(record) = self.store.session(&hex::encode(key)).await? else {
                return Ok(None);
            };
            let live = Arc::new(LiveSession {
                last_seen: AtomicI64::new(record.last_seen),
                last_written: AtomicI64::new(record.last_seen),
                record: slim(record),
            });
            if self.cache.admit(key, live.clone(), seen).await || tries >= 3 {
                return Ok(Some(live));
            }
        }
    }

    /// Ends the session for a cookie value.
    pub async fn end(&self, token: &str) -> Result<(), StoreError> {
        let key = key_of(token);
        let deleted = self.store.delete_session(&hex::encode(key)).await;
        // Dropped here whatever the store said: this replica stops accepting it at once;
        // the caller reports a failed delete (the session still exists durably).
        self.cache.revoke([&key]).await;
        deleted?;
        self.publish(vec![hex::encode(key)]).await
    }

    /// Ends every session of a user (password change, setting change, account disabled).
    pub async fn end_user(&self, user_id: &str) -> Result<usize, StoreError> {
        let gone = self.store.delete_user_sessions(user_id).await?;
        self.cache.revoke(&keys_of(&gone)).await;
        let n = gone.len();
        self.publish(gone).await?;
        Ok(n)
    }

    /// Drops expired sessions from the store (run periodically).
    pub async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        self.store.purge_sessions(now, self.idle).await
    }

    pub fn cached(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// Cache keys from the hex hashes the store keeps (malformed ones are skipped).
fn keys_of(hashes: &[String]) -> Vec<[u8; 32]> {
    hashes
        .iter()
        .filter_map(|hash| {
            hex::decode(hash)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
        })
        .collect()
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
