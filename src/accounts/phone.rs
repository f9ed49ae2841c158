//! What a phone status change does to an account: a phone marked `gone` (users file or
//! admin API) turns 2-step off or over to email, revokes the app enrollment, devices and
//! sessions, and mails a notice (the seed's behaviour).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use super::Accounts;
use crate::config::{OnPhoneLoss, TwoStepMethod};
use crate::phone::{Action, Source, status_str};
use crate::store::{PhoneOverrideRecord, StoreError};
use crate::users::{PhoneStatus, User};

impl Accounts {
    /// Stores an admin-API phone change and applies it; returns the updated user. A change to
    /// `gone` runs [`phone_gone`].
    pub async fn phone_admin_change(
        &self,
        id: &str,
        status: PhoneStatus,
        phone: Option<String>,
        ip: &str,
    ) -> Result<(Arc<User>, Action), StoreError> {
        let before = self.active_user(id).await.map_err(directory_down)?;
        self.store
            .put_phone_override(&PhoneOverrideRecord {
                user_id: id.to_owned(),
                status: status_str(status).to_owned(),
                phone: phone.clone(),
                updated: crate::time::now(),
            })
            .await?;
        self.phones.set(id, Some((status, phone.clone())));
        self.publish(crate::replica::Event::Phones);
        let Some(user) = self.active_user(id).await.map_err(directory_down)? else {
            return Err(StoreError::Db(sqlx::Error::RowNotFound));
        };
        self.audit
            .record(
                crate::audit::Event::PhoneChanged,
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
            self.phone_gone(&user, Source::AdminApi, ip).await
        } else {
            Action::None
        };
        Ok((user, action))
    }

    /// The users file changed a user's phone: the file is newer than any admin-API change.
    pub(super) async fn phone_file_changed(&self, id: &str) {
        if self.phones.contains(id) {
            if let Err(e) = self.store.delete_phone_override(id).await {
                tracing::error!(error = %e, "could not drop a phone override");
            }
            self.phones.set(id, None);
            self.publish(crate::replica::Event::Phones);
        }
    }

    /// The user's phone is gone. Idempotent: once 2-step no longer depends on the phone,
    /// calling it again changes nothing.
    pub async fn phone_gone(&self, user: &User, source: Source, ip: &str) -> Action {
        let (enabled, method) = match self.two_step(user).await {
            Ok(s) => s,
            Err(e) => {
                // Nothing is loosened on an error: 2-step stays as it is (SMS is not attempted
                // to a gone phone anyway); the next start or change runs this again.
                tracing::error!(error = %e, user = %user.id, "phone gone: the 2-step setting is unreadable, left unchanged");
                return Action::None;
            }
        };
        let apps = self.revoke_app_enrollment(&user.id).await;
        let depends = enabled && matches!(method, TwoStepMethod::Sms | TwoStepMethod::App);
        if !depends {
            self.audit
                .record(
                    crate::audit::Event::PhoneGone,
                    &user.id,
                    ip,
                    json!({"source": source.as_str(), "action": Action::None.as_str(), "apps_revoked": apps}),
                )
                .await;
            return Action::None;
        }
        let action = match self.cfg.users.on_phone_loss {
            OnPhoneLoss::SwitchToEmail if user.email.is_some() => Action::SwitchedToEmail,
            _ => Action::Disabled,
        };
        let stored = match action {
            Action::SwitchedToEmail => {
                self.set_two_step(&user.id, true, TwoStepMethod::Email)
                    .await
            }
            _ => self.set_two_step(&user.id, false, method).await,
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, user = %user.id, "could not change the 2-step setting after a phone loss");
        }
        self.audit
            .record(
                crate::audit::Event::PhoneGone,
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
        // A store error leaves the user refused and the revocation retried (see `revoke_everything`).
        let _ = self.revoke_everything(&user.id, "phone_gone", ip).await;
        let lang = self.cfg.portal.default_language;
        self.notify(user, lang, |lang, site| match action {
            Action::SwitchedToEmail => {
                crate::notify::messages::two_step_switched_to_email_phone_gone(lang, site)
            }
            _ => crate::notify::messages::two_step_disabled_phone_gone(lang, site),
        });
        action
    }

    /// Revokes the user's phone-self enrollments: the self lived on the phone that is gone.
    /// (The hook for the phone-self flow: its enrollments are rows of `app_enrollments`, read
    /// by `login::approval` on every use, so revoking the rows is enough.)
    async fn revoke_app_enrollment(&self, user: &str) -> u64 {
        match self.store.revoke_user_enrollments(user).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "could not revoke the self enrollment");
                0
            }
        }
    }

    /// After a users-file reload: a user's phone or phone status changed in the file drops any
    /// admin-API override for them; a change to `gone` runs [`phone_gone`]. Every replica
    /// reads the change; the one whose write of the new phone state to the store changed it
    /// handles it (so one audit record, one mail). When the store cannot say, the chores
    /// holder handles it as before (and a gone phone is checked again when the chores move).
    pub(super) async fn phones_after_reload(
        &self,
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
            let ours = match self
                .store
                .put_phone_state(id, &user.phone_state(), crate::time::now())
                .await
            {
                Ok(changed) => changed,
                Err(e) => {
                    tracing::error!(error = %e, user = %id, "phone change not recorded");
                    self.runs_chores()
                }
            };
            if !ours {
                continue;
            }
            self.phone_file_changed(id).await;
            self.audit
                .record(
                    crate::audit::Event::PhoneChanged,
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
                && let Ok(Some(current)) = self.active_user(id).await
            {
                self.phone_gone(&current, Source::UsersFile, "").await;
            }
        }
    }

    /// At start: users whose file entry says `gone` while 2-step still depends on the phone
    /// (the file changed while nidan was stopped) get the same treatment.
    pub async fn check_all_phones(&self) {
        // Only a directory held in memory: a database directory handles `gone` when the
        // user is written.
        let Some(all) = self.users.loaded() else {
            return;
        };
        for user in all.values() {
            let Ok(Some(user)) = self.active_user(&user.id).await else {
                continue;
            };
            if user.phone_status == PhoneStatus::Gone {
                let Ok((enabled, method)) = self.two_step(&user).await else {
                    tracing::error!(user = %user.id, "phone gone: the 2-step setting is unreadable, left unchanged");
                    continue;
                };
                if enabled && matches!(method, TwoStepMethod::Sms | TwoStepMethod::App) {
                    self.phone_gone(&user, Source::UsersFile, "").await;
                }
            }
        }
    }
}

/// A directory that could not answer, as the store error the admin API answers 503 for.
fn directory_down(e: crate::users::DirectoryError) -> StoreError {
    StoreError::Connect(e.to_string())
}
