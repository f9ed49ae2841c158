//! An LDAP / Active Directory user directory: look-ups by the operator's `user_filter` (the
//! ID escaped per RFC 4515), attributes mapped to nidan's user, groups from `memberOf` or a
//! group search, and password checks by binding as the user's DN — nidan never reads a
//! password. Connections are pooled and every operation has a short deadline; an outage is
//! an error ([`LdapError`]) that callers deciding on access answer with 503, never with a
//! weaker rule. Look-ups are cached briefly in a revocation-safe cache ([`SafeCache`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use tokio::sync::Semaphore;

use crate::cache::SafeCache;
pub use crate::config::{LdapAttributes as Attributes, LdapGroups as GroupSource, LdapSettings};

/// Longest ID looked up; longer ones are unknown without a query.
const MAX_ID_BYTES: usize = 256;
/// Longest password sent in a bind (as `login::password::MAX_PASSWORD_BYTES`).
const MAX_PASSWORD_BYTES: usize = 1024;

/// LDAP result codes nidan tells apart (RFC 4511 §4.1.9).
mod rc {
    pub const SUCCESS: u32 = 0;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const INAPPROPRIATE_AUTHENTICATION: u32 = 48;
    pub const INVALID_CREDENTIALS: u32 = 49;
    pub const INSUFFICIENT_ACCESS: u32 = 50;
    pub const UNWILLING_TO_PERFORM: u32 = 53;
    pub const CONSTRAINT_VIOLATION: u32 = 19;
}

/// A user as the LDAP server describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUser {
    pub dn: String,
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub groups: Vec<String>,
}

/// The server could not answer (unreachable, timed out, refused the service account, a
/// malformed answer). Carries no secret: safe to log.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("the LDAP server could not be asked: {0}")]
pub struct LdapError(pub String);

impl From<ldap3::LdapError> for LdapError {
    fn from(e: ldap3::LdapError) -> Self {
        // ldap3's errors carry no bind password (only codes, text and the server's message).
        Self(e.to_string())
    }
}

/// How a password change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    Changed,
    /// The current password was wrong.
    WrongPassword,
    /// The server does not let users change their own password (ACL, policy).
    NotAllowed,
    /// The server refused the new password (its own policy: history, quality).
    Rejected,
}

/// The LDAP directory: a pool of service-account connections, a bound on concurrent
/// operations, and the look-up cache.
pub struct LdapDirectory {
    s: LdapSettings,
    idle: Mutex<Vec<Ldap>>,
    permits: Semaphore,
    cache: SafeCache<String, Arc<LdapUser>>,
}

impl LdapDirectory {
    pub fn new(s: LdapSettings) -> Self {
        let cache = SafeCache::new(
            moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(s.cache_ttl.max(Duration::from_millis(1)))
                .build(),
        );
        let permits = Semaphore::new(s.pool.max(1));
        Self {
            s,
            idle: Mutex::new(Vec::new()),
            permits,
            cache,
        }
    }

    /// The same directory whose cache counts only while `health` trusts the caches
    /// (replica mode).
    #[must_use]
    pub fn gated_by(self, health: Arc<crate::replica::Health>) -> Self {
        Self {
            cache: self.cache.gated_by(health),
            ..self
        }
    }

    /// The user with this ID, `None` when no entry (or more than one) matches or the entry
    /// does not hold exactly this ID. An error when the server cannot be asked.
    pub async fn lookup(&self, id: &str) -> Result<Option<Arc<LdapUser>>, LdapError> {
        if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
            return Ok(None);
        }
        if let Some(u) = self.cache.get(&id.to_owned()).await {
            return Ok(Some(u));
        }
        let seen = self.cache.epoch();
        let Some(user) = self.search_user(id).await? else {
            return Ok(None);
        };
        let user = Arc::new(user);
        self.cache.admit(id.to_owned(), user.clone(), seen).await;
        Ok(Some(user))
    }

    /// Drops what is cached about these users (a revocation, a password change).
    pub async fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a String>) {
        self.cache.revoke(ids).await;
    }

    /// Drops every cached look-up (a replica that lost its revocation feed).
    pub async fn forget_all(&self) {
        self.cache.revoke_all();
    }

    /// Whether `password` is the user's: a simple bind as the user's DN. An empty password
    /// is refused before any bind (RFC 4513 §5.1.2: a bind with a DN and no password is an
    /// unauthenticated bind that many servers answer with success).
    pub async fn verify_password(
        &self,
        user: &LdapUser,
        password: &str,
    ) -> Result<bool, LdapError> {
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES || user.dn.is_empty() {
            return Ok(false);
        }
        let _permit = self.permit().await?;
        let mut ldap = self.connect().await?;
        let out = self.bind_as(&mut ldap, &user.dn, password).await;
        let _ = ldap.unbind().await;
        out
    }

    /// Changes the user's password on the server, as the user: a bind with `current`, then
    /// the password modify extended operation (RFC 3062) with the old and new passwords.
    pub async fn change_password(
        &self,
        user: &LdapUser,
        current: &str,
        new: &str,
    ) -> Result<PasswordChange, LdapError> {
        if current.is_empty() || new.is_empty() || current.len() > MAX_PASSWORD_BYTES {
            return Ok(PasswordChange::WrongPassword);
        }
        let _permit = self.permit().await?;
        let mut ldap = self.connect().await?;
        let out = async {
            if !self.bind_as(&mut ldap, &user.dn, current).await? {
                return Ok(PasswordChange::WrongPassword);
            }
            let modify = PasswordModify {
                user_id: None,
                old_pass: Some(current),
                new_pass: Some(new),
            };
            let res = ldap.with_timeout(self.s.timeout).extended(modify).await?.1;
            Ok(match res.rc {
                rc::SUCCESS => PasswordChange::Changed,
                rc::INVALID_CREDENTIALS => PasswordChange::WrongPassword,
                rc::INSUFFICIENT_ACCESS | rc::UNWILLING_TO_PERFORM => PasswordChange::NotAllowed,
                rc::CONSTRAINT_VIOLATION => PasswordChange::Rejected,
                other => {
                    return Err(LdapError(format!(
                        "password modify answered result code {other}"
                    )));
                }
            })
        }
        .await;
        let _ = ldap.unbind().await;
        if out == Ok(PasswordChange::Changed) {
            self.forget([&user.id]).await;
        }
        out
    }

    /// Binds `ldap` as `dn`: true when the server accepted the password, false when it
    /// refused it, an error for anything else.
    async fn bind_as(&self, ldap: &mut Ldap, dn: &str, password: &str) -> Result<bool, LdapError> {
        let res = ldap
            .with_timeout(self.s.timeout)
            .simple_bind(dn, password)
            .await?;
        match res.rc {
            rc::SUCCESS => Ok(true),
            rc::INVALID_CREDENTIALS | rc::INAPPROPRIATE_AUTHENTICATION => Ok(false),
            other => Err(LdapError(format!("bind answered result code {other}"))),
        }
    }

    /// Looks the ID up on a pooled service-account connection.
    async fn search_user(&self, id: &str) -> Result<Option<LdapUser>, LdapError> {
        let _permit = self.permit().await?;
        let mut ldap = self.pooled().await?;
        match self.search_user_on(&mut ldap, id).await {
            Ok(u) => {
                self.give_back(ldap);
                Ok(u)
            }
            Err(e) => {
                // A connection that failed an operation is not reused.
                let _ = ldap.unbind().await;
                Err(e)
            }
        }
    }

    async fn search_user_on(
        &self,
        ldap: &mut Ldap,
        id: &str,
    ) -> Result<Option<LdapUser>, LdapError> {
        let filter = self.s.user_filter.replace("{id}", &ldap_escape(id));
        let a = &self.s.attributes;
        let mut wanted = vec![
            a.id.as_str(),
            a.name.as_str(),
            a.email.as_str(),
            a.phone.as_str(),
        ];
        if let GroupSource::Attribute(g) = &self.s.groups {
            wanted.push(g);
        }
        let res = ldap
            .with_timeout(self.s.timeout)
            .search(&self.s.base_dn, Scope::Subtree, &filter, wanted)
            .await?;
        let (entries, result) = (res.0, res.1);
        match result.rc {
            rc::SUCCESS => {}
            // More than one entry: an ambiguous ID logs nobody in.
            rc::SIZE_LIMIT_EXCEEDED => return Ok(None),
            other => return Err(LdapError(format!("search answered result code {other}"))),
        }
        let mut entries = entries.into_iter().map(SearchEntry::construct);
        let (Some(entry), None) = (entries.next(), entries.next()) else {
            return Ok(None);
        };
        let first = |name: &str| {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first().cloned())
        };
        // The entry must carry exactly this ID (one value), not one that merely matches it.
        let ids: Vec<&String> = entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&a.id))
            .flat_map(|(_, v)| v)
            .collect();
        if !ids.iter().any(|v| v.as_str() == id) {
            return Ok(None);
        }
        let groups = match &self.s.groups {
            GroupSource::Attribute(g) => entry
                .attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(g))
                .flat_map(|(_, v)| v.iter().filter_map(|dn| rdn_value(dn)))
                .collect(),
            GroupSource::Search { .. } => self.search_groups(ldap, &entry.dn, id).await?,
        };
        Ok(Some(LdapUser {
            id: id.to_owned(),
            name: first(&a.name).unwrap_or_else(|| id.to_owned()),
            email: first(&a.email),
            phone: first(&a.phone),
            groups: dedup(groups),
            dn: entry.dn,
        }))
    }

    async fn search_groups(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        id: &str,
    ) -> Result<Vec<String>, LdapError> {
        let GroupSource::Search {
            base_dn,
            filter,
            name,
        } = &self.s.groups
        else {
            return Ok(Vec::new());
        };
        let filter = filter
            .replace("{dn}", &ldap_escape(dn))
            .replace("{id}", &ldap_escape(id));
        let res = ldap
            .with_timeout(self.s.timeout)
            .search(base_dn, Scope::Subtree, &filter, vec![name.as_str()])
            .await?
            .success()?;
        Ok(res
            .0
            .into_iter()
            .map(SearchEntry::construct)
            .filter_map(|e| {
                e.attrs
                    .into_iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.into_iter().next())
            })
            .collect())
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, LdapError> {
        // Waiting for a free connection counts against the same short deadline.
        match tokio::time::timeout(self.s.timeout, self.permits.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(LdapError("the connection pool is closed".into())),
            Err(_) => Err(LdapError("every LDAP connection is busy".into())),
        }
    }

    /// An idle service-account connection, or a new one bound as the service account.
    async fn pooled(&self) -> Result<Ldap, LdapError> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
            match idle {
                Some(mut l) => {
                    if !l.is_closed() {
                        return Ok(l);
                    }
                }
                None => break,
            }
        }
        let mut ldap = self.connect().await?;
        if let (Some(dn), Some(pw)) = (&self.s.bind_dn, &self.s.bind_password) {
            let pw = pw
                .expose_str()
                .ok_or_else(|| LdapError("the bind password is not UTF-8".into()))?;
            if !self.bind_as(&mut ldap, dn, pw).await? {
                return Err(LdapError(
                    "the server refused the service account's bind (bind_dn, bind_password_file)"
                        .into(),
                ));
            }
        }
        Ok(ldap)
    }

    fn give_back(&self, ldap: Ldap) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.s.pool.max(1)
        {
            idle.push(ldap);
        }
    }

    async fn connect(&self) -> Result<Ldap, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.s.timeout)
            .set_starttls(self.s.starttls);
        if let Some(tls) = &self.s.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.s.url).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }
}

/// The value of a DN's first RDN (`cn=staff,ou=groups,…` → `staff`), unescaped
/// (RFC 4514: `\,` and `\2C` alike).
fn rdn_value(dn: &str) -> Option<String> {
    let value = dn.split_once('=')?.1.as_bytes();
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\\' => {
                let pair = value.get(i + 1..i + 3).and_then(|h| {
                    std::str::from_utf8(h)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                });
                if let Some(b) = pair {
                    out.push(b);
                    i += 3;
                } else {
                    out.extend(value.get(i + 1).copied());
                    i += 2;
                }
            }
            b',' | b'+' => break,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let out = String::from_utf8(out).ok()?.trim().to_owned();
    (!out.is_empty()).then_some(out)
}

fn dedup(groups: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    groups
        .into_iter()
        .filter(|g| seen.insert(g.clone()))
        .collect()
}

/// The LDAP directory as a [`Source`]: look-ups and binds against the server, nothing kept
/// but the brief look-up cache. Users are the server's (no admin-API writes); a user changes
/// their own password as themselves ([`LdapSource::change_own_password`]).
pub struct LdapSource {
    dir: LdapDirectory,
    /// Users looked up lately, from which decoys learn what a typical user looks like.
    sample: moka::sync::Cache<String, Arc<super::User>>,
}

/// What an LDAP directory answers a write nidan cannot make.
pub const LDAP_IS_READ_ONLY: &str = "the users are kept on the LDAP server: change them there (users change their own password on the portal's password page where the server allows it)";

impl LdapSource {
    pub fn new(s: LdapSettings, health: Option<Arc<crate::replica::Health>>) -> Self {
        let dir = LdapDirectory::new(s);
        let dir = match health {
            Some(h) => dir.gated_by(h),
            None => dir,
        };
        Self {
            dir,
            sample: moka::sync::Cache::new(1_000),
        }
    }

    /// Changes the user's password on the server, as the user (a bind with `current`, then
    /// the password modify extended operation).
    pub async fn change_own_password(
        &self,
        user: &super::User,
        current: &str,
        new: &str,
    ) -> Result<PasswordChange, LdapError> {
        let Some(entry) = self.dir.lookup(&user.id).await? else {
            return Ok(PasswordChange::WrongPassword);
        };
        self.dir.change_password(&entry, current, new).await
    }
}

/// nidan's view of an LDAP user: no password hash (the password is checked by a bind; an
/// empty hash never verifies), the phone active, 2-step as configured by default.
fn to_user(u: &LdapUser) -> super::User {
    super::UserEntry {
        id: u.id.clone(),
        password_hash: String::new(),
        name: u.name.clone(),
        email: u.email.clone(),
        phone: u.phone.clone(),
        phone_status: super::PhoneStatus::Active,
        groups: u.groups.clone(),
        disabled: false,
        two_step: None,
        identity: std::sync::OnceLock::new(),
    }
}

fn unavailable(e: LdapError) -> super::DirectoryError {
    super::DirectoryError::Unavailable(e.0)
}

#[async_trait::async_trait]
impl super::Source for LdapSource {
    fn kind(&self) -> &'static str {
        "ldap"
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<super::User>>, super::DirectoryError> {
        let Some(entry) = self.dir.lookup(id).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let user = Arc::new(to_user(&entry));
        self.sample.insert(user.id.clone(), user.clone());
        Ok(Some(user))
    }

    /// A bind as the user; an unknown ID costs a hash instead (the same kind of work).
    async fn verify_password(
        &self,
        hasher: &crate::login::password::Hasher,
        user: Option<&super::User>,
        password: &str,
    ) -> Result<bool, super::DirectoryError> {
        let entry = match user {
            Some(u) => self.dir.lookup(&u.id).await.map_err(unavailable)?,
            None => None,
        };
        match entry {
            Some(entry) => self
                .dir
                .verify_password(&entry, password)
                .await
                .map_err(unavailable),
            None => {
                hasher
                    .verify(password, None)
                    .await
                    .map_err(|_| super::DirectoryError::Busy)?;
                Ok(false)
            }
        }
    }

    async fn change_own_password(
        &self,
        _hasher: &crate::login::password::Hasher,
        user: &super::User,
        current: &str,
        new: &str,
    ) -> Result<super::OwnPassword, super::DirectoryError> {
        use super::OwnPassword as O;
        Ok(
            match LdapSource::change_own_password(self, user, current, new)
                .await
                .map_err(unavailable)?
            {
                PasswordChange::Changed => O::Changed,
                PasswordChange::WrongPassword => O::WrongPassword,
                PasswordChange::NotAllowed => O::NotAllowed,
                PasswordChange::Rejected => O::Rejected,
            },
        )
    }

    fn writes(&self) -> super::Writes {
        // Only a user's own password, as the user, where the server allows it.
        super::Writes {
            users: false,
            password: true,
        }
    }

    fn sample(&self) -> Vec<Arc<super::User>> {
        self.sample.iter().map(|(_, u)| u).collect()
    }

    async fn forget(&self, id: Option<&str>) {
        match id {
            Some(id) => self.dir.forget([&id.to_owned()]).await,
            None => self.dir.forget_all().await,
        }
    }

    async fn put(
        &self,
        _user: &super::User,
        _log: crate::store::LogEvents<'_>,
    ) -> Result<super::Written, super::DirectoryError> {
        Err(super::DirectoryError::ReadOnly(LDAP_IS_READ_ONLY))
    }

    async fn delete(
        &self,
        _id: &str,
        _log: crate::store::LogEvents<'_>,
    ) -> Result<super::Written, super::DirectoryError> {
        Err(super::DirectoryError::ReadOnly(LDAP_IS_READ_ONLY))
    }

    /// Without the current password nidan cannot change it (it binds as the user).
    async fn set_password(
        &self,
        _hasher: &crate::login::password::Hasher,
        _id: &str,
        _password: &str,
        _log: crate::store::LogEvents<'_>,
    ) -> Result<super::Written, super::DirectoryError> {
        Err(super::DirectoryError::ReadOnly(LDAP_IS_READ_ONLY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_named_by_its_first_rdn() {
        assert_eq!(
            rdn_value("cn=staff,ou=groups,dc=example,dc=org").as_deref(),
            Some("staff")
        );
        assert_eq!(
            rdn_value("CN=Domain Users,CN=Users,DC=ad").as_deref(),
            Some("Domain Users")
        );
        assert_eq!(rdn_value("cn=a\\,b,ou=g").as_deref(), Some("a,b"));
        assert_eq!(rdn_value("cn=,ou=g"), None);
    }

    #[test]
    fn ids_are_escaped_in_filters() {
        assert_eq!(ldap_escape("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
    }
}
