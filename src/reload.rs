//! Reloading the configuration file while serving (`SIGHUP`, or an edit seen by the chores):
//! everything that can be checked is checked before anything is swapped, so a bad file or
//! an unreadable certificate changes nothing. What a reload applies: the routes, the TLS
//! certificate and key (new handshakes), the trusted-device signing keys (which also sign
//! the identity assertions), the notifiers (SMTP, SMS gateway, push, outbox), the risk
//! signals, weights and threshold. What it cannot apply is named in the log and keeps its
//! running value until a restart or `nidan serve --upgrade` (see `config::diff`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::auth::Authenticator;
use crate::certs::Certificates;
use crate::config::{self, Config};
use crate::login::service::Login;
use crate::notify::{Notifier, Transports};
use crate::proxy::route::RouteTable;
use crate::session::device::Devices;
use crate::session::token::KeyRing;

/// What a reload swaps, and the configuration the process started with.
pub struct Reloader {
    /// The configuration read at start: what a reload cannot change stays as it says.
    started: Arc<Config>,
    routes: Arc<ArcSwap<RouteTable>>,
    certs: Option<Arc<Certificates>>,
    devices: Arc<Devices>,
    auth: Arc<Authenticator>,
    notifier: Arc<Notifier>,
    login: Arc<Login>,
    /// The hash of the file in force and when it was loaded (Unix time).
    live: Mutex<(String, i64)>,
    /// The watched files (the configuration, the TLS certificate and key) as last seen.
    seen: Mutex<Fingerprint>,
}

/// Modification time and size of each watched file.
type Fingerprint = Vec<(std::path::PathBuf, Option<(std::time::SystemTime, u64)>)>;

fn fingerprint(cfg: &Config) -> Fingerprint {
    let mut files = vec![cfg.source.clone()];
    if let Some(tls) = &cfg.server.tls {
        files.push(tls.cert.clone());
        files.push(tls.key.clone());
    }
    files
        .into_iter()
        .map(|f| {
            let meta = stat(&f);
            (f, meta)
        })
        .collect()
}

fn stat(file: &Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(file).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The configuration in force: the SHA-256 of its file and when it was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub hash: String,
    pub loaded: i64,
}

impl Reloader {
    pub fn new(
        started: Arc<Config>,
        routes: Arc<ArcSwap<RouteTable>>,
        certs: Option<Arc<Certificates>>,
        devices: Arc<Devices>,
        auth: Arc<Authenticator>,
        notifier: Arc<Notifier>,
        login: Arc<Login>,
    ) -> Self {
        let hash = std::fs::read(&started.source)
            .map(|b| config::diff::hash(&b))
            .unwrap_or_default();
        let now = crate::time::now();
        crate::metrics::config_loaded(&hash, now);
        let seen = Mutex::new(fingerprint(&started));
        Self {
            started,
            routes,
            certs,
            devices,
            auth,
            notifier,
            login,
            live: Mutex::new((hash, now)),
            seen,
        }
    }

    /// The configuration in force.
    pub fn live(&self) -> Live {
        let (hash, loaded) = self
            .live
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        Live { hash, loaded }
    }

    /// [`Self::reload`] when the configuration file, or the TLS certificate or key it names,
    /// changed since the last look (the chores' file watch). A refused reload is not tried
    /// again until one of them changes again (a certificate written before its key is
    /// refused, then applied once the key follows).
    pub fn reload_if_changed(&self) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        let now: Fingerprint = seen.iter().map(|(f, _)| (f.clone(), stat(f))).collect();
        if now == *seen {
            return false;
        }
        *seen = now;
        drop(seen);
        self.reload()
    }

    /// Reads the file again and applies what can be applied; `false` (and nothing
    /// changed) when the file or a file it names is not valid.
    pub fn reload(&self) -> bool {
        let ok = self.try_reload(&self.started.source);
        crate::metrics::config_reload(ok);
        ok
    }

    fn try_reload(&self, source: &Path) -> bool {
        let text = match std::fs::read(source) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(
                    file = %source.display(),
                    error = %e,
                    "configuration not reloaded, the running one stays: the file cannot be read"
                );
                return false;
            }
        };
        let Ok(utf8) = std::str::from_utf8(&text) else {
            tracing::error!(
                file = %source.display(),
                "configuration not reloaded, the running one stays: the file is not UTF-8 text"
            );
            return false;
        };
        let new = match config::load_str(utf8, source) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("configuration not reloaded, the running one stays:\n{e}");
                return false;
            }
        };
        // Checked before anything is swapped.
        let cert = match (&self.certs, &new.server.tls) {
            (Some(_), Some(tls)) => match crate::certs::load(&tls.cert, &tls.key) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(
                        "configuration not reloaded, the running one stays:\n{}: server.tls: {e}\n  fix: give a PEM certificate chain and the private key that belongs to it",
                        source.display()
                    );
                    return false;
                }
            },
            _ => None,
        };
        let transports = match Transports::new(&new.notifiers) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(
                    "configuration not reloaded, the running one stays:\n{}: notifiers: {e}",
                    source.display()
                );
                return false;
            }
        };
        let changes = config::diff::diff(&self.started, &new);
        let restart = config::diff::needs_restart(&changes);
        // Applied: each part is swapped whole; a request keeps the snapshot it started with.
        let table = RouteTable::serving(&new);
        table.keep_health_of(&self.routes.load());
        self.routes.store(Arc::new(table));
        let mut applied = vec!["routes"];
        if let (Some(certs), Some(cert)) = (&self.certs, cert)
            && !certs.serves(&cert)
        {
            certs.replace(cert);
            applied.push("server.tls certificate");
        }
        let keys = &new.trusted_devices.signing_keys;
        self.devices.set_keys(KeyRing::new(keys));
        if let Some(a) = &self.auth.assertions {
            a.set_keys(keys);
        }
        applied.push("trusted_devices.signing_keys");
        self.notifier.replace(transports);
        applied.push("notifiers");
        self.login.set_risk(new.risk.clone());
        applied.push("risk");
        let hash = config::diff::hash(&text);
        let now = crate::time::now();
        crate::metrics::config_loaded(&hash, now);
        if let Ok(mut live) = self.live.lock() {
            *live = (hash.clone(), now);
        }
        if let Ok(mut seen) = self.seen.lock() {
            *seen = fingerprint(&new);
        }
        tracing::info!(
            hash = %hash,
            routes = new.routes.len(),
            applied = %applied.join(", "),
            "configuration reloaded"
        );
        if !restart.is_empty() {
            tracing::warn!(
                changed = %restart.join(", "),
                "configuration reloaded, but these settings changed and a reload cannot apply them: the running values stay until a restart or `nidan serve --upgrade`"
            );
        }
        true
    }
}
