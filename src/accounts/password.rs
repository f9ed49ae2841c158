//! Users changing their own password, on a directory that takes it (`Source::writes`):
//! the database directory (a new hash, written with the credential compare-and-set), or LDAP
//! (changed on the server as the user; then nidan stores a new credential digest of its
//! own). Either way the change ends every other session of the user, their trusted devices
//! and app passwords, on every replica (the compare-and-set's revocations) — while the
//! session the change was made from was bound to the new digest just before, so it alone
//! survives the change.
//!
//! Why "just before" is enough: a session's digest is read only by a credential change,
//! which ends sessions whose digest is not the new one. Bound early, the session survives
//! exactly the change it anticipated; if that change fails or another one wins, the next
//! change ends it as it would have anyway.

use std::time::Instant;

use super::Accounts;
use super::new_password::{self, Weak};
use crate::config::Language;
use crate::login::password::Hasher;
use crate::replica::Event;
use crate::store::{CredentialChange, StoreError};
use crate::users::{DirectoryError, OwnPassword, User, credential_digest};

/// Why a password was not changed. Nothing changed in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The users file: the operator manages passwords.
    #[error("passwords are managed by the operator")]
    NotWritable,
    /// The LDAP server does not let users change their own password.
    #[error("the directory does not let users change their password")]
    NotAllowed,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error(transparent)]
    Weak(Weak),
    /// The directory's own policy refused the new password (history, quality).
    #[error("the directory refused the new password")]
    Rejected,
    /// The directory or the store could not be asked (503; try again).
    #[error("the password could not be changed now: {0}")]
    Unavailable(String),
}

impl From<DirectoryError> for ChangeError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::ReadOnly(_) => Self::NotWritable,
            e => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl Accounts {
    /// Whether users can change their password here (else the portal points to
    /// `portal.account_url`).
    pub fn passwords_writable(&self) -> bool {
        self.users.writes().password
    }

    /// Checks the new password's rules (nothing secret in them: no budget, no oracle).
    pub fn check_new_password(
        &self,
        user: &User,
        current: &str,
        new: &str,
    ) -> Result<(), ChangeError> {
        if !self.passwords_writable() {
            return Err(ChangeError::NotWritable);
        }
        new_password::check(&user.id, current, new).map_err(ChangeError::Weak)
    }

    /// The credential digest a new session (or trusted device) of `user` is bound to: the
    /// directory's (the password hash and disabled flag), or with LDAP — which shows nidan
    /// no hash — the digest nidan stored at the user's last password change.
    pub async fn credential(&self, user: &User) -> Result<String, StoreError> {
        if self.users.kind() != "ldap" {
            return Ok(user.credential());
        }
        Ok(self
            .store
            .credential(&user.id)
            .await?
            .map_or_else(|| user.credential(), |(digest, _)| digest))
    }

    /// Changes `user`'s password from the session `keep` (its ID's hex SHA-256), proving
    /// `current`. `Err(WrongPassword)` is the caller's to count as a failed login.
    pub async fn change_own_password(
        &self,
        hasher: &Hasher,
        user: &User,
        keep: &str,
        (current, new): (&str, &str),
        ip: &str,
        lang: Language,
    ) -> Result<(), ChangeError> {
        self.check_new_password(user, current, new)?;
        let ldap = self.users.kind() == "ldap";
        // LDAP: nidan's own digest for "the password changed now" (the server shows no hash).
        let ldap_digest = format!("ldap-changed-{}", crate::secret::random_token(32));
        if ldap {
            self.store
                .rebind_session(keep, &user.id, &ldap_digest)
                .await?;
        }
        match self
            .users
            .change_own_password(hasher, user, current, new)
            .await?
        {
            OwnPassword::WrongPassword => return Err(ChangeError::WrongPassword),
            OwnPassword::NotAllowed => return Err(ChangeError::NotAllowed),
            OwnPassword::Rejected => return Err(ChangeError::Rejected),
            OwnPassword::Hash(hash) => {
                let to = credential_digest(&hash, user.disabled);
                self.store.rebind_session(keep, &user.id, &to).await?;
                let mut changed = User::clone(user);
                changed.password_hash = hash;
                changed.identity = Default::default();
                self.put_user(&changed, ip).await?;
            }
            OwnPassword::Changed => self.ldap_changed(user, &ldap_digest, ip).await,
        }
        // This replica's cached copy of the kept session holds the old digest: drop it here
        // and on the other replicas (read again, it is still there).
        let kept = vec![keep.to_owned()];
        self.sessions.drop_local(&kept).await;
        self.publish(Event::Sessions { ids: kept });
        let ip = ip.to_owned();
        self.notify(user, lang, |l, site| {
            crate::i18n::messages::password_changed(l, &ip, site)
        });
        Ok(())
    }

    /// The LDAP server took the new password: nidan's digest for the user becomes `to`,
    /// which ends every other session (the kept one was bound to `to`). If the store fails,
    /// everything the user holds is revoked instead, retried until done: never less.
    async fn ldap_changed(&self, user: &User, to: &str, ip: &str) {
        for _ in 0..3 {
            let from = match self.store.credential(&user.id).await {
                Ok(Some((d, _))) => d,
                Ok(None) => user.credential(),
                Err(e) => {
                    tracing::error!(error = %e, "password changed: the stored credential is unreadable");
                    break;
                }
            };
            match self
                .store
                .change_credential(&user.id, &from, to, crate::time::now(), &|r| {
                    self.log_events(r)
                })
                .await
            {
                Ok(CredentialChange::Applied(revoked)) => {
                    self.credentials_applied(&user.id, "password_changed", revoked, Instant::now())
                        .await;
                    return;
                }
                // Changed meanwhile: read it again.
                Ok(CredentialChange::Differs(_) | CredentialChange::Already) => {}
                Err(e) => {
                    tracing::error!(error = %e, "password changed: the credential change was not stored");
                    break;
                }
            }
        }
        self.revoke_everything(&user.id, "password_changed", ip)
            .await;
    }
}
