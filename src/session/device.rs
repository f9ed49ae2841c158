//! Trusted devices: registering a browser (record + signed cookie), deciding on the hot
//! path whether its cookie skips the second step, listing, renaming and revoking.
//!
//! The cache holds only devices whose token signature checked (SECURITY 17), and revoking
//! drops the entry at once (SECURITY 15).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moka::future::Cache;

use crate::cache::SafeCache;
use crate::secret;
use crate::session::token::{AUDIENCE, DeviceClaims, KeyRing, TYPE};
use crate::store::{DeviceInsert, DeviceRecord, Store, StoreError};

/// Longest device name, in characters (SECURITY 16).
pub const MAX_NAME_CHARS: usize = 64;

struct CachedDevice {
    user_id: String,
    expires: i64,
    revoked: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the device token could not be made")]
    Token,
    #[error("this account already has the maximum number of trusted devices")]
    Full,
    #[error("no such device")]
    NotFound,
    /// The user's credentials changed since the login checked them.
    #[error("the user's credentials changed since the login checked them")]
    Stale,
}

pub struct Devices {
    store: Store,
    /// Swapped whole by a configuration reload: the first key signs, every key verifies.
    ring: arc_swap::ArcSwap<KeyRing>,
    /// Revocation-safe: a cache miss that raced a revocation never keeps what it read
    /// before it (SECURITY 15, 37).
    cache: SafeCache<String, Arc<CachedDevice>>,
    lifetime: i64,
    max_per_user: usize,
    /// Replica mode: where revocations are published for the other replicas.
    bus: Option<crate::replica::Bus>,
}

/// Checks a device name: trimmed, 1..=64 characters, no control characters.
pub fn valid_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return None;
    }
    Some(name.to_owned())
}

impl Devices {
    /// From now on `ring`'s first key signs new device cookies and its keys verify; a
    /// cookie signed with a key no longer in it is refused (a configuration reload).
    pub fn set_keys(&self, ring: KeyRing) {
        self.ring.store(Arc::new(ring));
    }

    pub fn new(store: Store, ring: KeyRing, lifetime: Duration, max_per_user: usize) -> Self {
        Self {
            store,
            ring: arc_swap::ArcSwap::from_pointee(ring),
            cache: SafeCache::new(
                Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_idle(Duration::from_secs(24 * 3_600))
                    .build(),
            ),
            lifetime: i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 4),
            max_per_user,
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

    /// Another replica revoked these devices.
    pub async fn drop_local(&self, ids: &[String]) {
        for id in ids {
            self.forget(id).await;
        }
    }

    /// Drops every cached device (the bus reconnected: revocations may have been missed).
    pub fn flush(&self) {
        self.cache.revoke_all();
    }

    /// Tells the other replicas (replica mode) through the revocation log and the bus;
    /// returns once none of them accepts these devices any more (`replica::announce`).
    async fn publish(&self, ids: Vec<String>) -> Result<(), StoreError> {
        if let Some(bus) = self.bus.as_ref()
            && !ids.is_empty()
        {
            let event = crate::replica::Event::Devices { ids };
            crate::replica::announce(&self.store, bus, event).await?;
        }
        Ok(())
    }

    pub fn lifetime(&self) -> i64 {
        self.lifetime
    }

    pub fn max_per_user(&self) -> usize {
        self.max_per_user
    }

    /// The device ID in a cookie whose signature and claims check, whoever it belongs to.
    pub fn token_device(&self, token: &str, now: i64) -> Option<DeviceClaims> {
        self.ring.load().verify(token, now).ok()
    }

    /// Does this cookie make `user_id`'s second step skippable? Returns the device ID.
    pub async fn check(&self, token: &str, user_id: &str, now: i64) -> Option<String> {
        let claims = self.ring.load().verify(token, now).ok()?;
        // The server-side cap holds even for a token signed with a longer lifetime.
        if claims.sub != user_id || claims.exp - claims.iat > self.lifetime {
            return None;
        }
        let device = match self.cache.get(&claims.jti).await {
            Some(d) => d,
            None => {
                // PostgreSQL known down: no skip, at once.
                let seen = self.cache.begin_fill().ok()?;
                let rec = self.store.device(&claims.jti).await.ok()??;
                let d = Arc::new(CachedDevice {
                    user_id: rec.user_id,
                    expires: rec.expires,
                    revoked: AtomicBool::new(rec.revoked),
                });
                if !self.cache.admit(claims.jti.clone(), d.clone(), seen).await {
                    // A revocation ran meanwhile: decide from a fresh read, uncached.
                    let rec = self.store.device(&claims.jti).await.ok()??;
                    let ok = rec.user_id == user_id && !rec.revoked && rec.expires > now;
                    return ok.then_some(claims.jti);
                }
                d
            }
        };
        let ok = device.user_id == user_id
            && !device.revoked.load(Ordering::Acquire)
            && device.expires > now;
        ok.then_some(claims.jti)
    }

    /// Registers a device for a login that checked the credentials whose digest is
    /// `credential`: refused ([`DeviceError::Stale`]) when they are no longer the user's
    /// current ones. Returns the cookie value and the record.
    pub async fn register(
        &self,
        user_id: &str,
        credential: &str,
        name: &str,
        browser: &str,
        ip: &str,
        now: i64,
    ) -> Result<(String, DeviceRecord), DeviceError> {
        let id = secret::random_token(16);
        let record = DeviceRecord {
            id: id.clone(),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            created: now,
            last_used: now,
            browser: browser.to_owned(),
            ip: ip.to_owned(),
            expires: now + self.lifetime,
            revoked: false,
        };
        let token = self
            .ring
            .load()
            .sign(&DeviceClaims {
                sub: user_id.to_owned(),
                jti: id.clone(),
                iat: now,
                exp: record.expires,
                aud: AUDIENCE.to_owned(),
                typ: TYPE.to_owned(),
            })
            .map_err(|_| DeviceError::Token)?;
        match self
            .store
            .insert_device_if_current(&record, self.max_per_user, now, credential)
            .await?
        {
            DeviceInsert::Inserted => {}
            DeviceInsert::Full => return Err(DeviceError::Full),
            DeviceInsert::Stale => return Err(DeviceError::Stale),
        }
        self.cache
            .insert_fresh(
                id,
                Arc::new(CachedDevice {
                    user_id: user_id.to_owned(),
                    expires: record.expires,
                    revoked: AtomicBool::new(false),
                }),
            )
            .await;
        Ok((token, record))
    }

    pub async fn used(&self, id: &str, now: i64) {
        let _ = self.store.device_used(id, now).await;
    }

    pub async fn list(&self, user_id: &str, now: i64) -> Result<Vec<DeviceRecord>, DeviceError> {
        Ok(self.store.live_devices(user_id, now).await?)
    }

    pub async fn rename(&self, user_id: &str, id: &str, name: &str) -> Result<(), DeviceError> {
        if self.store.rename_device(user_id, id, name).await? {
            Ok(())
        } else {
            Err(DeviceError::NotFound)
        }
    }

    /// Revokes one device; the cache forgets it before this returns.
    pub async fn revoke(&self, user_id: &str, id: &str) -> Result<(), DeviceError> {
        let found = self.store.revoke_device(user_id, id).await?;
        self.forget(id).await;
        if found {
            self.publish(vec![id.to_owned()]).await?;
        }
        if found {
            Ok(())
        } else {
            Err(DeviceError::NotFound)
        }
    }

    /// Revokes every device of a user; returns how many.
    pub async fn revoke_all(&self, user_id: &str) -> Result<usize, DeviceError> {
        let ids = self.store.revoke_user_devices(user_id).await?;
        for id in &ids {
            self.forget(id).await;
        }
        let n = ids.len();
        self.publish(ids).await?;
        Ok(n)
    }

    async fn forget(&self, id: &str) {
        let id = id.to_owned();
        if let Some(d) = self.cache.get(&id).await {
            d.revoked.store(true, Ordering::Release);
        }
        self.cache.revoke([&id]).await;
    }

    pub fn cached(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// A short browser description from a User-Agent, e.g. "Firefox on Linux".
pub fn browser_summary(ua: &str) -> String {
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("OPR/") {
        "Opera"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else if ua.starts_with("DoCoMo") || ua.starts_with("KDDI") || ua.starts_with("SoftBank") {
        "Feature phone browser"
    } else if ua.is_empty() {
        "Unknown browser"
    } else {
        "Other browser"
    };
    let os = if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        Some("iOS")
    } else if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some("macOS")
    } else if ua.contains("Linux") {
        Some("Linux")
    } else {
        None
    };
    match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Secret, SigningKey};

    async fn devices(max: usize) -> (tempfile::TempDir, Devices) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("d.db")).await.unwrap();
        let ring = KeyRing::new(&[SigningKey {
            id: "k1".into(),
            secret: Secret(vec![7; 32]),
        }]);
        (
            dir,
            Devices::new(store, ring, Duration::from_secs(1_000), max),
        )
    }

    #[tokio::test]
    async fn register_check_revoke() {
        let (_dir, d) = devices(2).await;
        let (token, rec) = d
            .register(
                "hanako",
                "c1",
                "laptop",
                "Firefox on Linux",
                "127.0.0.1",
                100,
            )
            .await
            .unwrap();
        assert_eq!(
            d.check(&token, "hanako", 101).await.as_deref(),
            Some(rec.id.as_str())
        );
        assert_eq!(d.check(&token, "taro", 101).await, None);
        assert_eq!(d.check(&token, "hanako", 1_100).await, None);
        d.register("hanako", "c1", "phone", "", "", 100)
            .await
            .unwrap();
        assert!(matches!(
            d.register("hanako", "c1", "third", "", "", 100).await,
            Err(DeviceError::Full)
        ));
        // Credentials other than the stored ones register nothing.
        assert!(matches!(
            d.register("hanako", "c0", "old", "", "", 100).await,
            Err(DeviceError::Stale)
        ));
        d.revoke("hanako", &rec.id).await.unwrap();
        assert_eq!(d.check(&token, "hanako", 101).await, None);
        assert!(matches!(
            d.revoke("taro", &rec.id).await,
            Err(DeviceError::NotFound)
        ));
    }

    #[tokio::test]
    async fn forged_tokens_never_enter_the_cache() {
        let (_dir, d) = devices(2).await;
        for i in 0..100 {
            assert!(
                d.check(&format!("eyJhbGciOiJIUzI1NiJ9.{i}.x"), "u", 1)
                    .await
                    .is_none()
            );
        }
        d.cache.run_pending_tasks().await;
        assert_eq!(d.cached(), 0);
    }

    #[test]
    fn names_and_browsers() {
        assert_eq!(valid_name("  My laptop "), Some("My laptop".into()));
        assert_eq!(valid_name(""), None);
        assert_eq!(valid_name("a\u{7}b"), None);
        assert_eq!(
            valid_name(&"あ".repeat(64)).map(|s| s.chars().count()),
            Some(64)
        );
        assert_eq!(valid_name(&"あ".repeat(65)), None);
        assert_eq!(
            browser_summary(
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
            ),
            "Firefox on Linux"
        );
    }
}
