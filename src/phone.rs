//! Phone contract changes: an operator marks a user's phone `gone` (users file or admin
//! API). When the user's second step depended on the phone (SMS, or the app on it), 2-step
//! is turned off — or switched to email with `users.on_phone_loss: switch_to_email` — the
//! app enrollment and all trusted devices and sessions are revoked, the audit trail
//! records it, and the contact address gets a notice (the seed's behaviour).
//!
//! Admin-API changes are stored (`phone_overrides`) and applied over the users file by
//! `App::active_user`, so they survive a restart; a later edit of that user's phone in the
//! users file replaces them.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::json;

use crate::app::App;
use crate::config::{OnPhoneLoss, TwoStepMethod};
use crate::store::{PhoneOverrideRecord, Store, StoreError};
use crate::users::{PhoneStatus, User};

/// Where a phone change came from (recorded in the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    UsersFile,
    AdminApi,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::UsersFile => "users_file",
            Source::AdminApi => "admin_api",
        }
    }
}

/// What a phone-gone change did to the user's 2-step setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The second step did not depend on the phone: nothing changed.
    None,
    Disabled,
    SwitchedToEmail,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Disabled => "two_step_disabled",
            Action::SwitchedToEmail => "switched_to_email",
        }
    }
}

pub fn status_str(s: PhoneStatus) -> &'static str {
    match s {
        PhoneStatus::Active => "active",
        PhoneStatus::Kept => "kept",
        PhoneStatus::Gone => "gone",
    }
}

pub fn status_from_str(s: &str) -> Option<PhoneStatus> {
    match s {
        "active" => Some(PhoneStatus::Active),
        "kept" => Some(PhoneStatus::Kept),
        "gone" => Some(PhoneStatus::Gone),
        _ => None,
    }
}

/// A phone number as the users file accepts it: 5 to 20 digits, optional `+`, spaces, `-`
/// and parentheses.
pub fn phone_ok(p: &str) -> bool {
    let digits = p.bytes().filter(u8::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && p.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-' | b'(' | b')'))
}

/// Admin-API phone changes in force, by user ID.
pub struct PhoneOverrides {
    map: ArcSwap<HashMap<String, (PhoneStatus, Option<String>)>>,
}

impl PhoneOverrides {
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let map = store
            .phone_overrides()
            .await?
            .into_iter()
            .filter_map(|r| Some((r.user_id, (status_from_str(&r.status)?, r.phone))))
            .collect();
        Ok(Self {
            map: ArcSwap::from_pointee(map),
        })
    }

    /// Reads the overrides again (another replica changed them).
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let fresh = Self::load(store).await?;
        self.map.store(fresh.map.load_full());
        Ok(())
    }

    /// The user with any override applied.
    pub fn apply(&self, user: Arc<User>) -> Arc<User> {
        match self.map.load().get(&user.id) {
            Some((status, phone)) => {
                let mut u = (*user).clone();
                u.phone_status = *status;
                if let Some(p) = phone {
                    u.phone = Some(p.clone());
                }
                Arc::new(u)
            }
            None => user,
        }
    }

    fn set(&self, id: &str, value: Option<(PhoneStatus, Option<String>)>) {
        let mut next = (**self.map.load()).clone();
        match value {
            Some(v) => next.insert(id.to_owned(), v),
            None => next.remove(id),
        };
        self.map.store(Arc::new(next));
    }

    pub fn contains(&self, id: &str) -> bool {
        self.map.load().contains_key(id)
    }
}

/// Stores an admin-API phone change and applies it; returns the updated user. A change to
/// `gone` runs [`phone_gone`].
pub async fn admin_change(
    app: &App,
    id: &str,
    status: PhoneStatus,
    phone: Option<String>,
    ip: &str,
) -> Result<(Arc<User>, Action), StoreError> {
    let before = app.active_user(id);
    app.store
        .put_phone_override(&PhoneOverrideRecord {
            user_id: id.to_owned(),
            status: status_str(status).to_owned(),
            phone: phone.clone(),
            updated: crate::time::now(),
        })
        .await?;
    app.phones.set(id, Some((status, phone.clone())));
    app.publish(crate::replica::Event::Phones);
    let Some(user) = app.active_user(id) else {
        return Err(StoreError::Db(sqlx::Error::RowNotFound));
    };
    app.audit
        .record(
            "phone_changed",
            id,
            ip,
            json!({
                "source": Source::AdminApi.as_str(),
                "status": status_str(status),
                "was": before.as_ref().map(|u| status_str(u.phone_status)),
                "phone": user.phone.as_deref().map(crate::notify::mask_phone),
            }),
        )
        .await;
    let was_gone = before.is_some_and(|u| u.phone_status == PhoneStatus::Gone);
    let action = if status == PhoneStatus::Gone && !was_gone {
        phone_gone(app, &user, Source::AdminApi, ip).await
    } else {
        Action::None
    };
    Ok((user, action))
}

/// The users file changed a user's phone: the file is newer than any admin-API change.
pub async fn file_changed(app: &App, id: &str) {
    if app.phones.contains(id) {
        if let Err(e) = app.store.delete_phone_override(id).await {
            tracing::error!(error = %e, "could not drop a phone override");
        }
        app.phones.set(id, None);
        app.publish(crate::replica::Event::Phones);
    }
}

/// The user's phone is gone. Idempotent: once 2-step no longer depends on the phone,
/// calling it again changes nothing.
pub async fn phone_gone(app: &App, user: &User, source: Source, ip: &str) -> Action {
    let (enabled, method) = match app.two_step_of(user).await {
        Ok(s) => s,
        Err(e) => {
            // Nothing is loosened on an error: 2-step stays as it is (SMS is not attempted
            // to a gone phone anyway); the next start or change runs this again.
            tracing::error!(error = %e, user = %user.id, "phone gone: the 2-step setting is unreadable, left unchanged");
            return Action::None;
        }
    };
    let apps = revoke_app_enrollment(app, &user.id).await;
    let depends = enabled && matches!(method, TwoStepMethod::Sms | TwoStepMethod::App);
    if !depends {
        app.audit
            .record(
                "phone_gone",
                &user.id,
                ip,
                json!({"source": source.as_str(), "action": Action::None.as_str(), "apps_revoked": apps}),
            )
            .await;
        return Action::None;
    }
    let action = match app.cfg.users.on_phone_loss {
        OnPhoneLoss::SwitchToEmail if user.email.is_some() => Action::SwitchedToEmail,
        _ => Action::Disabled,
    };
    let stored = match action {
        Action::SwitchedToEmail => app.put_two_step(&user.id, true, TwoStepMethod::Email).await,
        _ => app.put_two_step(&user.id, false, method).await,
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, user = %user.id, "could not change the 2-step setting after a phone loss");
    }
    app.audit
        .record(
            "phone_gone",
            &user.id,
            ip,
            json!({
                "source": source.as_str(),
                "action": action.as_str(),
                "was_method": method.as_str(),
                "apps_revoked": apps,
            }),
        )
        .await;
    // A store error leaves the user refused and the revocation retried (see App).
    let _ = app.revoke_everything(&user.id, "phone_gone", ip).await;
    let lang = app.cfg.portal.default_language;
    crate::login::notify_user(app, user, lang, |lang, site| match action {
        Action::SwitchedToEmail => {
            crate::notify::messages::two_step_switched_to_email_phone_gone(lang, site)
        }
        _ => crate::notify::messages::two_step_disabled_phone_gone(lang, site),
    });
    action
}

/// Revokes the user's phone-app enrollments: the app lived on the phone that is gone.
/// (The hook for the phone-app flow: its enrollments are rows of `app_enrollments`, read
/// by `login::approval` on every use, so revoking the rows is enough.)
async fn revoke_app_enrollment(app: &App, user: &str) -> u64 {
    match app.store.revoke_user_enrollments(user).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "could not revoke the app enrollment");
            0
        }
    }
}

/// After a users-file reload: a user's phone or phone status changed in the file drops any
/// admin-API override for them; a change to `gone` runs [`phone_gone`].
pub async fn after_reload(
    app: &App,
    old: &HashMap<String, Arc<User>>,
    new: &HashMap<String, Arc<User>>,
) {
    for (id, user) in new {
        let Some(before) = old.get(id) else {
            continue;
        };
        if before.phone == user.phone && before.phone_status == user.phone_status {
            continue;
        }
        file_changed(app, id).await;
        app.audit
            .record(
                "phone_changed",
                id,
                "",
                json!({
                    "source": Source::UsersFile.as_str(),
                    "status": status_str(user.phone_status),
                    "was": status_str(before.phone_status),
                    "phone": user.phone.as_deref().map(crate::notify::mask_phone),
                }),
            )
            .await;
        if user.phone_status == PhoneStatus::Gone
            && before.phone_status != PhoneStatus::Gone
            && let Some(current) = app.active_user(id)
        {
            phone_gone(app, &current, Source::UsersFile, "").await;
        }
    }
}

/// At start: users whose file entry says `gone` while 2-step still depends on the phone
/// (the file changed while nidan was stopped) get the same treatment.
pub async fn check_all(app: &App) {
    for user in app.users.all() {
        let Some(user) = app.active_user(&user.id) else {
            continue;
        };
        if user.phone_status == PhoneStatus::Gone {
            let Ok((enabled, method)) = app.two_step_of(&user).await else {
                tracing::error!(user = %user.id, "phone gone: the 2-step setting is unreadable, left unchanged");
                continue;
            };
            if enabled && matches!(method, TwoStepMethod::Sms | TwoStepMethod::App) {
                phone_gone(app, &user, Source::UsersFile, "").await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_numbers() {
        for s in [PhoneStatus::Active, PhoneStatus::Kept, PhoneStatus::Gone] {
            assert_eq!(status_from_str(status_str(s)), Some(s));
        }
        assert_eq!(status_from_str("lost"), None);
        assert!(phone_ok("+81 90-1234-5678"));
        assert!(!phone_ok("call me"));
        assert!(!phone_ok("123"));
    }
}
