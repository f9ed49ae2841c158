//! WebAuthn (docs/fuzzing.md#webauthn): authenticator data, COSE keys, attestation objects
//! and client data. Structural properties of what parses, and for registrations and
//! assertions (signed here with a fixed key, so the signature always holds): whatever is
//! accepted meets an independent reading of the rules — type, challenge, origin, not
//! cross-origin, rpIdHash, user present and verified, counter increased.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nidan::login::passkey::{
    self, ALG_EDDSA, ALG_ES256, Assertion, Expected, parse_auth_data, parse_cose_key,
};
use p256::ecdsa::signature::Signer;
use serde_json::Value;
use sha2::{Digest, Sha256};

const RP: &str = "login.example.com";
const ORIGIN: &str = "https://login.example.com";
const CHALLENGE: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA";
const STORED: u32 = 7;

static KEY: LazyLock<p256::ecdsa::SigningKey> =
    LazyLock::new(|| p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("a scalar"));

/// The COSE_Key of [`KEY`] (EC2, ES256, P-256).
fn cose_key() -> Vec<u8> {
    let point = KEY.verifying_key().to_encoded_point(false);
    let (x, y) = (point.x().expect("x"), point.y().expect("y"));
    let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20];
    out.extend_from_slice(x);
    out.extend_from_slice(&[0x22, 0x58, 0x20]);
    out.extend_from_slice(y);
    out
}

/// The client-data rules, read independently of nidan's parser.
fn client_data_holds(json: &[u8], typ: &str) {
    let v: Value = serde_json::from_slice(json).expect("accepted client data is JSON");
    assert_eq!(v["type"], typ, "wrong type accepted");
    assert_eq!(v["challenge"], CHALLENGE, "wrong challenge accepted");
    let origin = v["origin"].as_str().expect("an origin");
    assert!(
        origin.eq_ignore_ascii_case(ORIGIN),
        "wrong origin accepted: {origin}"
    );
    assert_ne!(v["crossOrigin"], Value::Bool(true), "cross-origin accepted");
}

/// The authenticator-data rules, read independently.
fn auth_data_holds(data: &[u8]) -> u32 {
    assert!(data.len() >= 37);
    assert_eq!(
        data[..32],
        Sha256::digest(RP.as_bytes())[..],
        "wrong rpIdHash accepted"
    );
    assert_eq!(data[32] & 0x05, 0x05, "user not present and verified");
    u32::from_be_bytes([data[33], data[34], data[35], data[36]])
}

fn split3(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let a = parts.next().unwrap_or_default();
    let b = parts.next().unwrap_or_default();
    (a, b, parts.next().unwrap_or_default())
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let exp = |typ| Expected {
        typ,
        challenge: CHALLENGE,
        origin: ORIGIN,
        rp_id: RP,
    };
    match mode % 5 {
        0 => {
            let Ok(ad) = parse_auth_data(rest) else {
                return;
            };
            assert_eq!(ad.rp_id_hash[..], rest[..32]);
            assert_eq!(ad.flags, rest[32]);
            assert_eq!(ad.sign_count.to_be_bytes()[..], rest[33..37]);
            assert_eq!(ad.credential.is_some(), rest[32] & 0x40 != 0, "AT flag");
            if let Some(c) = ad.credential {
                let len = usize::from(u16::from_be_bytes([rest[53], rest[54]]));
                assert!((1..=1023).contains(&len) && c.id.len() == len);
                assert_eq!(c.id[..], rest[55..55 + len]);
                assert!(
                    rest[55 + len..].starts_with(&c.cose_key),
                    "key not from the data"
                );
                let _: ciborium::Value =
                    ciborium::de::from_reader(c.cose_key.as_slice()).expect("one CBOR item");
            }
        }
        1 => {
            if let Ok(key) = parse_cose_key(rest) {
                assert!(key.alg() == ALG_ES256 || key.alg() == ALG_EDDSA);
                // A key parsed from anything verifies nothing it did not sign.
                assert!(
                    key.verify(b"message", &[0x30, 0x06, 2, 1, 1, 2, 1, 1])
                        .is_err()
                );
                assert!(key.verify(b"message", &[0u8; 64]).is_err());
            }
        }
        2 => {
            if let Ok(ad) = passkey::attestation_auth_data(rest) {
                let _ = parse_auth_data(&ad);
            }
        }
        3 => {
            // An assertion whose parts are the fuzzer's, signed with the stored key.
            let (client_data_json, authenticator_data, _) = split3(rest);
            let mut signed = authenticator_data.to_vec();
            signed.extend_from_slice(&Sha256::digest(client_data_json));
            let sig: p256::ecdsa::Signature = KEY.sign(&signed);
            let der = sig.to_der();
            let a = Assertion {
                client_data_json,
                authenticator_data,
                signature: der.as_bytes(),
            };
            if let Ok(count) =
                passkey::verify_assertion(&a, &exp("webauthn.get"), &cose_key(), STORED)
            {
                client_data_holds(client_data_json, "webauthn.get");
                let sent = auth_data_holds(authenticator_data);
                assert!(sent > STORED && count == sent, "counter not increased");
            }
        }
        _ => {
            let (client_data_json, attestation, _) = split3(rest);
            if let Ok(cred) =
                passkey::verify_registration(client_data_json, attestation, &exp("webauthn.create"))
            {
                client_data_holds(client_data_json, "webauthn.create");
                let ad = passkey::attestation_auth_data(attestation).expect("auth data");
                let count = auth_data_holds(&ad);
                assert_eq!(cred.sign_count, count);
                assert!(!cred.id.is_empty());
                assert_eq!(
                    parse_cose_key(&cred.cose_key).map(|k| k.alg()).ok(),
                    Some(cred.alg)
                );
            }
        }
    }
});
