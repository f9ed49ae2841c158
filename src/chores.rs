//! The periodic chores and what a replica does with what it hears: retried revocations,
//! the users-file reload and its consequences (on every replica: each change is applied
//! once, by the replica whose compare-and-set in the store wrote it), the configuration
//! reload, and (on the one replica holding the lease, or the only machine) the audit
//! trail's bounds and the purges (the revocation log's too). Also what the bus and the
//! revocation log deliver to: revocations made elsewhere drop this replica's cached
//! entries (twice is harmless: both bring every revocation).

use std::sync::Arc;

use crate::accounts::Accounts;
use crate::audit::Audit;
use crate::cache::BasicCache;
use crate::config::Config;
use crate::replica::{Event, Replica};
use crate::session::Sessions;
use crate::session::device::Devices;
use crate::store::Store;

/// Re-reads the configuration file (the routes); true when it was valid.
pub type ReloadConfig = Box<dyn Fn() -> bool + Send + Sync>;

pub struct Chores {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub accounts: Arc<Accounts>,
    pub sessions: Arc<Sessions>,
    pub devices: Arc<Devices>,
    pub basic_cache: Arc<BasicCache>,
    pub audit: Audit,
    pub replica: Option<Arc<Replica>>,
    pub reload_config: ReloadConfig,
}

impl Chores {
    /// Starts the replica machinery (replica mode) and the periodic loop.
    pub fn spawn(self: &Arc<Self>) {
        if let Some(r) = &self.replica {
            let listener: Arc<dyn crate::replica::Listener> = self.clone();
            crate::replica::start(r, self.store.clone(), Arc::downgrade(&listener));
        }
        let chores = self.clone();
        tokio::spawn(async move {
            // Phones marked gone in the users file while nidan was stopped (in the replica
            // mode, the lease holder does it when it takes the chores).
            if chores.replica.is_none() {
                chores.accounts.check_all_phones().await;
            }
            // Credentials changed in the users file while no replica ran (or whose change
            // was never applied): applied now, against the digests the store keeps.
            let mut reconciled = chores.accounts.reconcile_credentials().await;
            let mut tick = tokio::time::interval(chores.cfg.users.reload_interval);
            let mut rounds: u64 = 0;
            let mut config_seen = modified(&chores.cfg.source);
            loop {
                tick.tick().await;
                rounds += 1;
                chores.accounts.retry_revocations().await;
                // Credential changes left undone before this tick are tried again after its
                // reload: one this replica's older users file could not apply is then found
                // done rather than undone.
                let due = chores.accounts.unapplied_credentials();
                chores.accounts.reload_users().await;
                if !reconciled {
                    reconciled = chores.accounts.reconcile_credentials().await;
                }
                chores.accounts.retry_credentials(due).await;
                let now_seen = modified(&chores.cfg.source);
                if now_seen != config_seen {
                    config_seen = now_seen;
                    (chores.reload_config)();
                }
                if !chores.accounts.runs_chores() {
                    continue;
                }
                chores.bounded(rounds).await;
            }
        });
    }

    /// The chores with side effects (lease holder only).
    async fn bounded(&self, rounds: u64) {
        // The audit trail stays bounded (SECURITY 39): cheap indexed deletes.
        self.audit.flush_suppressed().await;
        self.audit.purge(&self.cfg.audit, crate::time::now()).await;
        if rounds.is_multiple_of(30) {
            let now = crate::time::now();
            let _ = self.sessions.purge(now).await;
            let _ = self.store.purge_failures(now - 3_600).await;
            let keep = i64::try_from(crate::replica::LOG_KEEP.as_secs()).unwrap_or(600);
            let _ = self.store.purge_revocations(now - keep).await;
        }
    }
}

#[async_trait::async_trait]
impl crate::replica::Listener for Chores {
    async fn apply_remote(&self, event: Event) {
        match event {
            Event::Sessions { ids } => self.sessions.drop_local(&ids).await,
            Event::Devices { ids } => self.devices.drop_local(&ids).await,
            Event::Setting { user } => self.accounts.forget_setting(&user).await,
            Event::Basic => self.basic_cache.revoke_all(),
            // Another replica applied a users-file change, or wrote a user of a database
            // directory: drop what is cached of users and read the file now.
            Event::Users => {
                self.accounts.users.forget(None).await;
                self.accounts.forget_settings();
                self.accounts.reload_users().await;
            }
            Event::Phones => self.accounts.refresh_phones().await,
            Event::Flush => {
                self.sessions.flush();
                self.devices.flush();
                self.accounts.forget_settings();
                self.accounts.users.forget(None).await;
                self.basic_cache.revoke_all();
                self.accounts.refresh_phones().await;
            }
        }
    }

    async fn took_chores(&self) {
        self.accounts.took_chores().await;
    }
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
