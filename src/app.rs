//! Everything a request may need, built once from the configuration and shared by the
//! proxy, the portal and the background tasks.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::future::Cache;

use crate::audit::Audit;
use crate::cache::SafeCache;
use crate::config::{Config, TwoStepMethod};
use crate::login::password::Hasher;
use crate::login::service::Login;
use crate::notify::Notifier;
use crate::proxy::route::RouteTable;
use crate::session::Sessions;
use crate::session::device::Devices;
use crate::session::token::KeyRing;
use crate::store::{SettingRecord, Store};
use crate::users::{Directory, User};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Notify(#[from] crate::notify::NotifyError),
    #[error("the password hashing threads could not start")]
    Hasher,
    #[error("{0}")]
    Redis(#[from] crate::replica::BadUrl),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
}

pub struct App {
    pub cfg: Arc<Config>,
    /// Swapped whole when the configuration file changes; a request keeps its snapshot.
    routes: ArcSwap<RouteTable>,
    pub users: Directory,
    pub store: Store,
    pub sessions: Sessions,
    pub devices: Devices,
    /// The login and its short-lived state (flows, budgets, failures, approvals, passkey
    /// challenges): in process, or in Redis when `storage.redis` is set.
    pub login: Login,
    /// Recently verified HTTP Basic credentials, so a client sending them on every request
    /// does not cost a password hash each time. Keyed by a salted digest of ID and password;
    /// an entry counts only while the user's password hash is the one it was verified
    /// against, and every revocation drops them all (SECURITY 37).
    pub basic_cache: SafeCache<[u8; 32], BasicEntry>,
    basic_salt: [u8; 32],
    /// Users' effective 2-step settings, read through on every decision that needs them.
    pub(crate) settings: SafeCache<String, (bool, TwoStepMethod)>,
    pub notifier: Arc<Notifier>,
    /// Phone changes made through the admin API, applied over the users file.
    pub phones: crate::phone::PhoneOverrides,
    pub audit: Audit,
    /// Signed identity assertions for backends (`identity_assertion`), when configured.
    pub assertions: Option<crate::assertion::Assertions>,
    /// Replica mode (`storage.redis`): the revocation bus, the chores lease, store health.
    pub replica: Option<Arc<crate::replica::Replica>>,
    /// Users-file changes this replica read while another held the chores: their
    /// consequences are the holder's to apply; kept until it says so, applied here if this
    /// replica takes the chores over first.
    #[allow(clippy::type_complexity)]
    pending_users: std::sync::Mutex<Option<(UserMap, UserMap)>>,
    /// Users whose revocation a store error interrupted, with its reason: refused here
    /// (no session, login or credential of theirs counts) and retried every tick until it
    /// went through (SECURITY 15, 36).
    unrevoked: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

type UserMap = Arc<std::collections::HashMap<String, Arc<User>>>;

impl App {
    pub async fn build(cfg: Config) -> Result<Arc<Self>, StartError> {
        let store = Store::connect(&cfg.storage).await?;
        let users = Directory::load(&cfg.users.file)?;
        let hashers = if cfg.login_limits.max_concurrent_hashes == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            cfg.login_limits.max_concurrent_hashes
        };
        let hasher = Hasher::new(hashers, 256).map_err(|_| StartError::Hasher)?;
        let replica = match &cfg.storage.replicated {
            Some(r) => Some(Arc::new(crate::replica::Replica::new(
                r,
                cfg.storage.outage_grace,
            )?)),
            None => None,
        };
        let audit = Audit::with_bounds(
            store.clone(),
            &cfg.audit,
            (cfg.login_limits.ipv4_prefix, cfg.login_limits.ipv6_prefix),
        );
        let state = crate::state::for_config(&cfg, Some(audit.clone()))?;
        let app = Arc::new(Self {
            routes: ArcSwap::from_pointee(RouteTable::new(cfg.routes.clone())),
            users,
            sessions: Sessions::new(
                store.clone(),
                cfg.session.idle_timeout,
                cfg.session.absolute_timeout,
            ),
            devices: Devices::new(
                store.clone(),
                KeyRing::new(&cfg.trusted_devices.signing_keys),
                cfg.trusted_devices.lifetime,
                cfg.trusted_devices.max_per_user,
            ),
            login: Login::new(&cfg, &store, state, hasher),
            basic_cache: SafeCache::new(
                Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(Duration::from_secs(300))
                    .build(),
            ),
            basic_salt: rand::random(),
            settings: SafeCache::new(
                Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(Duration::from_secs(600))
                    .build(),
            ),
            notifier: Arc::new(Notifier::new(&cfg.notifiers)?),
            phones: crate::phone::PhoneOverrides::load(&store).await?,
            audit,
            assertions: cfg
                .identity_assertion
                .as_ref()
                .map(|a| crate::assertion::Assertions::new(a, &cfg.trusted_devices.signing_keys)),
            store,
            cfg: Arc::new(cfg),
            replica,
            pending_users: std::sync::Mutex::new(None),
            unrevoked: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        if let Some(r) = &app.replica {
            app.sessions.attach(r.bus.clone(), r.health.clone());
            app.devices.attach(r.bus.clone(), r.health.clone());
            app.settings.gate(r.health.clone());
            app.basic_cache.gate(r.health.clone());
        }
        Ok(app)
    }

    /// Publishes an event for the other replicas (replica mode; nothing otherwise).
    /// Publishes a revocation for the other replicas, counted durably first so that one
    /// whose broadcast never arrives is still noticed (replica mode; nothing otherwise).
    pub async fn publish_revocation(
        &self,
        event: crate::replica::Event,
    ) -> Result<(), crate::store::StoreError> {
        if let Some(r) = &self.replica {
            self.store.count_revocation().await?;
            r.bus.publish(event);
        }
        Ok(())
    }

    pub fn publish(&self, event: crate::replica::Event) {
        if let Some(r) = &self.replica {
            r.bus.publish(event);
        }
    }

    /// Does this replica run the chores with side effects? Always in the single-machine
    /// mode; in the replica mode, while it holds the lease.
    pub fn runs_chores(&self) -> bool {
        self.replica.as_ref().is_none_or(|r| r.lease.held())
    }

    /// Applies what another replica published (or a flush after a reconnect).
    pub async fn apply_remote(&self, event: crate::replica::Event) {
        use crate::replica::Event;
        match event {
            Event::Sessions { ids } => self.sessions.drop_local(&ids).await,
            Event::Devices { ids } => self.devices.drop_local(&ids).await,
            Event::Setting { user } => self.settings.revoke([&user]).await,
            Event::Basic => self.basic_cache.revoke_all(),
            // The holder has applied the consequences of what we may have read early.
            Event::Users => self.reload_users_as(true).await,
            Event::Phones => self.refresh_phones().await,
            Event::Flush => {
                self.sessions.flush();
                self.devices.flush();
                self.settings.revoke_all();
                self.basic_cache.revoke_all();
                self.refresh_phones().await;
            }
        }
    }

    async fn refresh_phones(&self) {
        if let Err(e) = self.phones.refresh(&self.store).await {
            tracing::error!(error = %e, "phone overrides not re-read");
        }
    }

    /// This replica has just taken the chores: what another holder may have left undone is
    /// done now (both are idempotent).
    pub async fn took_chores(&self) {
        let pending = self.pending_users.lock().ok().and_then(|mut p| p.take());
        if let Some((old, new)) = pending {
            self.users_changed(&old, &new).await;
        }
        crate::phone::check_all(self).await;
    }

    /// The routes in force now.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    /// Re-reads the configuration file. Valid: the routes (hosts, paths, upstreams,
    /// policies) take effect for new requests. Invalid: every problem is logged and the
    /// running configuration stays (SECURITY 31). Other sections need a restart.
    pub fn reload_config(&self) -> bool {
        match crate::config::load(&self.cfg.source) {
            Ok(new) => {
                self.routes
                    .store(Arc::new(RouteTable::new(new.routes.clone())));
                tracing::info!(
                    routes = new.routes.len(),
                    "configuration reloaded: routes updated"
                );
                true
            }
            Err(e) => {
                tracing::error!("configuration not reloaded, the running one stays:\n{e}");
                false
            }
        }
    }

    /// A user's effective 2-step setting: their own choice if they made one, else the users
    /// file, else the configured default. A store error is an error, never "off": callers
    /// deciding on access answer 503 (SECURITY 36).
    pub async fn two_step_of(
        &self,
        user: &User,
    ) -> Result<(bool, TwoStepMethod), crate::store::StoreError> {
        if let Some(s) = self.settings.get(&user.id).await {
            return Ok(s);
        }
        let seen = self.settings.epoch();
        let stored = self.store.setting(&user.id).await?;
        let setting = match stored.and_then(|s| TwoStepMethod::parse(&s.method).map(|m| (s.enabled, m)))
        {
            Some(s) => s,
            None => user.two_step.unwrap_or((
                self.cfg.users.default_two_step,
                self.cfg.users.default_method,
            )),
        };
        self.settings.admit(user.id.clone(), setting, seen).await;
        Ok(setting)
    }

    pub async fn put_two_step(
        &self,
        user: &str,
        enabled: bool,
        method: TwoStepMethod,
    ) -> Result<(), crate::store::StoreError> {
        self.store
            .put_setting(&SettingRecord {
                user_id: user.to_owned(),
                enabled,
                method: method.as_str().to_owned(),
                updated: crate::time::now(),
            })
            .await?;
        self.settings.revoke([&user.to_owned()]).await;
        self.publish_revocation(crate::replica::Event::Setting {
            user: user.to_owned(),
        })
        .await
    }

    /// The Basic-credentials cache key for an ID and password: salted per process, so the
    /// digests in memory are no password oracle.
    pub fn basic_key(&self, id: &str, password: &str) -> [u8; 32] {
        crate::secret::digest(&[&self.basic_salt, id.as_bytes(), password.as_bytes()])
    }

    /// The user behind an ID, if they exist and may log in.
    pub fn active_user(&self, id: &str) -> Option<Arc<User>> {
        if self.unrevoked.lock().map_or(true, |u| u.contains_key(id)) {
            return None;
        }
        self.users
            .get(id)
            .filter(|u| !u.disabled)
            .map(|u| self.phones.apply(u))
    }

    /// Runs the periodic chores: users-file reload, purging expired sessions and counters.
    pub fn spawn_background(self: &Arc<Self>) {
        crate::replica::start(self);
        let app = self.clone();
        tokio::spawn(async move {
            // Phones marked gone in the users file while nidan was stopped (in the replica
            // mode, the lease holder does it when it takes the chores).
            if app.replica.is_none() {
                crate::phone::check_all(&app).await;
            }
            let mut tick = tokio::time::interval(app.cfg.users.reload_interval);
            let mut rounds: u64 = 0;
            let mut config_seen = modified(&app.cfg.source);
            loop {
                tick.tick().await;
                rounds += 1;
                app.retry_revocations().await;
                app.reload_users().await;
                let now_seen = modified(&app.cfg.source);
                if now_seen != config_seen {
                    config_seen = now_seen;
                    app.reload_config();
                }
                if !app.runs_chores() {
                    continue;
                }
                // The audit trail stays bounded (SECURITY 39): cheap indexed deletes.
                app.audit.flush_suppressed().await;
                app.audit.purge(&app.cfg.audit, crate::time::now()).await;
                if rounds.is_multiple_of(30) {
                    let now = crate::time::now();
                    let _ = app.sessions.purge(now).await;
                    let _ = app.store.purge_failures(now - 3_600).await;
                }
            }
        });
    }

    /// Re-reads the users file if it changed. Every replica knows the new users at once;
    /// the consequences (revocations, phone-gone handling and its mail) are applied by the
    /// chores holder only, which then tells the others to reload too.
    async fn reload_users(&self) {
        self.reload_users_as(false).await;
    }

    /// `confirmed`: the chores holder says it has applied the consequences of the file as
    /// it read it, so what this replica kept pending is done. The reload and the pending
    /// record change under one lock, so a confirmation cannot be overtaken by a reload of
    /// the same change on the timer.
    async fn reload_users_as(&self, confirmed: bool) {
        let chores = self.runs_chores();
        let reloaded = {
            let mut pending = match self.pending_users.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let r = self.users.reload_if_changed();
            if let Ok(Some((old, new))) = &r
                && !chores
            {
                let first = pending.take().map_or(old.clone(), |(first, _)| first);
                *pending = Some((first, new.clone()));
            }
            if confirmed {
                *pending = None;
            }
            r
        };
        match reloaded {
            Ok(None) => {}
            Ok(Some((old, new))) => {
                tracing::info!(users = new.len(), "users file reloaded");
                // 2-step defaults and password hashes may have changed for anyone.
                self.settings.revoke_all();
                self.basic_cache.revoke_all();
                if chores {
                    self.users_changed(&old, &new).await;
                    self.publish(crate::replica::Event::Users);
                }
            }
            Err(e) => tracing::error!("users file not reloaded, keeping the previous one:\n{e}"),
        }
    }

    /// The consequences of a users-file change (chores holder only).
    async fn users_changed(
        &self,
        old: &std::collections::HashMap<String, Arc<User>>,
        new: &std::collections::HashMap<String, Arc<User>>,
    ) {
        for (id, user) in new.iter() {
            let was_enabled = old.get(id).is_some_and(|u| !u.disabled);
            let password_changed = old
                .get(id)
                .is_some_and(|u| u.password_hash != user.password_hash);
            if (user.disabled && was_enabled) || password_changed {
                let why = if user.disabled {
                    "account_disabled"
                } else {
                    "password_changed"
                };
                // A store error leaves the user refused and the revocation retried.
                let _ = self.revoke_everything(id, why, "").await;
            }
        }
        for id in old.keys() {
            if !new.contains_key(id) {
                let _ = self.revoke_everything(id, "account_removed", "").await;
            }
        }
        crate::phone::after_reload(self, old, new).await;
    }

    /// Ends all sessions and revokes all trusted devices of a user (SECURITY 15).
    /// Returns whether every revocation went through; when a store error stopped one, the
    /// user is refused on this replica and the revocation is retried every tick.
    pub async fn revoke_everything(&self, user: &str, why: &str, ip: &str) -> bool {
        self.basic_cache.revoke_all();
        let sessions = self.sessions.end_user(user).await;
        let devices = self.devices.revoke_all(user).await;
        // App passwords stand in for the password: they go with it (not with a 2-step change).
        let tokens = if matches!(
            why,
            "password_changed" | "account_disabled" | "account_removed"
        ) {
            self.store.revoke_user_tokens(user).await
        } else {
            Ok(0)
        };
        let (Ok(sessions), Ok(devices), Ok(tokens)) = (sessions, devices, tokens) else {
            tracing::error!(
                user,
                reason = why,
                "revocation interrupted by a store error: the user is refused until it is retried"
            );
            if let Ok(mut u) = self.unrevoked.lock() {
                u.insert(user.to_owned(), why.to_owned());
            }
            return false;
        };
        // After the durable writes: the other replicas drop their Basic credentials too.
        if self
            .publish_revocation(crate::replica::Event::Basic)
            .await
            .is_err()
        {
            if let Ok(mut u) = self.unrevoked.lock() {
                u.insert(user.to_owned(), why.to_owned());
            }
            return false;
        }
        self.audit
            .record(
                "credentials_revoked",
                user,
                ip,
                serde_json::json!({"reason": why, "sessions": sessions, "devices": devices, "tokens": tokens}),
            )
            .await;
        if let Ok(mut u) = self.unrevoked.lock() {
            u.remove(user);
        }
        true
    }

    /// Retries the revocations a store error interrupted.
    async fn retry_revocations(&self) {
        let pending: Vec<(String, String)> = match self.unrevoked.lock() {
            Ok(u) => u.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return,
        };
        for (user, why) in pending {
            if self.revoke_everything(&user, &why, "").await {
                tracing::info!(user = %user, "interrupted revocation completed");
            }
        }
    }
}

/// A verified Basic credential: whose, and against which password hash (a digest of it).
#[derive(Clone)]
pub struct BasicEntry {
    pub user_id: String,
    pub hash: [u8; 32],
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Kept for `explain` and `portal::pages` until their owners switch to
/// [`TwoStepMethod::as_str`] (issue 23); nothing else uses it.
pub fn method_str(m: TwoStepMethod) -> &'static str {
    m.as_str()
}

/// Kept for `explain` and `portal::pages` until their owners switch to
/// [`TwoStepMethod::parse`] (issue 23); nothing else uses it.
pub fn method_from_str(s: &str) -> Option<TwoStepMethod> {
    TwoStepMethod::parse(s)
}
