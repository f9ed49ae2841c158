//! The user directory: who may log in, read from the operator's YAML users file and
//! swapped atomically when that file changes (a bad edit keeps the previous directory).

pub mod file;
pub mod ldap;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

pub use file::{PhoneStatus, UserEntry};

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

pub struct Directory {
    path: PathBuf,
    users: ArcSwap<HashMap<String, Arc<User>>>,
    modified: Mutex<Option<SystemTime>>,
    /// `users.ldap`: the users come from this server; the users file is not read.
    ldap: Option<ldap::LdapDirectory>,
    /// LDAP users as last looked up, for the readers that cannot wait for a look-up (admin
    /// API, phone chores): kept as long as the look-up cache keeps them.
    resolved: moka::sync::Cache<String, Arc<User>>,
}

/// A user could not be looked up: the directory did not answer. Deciding callers answer 503
/// (SECURITY 36), never "no such user".
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("the user directory could not be read: {0}")]
pub struct LookupError(pub String);

impl Directory {
    /// Reads the users file, or connects nothing yet for `users.ldap` (connections are made
    /// on first use); an invalid file is an error (nidan refuses to start on it).
    pub fn open(cfg: &crate::config::UsersSource) -> Result<Self, ConfigErrors> {
        let Some(l) = &cfg.ldap else {
            return Self::load(&cfg.file);
        };
        Ok(Self {
            path: cfg.file.clone(),
            users: ArcSwap::from_pointee(HashMap::new()),
            modified: Mutex::new(None),
            resolved: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(l.cache_ttl.max(std::time::Duration::from_secs(1)))
                .build(),
            ldap: Some(ldap::LdapDirectory::new(l.clone())),
        })
    }

    /// Reads the users file; an invalid file is an error (nidan refuses to start on it).
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let modified = mtime(path);
        let users = file::load_users(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            users: ArcSwap::from_pointee(index(users)),
            modified: Mutex::new(modified),
            ldap: None,
            resolved: moka::sync::Cache::new(0),
        })
    }

    /// The LDAP directory, when the users come from one.
    pub fn ldap(&self) -> Option<&ldap::LdapDirectory> {
        self.ldap.as_ref()
    }

    /// The user behind an ID as the directory says now: the users file, or an LDAP look-up
    /// (cached briefly). An error when the directory could not be asked.
    pub async fn lookup(&self, id: &str) -> Result<Option<Arc<User>>, LookupError> {
        let Some(l) = &self.ldap else {
            return Ok(self.get(id));
        };
        match l.lookup(id).await {
            Ok(Some(u)) => {
                let user = Arc::new(from_ldap(&u));
                self.resolved.insert(user.id.clone(), user.clone());
                Ok(Some(user))
            }
            Ok(None) => {
                self.resolved.invalidate(id);
                Ok(None)
            }
            Err(e) => Err(LookupError(e.0)),
        }
    }

    /// The user behind an ID without asking a server: the users file, or the LDAP user as
    /// last looked up (`None` once that look-up expired).
    pub fn get(&self, id: &str) -> Option<Arc<User>> {
        if self.ldap.is_some() {
            return self.resolved.get(id);
        }
        self.users.load().get(id).cloned()
    }

    /// Every user in the users file now (LDAP: the users looked up lately).
    pub fn all(&self) -> Vec<Arc<User>> {
        if self.ldap.is_some() {
            return self.resolved.iter().map(|(_, u)| u).collect();
        }
        self.users.load().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.users.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file when its modification time changed. Returns the previous and new
    /// directories when a reload happened, so callers can react to what changed. Never
    /// with LDAP (no file).
    #[allow(clippy::type_complexity)]
    pub fn reload_if_changed(
        &self,
    ) -> Result<
        Option<(
            Arc<HashMap<String, Arc<User>>>,
            Arc<HashMap<String, Arc<User>>>,
        )>,
        ConfigErrors,
    > {
        if self.ldap.is_some() {
            return Ok(None);
        }
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

/// nidan's view of an LDAP user: no password hash (the password is checked by a bind; an
/// empty hash never verifies), the phone active, 2-step as configured by default.
fn from_ldap(u: &ldap::LdapUser) -> User {
    UserEntry {
        id: u.id.clone(),
        password_hash: String::new(),
        name: u.name.clone(),
        email: u.email.clone(),
        phone: u.phone.clone(),
        phone_status: PhoneStatus::Active,
        groups: u.groups.clone(),
        disabled: false,
        two_step: None,
        identity: std::sync::OnceLock::new(),
    }
}

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
