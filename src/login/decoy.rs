//! Decoys for unknown IDs (SECURITY 4, 41): wherever a real user would be asked for a
//! security code (a `two_factor` route, a risk step-up), an unknown ID gets a flow that
//! answers like a typical user's in every field and follow-up call (made-up but stable
//! masked destinations, the email alternative, resend and its cooldown, the time a send
//! takes) while nothing is sent and no shared budget is spent.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Route, TwoStepMethod};
use crate::login::flow::{Blocked, Flow, Step, Why};
use crate::login::service::Login;
use crate::notify::Channel;
use crate::users::{PhoneStatus, User};

/// How a typical user of this directory looks from outside, recomputed now and then.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Typical {
    /// Most users reachable by SMS also have an email (the "send by email" link shows).
    email_alternative: bool,
    /// The most common email domain.
    email_domain: String,
    /// Most users have 2-step on: an unknown ID is asked for a code like them, or the ID
    /// step would tell 2-step users from unknown IDs on every `login` route.
    two_step: bool,
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

    fn typical(&self, login: &Login) -> Typical {
        if let Ok(guard) = self.typical.lock()
            && let Some((at, t)) = guard.as_ref()
            && at.elapsed() < Duration::from_secs(60)
        {
            return t.clone();
        }
        let t = typical_of(
            &login.accounts.users.all(),
            login.cfg.users.default_two_step,
        );
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

/// Would a typical user of this directory be asked for a code at the ID step (2-step on)?
pub fn typical_two_step(login: &Login) -> bool {
    login.decoys.typical(login).two_step
}

/// Turns the flow of an unknown ID into a decoy where a real user would be asked for a code.
/// `asked` is why a real user would be: the route's policy or the risk engine.
pub fn apply(login: &Login, f: &mut Flow, target: Option<&Route>, asked: Option<Why>) {
    let Some(why) = asked else {
        return;
    };
    let allowed = target.map_or(&[][..], |r| r.allowed_methods.as_slice());
    let allows = |m: TwoStepMethod| allowed.is_empty() || allowed.contains(&m);
    let typical = login.decoys.typical(login);
    f.decoy = true;
    f.plan.step = Step::PasswordAndCode;
    f.plan.second_step = Some(why);
    if allows(TwoStepMethod::Sms) {
        f.plan.send_to = Some((Channel::Sms, phone(login, &f.user_id)));
        f.plan.email_alternative = typical.email_alternative && allows(TwoStepMethod::Email);
    } else if allows(TwoStepMethod::Email) {
        f.plan.send_to = Some((Channel::Email, email(login, &f.user_id, &typical)));
        f.plan.email_alternative = false;
    } else {
        f.plan.send_to = None;
        f.plan.blocked = Some(Blocked::NoAllowedChannel);
    }
}

/// Where "send by email instead" goes for a decoy: a made-up address, stable per ID.
pub fn email_of(login: &Login, f: &Flow) -> String {
    email(login, &f.user_id, &login.decoys.typical(login))
}

/// Waits about as long as a real send takes, so the answer's timing matches.
pub async fn pretend_send(login: &Login) {
    let micros = login.decoys.send_micros.load(Ordering::Relaxed);
    if micros > 0 {
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }
}

fn digest(login: &Login, what: &[u8], id: &str) -> [u8; 32] {
    let key = login
        .cfg
        .trusted_devices
        .signing_keys
        .first()
        .map(|k| k.secret.expose())
        .unwrap_or_default();
    crate::secret::digest(&[what, key, id.as_bytes()])
}

/// A made-up phone number for an unknown ID: stable for that ID (its masked form does not
/// change between attempts), derived from the server's signing key.
fn phone(login: &Login, id: &str) -> String {
    let d = digest(login, b"decoy-phone", id);
    let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 10_000;
    format!("+00 00-0000-{n:04}")
}

/// A made-up email address for an unknown ID: a letter like the ID's first one (users'
/// addresses often start like their ID) at the directory's most common domain.
fn email(login: &Login, id: &str, typical: &Typical) -> String {
    let first = id
        .chars()
        .find(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_else(|| {
            let d = digest(login, b"decoy-email", id);
            char::from(b'a' + d[0] % 26)
        });
    format!("{first}x@{}", typical.email_domain)
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
