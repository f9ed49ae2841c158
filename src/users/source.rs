//! The directory abstraction: where users come from. A [`Source`] is the users file, the
//! database (`users: { database: {} }`) or, later, LDAP; the rest of nidan asks it through
//! [`Directory`] and never knows which.
//!
//! Three rules every source keeps:
//! - a look-up that cannot be answered (the store or LDAP unreachable, a timeout) is an
//!   error, [`DirectoryError::Unavailable`]: callers deciding on access answer 503, never
//!   "no such user" and never a weaker rule (SECURITY 36);
//! - the source owns password verification ([`Source::verify_password`]): the file and the
//!   database check the stored argon2 hash on the hashing queue, LDAP binds as the user;
//!   an unknown user costs the same work as a known one;
//! - writes are a capability ([`Source::writes`]): a source that cannot take one answers
//!   [`DirectoryError::ReadOnly`] and changes nothing. A write that changes what a user
//!   signs in with (password hash, disabled flag, removal) is applied with the credential
//!   compare-and-set in the same transaction (`store::users`), so it ends sessions on every
//!   replica exactly like a users-file change (`accounts::credentials`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::User;
use crate::config::ConfigErrors;
use crate::login::password::Hasher;
use crate::store::{CredentialChange, LogEvents};

/// Users by ID, as a source that holds them all in memory has them.
pub type UserMap = Arc<HashMap<String, Arc<User>>>;

/// The directory every service asks.
pub type Directory = Arc<dyn Source>;

/// Why a directory could not answer or refused a change.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The directory could not be asked (store or LDAP unreachable, a timeout): the caller
    /// answers 503, never "no such user".
    #[error("the user directory is unavailable: {0}")]
    Unavailable(String),
    /// The password hashing queue is full: nobody's answer (503).
    #[error("the password hashing queue is full")]
    Busy,
    /// This directory does not take this change (the message says why and what to do).
    #[error("{0}")]
    ReadOnly(&'static str),
    /// The change names a user that does not exist.
    #[error("no such user")]
    NotFound,
    /// Input the directory refuses: the field and what is wrong with it. Nothing written.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl From<crate::store::StoreError> for DirectoryError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// What a source lets nidan change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writes {
    /// Users can be created, replaced, changed and removed (admin API, `nidan users import`).
    pub users: bool,
    /// A user's password can be set ([`Source::set_password`]).
    pub password: bool,
}

impl Writes {
    pub const NONE: Self = Self {
        users: false,
        password: false,
    };
    pub const ALL: Self = Self {
        users: true,
        password: true,
    };
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The user did not exist before.
    pub created: bool,
    /// The credential compare-and-set made in the write's transaction, when what the user
    /// signs in with changed (`Applied`: this write revoked what predates it).
    pub credential: Option<CredentialChange>,
}

/// How a user's own password change went in the directory ([`Source::change_own_password`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnPassword {
    /// The current password is right; the new one is hashed, for the caller to write (with
    /// the credential compare-and-set) through [`Source::put`].
    Hash(String),
    /// The directory changed it itself (LDAP, as the user).
    Changed,
    WrongPassword,
    /// The directory does not let users change their own password (an LDAP ACL).
    NotAllowed,
    /// The directory's own policy refused the new password (history, quality).
    Rejected,
}

/// The message a read-only users file answers a write with.
pub const FILE_IS_READ_ONLY: &str = "the users are kept in the users file, which is the operator's: edit the file (or configure `users: { database: {} }` to manage users through nidan)";

/// A user directory. The default methods are those of a read-only source.
#[async_trait]
pub trait Source: Send + Sync {
    /// `file`, `database` or `ldap` (metrics, logs, messages).
    fn kind(&self) -> &'static str;

    /// The user behind an ID, disabled or not; `Ok(None)`: no such user.
    async fn get(&self, id: &str) -> Result<Option<Arc<User>>, DirectoryError>;

    /// Checks `password` for `user`, or does the same work and answers false when there is
    /// no such user (`None`), so both take as long.
    async fn verify_password(
        &self,
        hasher: &Hasher,
        user: Option<&User>,
        password: &str,
    ) -> Result<bool, DirectoryError> {
        hasher
            .verify(password, user.map(|u| u.password_hash.as_str()))
            .await
            .map_err(|_| DirectoryError::Busy)
    }

    /// What nidan may change in this directory.
    fn writes(&self) -> Writes {
        Writes::NONE
    }

    /// How many users there are, when that is known without asking anyone (metrics).
    fn len_hint(&self) -> Option<usize> {
        None
    }

    /// Every user, for a source that holds them all in memory (the users file); `None`
    /// otherwise (nothing may walk a million users on a request).
    fn loaded(&self) -> Option<UserMap> {
        None
    }

    /// A sample of users from which decoys learn what a typical user looks like (at most a
    /// few thousand; never a full load).
    fn sample(&self) -> Vec<Arc<User>>;

    /// Called on every reload tick, off the request path: a file source re-reads its file
    /// when it changed and returns the previous and new users; others refresh what they
    /// keep (the decoys' sample) and return `None`.
    async fn refresh(&self) -> Result<Option<(UserMap, UserMap)>, ConfigErrors> {
        Ok(None)
    }

    /// Drops what this replica cached of `id` (every user when `None`): another replica
    /// changed it.
    async fn forget(&self, _id: Option<&str>) {}

    /// Creates or replaces a user (validated by the caller with `users::check`), with the
    /// credential compare-and-set in the same transaction.
    async fn put(&self, _user: &User, _log: LogEvents<'_>) -> Result<Written, DirectoryError> {
        Err(DirectoryError::ReadOnly(FILE_IS_READ_ONLY))
    }

    /// Removes a user; `NotFound` when there was none.
    async fn delete(&self, _id: &str, _log: LogEvents<'_>) -> Result<Written, DirectoryError> {
        Err(DirectoryError::ReadOnly(FILE_IS_READ_ONLY))
    }

    /// Sets a user's password (hashed on `hasher`'s queue by sources that keep hashes; LDAP
    /// changes it on the server). Ends what the old password opened, everywhere.
    async fn set_password(
        &self,
        _hasher: &Hasher,
        _id: &str,
        _password: &str,
        _log: LogEvents<'_>,
    ) -> Result<Written, DirectoryError> {
        Err(DirectoryError::ReadOnly(FILE_IS_READ_ONLY))
    }

    /// A user changes their own password, proving the current one. Sources that keep hashes
    /// verify it and hash the new one (the caller writes it); LDAP changes it on the server.
    async fn change_own_password(
        &self,
        hasher: &Hasher,
        user: &User,
        current: &str,
        new: &str,
    ) -> Result<OwnPassword, DirectoryError> {
        if !self.verify_password(hasher, Some(user), current).await? {
            return Ok(OwnPassword::WrongPassword);
        }
        let hash = hasher.hash(new).await.map_err(|_| DirectoryError::Busy)?;
        Ok(OwnPassword::Hash(hash))
    }

    /// Up to `limit` users with IDs after `after`, in ID order.
    async fn page(&self, after: &str, limit: usize) -> Result<Vec<Arc<User>>, DirectoryError> {
        let Some(all) = self.loaded() else {
            return Ok(Vec::new());
        };
        let mut ids: Vec<&String> = all.keys().filter(|id| id.as_str() > after).collect();
        ids.sort_unstable();
        Ok(ids
            .into_iter()
            .take(limit)
            .filter_map(|id| all.get(id).cloned())
            .collect())
    }
}
