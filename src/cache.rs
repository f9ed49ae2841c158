//! The revocation-safe read-through cache used by sessions, trusted devices, HTTP Basic
//! credentials and 2-step settings (SECURITY 37).
//!
//! The hazard it closes: a reader misses the cache, reads the durable record, and is
//! descheduled; meanwhile a revocation updates the store and invalidates the key (there is
//! nothing cached yet); then the reader inserts what it read *before* the revocation, and
//! the revoked entry lives on until it expires. Every revocation bumps an epoch after the
//! durable write and before it invalidates; a reader notes the epoch before its read and
//! does not keep what it read if the epoch moved meanwhile.
//!
//! Order of a revocation: durable write, [`SafeCache::revoke`]. Order of a fill: [`SafeCache::epoch`],
//! durable read, [`SafeCache::admit`]. Either the revocation's bump happens before the
//! reader's check in `admit` (the reader drops its entry and reports it stale), or it
//! happens after the insert, and then the invalidation that follows the bump removes it.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::future::Cache;

pub struct SafeCache<K, V> {
    inner: Cache<K, V>,
    epoch: AtomicU64,
    /// Replica mode: the entries count only while the replica trusts its caches (it heard
    /// the revocation authority recently, and no store is down past the outage grace);
    /// otherwise every read goes to the store (see `replica::health`).
    gate: Option<Arc<crate::replica::Health>>,
}

/// A reading of the revocation epoch, taken before a durable read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

impl<K, V> SafeCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(inner: Cache<K, V>) -> Self {
        Self {
            inner,
            epoch: AtomicU64::new(0),
            gate: None,
        }
    }

    /// The same cache whose entries count only while `health` trusts the caches (replica
    /// mode), given at construction.
    #[must_use]
    pub fn gated_by(self, health: Arc<crate::replica::Health>) -> Self {
        Self {
            gate: Some(health),
            ..self
        }
    }

    pub async fn get(&self, key: &K) -> Option<V> {
        if self.gate.as_ref().is_some_and(|h| !h.cache_trusted()) {
            return None;
        }
        self.inner.get(key).await
    }

    /// Take this before reading the durable record that [`admit`](Self::admit) will cache.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::SeqCst))
    }

    /// Like [`epoch`](Self::epoch), for a read on a request path: an error at once when this
    /// replica knows the durable store is down (its last read of the revocation log
    /// failed), rather than a read that would only wait for its timeout. The caller answers
    /// it as any store error: 503 with `Retry-After` (SECURITY 36).
    pub fn begin_fill(&self) -> Result<Epoch, crate::store::StoreError> {
        if self
            .gate
            .as_ref()
            .is_some_and(|h| h.durable() == crate::replica::Status::Down)
        {
            return Err(crate::store::StoreError::Db(sqlx::Error::Io(
                std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "PostgreSQL is unreachable (the last read of the revocation log failed)",
                ),
            )));
        }
        Ok(self.epoch())
    }

    /// Caches `value`, read after `seen` was taken. Returns `false` (and caches nothing)
    /// when a revocation ran since: the caller must not trust what it read and should read
    /// again or refuse.
    pub async fn admit(&self, key: K, value: V, seen: Epoch) -> bool
    where
        K: Clone,
    {
        if self.epoch() != seen {
            return false;
        }
        self.inner.insert(key.clone(), value).await;
        if self.epoch() != seen {
            self.inner.invalidate(&key).await;
            return false;
        }
        true
    }

    /// Caches a value that was just written by this process (a new session, a new device):
    /// nothing older can be behind it.
    pub async fn insert_fresh(&self, key: K, value: V) {
        self.inner.insert(key, value).await;
    }

    /// Call after the durable revocation: no entry for these keys survives, and no
    /// concurrent fill that read before the revocation is kept.
    pub async fn revoke<'a>(&self, keys: impl IntoIterator<Item = &'a K>)
    where
        K: 'a,
    {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for k in keys {
            self.inner.invalidate(k).await;
        }
    }

    /// Like [`revoke`](Self::revoke) for every entry (used where entries are not indexed by
    /// owner, such as Basic credentials).
    pub fn revoke_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.invalidate_all();
    }

    /// Drops one entry that is known to be dead (expired): no revocation epoch involved.
    pub async fn forget(&self, key: &K) {
        self.inner.invalidate(key).await;
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn cache() -> SafeCache<u32, u32> {
        SafeCache::new(Cache::builder().max_capacity(1_000).build())
    }

    #[tokio::test]
    async fn a_fill_that_read_before_a_revocation_is_not_kept() {
        let c = cache();
        let seen = c.epoch();
        // The revocation completes between the reader's durable read and its insert.
        c.revoke([&1]).await;
        assert!(!c.admit(1, 10, seen).await);
        assert_eq!(c.get(&1).await, None);
        // A fill that starts after the revocation is kept.
        let seen = c.epoch();
        assert!(c.admit(1, 11, seen).await);
        assert_eq!(c.get(&1).await, Some(11));
        c.revoke_all();
        c.run_pending_tasks().await;
        assert_eq!(c.get(&1).await, None);
    }

    /// Readers and a revoker race on one key; "durable" state is an atomic flag. After the
    /// revoker has finished, no reader may ever find the pre-revocation value in the cache.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn revoke_while_reading_never_readmits() {
        for round in 0..200u32 {
            let c = Arc::new(cache());
            let revoked = Arc::new(AtomicBool::new(false));
            let mut readers = Vec::new();
            for _ in 0..4 {
                let (c, revoked) = (c.clone(), revoked.clone());
                readers.push(tokio::spawn(async move {
                    for _ in 0..50 {
                        if c.get(&round).await.is_none() {
                            let seen = c.epoch();
                            let live = !revoked.load(Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            if live {
                                c.admit(round, 1, seen).await;
                            }
                        }
                        tokio::task::yield_now().await;
                    }
                }));
            }
            tokio::task::yield_now().await;
            revoked.store(true, Ordering::SeqCst);
            c.revoke([&round]).await;
            for r in readers {
                r.await.unwrap();
            }
            assert_eq!(
                c.get(&round).await,
                None,
                "round {round}: revoked entry re-admitted"
            );
        }
    }
}

/// A verified Basic credential: whose, and against which password hash (a digest of it).
#[derive(Clone)]
pub struct BasicEntry {
    pub user_id: String,
    pub hash: [u8; 32],
}

/// Recently verified HTTP Basic credentials, keyed by a salted digest of ID and password.
pub type BasicCache = SafeCache<[u8; 32], BasicEntry>;
