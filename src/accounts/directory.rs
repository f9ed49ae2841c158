//! The directory behind accounts, asked on each decision: the user as the directory says
//! now (an LDAP look-up may fail: that is an error, never "no such user"), their password
//! checked where the directory keeps it (an argon2 hash in the users file, a bind as the
//! user with LDAP), and the credential digest a new session is bound to.

use std::sync::Arc;

use super::Accounts;
use crate::login::password::{HashError, Hasher};
use crate::store::StoreError;
use crate::users::{LookupError, User};

/// A password could not be checked (nobody's answer, so nobody's failure).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Directory(#[from] LookupError),
}

impl Accounts {
    /// The user behind an ID, if they exist and may log in, as the directory says now. An
    /// error when the directory could not be asked (deciding callers answer 503).
    pub async fn user(&self, id: &str) -> Result<Option<Arc<User>>, LookupError> {
        if self.refused_here(id) {
            return Ok(None);
        }
        Ok(self
            .users
            .lookup(id)
            .await?
            .filter(|u| !u.disabled)
            .map(|u| self.phones.apply(u)))
    }

    /// Whether `password` is `user`'s (`None`: an unknown ID, which costs the same hash as a
    /// known one). With LDAP the server checks it by a bind as the user; nidan never sees
    /// the stored password.
    pub async fn check_password(
        &self,
        hasher: &Hasher,
        user: Option<&User>,
        password: &str,
    ) -> Result<bool, CheckError> {
        let Some(ldap) = self.users.ldap() else {
            return Ok(hasher
                .verify(password, user.map(|u| u.password_hash.as_str()))
                .await?);
        };
        let entry = match user {
            Some(u) => ldap.lookup(&u.id).await.map_err(|e| LookupError(e.0))?,
            None => None,
        };
        match entry {
            Some(entry) => Ok(ldap
                .verify_password(&entry, password)
                .await
                .map_err(|e| LookupError(e.0))?),
            None => {
                // An unknown ID: the same kind of work as a known one's check.
                hasher.verify(password, None).await?;
                Ok(false)
            }
        }
    }

    /// The credential digest a new session (or trusted device) of `user` is bound to: the
    /// users file's, or with LDAP the one nidan stored at the user's last password change
    /// (the store refuses a session whose digest is no longer current).
    pub async fn credential(&self, user: &User) -> Result<String, StoreError> {
        if self.users.ldap().is_none() {
            return Ok(user.credential());
        }
        Ok(self
            .store
            .credential(&user.id)
            .await?
            .map_or_else(|| user.credential(), |(digest, _)| digest))
    }
}
