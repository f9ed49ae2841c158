//! The login's own state, in one service: flows, send budgets, the failure limiter, the
//! password hasher, approvals, passkey challenges, decoys and the key codes are MACed
//! with, and the collaborators it is built with (accounts, sessions, devices, the store,
//! the audit trail, the notifier). `App` builds it and hands it to the edges; the
//! short-lived parts sit in `crate::state` (in process, or in Redis for replicas).

mod budget;
mod decoy;
mod passkey;
pub mod password_change;
mod risk;

use std::sync::Arc;
use std::time::Duration;

use crate::accounts::Accounts;
use crate::audit::Audit;
use crate::config::Config;
use crate::login::approval::Approvals;
use crate::login::budget::Budgets;
use crate::login::code::CodeKeys;
use crate::login::decoy::Decoys;
use crate::login::error::LoginError;
use crate::login::flow::Flow;
use crate::login::limits::FailureLimiter;
use crate::login::passkey::Challenges;
use crate::login::password::Hasher;
use crate::notify::Notifier;
use crate::session::Sessions;
use crate::session::device::Devices;
use crate::state::Ephemeral;
use crate::store::Store;

/// What the login is built with besides its own state.
pub struct Parts {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub accounts: Arc<Accounts>,
    pub sessions: Arc<Sessions>,
    pub devices: Arc<Devices>,
    pub audit: Audit,
    pub notifier: Arc<Notifier>,
    pub state: Arc<dyn Ephemeral>,
    pub hasher: Arc<Hasher>,
}

pub struct Login {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub accounts: Arc<Accounts>,
    pub sessions: Arc<Sessions>,
    pub devices: Arc<Devices>,
    pub audit: Audit,
    pub notifier: Arc<Notifier>,
    pub state: Arc<dyn Ephemeral>,
    pub flows: Flows,
    pub hasher: Arc<Hasher>,
    pub failures: FailureLimiter,
    /// Send budgets and per-network limits on anonymous work (login::budget).
    pub budgets: Budgets,
    /// Decoy flows for unknown IDs (login::decoy): per process (a typical user of the
    /// users file, and how long a send takes here), nothing to share.
    pub decoys: Decoys,
    pub approvals: Approvals,
    /// Outstanding passkey (WebAuthn) challenges.
    pub passkeys: Challenges,
    /// Security codes are kept as an HMAC under these keys.
    pub codes: CodeKeys,
    /// Risk signals, weights and threshold: swapped whole by a configuration reload.
    risk: arc_swap::ArcSwap<crate::config::RiskSettings>,
}

impl Login {
    /// The risk settings in force (`risk`); a login reads them once.
    pub fn risk(&self) -> Arc<crate::config::RiskSettings> {
        self.risk.load_full()
    }

    /// From the next login on, `risk` scores (a configuration reload).
    pub fn set_risk(&self, risk: crate::config::RiskSettings) {
        self.risk.store(Arc::new(risk));
    }

    pub fn new(p: Parts) -> Self {
        let Parts {
            cfg,
            store,
            accounts,
            sessions,
            devices,
            audit,
            notifier,
            state,
            hasher,
        } = p;
        Self {
            flows: Flows {
                state: state.clone(),
                lifetime: cfg.portal.flow_lifetime,
            },
            hasher,
            failures: FailureLimiter::new(store.clone(), state.clone(), &cfg.login_limits),
            budgets: Budgets::new(state.clone(), &cfg.security_code, &cfg.login_limits),
            decoys: Decoys::new(),
            approvals: Approvals::new(cfg.app_approval.clone(), store.clone(), state.clone()),
            passkeys: Challenges::new(state.clone()),
            codes: CodeKeys::new(&cfg.trusted_devices.signing_keys),
            risk: arc_swap::ArcSwap::from_pointee(cfg.risk.clone()),
            state,
            cfg,
            store,
            accounts,
            sessions,
            devices,
            audit,
            notifier,
        }
    }
}

impl AsRef<Login> for Login {
    fn as_ref(&self) -> &Login {
        self
    }
}

impl AsRef<Accounts> for Login {
    fn as_ref(&self) -> &Accounts {
        &self.accounts
    }
}

/// Login flows, serialised into the short-lived state. Two requests (on one replica or
/// two) that change one flow cannot both win: each save names the version it read.
pub struct Flows {
    state: Arc<dyn Ephemeral>,
    lifetime: Duration,
}

/// A flow and the version it was read at.
pub struct Loaded {
    pub version: u64,
    pub flow: Flow,
}

fn busy(e: &crate::state::StateError) -> LoginError {
    tracing::error!(error = %e, "a login flow could not be read or written");
    LoginError::Busy
}

impl Flows {
    pub async fn create(&self, f: &Flow) -> Result<(), LoginError> {
        let bytes = serde_json::to_vec(f).map_err(|_| LoginError::Internal)?;
        match self.state.flow_create(&f.id, &bytes, self.lifetime).await {
            Ok(true) => Ok(()),
            // 128 random bits collided: never in practice.
            Ok(false) => Err(LoginError::Internal),
            Err(e) => Err(busy(&e)),
        }
    }

    pub async fn load(&self, id: &str) -> Result<Loaded, LoginError> {
        if id.len() > 64 {
            return Err(LoginError::FlowNotFound);
        }
        let v = self
            .state
            .flow_load(id)
            .await
            .map_err(|e| busy(&e))?
            .ok_or(LoginError::FlowNotFound)?;
        // A flow this version cannot read was written by another version of nidan (a rolling
        // upgrade): that login starts over, as an expired one does; never a 500 or a 503.
        let flow = serde_json::from_slice(&v.data).map_err(|e| {
            tracing::info!(error = %e, "a login flow in another version's format: it starts over");
            LoginError::FlowNotFound
        })?;
        Ok(Loaded {
            version: v.version,
            flow,
        })
    }

    /// Writes `f` back if nobody changed it since `version`; false if someone did.
    pub async fn save(&self, version: u64, f: &Flow) -> Result<bool, LoginError> {
        let bytes = serde_json::to_vec(f).map_err(|_| LoginError::Internal)?;
        self.state
            .flow_cas(&f.id, version, &bytes)
            .await
            .map_err(|e| busy(&e))
    }
}
