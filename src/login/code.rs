//! Security codes: generated from a CSPRNG, kept only as an HMAC-SHA256 under a server
//! key and bound to one login flow (or enrollment), single use, with an expiry and a small
//! budget of wrong tries (SECURITY 1). A plain or salted hash of a 6-digit code would be
//! reversed by trying 10^6 codes by anyone who reads the shared store; the HMAC needs the
//! key, which never leaves the gateways.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::notify::Channel;
use crate::secret;

pub use crate::secret::hmac_sha256;

/// The keys codes are MACed with, one per trusted-device signing key (by its `kid`), so a
/// key rotation on some replicas first does not void codes issued on others.
#[derive(Clone, Default)]
pub struct CodeKeys {
    current: Option<String>,
    keys: HashMap<String, [u8; 32]>,
}

impl CodeKeys {
    pub fn new(signing_keys: &[crate::config::SigningKey]) -> Self {
        let keys = signing_keys
            .iter()
            .map(|k| {
                (
                    k.id.clone(),
                    // A key of its own for codes, derived from the signing key.
                    hmac_sha256(k.secret.expose(), &[b"nidan security code v1"]),
                )
            })
            .collect();
        Self {
            current: signing_keys.first().map(|k| k.id.clone()),
            keys,
        }
    }

    fn mac(&self, kid: &str, binding: &str, code: &str) -> Option<[u8; 32]> {
        let key = self.keys.get(kid)?;
        Some(hmac_sha256(
            key,
            &[
                &(binding.len() as u64).to_be_bytes(),
                binding.as_bytes(),
                code.as_bytes(),
            ],
        ))
    }
}

/// A code that was sent and not yet used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedCode {
    /// Hex HMAC of the flow ID and the code.
    mac: String,
    /// The signing key the HMAC key was derived from.
    kid: String,
    /// Unix milliseconds.
    issued: i64,
    lifetime_ms: i64,
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

/// Wall-clock milliseconds: codes and flows move between replicas.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl IssuedCode {
    /// Makes a new code for `binding` (the flow or enrollment ID); returns it with its
    /// plain text (to send, never store). `None` when no signing key is configured.
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        keys: &CodeKeys,
        binding: &str,
        length: usize,
        lifetime: Duration,
        max_attempts: u32,
        channel: Channel,
        destination: String,
        now_ms: i64,
    ) -> Option<(Self, String)> {
        let plain = secret::random_digits(length);
        let kid = keys.current.clone()?;
        let mac = keys.mac(&kid, binding, &plain)?;
        Some((
            Self {
                mac: hex::encode(mac),
                kid,
                issued: now_ms,
                lifetime_ms: i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 2),
                wrong: 0,
                max_attempts,
                channel,
                destination,
            },
            plain,
        ))
    }

    pub fn issued_ms(&self) -> i64 {
        self.issued
    }

    pub fn expires_ms(&self) -> i64 {
        self.issued.saturating_add(self.lifetime_ms)
    }

    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms() && self.wrong < self.max_attempts
    }

    /// Checks an entered code for `binding`. A wrong entry uses up one try.
    pub fn check(
        &mut self,
        keys: &CodeKeys,
        binding: &str,
        entered: &str,
        now_ms: i64,
    ) -> CodeCheck {
        if now_ms >= self.expires_ms() {
            return CodeCheck::Expired;
        }
        if self.wrong >= self.max_attempts {
            return CodeCheck::Exhausted;
        }
        let entered = entered.trim();
        let right = match (
            keys.mac(&self.kid, binding, entered),
            hex::decode(&self.mac),
        ) {
            (Some(candidate), Ok(stored)) => secret::equal(&candidate, &stored),
            // The key it was made with is gone (rotated out): it can no longer be right.
            _ => false,
        };
        if right {
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
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Secret, SigningKey};

    fn keys() -> CodeKeys {
        CodeKeys::new(&[SigningKey {
            id: "k1".into(),
            secret: Secret(b"0123456789abcdef0123456789abcdef".to_vec()),
        }])
    }

    fn issue(now: i64) -> (IssuedCode, String) {
        IssuedCode::generate(
            &keys(),
            "flow-a",
            6,
            Duration::from_secs(300),
            3,
            Channel::Sms,
            "***".into(),
            now,
        )
        .unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn right_code_in_its_own_flow_only() {
        let now = 1_000;
        let (mut c, plain) = issue(now);
        assert_eq!(plain.len(), 6);
        assert!(plain.bytes().all(|b| b.is_ascii_digit()));
        assert!(!c.mac.contains(&plain));
        assert_eq!(
            c.check(&keys(), "flow-b", &plain, now),
            CodeCheck::Wrong { left: 2 }
        );
        assert_eq!(c.check(&keys(), "flow-a", &plain, now), CodeCheck::Right);
        // Without the server key the stored form proves nothing.
        assert_eq!(
            c.check(&CodeKeys::default(), "flow-a", &plain, now),
            CodeCheck::Wrong { left: 1 }
        );
    }

    #[test]
    fn the_stored_form_round_trips() {
        let (c, plain) = issue(5);
        let json = serde_json::to_string(&c).unwrap();
        let mut back: IssuedCode = serde_json::from_str(&json).unwrap();
        assert_eq!(back.check(&keys(), "flow-a", &plain, 6), CodeCheck::Right);
    }

    #[test]
    fn wrong_tries_exhaust_the_code() {
        let now = 0;
        let (mut c, plain) = issue(now);
        let wrong = if plain == "000000" {
            "000001"
        } else {
            "000000"
        };
        let k = keys();
        assert_eq!(
            c.check(&k, "flow-a", wrong, now),
            CodeCheck::Wrong { left: 2 }
        );
        assert_eq!(
            c.check(&k, "flow-a", wrong, now),
            CodeCheck::Wrong { left: 1 }
        );
        assert_eq!(c.check(&k, "flow-a", wrong, now), CodeCheck::Exhausted);
        assert_eq!(c.check(&k, "flow-a", &plain, now), CodeCheck::Exhausted);
        assert!(!c.is_live(now));
    }

    #[test]
    fn codes_expire() {
        let (mut c, plain) = issue(0);
        assert_eq!(
            c.check(&keys(), "flow-a", &plain, 300_000),
            CodeCheck::Expired
        );
    }
}
