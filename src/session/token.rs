//! Trusted-device tokens: JWTs signed with a key ring (the first key signs, every key
//! verifies, chosen by our `kid` only), checked strictly (SECURITY 13).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::SigningKey;

pub const AUDIENCE: &str = "nidan-trusted-device";
pub const TYPE: &str = "trusted-device";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceClaims {
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub aud: String,
    /// Kind of token; a token of any other kind is refused even if well signed.
    pub typ: String,
}

pub struct KeyRing {
    keys: Vec<(String, EncodingKey, DecodingKey)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no signing key is configured")]
    NoKey,
    #[error("the token could not be signed")]
    Sign,
    #[error("the token is not valid")]
    Invalid,
}

impl KeyRing {
    pub fn new(keys: &[SigningKey]) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|k| {
                    (
                        k.id.clone(),
                        EncodingKey::from_secret(k.secret.expose()),
                        DecodingKey::from_secret(k.secret.expose()),
                    )
                })
                .collect(),
        }
    }

    pub fn sign(&self, claims: &DeviceClaims) -> Result<String, TokenError> {
        let (kid, key, _) = self.keys.first().ok_or(TokenError::NoKey)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).map_err(|_| TokenError::Sign)
    }

    /// Verifies signature, algorithm, `kid`, `aud`, `exp` and type; returns the claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<DeviceClaims, TokenError> {
        if token.len() > 2_048 {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let (_, _, key) = self
            .keys
            .iter()
            .find(|(id, _, _)| *id == kid)
            .ok_or(TokenError::Invalid)?;
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "sub", "aud"]);
        v.leeway = 0;
        // Expiry is checked below against the caller's clock, so tests and the server agree.
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<DeviceClaims>(token, key, &v)
            .map_err(|_| TokenError::Invalid)?;
        let c = data.claims;
        if c.typ != TYPE || c.exp <= now || c.iat > now + 60 || c.jti.len() != 22 {
            return Err(TokenError::Invalid);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::config::Secret;

    fn ring(id: &str, secret: &str) -> KeyRing {
        KeyRing::new(&[SigningKey {
            id: id.into(),
            secret: Secret(secret.as_bytes().to_vec()),
        }])
    }

    fn claims(now: i64) -> DeviceClaims {
        DeviceClaims {
            sub: "hanako".into(),
            jti: crate::secret::random_token(16),
            iat: now,
            exp: now + 100,
            aud: AUDIENCE.into(),
            typ: TYPE.into(),
        }
    }

    #[test]
    fn round_trip_and_rotation() {
        let r = ring("k1", "0123456789abcdef0123456789abcdef");
        let t = r.sign(&claims(1_000)).unwrap();
        assert_eq!(r.verify(&t, 1_000).unwrap().sub, "hanako");
        assert_eq!(r.verify(&t, 1_100), Err(TokenError::Invalid));
        // Same secret under another kid: refused (key chosen by kid only).
        let other = ring("k2", "0123456789abcdef0123456789abcdef");
        assert_eq!(other.verify(&t, 1_000), Err(TokenError::Invalid));
        // A ring holding the old key second still verifies it.
        let rotated = KeyRing::new(&[
            SigningKey {
                id: "k2".into(),
                secret: Secret(b"another-secret-another-secret-xx".to_vec()),
            },
            SigningKey {
                id: "k1".into(),
                secret: Secret(b"0123456789abcdef0123456789abcdef".to_vec()),
            },
        ]);
        assert!(rotated.verify(&t, 1_000).is_ok());
    }

    #[test]
    fn forged_variants_fail() {
        let r = ring("k1", "0123456789abcdef0123456789abcdef");
        let t = r.sign(&claims(1_000)).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        // alg:none
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1","typ":"JWT"}"#);
        assert!(
            r.verify(&format!("{none_header}.{}.", parts[1]), 1_000)
                .is_err()
        );
        // tampered payload
        let mut c = claims(1_000);
        c.sub = "taro".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert!(
            r.verify(&format!("{}.{payload}.{}", parts[0], parts[2]), 1_000)
                .is_err()
        );
        // wrong audience / type, well signed
        let mut c = claims(1_000);
        c.aud = "nidan-session".into();
        assert!(r.verify(&r.sign(&c).unwrap(), 1_000).is_err());
        let mut c = claims(1_000);
        c.typ = "session".into();
        assert!(r.verify(&r.sign(&c).unwrap(), 1_000).is_err());
        // garbage
        assert!(r.verify("a.b.c", 1_000).is_err());
        assert!(r.verify("", 1_000).is_err());
    }
}
