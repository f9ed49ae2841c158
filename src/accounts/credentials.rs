//! Users-file credential changes (a password hash, the disabled flag, a removal) as
//! durable facts, applied exactly once (issue 22). Every replica applies what it reads —
//! at each reload, and at start against the digests the store keeps — with one
//! compare-and-set per user ([`Store::change_credential`]); the one replica whose
//! compare-and-set wrote the change revoked what predates it in the same transaction, and
//! only it drops its caches, publishes the revocations and writes the audit record. A
//! replay finds the change applied and does nothing, so sessions made after a change are
//! never touched; which replica holds the chores does not matter.
//!
//! [`Store::change_credential`]: crate::store::Store::change_credential

use std::time::Instant;

use serde_json::json;

use super::{Accounts, UserMap};
use crate::replica::Event;
use crate::store::{CredentialChange, Revoked};
use crate::users::{REMOVED, credential_digest};

impl Accounts {
    /// The users file changed: each user whose credentials differ between `old` and `new`
    /// is changed in the store from the digest this replica knew to the new one. A user
    /// added to the file is compared with the stored digest, if any (a user removed earlier
    /// and back again).
    pub(super) async fn credentials_changed(&self, old: &UserMap, new: &UserMap) {
        // Compared field by field first: a million unchanged users cost no digest and no
        // store write; only the changed ones are applied.
        let same = |id: &str| match (old.get(id), new.get(id)) {
            (Some(a), Some(b)) => a.password_hash == b.password_hash && a.disabled == b.disabled,
            _ => false,
        };
        let ids = old
            .keys()
            .chain(new.keys().filter(|id| !old.contains_key(*id)));
        for id in ids {
            if same(id) {
                continue;
            }
            let before = old.get(id).map(|u| u.credential());
            let after = new
                .get(id)
                .map_or_else(|| REMOVED.to_owned(), |u| u.credential());
            if before.as_ref() != Some(&after) {
                self.apply_credential(id, before).await;
            }
        }
    }

    /// At start: the digests the store keeps against the users file, compared in memory.
    /// A user whose stored digest differs (the file changed while no replica ran, or a
    /// change was never applied) is changed from it to the file's. Users with no stored
    /// digest have made no session since the upgrade: nothing to do. False when the store
    /// could not be read (tried again at the next tick).
    pub async fn reconcile_credentials(&self) -> bool {
        if self.users.loaded().is_none() {
            // A directory in the store writes a user and their digest in one transaction:
            // nothing to reconcile.
            return true;
        }
        let stored = match self.store.credentials().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "stored credentials not compared with the users file; trying again");
                return false;
            }
        };
        for (id, digest) in stored {
            if digest != self.file_credential(&id) {
                self.apply_credential(&id, Some(digest)).await;
            }
        }
        true
    }

    /// The users whose credential change is undone now (a store error, or a differing
    /// stored digest); they are refused here until it is done.
    pub fn unapplied_credentials(&self) -> Vec<String> {
        self.unapplied
            .lock()
            .map(|u| u.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Tries again the changes of `users` that are still undone.
    pub async fn retry_credentials(&self, users: Vec<String>) {
        for user in users {
            let Some(from) = self
                .unapplied
                .lock()
                .ok()
                .and_then(|u| u.get(&user).cloned())
            else {
                continue;
            };
            self.apply_credential(&user, from).await;
        }
    }

    /// The user's credential digest in this replica's users file.
    fn file_credential(&self, id: &str) -> String {
        self.file_user(id)
            .map_or_else(|| REMOVED.to_owned(), |u| u.credential())
    }

    /// The user in this replica's users file (a directory held in memory).
    fn file_user(&self, id: &str) -> Option<std::sync::Arc<crate::users::User>> {
        self.users.loaded().and_then(|m| m.get(id).cloned())
    }

    /// Changes the user's stored digest from `from` (`None`: whatever is stored, if
    /// anything) to the users file's. Until that is done — or found done — the user is
    /// refused on this replica and it is tried again every tick (SECURITY 15, 36).
    async fn apply_credential(&self, user: &str, from: Option<String>) {
        let to = self.file_credential(user);
        let from = match from {
            Some(f) => f,
            None => match self.store.credential(user).await {
                Ok(Some((stored, _))) if stored != to => stored,
                Ok(_) => return self.settled(user),
                Err(e) => {
                    tracing::error!(user, error = %e, "credential change not applied: the user is refused until it is");
                    return self.unsettled(user, None);
                }
            },
        };
        let why = self.why(user, &from);
        match self
            .store
            .change_credential(user, &from, &to, crate::time::now(), &|r| {
                self.log_events(r)
            })
            .await
        {
            Ok(CredentialChange::Applied(revoked)) => {
                self.credentials_applied(user, why, revoked, Instant::now())
                    .await;
                self.settled(user);
            }
            Ok(CredentialChange::Already) => self.settled(user),
            Ok(CredentialChange::Differs(_)) => {
                // Written by a replica that read another users file: if it was an older
                // one, this replica's file wins at the next tick; if a newer one, this
                // replica reads it by then and finds the change applied.
                tracing::warn!(
                    user,
                    "the stored credentials differ from what this replica's users file had; the user is refused here until the next reload tick"
                );
                self.unsettled(user, None);
            }
            Err(e) => {
                tracing::error!(user, error = %e, "credential change not applied: the user is refused until it is");
                self.unsettled(user, Some(from));
            }
        }
    }

    /// What the change was, for the audit trail.
    fn why(&self, user: &str, from: &str) -> &'static str {
        match self.file_user(user) {
            None => "account_removed",
            Some(u) if u.disabled => "account_disabled",
            Some(u) if credential_digest(&u.password_hash, true) == from => "account_enabled",
            Some(_) => "password_changed",
        }
    }

    /// This replica's compare-and-set wrote the change: its caches drop what was revoked
    /// at once, the other replicas are told (the messages were counted durably in the
    /// change's transaction), and the change is audited — once, here.
    pub(super) async fn credentials_applied(
        &self,
        user: &str,
        why: &str,
        revoked: Revoked,
        logged: Instant,
    ) {
        self.basic_cache.revoke_all();
        self.sessions.drop_local(&revoked.sessions).await;
        self.devices.drop_local(&revoked.devices).await;
        // In the log since the commit: acknowledged once every replica has it or no longer
        // trusts its cache (`Bus::publish_logged`).
        if let Some(r) = &self.replica {
            for event in revocation_events(&revoked) {
                r.bus.publish_logged(event, logged).await;
            }
        }
        let (n_sessions, n_devices, tokens) = (
            revoked.sessions.len(),
            revoked.devices.len(),
            revoked.tokens,
        );
        self.audit
            .record(
                crate::audit::Event::CredentialsRevoked,
                user,
                "",
                json!({"reason": why, "sessions": n_sessions, "devices": n_devices, "tokens": tokens}),
            )
            .await;
        // The others read the users file now rather than at their next tick.
        self.publish(Event::Users);
    }

    fn settled(&self, user: &str) {
        if let Ok(mut u) = self.unapplied.lock() {
            u.remove(user);
        }
    }

    fn unsettled(&self, user: &str, from: Option<String>) {
        if let Ok(mut u) = self.unapplied.lock() {
            u.insert(user.to_owned(), from);
        }
    }
}

/// The revocation events of a credential change: its sessions and devices, if any, and
/// every cached Basic credential.
pub(crate) fn revocation_events(r: &Revoked) -> Vec<Event> {
    let mut events = Vec::with_capacity(3);
    if !r.sessions.is_empty() {
        events.push(Event::Sessions {
            ids: r.sessions.clone(),
        });
    }
    if !r.devices.is_empty() {
        events.push(Event::Devices {
            ids: r.devices.clone(),
        });
    }
    events.push(Event::Basic);
    events
}

impl Accounts {
    /// What a credential change writes to the revocation log in its own transaction
    /// (replica mode; nobody reads the log on one machine).
    pub(super) fn log_events(&self, r: &Revoked) -> Vec<String> {
        if self.replica.is_none() {
            return Vec::new();
        }
        revocation_events(r).iter().map(Event::text).collect()
    }
}
