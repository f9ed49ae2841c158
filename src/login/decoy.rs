//! Decoys for unknown IDs (SECURITY 4, 41): wherever a real user would be asked for a
//! security code (a `two_factor` route, a risk step-up), an unknown ID gets a flow that
//! answers like a typical user's in every field and follow-up call (made-up but stable
//! masked destinations, the email alternative, resend and its cooldown, the time a send
//! takes) while nothing is sent and no shared budget is spent.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::users::{PhoneStatus, User};

/// How a typical user of this directory looks from outside, recomputed now and then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Typical {
    /// Most users reachable by SMS also have an email (the "send by email" link shows).
    pub(crate) email_alternative: bool,
    /// The most common email domain.
    pub(crate) email_domain: String,
    /// Most users have 2-step on: an unknown ID is asked for a code like them, or the ID
    /// step would tell 2-step users from unknown IDs on every `login` route.
    pub(crate) two_step: bool,
}

/// The decoys' shared state: the typical user, and how long a real send takes.
pub struct Decoys {
    typical: Mutex<Option<(Instant, Typical)>>,
    /// Moving average of a real send's duration, in microseconds.
    send_micros: AtomicU64,
}

impl Default for Decoys {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoys {
    pub fn new() -> Self {
        Self {
            typical: Mutex::new(None),
            send_micros: AtomicU64::new(0),
        }
    }

    /// Notes how long a real send took (a decoy "send" takes about as long).
    pub fn sent_in(&self, took: Duration) {
        let new = u64::try_from(took.as_micros())
            .unwrap_or(u64::MAX)
            .min(5_000_000);
        let old = self.send_micros.load(Ordering::Relaxed);
        let avg = if old == 0 { new } else { (old * 7 + new) / 8 };
        self.send_micros.store(avg, Ordering::Relaxed);
    }

    /// The moving average of a real send's duration, in microseconds (0: none yet).
    pub(crate) fn send_micros(&self) -> u64 {
        self.send_micros.load(Ordering::Relaxed)
    }

    /// The directory's typical user (recomputed from `users` at most once a minute).
    pub(crate) fn typical(
        &self,
        users: impl FnOnce() -> Vec<std::sync::Arc<User>>,
        default_two_step: bool,
    ) -> Typical {
        if let Ok(guard) = self.typical.lock()
            && let Some((at, t)) = guard.as_ref()
            && at.elapsed() < Duration::from_secs(60)
        {
            return t.clone();
        }
        let t = typical_of(&users(), default_two_step);
        if let Ok(mut guard) = self.typical.lock() {
            *guard = Some((Instant::now(), t.clone()));
        }
        t
    }
}

fn typical_of(users: &[std::sync::Arc<User>], default_two_step: bool) -> Typical {
    let active = users.iter().filter(|u| !u.disabled);
    let (mut users_on, mut users_all) = (0usize, 0usize);
    let mut by_sms = 0usize;
    let mut with_email = 0usize;
    let mut domains: std::collections::BTreeMap<&str, usize> = Default::default();
    for u in active {
        users_all += 1;
        if u.two_step.map_or(default_two_step, |(on, _)| on) {
            users_on += 1;
        }
        if u.phone.is_some() && u.phone_status == PhoneStatus::Active {
            by_sms += 1;
            if u.email.is_some() {
                with_email += 1;
            }
        }
        if let Some((_, d)) = u.email.as_deref().and_then(|e| e.rsplit_once('@')) {
            *domains.entry(d).or_default() += 1;
        }
    }
    let email_domain = domains
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map_or("example.com", |(d, _)| d)
        .to_owned();
    Typical {
        email_alternative: with_email * 2 >= by_sms.max(1),
        email_domain,
        two_step: users_on * 2 > users_all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, phone: bool, email: Option<&str>) -> std::sync::Arc<User> {
        std::sync::Arc::new(User {
            id: id.into(),
            password_hash: String::new(),
            name: id.into(),
            email: email.map(str::to_owned),
            phone: phone.then(|| "+81 90 0000 0000".to_owned()),
            phone_status: PhoneStatus::Active,
            groups: vec![],
            disabled: false,
            two_step: None,
            identity: Default::default(),
        })
    }

    #[test]
    fn the_typical_user_follows_the_directory() {
        let t = typical_of(
            &[
                user("a", true, Some("a@corp.example")),
                user("b", true, Some("b@corp.example")),
                user("c", true, None),
                user("d", false, Some("d@mail.example")),
            ],
            true,
        );
        assert!(t.two_step);
        assert!(t.email_alternative);
        assert_eq!(t.email_domain, "corp.example");
        let t = typical_of(&[user("a", true, None), user("b", true, None)], false);
        assert!(!t.two_step);
        assert!(!t.email_alternative);
        assert_eq!(t.email_domain, "example.com");
    }
}
