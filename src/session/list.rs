//! "Where you are signed in": a user's own view of their sessions, each under a handle that
//! is not the session token (nor its stored hash), and ending one, or all but the current,
//! at once and on every replica (the durable delete first, then this replica's cache, then
//! the revocation broadcast — the same path as every other session revocation).

use super::{Sessions, keys_of};
use crate::secret;
use crate::store::StoreError;

/// One session as its owner sees it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Names the session in `DELETE {prefix}/api/sessions/{handle}`; reveals nothing that
    /// opens it.
    pub handle: String,
    pub created: i64,
    pub last_seen: i64,
    pub expires: i64,
    /// How the login was done, e.g. `password+sms`.
    pub methods: String,
    pub ip: String,
    pub user_agent: String,
    /// The session of the browser asking.
    pub current: bool,
}

/// The handle of a stored session (hex SHA-256 of its cookie value): a digest of that
/// under its own label, shortened. One-way, so a handle shown or logged opens nothing.
pub fn handle(id_hash: &str) -> String {
    let d = secret::digest(&[b"nidan session handle v1", id_hash.as_bytes()]);
    hex::encode(&d[..16])
}

impl Sessions {
    /// The user's live sessions, oldest first; `current_token` is the asking browser's
    /// cookie value, if any.
    pub async fn of_user(
        &self,
        user: &str,
        current_token: Option<&str>,
        now: i64,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let current = current_token.map(secret::token_hash);
        let mut out = Vec::new();
        for r in self.store.user_sessions(user).await? {
            // This replica's cache knows the latest activity; the store lags by up to a
            // write-back interval.
            let cached = keys_of(std::slice::from_ref(&r.id_hash)).first().copied();
            let mut last_seen = r.last_seen;
            if let Some(key) = cached
                && let Some(live) = self.cache.get(&key).await
            {
                last_seen = last_seen.max(live.last_seen());
            }
            if now >= r.expires || now - last_seen >= self.idle {
                continue;
            }
            out.push(SessionInfo {
                handle: handle(&r.id_hash),
                created: r.created,
                last_seen,
                expires: r.expires,
                methods: r.methods,
                ip: r.ip,
                user_agent: r.user_agent,
                current: current.as_deref() == Some(r.id_hash.as_str()),
            });
        }
        Ok(out)
    }

    /// Ends the user's session with this handle; `Ok(false)` when the user has none.
    pub async fn end_handle(&self, user: &str, wanted: &str) -> Result<bool, StoreError> {
        let found = self
            .store
            .user_sessions(user)
            .await?
            .into_iter()
            .find(|r| secret::equal(handle(&r.id_hash).as_bytes(), wanted.as_bytes()));
        match found {
            Some(r) => {
                self.end_hashes(vec![r.id_hash]).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Ends every session of the user but the one with `current_token` ("sign out
    /// everywhere else"); returns how many ended.
    pub async fn end_others(&self, user: &str, current_token: &str) -> Result<usize, StoreError> {
        let current = secret::token_hash(current_token);
        let others: Vec<String> = self
            .store
            .user_sessions(user)
            .await?
            .into_iter()
            .map(|r| r.id_hash)
            .filter(|h| *h != current)
            .collect();
        let n = others.len();
        self.end_hashes(others).await?;
        Ok(n)
    }

    async fn end_hashes(&self, hashes: Vec<String>) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let mut result = Ok(());
        for h in &hashes {
            if let Err(e) = self.store.delete_session(h).await {
                result = Err(e);
            }
        }
        // Dropped here whatever the store said, as `end` does: this replica stops
        // accepting them at once; a failed delete is reported to the caller.
        self.cache.revoke(&keys_of(&hashes)).await;
        result?;
        self.publish(hashes).await
    }
}
