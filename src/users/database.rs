//! The database directory (`users: { database: {} }`): users kept in the durable store
//! (SQLite on one machine, PostgreSQL for replicas), looked up one at a time by ID, never
//! loaded whole: start-up time and memory do not grow with the number of users.
//!
//! Look-ups go through a short [`SafeCache`] that obeys the revocation rules: every write
//! logs `users` in the revocation log in its own transaction (the other replicas drop what
//! they cached within the log's read interval), a write here drops the entry before it
//! returns, and in the replica mode the cache decides only while the replica trusts its
//! caches (`replica::health`); otherwise every look-up reads the store. A store that cannot
//! be read is [`DirectoryError::Unavailable`], never "no such user".

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;

use super::source::{DirectoryError, Source, UserMap, Writes, Written};
use super::{PhoneStatus, User};
use crate::cache::SafeCache;
use crate::config::{ConfigErrors, TwoStepMethod};
use crate::login::password::Hasher;
use crate::store::{LogEvents, Store, UserRecord};

/// How long a looked-up user is kept (a write anywhere drops it sooner).
const CACHE_TTL: Duration = Duration::from_secs(30);
/// How often the decoys' sample is read again.
const SAMPLE_EVERY: Duration = Duration::from_secs(60);

pub struct DatabaseDirectory {
    store: Store,
    /// Users by ID (`None`: no such user), under the revocation rules.
    cache: SafeCache<String, Option<Arc<User>>>,
    sample: ArcSwap<Vec<Arc<User>>>,
    sampled: Mutex<Option<Instant>>,
    /// Events every write logs for the other replicas (replica mode; none on one machine).
    always: Vec<String>,
}

impl DatabaseDirectory {
    /// `replica`: the replica's health (the cache counts only while it trusts its caches).
    pub fn new(store: Store, replica: Option<Arc<crate::replica::Health>>) -> Self {
        let cache = SafeCache::new(
            moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CACHE_TTL)
                .build(),
        );
        let (cache, always) = match replica {
            Some(h) => (cache.gated_by(h), vec![crate::replica::Event::Users.text()]),
            None => (cache, Vec::new()),
        };
        Self {
            store,
            cache,
            sample: ArcSwap::from_pointee(Vec::new()),
            sampled: Mutex::new(None),
            always,
        }
    }

    /// Reads the user from the store, past the cache.
    async fn read(&self, id: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        match self.store.user(id).await? {
            Some(r) => Ok(Some(Arc::new(to_user(r)?))),
            None => Ok(None),
        }
    }

    async fn write(&self, user: &User, log: LogEvents<'_>) -> Result<Written, DirectoryError> {
        let record = to_record(user);
        let result = self
            .store
            .put_user(
                &record,
                &user.credential(),
                crate::time::now(),
                log,
                &self.always,
            )
            .await;
        // Whatever happened, nothing cached of this user is trusted any more.
        self.cache.revoke([&user.id]).await;
        let (created, credential) = result?;
        Ok(Written {
            created,
            credential,
        })
    }

    async fn refresh_sample(&self) {
        let due = self
            .sampled
            .lock()
            .map(|s| s.is_none_or(|at| at.elapsed() >= SAMPLE_EVERY))
            .unwrap_or(false);
        if !due {
            return;
        }
        // From a random point of the ID space, so the sample is not always the same users.
        let start = crate::secret::random_token(2).to_ascii_lowercase();
        let limit = i64::try_from(super::SAMPLE).unwrap_or(5_000);
        let mut rows = match self.store.users_after(&start[..1], limit).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the decoys' sample of users was not read");
                return;
            }
        };
        if rows.len() < super::SAMPLE
            && let Ok(more) = self
                .store
                .users_after("", limit - i64::try_from(rows.len()).unwrap_or(0))
                .await
        {
            rows.extend(more);
        }
        let users: Vec<Arc<User>> = rows
            .into_iter()
            .filter_map(|r| to_user(r).ok().map(Arc::new))
            .collect();
        self.sample.store(Arc::new(users));
        if let Ok(mut s) = self.sampled.lock() {
            *s = Some(Instant::now());
        }
    }
}

#[async_trait]
impl Source for DatabaseDirectory {
    fn kind(&self) -> &'static str {
        "database"
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let key = id.to_owned();
        if let Some(hit) = self.cache.get(&key).await {
            return Ok(hit);
        }
        let seen = self.cache.begin_fill()?;
        let user = self.read(id).await?;
        self.cache.admit(key, user.clone(), seen).await;
        Ok(user)
    }

    fn writes(&self) -> Writes {
        Writes::ALL
    }

    fn sample(&self) -> Vec<Arc<User>> {
        self.sample.load().as_ref().clone()
    }

    async fn refresh(&self) -> Result<Option<(UserMap, UserMap)>, ConfigErrors> {
        self.refresh_sample().await;
        Ok(None)
    }

    async fn forget(&self, id: Option<&str>) {
        match id {
            Some(id) => self.cache.revoke([&id.to_owned()]).await,
            None => self.cache.revoke_all(),
        }
    }

    async fn put(&self, user: &User, log: LogEvents<'_>) -> Result<Written, DirectoryError> {
        self.write(user, log).await
    }

    async fn delete(&self, id: &str, log: LogEvents<'_>) -> Result<Written, DirectoryError> {
        let result = self
            .store
            .delete_user(id, super::REMOVED, crate::time::now(), log, &self.always)
            .await;
        self.cache.revoke([&id.to_owned()]).await;
        match result? {
            None => Err(DirectoryError::NotFound),
            Some(credential) => Ok(Written {
                created: false,
                credential,
            }),
        }
    }

    async fn set_password(
        &self,
        hasher: &Hasher,
        id: &str,
        password: &str,
        log: LogEvents<'_>,
    ) -> Result<Written, DirectoryError> {
        let hash = hasher
            .hash(password)
            .await
            .map_err(|_| DirectoryError::Busy)?;
        let Some(user) = self.read(id).await? else {
            return Err(DirectoryError::NotFound);
        };
        let mut user = User::clone(&user);
        user.password_hash = hash;
        user.identity = Default::default();
        self.write(&user, log).await
    }

    async fn page(&self, after: &str, limit: usize) -> Result<Vec<Arc<User>>, DirectoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.store
            .users_after(after, limit)
            .await?
            .into_iter()
            .map(|r| to_user(r).map(Arc::new))
            .collect()
    }
}

/// A user as the database keeps them.
pub fn to_record(u: &User) -> UserRecord {
    UserRecord {
        id: u.id.clone(),
        password_hash: u.password_hash.clone(),
        name: u.name.clone(),
        email: u.email.clone(),
        phone: u.phone.clone(),
        phone_status: status_str(u.phone_status).to_owned(),
        groups: u.groups.clone(),
        disabled: u.disabled,
        two_step: u.two_step.map(|(on, m)| (on, m.as_str().to_owned())),
    }
}

/// A stored row as a user; a row nidan did not write (an unknown phone status or 2-step
/// method) is an error, never a guess.
fn to_user(r: UserRecord) -> Result<User, DirectoryError> {
    let bad = |what: &str| {
        DirectoryError::Unavailable(format!("the stored user {} has an unreadable {what}", r.id))
    };
    let phone_status = match r.phone_status.as_str() {
        "active" => PhoneStatus::Active,
        "kept" => PhoneStatus::Kept,
        "gone" => PhoneStatus::Gone,
        _ => return Err(bad("phone_status")),
    };
    let two_step = match &r.two_step {
        None => None,
        Some((on, m)) => Some((*on, TwoStepMethod::parse(m).ok_or_else(|| bad("two_step"))?)),
    };
    Ok(User {
        id: r.id,
        password_hash: r.password_hash,
        name: r.name,
        email: r.email,
        phone: r.phone,
        phone_status,
        groups: r.groups,
        disabled: r.disabled,
        two_step,
        identity: Default::default(),
    })
}

pub fn status_str(s: PhoneStatus) -> &'static str {
    match s {
        PhoneStatus::Active => "active",
        PhoneStatus::Kept => "kept",
        PhoneStatus::Gone => "gone",
    }
}
