//! Accounts: the user as the gateway sees him. The directory look-up (with admin-API phone
//! changes applied over it), the effective 2-step setting, phone status changes
//! ([`phone`]), revoking everything a user holds (with its retries), the consequences of a
//! users-file change ([`credentials`]: applied exactly once, by whichever replica reads it
//! first), and notices mailed to the user.
//!
//! Built once by `App` with its collaborators; the edges and the login call its methods.

mod credentials;
mod directory;
pub mod new_password;
pub mod password;

pub(crate) use credentials::revocation_events;
mod phone;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::audit::Audit;
use crate::cache::{BasicCache, SafeCache};
use crate::config::{Config, Language, TwoStepMethod};
use crate::notify::{Channel, Message, Notifier};
use crate::phone::PhoneOverrides;
use crate::replica::{Event, Replica};
use crate::session::Sessions;
use crate::session::device::Devices;
use crate::store::{SettingRecord, Store, StoreError};
use crate::users::{Directory, DirectoryError, User, UserMap};

/// What accounts are built with.
pub struct Parts {
    pub cfg: Arc<Config>,
    pub users: Directory,
    pub phones: PhoneOverrides,
    pub store: Store,
    pub sessions: Arc<Sessions>,
    pub devices: Arc<Devices>,
    pub audit: Audit,
    pub notifier: Arc<Notifier>,
    pub basic_cache: Arc<BasicCache>,
    pub replica: Option<Arc<Replica>>,
}

pub struct Accounts {
    cfg: Arc<Config>,
    pub users: Directory,
    /// Phone changes made through the admin API, applied over the users file.
    pub phones: PhoneOverrides,
    /// Users' effective 2-step settings, read through on every decision that needs them.
    settings: SafeCache<String, (bool, TwoStepMethod)>,
    store: Store,
    sessions: Arc<Sessions>,
    devices: Arc<Devices>,
    audit: Audit,
    notifier: Arc<Notifier>,
    /// Dropped whole on every revocation (SECURITY 37).
    basic_cache: Arc<BasicCache>,
    replica: Option<Arc<Replica>>,
    /// Users whose credential change (users file) a store error interrupted, or found the
    /// store holding a digest this replica did not expect, with the digest to change from
    /// (`None`: the stored one): refused here and tried again every tick.
    unapplied: Mutex<HashMap<String, Option<String>>>,
    /// Users whose revocation a store error interrupted, with its reason: refused here
    /// (no session, login or credential of theirs counts) and retried every tick until it
    /// went through (SECURITY 15, 36).
    unrevoked: Mutex<HashMap<String, String>>,
}

impl Accounts {
    pub fn new(p: Parts) -> Self {
        let settings = SafeCache::new(
            moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(600))
                .build(),
        );
        let settings = match &p.replica {
            Some(r) => settings.gated_by(r.health.clone()),
            None => settings,
        };
        Self {
            cfg: p.cfg,
            users: p.users,
            phones: p.phones,
            settings,
            store: p.store,
            sessions: p.sessions,
            devices: p.devices,
            audit: p.audit,
            notifier: p.notifier,
            basic_cache: p.basic_cache,
            replica: p.replica,
            unapplied: Mutex::new(HashMap::new()),
            unrevoked: Mutex::new(HashMap::new()),
        }
    }

    /// The user behind an ID, if they exist and may log in. An error when the directory
    /// could not be asked: callers deciding on access answer 503 (SECURITY 36).
    pub async fn active_user(&self, id: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        if self.unrevoked.lock().map_or(true, |u| u.contains_key(id))
            || self.unapplied.lock().map_or(true, |u| u.contains_key(id))
        {
            return Ok(None);
        }
        Ok(self
            .users
            .get(id)
            .await?
            .filter(|u| !u.disabled)
            .map(|u| self.phones.apply(u)))
    }

    /// A user's effective 2-step setting: their own choice if they made one, else the users
    /// file, else the configured default. A store error is an error, never "off": callers
    /// deciding on access answer 503 (SECURITY 36).
    pub async fn two_step(&self, user: &User) -> Result<(bool, TwoStepMethod), StoreError> {
        if let Some(s) = self.settings.get(&user.id).await {
            return Ok(s);
        }
        let seen = self.settings.begin_fill()?;
        let stored = self.store.setting(&user.id).await?;
        let setting =
            match stored.and_then(|s| TwoStepMethod::parse(&s.method).map(|m| (s.enabled, m))) {
                Some(s) => s,
                None => user.two_step.unwrap_or((
                    self.cfg.users.default_two_step,
                    self.cfg.users.default_method,
                )),
            };
        self.settings.admit(user.id.clone(), setting, seen).await;
        Ok(setting)
    }

    pub async fn set_two_step(
        &self,
        user: &str,
        enabled: bool,
        method: TwoStepMethod,
    ) -> Result<(), StoreError> {
        self.store
            .put_setting(&SettingRecord {
                user_id: user.to_owned(),
                enabled,
                method: method.as_str().to_owned(),
                updated: crate::time::now(),
            })
            .await?;
        self.settings.revoke([&user.to_owned()]).await;
        self.publish_revocation(Event::Setting {
            user: user.to_owned(),
        })
        .await
    }

    /// Tells the other replicas of a revocation whose durable write is done, through the
    /// revocation log and the bus; returns once none of them lets a cached entry decide
    /// against it (`replica::announce`; replica mode, nothing otherwise).
    pub async fn publish_revocation(&self, event: Event) -> Result<(), StoreError> {
        if let Some(r) = &self.replica {
            crate::replica::announce(&self.store, &r.bus, event).await?;
        }
        Ok(())
    }

    /// Publishes an event that revokes nothing (a reload, phone changes) for the other
    /// replicas, without waiting (replica mode; nothing otherwise).
    pub fn publish(&self, event: Event) {
        if let Some(r) = &self.replica {
            r.bus.publish(event);
        }
    }

    /// Does this replica run the chores with side effects? Always in the single-machine
    /// mode; in the replica mode, while it holds the lease.
    pub fn runs_chores(&self) -> bool {
        self.replica.as_ref().is_none_or(|r| r.lease.held())
    }

    /// Another replica changed a user's 2-step setting.
    pub async fn forget_setting(&self, user: &String) {
        self.settings.revoke([user]).await;
    }

    /// Drops every cached setting (a flush, or the users file changed).
    pub fn forget_settings(&self) {
        self.settings.revoke_all();
    }

    pub async fn refresh_phones(&self) {
        if let Err(e) = self.phones.refresh(&self.store).await {
            tracing::error!(error = %e, "phone overrides not re-read");
        }
    }

    /// This replica has just taken the chores: phones marked gone in the users file while
    /// 2-step still depends on them are handled now (idempotent).
    pub async fn took_chores(&self) {
        self.check_all_phones().await;
    }

    /// Re-reads the users file if it changed, and applies what changed — on every replica:
    /// credential changes and phone changes are compare-and-sets in the store, so the one
    /// replica that writes a change applies its consequences, once, whoever holds the
    /// chores (see [`credentials`]). Other directories refresh what they keep.
    pub async fn reload_users(&self) {
        match self.users.refresh().await {
            Ok(None) => {}
            Ok(Some((old, new))) => {
                tracing::info!(users = new.len(), "users file reloaded");
                // 2-step defaults and password hashes may have changed for anyone.
                self.settings.revoke_all();
                self.basic_cache.revoke_all();
                self.credentials_changed(&old, &new).await;
                self.phones_after_reload(&old, &new).await;
                // A million entries are freed off the runtime's threads.
                tokio::task::spawn_blocking(move || drop((old, new)));
            }
            Err(e) => tracing::error!("users file not reloaded, keeping the previous one:\n{e}"),
        }
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
            self.refuse(user, why);
            return false;
        };
        // After the durable writes: the other replicas drop their Basic credentials too.
        if self.publish_revocation(Event::Basic).await.is_err() {
            self.refuse(user, why);
            return false;
        }
        self.audit
            .record(
                crate::audit::Event::CredentialsRevoked,
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

    fn refuse(&self, user: &str, why: &str) {
        if let Ok(mut u) = self.unrevoked.lock() {
            u.insert(user.to_owned(), why.to_owned());
        }
    }

    /// Retries the revocations a store error interrupted.
    pub async fn retry_revocations(&self) {
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

    /// Mails a notice to the user's contact address, if they have one (in the background:
    /// a slow mail server does not hold the answer up).
    pub fn notify(
        &self,
        user: &User,
        lang: Language,
        make: impl FnOnce(Language, &str) -> (String, String),
    ) {
        let Some(to) = user.email.clone() else {
            return;
        };
        let (subject, body) = make(lang, self.cfg.portal.site_name());
        // Every notice says when it happened, in the portal's zone (as pages without
        // JavaScript show times).
        let zone = self.cfg.portal.time_zone.unwrap_or(match lang {
            Language::Ja => chrono_tz::Tz::Asia__Tokyo,
            Language::En => chrono_tz::Tz::UTC,
        });
        let when = crate::time::display_in(crate::time::now(), zone);
        let body = crate::i18n::messages::stamped(lang, &body, &when);
        let msg = Message {
            channel: Channel::Email,
            user: user.id.clone(),
            to,
            code: None,
            subject,
            body,
        };
        let notifier = self.notifier.clone();
        tokio::spawn(async move {
            if let Err(e) = notifier.send(&msg).await {
                tracing::warn!(error = %e, user = %msg.user, "could not send a notice");
            }
        });
    }
}
