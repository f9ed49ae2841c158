//! Decoys as `Login` methods: an unknown ID's flow made to look like a typical user's.

use std::time::Duration;

use crate::config::{Route, TwoStepMethod};
use crate::login::decoy::Typical;
use crate::login::flow::{Blocked, Flow, Step, Why};
use crate::login::service::Login;
use crate::notify::Channel;

impl Login {
    fn typical(&self) -> Typical {
        self.decoys.typical(
            || self.accounts.users.sample(),
            self.cfg.users.default_two_step,
        )
    }

    /// Would a typical user of this directory be asked for a code at the ID step (2-step on)?
    pub fn typical_two_step(&self) -> bool {
        self.typical().two_step
    }

    /// Turns the flow of an unknown ID into a decoy where a real user would be asked for a code.
    /// `asked` is why a real user would be: the route's policy or the risk engine.
    pub fn apply_decoy(&self, f: &mut Flow, target: Option<&Route>, asked: Option<Why>) {
        let Some(why) = asked else {
            return;
        };
        let allowed = target.map_or(&[][..], |r| r.allowed_methods.as_slice());
        let allows = |m: TwoStepMethod| allowed.is_empty() || allowed.contains(&m);
        let typical = self.typical();
        f.decoy = true;
        f.plan.step = Step::PasswordAndCode;
        f.plan.second_step = Some(why);
        if allows(TwoStepMethod::Sms) {
            f.plan.send_to = Some((Channel::Sms, self.decoy_phone(&f.user_id)));
            f.plan.email_alternative = typical.email_alternative && allows(TwoStepMethod::Email);
        } else if allows(TwoStepMethod::Email) {
            f.plan.send_to = Some((Channel::Email, self.decoy_email(&f.user_id, &typical)));
            f.plan.email_alternative = false;
        } else {
            f.plan.send_to = None;
            f.plan.blocked = Some(Blocked::NoAllowedChannel);
        }
    }

    /// Where "send by email instead" goes for a decoy: a made-up address, stable per ID.
    pub fn decoy_email_of(&self, f: &Flow) -> String {
        self.decoy_email(&f.user_id, &self.typical())
    }

    /// Waits about as long as a real send takes, so the answer's timing matches.
    pub async fn pretend_send(&self) {
        let micros = self.decoys.send_micros();
        if micros > 0 {
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
    }

    fn decoy_digest(&self, what: &[u8], id: &str) -> [u8; 32] {
        let key = self
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
    fn decoy_phone(&self, id: &str) -> String {
        let d = self.decoy_digest(b"decoy-phone", id);
        let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 10_000;
        format!("+00 00-0000-{n:04}")
    }

    /// A made-up email address for an unknown ID: a letter like the ID's first one (users'
    /// addresses often start like their ID) at the directory's most common domain.
    fn decoy_email(&self, id: &str, typical: &Typical) -> String {
        let first = id
            .chars()
            .find(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .unwrap_or_else(|| {
                let d = self.decoy_digest(b"decoy-email", id);
                char::from(b'a' + d[0] % 26)
            });
        format!("{first}x@{}", typical.email_domain)
    }
}
