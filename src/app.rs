//! The composition root: builds the services from the configuration, each with its
//! collaborators, and hands them to the edges (the proxy, the portal, the admin API, the
//! CLI). No rule lives here; modules below the edges never import it.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::future::Cache;

use crate::accounts::Accounts;
use crate::audit::Audit;
use crate::auth::Authenticator;
use crate::cache::{BasicCache, SafeCache};
use crate::chores::Chores;
use crate::config::DirectoryKind;
use crate::config::{Config, TwoStepMethod};
use crate::login::password::Hasher;
use crate::login::service::Login;
use crate::notify::Notifier;
use crate::proxy::route::RouteTable;
use crate::reload::Reloader;
use crate::session::Sessions;
use crate::session::device::Devices;
use crate::session::token::KeyRing;
use crate::store::Store;
use crate::users::{DatabaseDirectory, Directory, FileDirectory, User};

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
    #[error("server.tls: {0}")]
    Tls(#[from] crate::certs::CertError),
    /// A graceful upgrade refused before it started (`serve --upgrade`).
    #[error("{0}")]
    Upgrade(String),
}

pub struct App {
    pub cfg: Arc<Config>,
    /// Swapped whole when the configuration file changes; a request keeps its snapshot.
    routes: Arc<ArcSwap<RouteTable>>,
    pub store: Store,
    pub sessions: Arc<Sessions>,
    pub devices: Arc<Devices>,
    /// The user as the gateway sees him: directory, 2-step setting, phone status,
    /// revocation of everything he holds.
    pub accounts: Arc<Accounts>,
    /// The login and its short-lived state (flows, budgets, failures, approvals, passkey
    /// challenges): in process, or in Redis when `storage.redis` is set.
    pub login: Arc<Login>,
    /// Who is calling and may they pass: sessions, tokens, HTTP Basic (with its cache of
    /// verified credentials) and the gate's decision, for the proxy, forward-auth and the
    /// tunnels; also the signed identity assertions.
    pub auth: Arc<Authenticator>,
    pub notifier: Arc<Notifier>,
    pub audit: Audit,
    /// Replica mode (`storage.redis`): the revocation bus, the chores lease, store health.
    pub replica: Option<Arc<crate::replica::Replica>>,
    chores: Arc<Chores>,
    /// The gateway's own TLS certificate, swapped by a reload (`server.tls`).
    pub certs: Option<Arc<crate::certs::Certificates>>,
    reloader: Arc<Reloader>,
}

impl App {
    #[allow(clippy::too_many_lines)] // the composition root: one constructor per service, read top to bottom
    pub async fn build(cfg: Config) -> Result<Arc<Self>, StartError> {
        let cfg = Arc::new(cfg);
        let store = Store::connect(&cfg.storage).await?;
        let hashers = if cfg.login_limits.max_concurrent_hashes == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            cfg.login_limits.max_concurrent_hashes
        };
        let hasher = Hasher::new(hashers, 256).map_err(|_| StartError::Hasher)?;
        let replica = match &cfg.storage.replicated {
            Some(r) => {
                // One Redis timeout for the bus and the lease as for the short-lived state.
                crate::replica::bus::set_timeout(cfg.storage.redis_timeout);
                Some(Arc::new(crate::replica::Replica::new(
                    r,
                    cfg.storage.outage_grace,
                )?))
            }
            None => None,
        };
        let users: Directory = match cfg.users.directory {
            DirectoryKind::File => Arc::new(FileDirectory::load(&cfg.users.file)?),
            DirectoryKind::Database => Arc::new(DatabaseDirectory::new(
                store.clone(),
                replica.as_ref().map(|r| r.health.clone()),
            )),
            DirectoryKind::Ldap => match &cfg.users.ldap {
                Some(l) => Arc::new(crate::users::ldap::LdapSource::new(
                    l.clone(),
                    replica.as_ref().map(|r| r.health.clone()),
                )),
                // Checked at load: `Ldap` comes with its settings.
                None => Arc::new(FileDirectory::load(&cfg.users.file)?),
            },
        };
        let audit = Audit::with_bounds(
            store.clone(),
            &cfg.audit,
            (cfg.login_limits.ipv4_prefix, cfg.login_limits.ipv6_prefix),
        );
        let state = crate::state::for_config(&cfg, Some(Arc::new(audit.clone())))?;
        let sessions = Sessions::new(
            store.clone(),
            cfg.session.idle_timeout,
            cfg.session.absolute_timeout,
        );
        let devices = Devices::new(
            store.clone(),
            KeyRing::new(&cfg.trusted_devices.signing_keys),
            cfg.trusted_devices.lifetime,
            cfg.trusted_devices.max_per_user,
        );
        let basic_cache: BasicCache = SafeCache::new(
            Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        );
        // Replica mode: revocations go on the bus, and the caches decide only while the
        // replica hears the revocation authority — given at construction.
        let (sessions, devices, basic_cache) = match &replica {
            Some(r) => (
                sessions.replicated(r.bus.clone(), r.health.clone()),
                devices.replicated(r.bus.clone(), r.health.clone()),
                basic_cache.gated_by(r.health.clone()),
            ),
            None => (sessions, devices, basic_cache),
        };
        let (sessions, devices, basic_cache) =
            (Arc::new(sessions), Arc::new(devices), Arc::new(basic_cache));
        let notifier = Arc::new(Notifier::new(&cfg.notifiers)?);
        let accounts = Arc::new(Accounts::new(crate::accounts::Parts {
            cfg: cfg.clone(),
            users,
            phones: crate::phone::PhoneOverrides::load(&store).await?,
            store: store.clone(),
            sessions: sessions.clone(),
            devices: devices.clone(),
            audit: audit.clone(),
            notifier: notifier.clone(),
            basic_cache: basic_cache.clone(),
            replica: replica.clone(),
        }));
        let login = Arc::new(Login::new(crate::login::service::Parts {
            cfg: cfg.clone(),
            store: store.clone(),
            accounts: accounts.clone(),
            sessions: sessions.clone(),
            devices: devices.clone(),
            audit: audit.clone(),
            notifier: notifier.clone(),
            state,
            hasher,
        }));
        let routes = Arc::new(ArcSwap::from_pointee(RouteTable::serving(&cfg)));
        let auth = Arc::new(Authenticator::new(crate::auth::Parts {
            cfg: cfg.clone(),
            accounts: accounts.clone(),
            sessions: sessions.clone(),
            login: login.clone(),
            store: store.clone(),
            audit: audit.clone(),
            basic_cache: basic_cache.clone(),
            assertions: cfg
                .identity_assertion
                .as_ref()
                .map(|a| crate::assertion::Assertions::new(a, &cfg.trusted_devices.signing_keys)),
        }));
        let certs = match &cfg.server.tls {
            Some(tls) => Some(Arc::new(crate::certs::Certificates::new(
                crate::certs::load(&tls.cert, &tls.key)?,
            ))),
            None => None,
        };
        let reloader = Arc::new(Reloader::new(
            cfg.clone(),
            routes.clone(),
            certs.clone(),
            devices.clone(),
            auth.clone(),
            notifier.clone(),
            login.clone(),
        ));
        let chores = Arc::new(Chores {
            cfg: cfg.clone(),
            store: store.clone(),
            accounts: accounts.clone(),
            sessions: sessions.clone(),
            devices: devices.clone(),
            basic_cache: basic_cache.clone(),
            audit: audit.clone(),
            replica: replica.clone(),
            reload_config: on_reload(reloader.clone()),
        });
        Ok(Arc::new(Self {
            routes,
            sessions,
            devices,
            accounts,
            login,
            auth,
            notifier,
            audit,
            store,
            cfg,
            replica,
            chores,
            certs,
            reloader,
        }))
    }

    /// Publishes a revocation for the other replicas (see [`Accounts::publish_revocation`]).
    pub async fn publish_revocation(
        &self,
        event: crate::replica::Event,
    ) -> Result<(), crate::store::StoreError> {
        self.accounts.publish_revocation(event).await
    }

    /// Publishes an event for the other replicas (replica mode; nothing otherwise).
    pub fn publish(&self, event: crate::replica::Event) {
        self.accounts.publish(event);
    }

    /// The routes in force now.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    /// Re-reads the configuration file and applies what a reload can (see [`Reloader`]).
    pub fn reload_config(&self) -> bool {
        self.reloader.reload()
    }

    /// The configuration in force: its file's hash and when it was loaded.
    pub fn live_config(&self) -> crate::reload::Live {
        self.reloader.live()
    }

    /// A user's effective 2-step setting (see [`Accounts::two_step`]); kept for the portal
    /// pages and the phone-app API, whose owners are rewriting them.
    pub async fn two_step_of(
        &self,
        user: &User,
    ) -> Result<(bool, TwoStepMethod), crate::store::StoreError> {
        self.accounts.two_step(user).await
    }

    /// Stores a user's 2-step choice (see [`Accounts::set_two_step`]); kept for the portal
    /// pages, whose owner is rewriting them.
    pub async fn put_two_step(
        &self,
        user: &str,
        enabled: bool,
        method: TwoStepMethod,
    ) -> Result<(), crate::store::StoreError> {
        self.accounts.set_two_step(user, enabled, method).await
    }

    /// See [`Accounts::revoke_everything`]; kept for the portal pages.
    pub async fn revoke_everything(&self, user: &str, why: &str, ip: &str) -> bool {
        self.accounts.revoke_everything(user, why, ip).await
    }

    /// The user behind an ID, if they exist and may log in (see [`Accounts::active_user`]).
    pub async fn active_user(
        &self,
        id: &str,
    ) -> Result<Option<Arc<User>>, crate::users::DirectoryError> {
        self.accounts.active_user(id).await
    }

    /// Runs the periodic chores and, in the replica mode, the bus, probe and lease.
    pub fn spawn_background(self: &Arc<Self>) {
        self.chores.spawn();
    }
}

impl AsRef<Login> for App {
    fn as_ref(&self) -> &Login {
        &self.login
    }
}

impl AsRef<Accounts> for App {
    fn as_ref(&self) -> &Accounts {
        &self.accounts
    }
}

fn on_reload(reloader: Arc<Reloader>) -> crate::chores::ReloadConfig {
    Box::new(move || reloader.reload_if_changed())
}
