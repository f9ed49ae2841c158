//! Writes to the directory (admin API, a user's own password change): the directory
//! writes the user and the credential compare-and-set in one transaction; here the
//! consequences of a change that this write applied — caches dropped, the other replicas
//! told (acknowledged as any revocation), the audit trail — exactly as for a users-file
//! change ([`super::credentials`]).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::Accounts;
use crate::login::password::Hasher;
use crate::phone::Source;
use crate::replica::Event;
use crate::store::CredentialChange;
use crate::users::{DirectoryError, PhoneStatus, User, Written};

impl Accounts {
    /// Creates or replaces a user (validated by the caller with `users::file::check_one`).
    pub async fn put_user(&self, user: &User, ip: &str) -> Result<Written, DirectoryError> {
        let before = self.users.get(&user.id).await?;
        let written = self.users.put(user, &|r| self.log_events(r)).await?;
        let why = match &before {
            None => "account_created",
            Some(_) if user.disabled => "account_disabled",
            Some(b) if b.disabled => "account_enabled",
            Some(_) => "password_changed",
        };
        self.written(&user.id, why, &written).await;
        if let Some(b) = &before
            && (b.phone != user.phone || b.phone_status != user.phone_status)
        {
            // The directory's phone is newer than any admin-API phone override.
            self.phone_file_changed(&user.id).await;
            if user.phone_status == PhoneStatus::Gone
                && b.phone_status != PhoneStatus::Gone
                && let Ok(Some(current)) = self.active_user(&user.id).await
            {
                self.phone_gone(&current, Source::AdminApi, ip).await;
            }
        }
        self.audit
            .record(
                crate::audit::Event::UserWritten,
                &user.id,
                ip,
                json!({"created": written.created, "credentials_changed": applied(&written)}),
            )
            .await;
        Ok(written)
    }

    /// Removes a user: what they held ends everywhere.
    pub async fn delete_user(&self, id: &str, ip: &str) -> Result<Written, DirectoryError> {
        let written = self.users.delete(id, &|r| self.log_events(r)).await?;
        self.written(id, "account_removed", &written).await;
        self.audit
            .record(crate::audit::Event::UserDeleted, id, ip, json!({}))
            .await;
        Ok(written)
    }

    /// Sets a user's password (hashed by the directory, or changed on the LDAP server):
    /// sessions, trusted devices and app passwords of the old one end on every replica.
    pub async fn set_password(
        &self,
        hasher: &Hasher,
        id: &str,
        password: &str,
        ip: &str,
    ) -> Result<Written, DirectoryError> {
        let written = self
            .users
            .set_password(hasher, id, password, &|r| self.log_events(r))
            .await?;
        self.written(id, "password_changed", &written).await;
        self.audit
            .record(
                crate::audit::Event::UserWritten,
                id,
                ip,
                json!({"created": false, "credentials_changed": applied(&written), "password": true}),
            )
            .await;
        Ok(written)
    }

    /// After a write: this replica's caches drop the user; a credential change this write
    /// applied has its consequences here (once); the other replicas hear of it.
    async fn written(&self, id: &str, why: &'static str, written: &Written) {
        self.settings.revoke([&id.to_owned()]).await;
        self.basic_cache.revoke_all();
        if let Some(CredentialChange::Applied(revoked)) = &written.credential {
            self.credentials_applied(id, why, revoked.clone(), Instant::now())
                .await;
        }
        // Whatever changed (a 2-step default, groups, a phone) is a rule the other replicas
        // must not decide on from cache: answered once every replica has dropped its cached
        // users and 2-step settings, or no longer trusts its caches (as every revocation).
        if let Err(e) = self.publish_revocation(Event::Users).await {
            tracing::error!(user = id, error = %e, "the other replicas were not told of a user change; their caches expire or distrust themselves");
        }
    }

    /// The directory's user as it is now, past every cache (the admin API's answers).
    pub async fn directory_user(&self, id: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        self.users.forget(Some(id)).await;
        self.users.get(id).await
    }
}

fn applied(w: &Written) -> bool {
    matches!(w.credential, Some(CredentialChange::Applied(_)))
}
