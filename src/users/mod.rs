//! The user directory: who may log in. [`Source`] is the abstraction every service asks
//! (see [`source`]); [`FileDirectory`] is the operator's YAML users file, read whole and
//! swapped atomically when the file changes (a bad edit keeps the previous directory).

pub mod database;
pub mod file;
pub mod import;
pub mod ldap;
pub mod source;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

pub use database::DatabaseDirectory;
pub use file::{PhoneStatus, UserEntry};
pub use source::{Directory, DirectoryError, OwnPassword, Source, UserMap, Writes, Written};

use crate::config::ConfigErrors;

pub type User = UserEntry;

/// A 2-step method as it is stored (`settings.method`) and shown in the API and audit trail.
/// (Here rather than beside the type in `config`, so the config split can move it freely.)
impl crate::config::TwoStepMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Email => "email",
            Self::App => "app",
        }
    }

    /// The method a stored or submitted name stands for; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sms" => Some(Self::Sms),
            "email" => Some(Self::Email),
            "app" => Some(Self::App),
            _ => None,
        }
    }
}

/// What a backend is told about a user (identity headers, forward-auth answers). Made once
/// per entry and shared by every request of that user (a new users file makes new entries);
/// building it per request cost four strings and four header values on each.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// The display name, header-safe ([`header_safe`]).
    pub name: String,
    pub email: String,
    /// Comma-separated.
    pub groups: String,
    /// The four as header values (user, name, email, groups); `None` when one cannot be a
    /// header value (a control character): the request is then refused, never sent without.
    pub values: Option<[http::HeaderValue; 4]>,
}

impl Identity {
    fn of(user: &User) -> Self {
        let name = header_safe(&user.name).into_owned();
        let email = user.email.clone().unwrap_or_default();
        let groups = user.groups.join(",");
        let value = |s: &str| http::HeaderValue::from_str(s).ok();
        let values = (|| {
            Some([
                value(&user.id)?,
                value(&name)?,
                value(&email)?,
                value(&groups)?,
            ])
        })();
        Self {
            user: user.id.clone(),
            name,
            email,
            groups,
            values,
        }
    }
}

impl UserEntry {
    /// This user's [`Identity`], made on first use.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity
            .get_or_init(|| Arc::new(Identity::of(self)))
            .clone()
    }

    /// The digest of what this user signs in with, as the users file gives it: changes
    /// when the password hash or the disabled flag does. Sessions carry the one their login
    /// checked, and the store keeps the current one per user (see `accounts::credentials`).
    pub fn credential(&self) -> String {
        credential_digest(&self.password_hash, self.disabled)
    }

    /// The digest of the phone and phone status the users file gives this user.
    pub fn phone_state(&self) -> String {
        let status = match self.phone_status {
            PhoneStatus::Active => b"active".as_slice(),
            PhoneStatus::Kept => b"kept".as_slice(),
            PhoneStatus::Gone => b"gone".as_slice(),
        };
        let phone = self.phone.as_deref().unwrap_or("");
        hex::encode(crate::secret::digest(&[
            b"nidan-phone-v1",
            phone.as_bytes(),
            status,
        ]))
    }
}

/// The credential digest of a user no longer in the users file.
pub const REMOVED: &str = "removed";

/// `hex(SHA-256("nidan-credential-v1" ‖ password_hash ‖ disabled))`, each part
/// length-prefixed ([`crate::secret::digest`]).
pub fn credential_digest(password_hash: &str, disabled: bool) -> String {
    hex::encode(crate::secret::digest(&[
        b"nidan-credential-v1",
        password_hash.as_bytes(),
        &[u8::from(disabled)],
    ]))
}

/// Header values must be visible ASCII: anything else is percent-encoded (UTF-8).
pub fn header_safe(v: &str) -> std::borrow::Cow<'_, str> {
    if v.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        return v.into();
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out.into()
}

/// The users file as a directory: read whole into memory and swapped atomically when the
/// file changes (a bad edit keeps the previous directory). Read-only: the file is the
/// operator's. Re-reading runs on a blocking thread: requests are answered from the
/// previous users meanwhile.
pub struct FileDirectory {
    inner: Arc<FileInner>,
}

struct FileInner {
    path: PathBuf,
    users: ArcSwap<HashMap<String, Arc<User>>>,
    modified: Mutex<Option<SystemTime>>,
}

impl FileDirectory {
    /// Reads the users file; an invalid file is an error (nidan refuses to start on it).
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let modified = mtime(path);
        let users = file::load_users(path)?;
        Ok(Self {
            inner: Arc::new(FileInner {
                path: path.to_path_buf(),
                users: ArcSwap::from_pointee(index(users)),
                modified: Mutex::new(modified),
            }),
        })
    }
}

impl FileInner {
    /// Re-reads the file when its modification time changed. Returns the previous and new
    /// directories when a reload happened, so callers can react to what changed.
    fn reload_if_changed(&self) -> Result<Option<(UserMap, UserMap)>, ConfigErrors> {
        let now = mtime(&self.path);
        {
            let Ok(mut seen) = self.modified.lock() else {
                return Ok(None);
            };
            if *seen == now {
                return Ok(None);
            }
            // Remember the attempt even if it fails, so a broken file is reported once.
            *seen = now;
        }
        let users = file::load_users(&self.path)?;
        let new = Arc::new(index(users));
        let old = self.users.swap(new.clone());
        Ok(Some((old, new)))
    }
}

#[async_trait::async_trait]
impl Source for FileDirectory {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        Ok(self.inner.users.load().get(id).cloned())
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.inner.users.load().len())
    }

    fn loaded(&self) -> Option<UserMap> {
        Some(self.inner.users.load_full())
    }

    fn sample(&self) -> Vec<Arc<User>> {
        self.inner
            .users
            .load()
            .values()
            .take(SAMPLE)
            .cloned()
            .collect()
    }

    async fn refresh(&self) -> Result<Option<(UserMap, UserMap)>, ConfigErrors> {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || inner.reload_if_changed()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "the users file reload stopped");
                Ok(None)
            }
        }
    }
}

/// How many users the decoys learn the typical user from.
pub const SAMPLE: usize = 5_000;

fn index(users: Vec<User>) -> HashMap<String, Arc<User>> {
    users
        .into_iter()
        .map(|u| (u.id.clone(), Arc::new(u)))
        .collect()
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_digest_follows_the_hash_and_the_disabled_flag() {
        let a = credential_digest("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", false);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            a,
            credential_digest("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", false)
        );
        assert_ne!(
            a,
            credential_digest("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", true)
        );
        assert_ne!(
            a,
            credential_digest("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaB", false)
        );
        assert_ne!(a, REMOVED);
    }
}
