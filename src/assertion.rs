//! Signed identity assertions: a short-lived EdDSA JWT about the user that the gateway adds
//! to requests it forwards (and to forward-auth answers), so a backend can verify who the
//! user is instead of trusting a header. Owns the signing keys, their rotation, the JWKS
//! that publishes them and the cache of signed tokens.
//!
//! Keys are derived, not stored: the key of rotation period `e` is Ed25519 with the seed
//! HMAC-SHA256(trusted-device signing key, "nidan identity assertion v1" ‖ e). Every replica
//! holds the same signing keys, so every replica signs with the same key and publishes the
//! same JWKS without a shared write, a race over who rotates first, or a migration; a
//! period's private key says nothing about another period's (HMAC is one-way).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::assurance::{FirstFactor, Proof};
use crate::config::{IdentityAssertion, Route, SigningKey};
use crate::secret::hmac_sha256;
use crate::users::User;

/// Clock difference between nidan and backends that the published keys allow for.
const SKEW: i64 = 60;

/// PKCS#8 v1 (RFC 8410) wrapping of a 32-byte Ed25519 seed, as `jsonwebtoken` reads it.
const PKCS8_ED25519: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("the identity assertion could not be signed")]
    Sign,
}

/// Who the assertion is about: the user, what the login proved, and when it happened
/// (`None` for HTTP Basic and API tokens, which prove themselves on every request).
pub struct Subject<'a> {
    pub user: &'a User,
    pub proof: &'a Proof,
    pub auth_time: Option<i64>,
}

/// The assertion service (`App::assertions`).
pub struct Assertions {
    header: String,
    issuer: String,
    audience: Option<String>,
    lifetime: i64,
    rotation: i64,
    /// The trusted-device signing keys: the first signs, all are published; swapped whole
    /// by a configuration reload.
    keys: arc_swap::ArcSwap<Vec<SigningKey>>,
    /// Signed tokens by a digest of everything they say but the times and `jti`, reused
    /// until shortly before they expire; bounded in bytes.
    cache: moka::sync::Cache<[u8; 32], Signed>,
    /// Reuse a token while at least this much of its lifetime is left.
    margin: i64,
}

#[derive(Clone)]
struct Signed {
    token: Arc<str>,
    exp: i64,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    groups: &'a [String],
    amr: Vec<&'static str>,
    auth_time: i64,
    iat: i64,
    exp: i64,
    jti: String,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4).max(1)
}

impl Assertions {
    pub fn new(cfg: &IdentityAssertion, keys: &[SigningKey]) -> Self {
        let lifetime = secs(cfg.lifetime);
        let margin = (lifetime / 2).min(60);
        let reuse = u64::try_from(lifetime - margin).unwrap_or(1).max(1);
        Self {
            header: cfg.header.clone(),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            lifetime,
            rotation: secs(cfg.key_rotation),
            keys: arc_swap::ArcSwap::from_pointee(keys.to_vec()),
            cache: moka::sync::Cache::builder()
                .max_capacity(32 * 1024 * 1024)
                .weigher(|_k: &[u8; 32], v: &Signed| {
                    u32::try_from(v.token.len() + 96).unwrap_or(u32::MAX)
                })
                .time_to_live(Duration::from_secs(reuse))
                .build(),
            margin,
        }
    }

    /// From now on the first of `keys` signs and all are published (a configuration
    /// reload); tokens signed before are not reused.
    pub fn set_keys(&self, keys: &[SigningKey]) {
        self.keys.store(Arc::new(keys.to_vec()));
        self.cache.invalidate_all();
    }

    /// The request header the token travels in.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The token for this subject on this route, signed now or reused from the cache.
    pub fn token(
        &self,
        route: &Route,
        s: &Subject<'_>,
        now: i64,
    ) -> Result<Arc<str>, AssertionError> {
        let aud = self.audience.as_deref().unwrap_or(&route.name);
        let amr = amr(s.proof);
        let auth_time = s
            .auth_time
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        let key = crate::secret::digest(&[
            aud.as_bytes(),
            s.user.id.as_bytes(),
            s.user.name.as_bytes(),
            s.user.email.as_deref().unwrap_or("").as_bytes(),
            s.user.groups.join("\n").as_bytes(),
            amr.join(" ").as_bytes(),
            auth_time.as_bytes(),
        ]);
        if let Some(hit) = self.cache.get(&key)
            && hit.exp - self.margin > now
        {
            return Ok(hit.token);
        }
        let exp = now + self.lifetime;
        let claims = Claims {
            iss: &self.issuer,
            aud,
            sub: &s.user.id,
            name: &s.user.name,
            email: s.user.email.as_deref().filter(|e| !e.is_empty()),
            groups: &s.user.groups,
            amr,
            auth_time: s.auth_time.unwrap_or(now),
            iat: now,
            exp,
            jti: crate::secret::random_token(16),
        };
        let keys = self.keys.load();
        let signer = keys.first().ok_or(AssertionError::Sign)?;
        let epoch = now.div_euclid(self.rotation);
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("JWT".into());
        header.kid = Some(kid(signer, epoch));
        let der = [PKCS8_ED25519.as_slice(), seed(signer, epoch).as_slice()].concat();
        let token: Arc<str> =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der))
                .map_err(|_| AssertionError::Sign)?
                .into();
        self.cache.insert(
            key,
            Signed {
                token: token.clone(),
                exp,
            },
        );
        Ok(token)
    }

    /// The JWKS (RFC 7517) at `now`: for the signing key, the current period's key, the
    /// next one (so a backend's cached copy knows it before it signs) and the previous one
    /// while a token it signed may still be valid; for the other configured keys (kept
    /// while a device key is rotated out), the current and the previous period's.
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let epoch = now.div_euclid(self.rotation);
        let previous_lives = now < epoch * self.rotation + self.lifetime + SKEW;
        let mut keys = Vec::new();
        for (i, k) in self.keys.load().iter().enumerate() {
            if previous_lives {
                keys.push(jwk(k, epoch - 1));
            }
            keys.push(jwk(k, epoch));
            if i == 0 {
                keys.push(jwk(k, epoch + 1));
            }
        }
        serde_json::json!({ "keys": keys })
    }
}

/// `amr`: the factors the login proved, in nidan's names (`password`, `token`, `passkey`;
/// `sms`, `email`, `app`, `trusted_device`), plus `mfa` (RFC 8176) when there were two.
pub fn amr(p: &Proof) -> Vec<&'static str> {
    let mut out = vec![p.first.as_str()];
    if let Some(second) = p.second
        && !out.contains(&second.as_str())
    {
        out.push(second.as_str());
    }
    if p.second.is_some() || p.first == FirstFactor::Passkey {
        out.push("mfa");
    }
    out
}

fn seed(key: &SigningKey, epoch: i64) -> [u8; 32] {
    hmac_sha256(
        key.secret.expose(),
        &[b"nidan identity assertion v1", &epoch.to_be_bytes()],
    )
}

/// The key ID: the device key's ID and the period, so a backend can tell keys apart and
/// nidan can tell which period a token claims.
fn kid(key: &SigningKey, epoch: i64) -> String {
    format!("{}.{epoch}", key.id)
}

fn jwk(key: &SigningKey, epoch: i64) -> serde_json::Value {
    let public = ed25519_dalek::SigningKey::from_bytes(&seed(key, epoch)).verifying_key();
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(public.as_bytes()),
        "kid": kid(key, epoch),
        "use": "sig",
        "alg": "EdDSA",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::assurance::{Exemption, SecondFactor};
    use crate::config::{Accept, Policy, SecondStep, Secret};
    use jsonwebtoken::{DecodingKey, Validation};

    const ROTATION: i64 = 3_600;

    fn service(keys: &[(&str, &str)]) -> Assertions {
        let cfg = IdentityAssertion {
            enabled: true,
            header: "X-Nidan-Assertion".into(),
            issuer: "https://login.example.test".into(),
            audience: None,
            lifetime: Duration::from_secs(300),
            key_rotation: Duration::from_secs(ROTATION as u64),
        };
        let keys: Vec<SigningKey> = keys
            .iter()
            .map(|(id, s)| SigningKey {
                id: (*id).into(),
                secret: Secret(s.as_bytes().to_vec()),
            })
            .collect();
        Assertions::new(&cfg, &keys)
    }

    fn route(name: &str) -> Route {
        Route {
            name: name.into(),
            hosts: vec![],
            path_prefix: "/".into(),
            upstreams: vec![],
            upstream: Default::default(),
            policy: Policy::Login,
            second_step: SecondStep::Required,
            accept: Accept {
                session: true,
                basic: false,
                token: false,
            },
            groups: vec![],
            groups_also: vec![],
            allowed_methods: vec![],
            case_sensitive: false,
            assertion: true,
        }
    }

    fn user() -> User {
        User {
            id: "hanako".into(),
            password_hash: String::new(),
            name: "Hanako Sato".into(),
            email: Some("hanako@example.com".into()),
            phone: None,
            phone_status: crate::users::PhoneStatus::Active,
            groups: vec!["staff".into(), "admins".into()],
            disabled: false,
            two_step: None,
            identity: Default::default(),
        }
    }

    fn proof(first: FirstFactor, second: Option<SecondFactor>) -> Proof {
        Proof {
            first,
            second,
            exemption: None,
            required: false,
        }
    }

    fn kids(v: &serde_json::Value) -> Vec<String> {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Verifies `token` against the JWKS the service publishes at `now`.
    fn verify(a: &Assertions, token: &str, aud: &str, now: i64) -> Option<serde_json::Value> {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(a.jwks(now)).unwrap();
        let jwk = jwks.find(&kid)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[aud]);
        v.set_issuer(&["https://login.example.test"]);
        // The claims are checked against `now` below, not against the test machine's clock.
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &v,
        )
        .ok()?;
        Some(data.claims)
    }

    #[test]
    fn amr_names_the_factors() {
        use FirstFactor::*;
        use SecondFactor as S;
        assert_eq!(amr(&proof(Password, None)), ["password"]);
        assert_eq!(amr(&proof(Token, None)), ["token"]);
        assert_eq!(
            amr(&proof(Password, Some(S::Sms))),
            ["password", "sms", "mfa"]
        );
        assert_eq!(
            amr(&proof(Password, Some(S::TrustedDevice))),
            ["password", "trusted_device", "mfa"]
        );
        assert_eq!(amr(&proof(Passkey, Some(S::Passkey))), ["passkey", "mfa"]);
        // A network exemption is no factor: it does not appear.
        let mut p = proof(Password, None);
        p.exemption = Some(Exemption::Route);
        assert_eq!(amr(&p), ["password"]);
    }

    #[test]
    fn tokens_verify_and_say_who() {
        let a = service(&[("k1", "secret-one-0123456789abcdef")]);
        let u = user();
        let p = proof(FirstFactor::Password, Some(SecondFactor::Sms));
        let now = 1_900_000_000;
        let s = Subject {
            user: &u,
            proof: &p,
            auth_time: Some(now - 100),
        };
        let t = a.token(&route("wiki"), &s, now).unwrap();
        let c = verify(&a, &t, "wiki", now).unwrap();
        assert_eq!(c["sub"], "hanako");
        assert_eq!(c["iss"], "https://login.example.test");
        assert_eq!(c["name"], "Hanako Sato");
        assert_eq!(c["email"], "hanako@example.com");
        assert_eq!(c["groups"], serde_json::json!(["staff", "admins"]));
        assert_eq!(c["amr"], serde_json::json!(["password", "sms", "mfa"]));
        assert_eq!(c["auth_time"], now - 100);
        assert_eq!(c["iat"], now);
        assert_eq!(c["exp"], now + 300);
        assert!(c["jti"].as_str().unwrap().len() >= 20);
        // Another route is another audience: not the same token.
        assert!(verify(&a, &t, "mail", now).is_none());
        let other = a.token(&route("mail"), &s, now).unwrap();
        assert_ne!(t, other);
        assert!(verify(&a, &other, "mail", now).is_some());
    }

    #[test]
    fn tokens_are_reused_until_shortly_before_they_expire() {
        let a = service(&[("k1", "secret-one-0123456789abcdef")]);
        let u = user();
        let p = proof(FirstFactor::Password, None);
        let now = 1_900_000_000;
        let s = Subject {
            user: &u,
            proof: &p,
            auth_time: Some(now),
        };
        let r = route("wiki");
        let first = a.token(&r, &s, now).unwrap();
        assert_eq!(a.token(&r, &s, now + 200).unwrap(), first);
        // Within the last minute of its life it is signed anew.
        let later = a.token(&r, &s, now + 241).unwrap();
        assert_ne!(later, first);
        // What the token says changes: a new one at once (a stepped-up login).
        let stepped = proof(FirstFactor::Password, Some(SecondFactor::Sms));
        let s2 = Subject {
            user: &u,
            proof: &stepped,
            auth_time: Some(now + 241),
        };
        assert_ne!(a.token(&r, &s2, now + 241).unwrap(), later);
    }

    #[test]
    fn keys_rotate_and_the_previous_one_lives_as_long_as_its_tokens() {
        let a = service(&[("k1", "secret-one-0123456789abcdef")]);
        let u = user();
        let p = proof(FirstFactor::Password, None);
        let s = Subject {
            user: &u,
            proof: &p,
            auth_time: None,
        };
        let start = 1_900_000_000 / ROTATION * ROTATION + ROTATION;
        let e = start / ROTATION;
        // Signed one second before the period ends, with the old key.
        let old = a.token(&route("wiki"), &s, start - 1).unwrap();
        let old_kid = jsonwebtoken::decode_header(old.as_ref())
            .unwrap()
            .kid
            .unwrap();
        assert_eq!(old_kid, format!("k1.{}", e - 1));
        // Ahead of time, the next key is already published.
        assert!(kids(&a.jwks(start - 1)).contains(&format!("k1.{e}")));
        // After the boundary a new key signs; the old one is still published while the old
        // token may be used, and its token still verifies.
        let new = a.token(&route("other"), &s, start + 10).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(new.as_ref())
                .unwrap()
                .kid
                .unwrap(),
            format!("k1.{e}")
        );
        assert!(kids(&a.jwks(start + 299)).contains(&old_kid));
        assert!(verify(&a, &old, "wiki", start + 299).is_some());
        // Once its last token expired (and the allowed clock skew passed), it is gone.
        let later = a.jwks(start + 300 + SKEW);
        assert!(!kids(&later).contains(&old_kid), "{later}");
        assert_eq!(kids(&later), [format!("k1.{e}"), format!("k1.{}", e + 1)]);
    }

    #[test]
    fn replicas_with_the_same_secret_agree_and_other_secrets_do_not() {
        let a = service(&[("k1", "secret-one-0123456789abcdef")]);
        let b = service(&[("k1", "secret-one-0123456789abcdef")]);
        let c = service(&[("k1", "another-secret-0123456789ab")]);
        let now = 1_900_000_000;
        assert_eq!(a.jwks(now), b.jwks(now));
        let u = user();
        let p = proof(FirstFactor::Password, None);
        let s = Subject {
            user: &u,
            proof: &p,
            auth_time: None,
        };
        let t = a.token(&route("wiki"), &s, now).unwrap();
        assert!(verify(&b, &t, "wiki", now).is_some());
        assert!(verify(&c, &t, "wiki", now).is_none());
    }

    #[test]
    fn retired_device_keys_stay_published_for_what_they_signed() {
        let a = service(&[
            ("k2", "new-secret-0123456789abcdef"),
            ("k1", "old-secret-0123456789abcdef"),
        ]);
        let now = 1_900_000_000 / ROTATION * ROTATION + 1_000;
        let e = now / ROTATION;
        assert_eq!(
            kids(&a.jwks(now)),
            [
                format!("k2.{e}"),
                format!("k2.{}", e + 1),
                format!("k1.{e}")
            ]
        );
    }
}
