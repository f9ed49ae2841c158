//! Trusted-device JWTs (docs/fuzzing.md#device_jwt): any token, and any header and claims
//! signed under a ring key, a retired key or a stranger's key. Property: whatever verifies
//! is HS256 under the key its `kid` names, with our audience, type, unexpired, issued no
//! later than a minute ahead, a 22-byte `jti`, and the claims returned are the ones
//! signed (checked by decoding the token independently).
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use nidan::config::{Secret, SigningKey};
use nidan::session::token::{AUDIENCE, KeyRing, TYPE};
use serde_json::Value;
use sha2::Sha256;

const NOW: i64 = 1_800_000_000;
const KEYS: [(&str, &[u8]); 2] = [
    ("k1", b"fuzz-device-key-one-0123456789ab"),
    ("k2", b"fuzz-device-key-two-0123456789ab"),
];

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    let keys: Vec<SigningKey> = KEYS
        .iter()
        .map(|(id, s)| SigningKey {
            id: (*id).into(),
            secret: Secret(s.to_vec()),
        })
        .collect();
    KeyRing::new(&keys)
});

fn mac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn part(token: &str, i: usize) -> Value {
    let p = token.split('.').nth(i).expect("three parts");
    let bytes = URL_SAFE_NO_PAD.decode(p).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let cut = rest.iter().position(|b| *b == 0xff).unwrap_or(rest.len());
        let (header, claims) = rest.split_at(cut);
        let claims = claims.get(1..).unwrap_or_default();
        let signing = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let key: &[u8] = match (mode >> 1) % 3 {
            0 => KEYS[0].1,
            1 => KEYS[1].1,
            _ => b"a stranger's key",
        };
        format!(
            "{signing}.{}",
            URL_SAFE_NO_PAD.encode(mac(key, signing.as_bytes()))
        )
    };
    let Ok(claims) = RING.verify(&token, NOW) else {
        return;
    };
    let header = part(&token, 0);
    assert_eq!(header["alg"], "HS256", "{token}");
    let kid = header["kid"].as_str().expect("a kid");
    let (_, key) = KEYS.iter().find(|(id, _)| *id == kid).expect("a ring key");
    let (signing, sig) = token.rsplit_once('.').expect("a signature");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(sig).ok(),
        Some(mac(key, signing.as_bytes())),
        "not signed by the key its kid names"
    );
    let c = part(&token, 1);
    assert_eq!(c["aud"], AUDIENCE);
    assert_eq!(c["typ"], TYPE);
    assert_eq!(c["sub"], claims.sub.as_str());
    assert_eq!(c["jti"], claims.jti.as_str());
    assert_eq!(claims.jti.len(), 22);
    assert!(claims.exp > NOW && c["exp"] == claims.exp, "expired: {c}");
    assert!(
        claims.iat <= NOW + 60 && c["iat"] == claims.iat,
        "issued ahead: {c}"
    );
});
