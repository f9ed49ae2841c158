//! Phone contract changes: an operator marks a user's phone `gone` (users file or admin
//! API). When the user's second step depended on the phone (SMS, or the app on it), 2-step
//! is turned off — or switched to email with `users.on_phone_loss: switch_to_email` — the
//! app enrollment and all trusted devices and sessions are revoked, the audit trail
//! records it, and the contact address gets a notice (the seed's behaviour).
//!
//! Admin-API changes are stored (`phone_overrides`) and applied over the users file by
//! `Accounts::active_user`, so they survive a restart; a later edit of that user's phone in
//! the users file replaces them. This module holds the vocabulary and the overrides; what a
//! change does to the account is `accounts::phone`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::{Store, StoreError};
use crate::users::{PhoneStatus, User};
use arc_swap::ArcSwap;

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

    pub(crate) fn set(&self, id: &str, value: Option<(PhoneStatus, Option<String>)>) {
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
