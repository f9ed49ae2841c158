//! Security codes: generated from a CSPRNG, kept only as a salted hash bound to one login
//! flow, single use, with an expiry and a small budget of wrong tries (SECURITY 1).

use std::time::{Duration, Instant};

use crate::notify::Channel;
use crate::secret;

/// A code that was sent and not yet used.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    hash: [u8; 32],
    salt: String,
    issued: Instant,
    lifetime: Duration,
    wrong: u32,
    max_attempts: u32,
    pub channel: Channel,
    /// Masked address the code went to, e.g. `***-****-5678`.
    pub destination: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Right,
    /// Wrong; this many tries are left for this code.
    Wrong {
        left: u32,
    },
    /// Too many wrong tries: the code is void and a new one is needed.
    Exhausted,
    Expired,
}

impl IssuedCode {
    /// Makes a new code for `flow_id`; returns it with its plain text (to send, never store).
    pub fn generate(
        flow_id: &str,
        length: usize,
        lifetime: Duration,
        max_attempts: u32,
        channel: Channel,
        destination: String,
        now: Instant,
    ) -> (Self, String) {
        let plain = secret::random_digits(length);
        let salt = secret::random_token(16);
        let hash = secret::digest(&[flow_id.as_bytes(), salt.as_bytes(), plain.as_bytes()]);
        (
            Self {
                hash,
                salt,
                issued: now,
                lifetime,
                wrong: 0,
                max_attempts,
                channel,
                destination,
            },
            plain,
        )
    }

    pub fn issued(&self) -> Instant {
        self.issued
    }

    pub fn is_live(&self, now: Instant) -> bool {
        now.duration_since(self.issued) < self.lifetime && self.wrong < self.max_attempts
    }

    /// Checks an entered code for `flow_id`. A wrong entry uses up one try.
    pub fn check(&mut self, flow_id: &str, entered: &str, now: Instant) -> CodeCheck {
        if now.duration_since(self.issued) >= self.lifetime {
            return CodeCheck::Expired;
        }
        if self.wrong >= self.max_attempts {
            return CodeCheck::Exhausted;
        }
        let entered = entered.trim();
        let candidate =
            secret::digest(&[flow_id.as_bytes(), self.salt.as_bytes(), entered.as_bytes()]);
        if secret::equal(&candidate, &self.hash) {
            return CodeCheck::Right;
        }
        self.wrong += 1;
        if self.wrong >= self.max_attempts {
            CodeCheck::Exhausted
        } else {
            CodeCheck::Wrong {
                left: self.max_attempts - self.wrong,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(now: Instant) -> (IssuedCode, String) {
        IssuedCode::generate(
            "flow-a",
            6,
            Duration::from_secs(300),
            3,
            Channel::Sms,
            "***".into(),
            now,
        )
    }

    #[test]
    fn right_code_in_its_own_flow_only() {
        let now = Instant::now();
        let (mut c, plain) = issue(now);
        assert_eq!(plain.len(), 6);
        assert!(plain.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(c.check("flow-b", &plain, now), CodeCheck::Wrong { left: 2 });
        assert_eq!(c.check("flow-a", &plain, now), CodeCheck::Right);
    }

    #[test]
    fn wrong_tries_exhaust_the_code() {
        let now = Instant::now();
        let (mut c, plain) = issue(now);
        let wrong = if plain == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert_eq!(c.check("flow-a", wrong, now), CodeCheck::Wrong { left: 2 });
        assert_eq!(c.check("flow-a", wrong, now), CodeCheck::Wrong { left: 1 });
        assert_eq!(c.check("flow-a", wrong, now), CodeCheck::Exhausted);
        assert_eq!(c.check("flow-a", &plain, now), CodeCheck::Exhausted);
        assert!(!c.is_live(now));
    }

    #[test]
    fn codes_expire() {
        let now = Instant::now();
        let (mut c, plain) = issue(now);
        let later = now + Duration::from_secs(300);
        assert_eq!(c.check("flow-a", &plain, later), CodeCheck::Expired);
    }
}
