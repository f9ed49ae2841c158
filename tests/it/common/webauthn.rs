//! A software WebAuthn authenticator for the tests: a P-256 or Ed25519 key, attestation
//! objects built with ciborium, assertions signed here. Use with
//! `use crate::common::webauthn;`.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciborium::Value as Cbor;
use p256::ecdsa::signature::Signer;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Gateway;

pub const UP: u8 = 0x01;
pub const UV: u8 = 0x04;
pub const AT: u8 = 0x40;

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub fn cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

pub fn int(i: i64) -> Cbor {
    Cbor::Integer(i.into())
}

pub enum Key {
    Es256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A software authenticator holding one discoverable credential.
pub struct Authenticator {
    pub key: Key,
    pub cred_id: Vec<u8>,
    pub user_handle: Option<String>,
    pub count: u32,
}

/// What a test changes in an assertion.
#[derive(Default)]
pub struct Tweak {
    pub origin: Option<String>,
    pub rp_id: Option<String>,
    pub flags: Option<u8>,
    pub bad_signature: bool,
    pub count: Option<u32>,
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

impl Authenticator {
    pub fn es256() -> Self {
        Self::with(Key::Es256(
            p256::ecdsa::SigningKey::from_slice(&random::<32>()).unwrap(),
        ))
    }

    pub fn ed25519() -> Self {
        Self::with(Key::Ed25519(ed25519_dalek::SigningKey::from_bytes(
            &random::<32>(),
        )))
    }

    pub fn with(key: Key) -> Self {
        Self {
            key,
            cred_id: random::<16>().to_vec(),
            user_handle: None,
            count: 0,
        }
    }

    pub fn cose_key(&self) -> Vec<u8> {
        match &self.key {
            Key::Es256(k) => {
                let p = k.verifying_key().to_encoded_point(false);
                cbor(&Cbor::Map(vec![
                    (int(1), int(2)),
                    (int(3), int(-7)),
                    (int(-1), int(1)),
                    (int(-2), Cbor::Bytes(p.x().unwrap().to_vec())),
                    (int(-3), Cbor::Bytes(p.y().unwrap().to_vec())),
                ]))
            }
            Key::Ed25519(k) => cbor(&Cbor::Map(vec![
                (int(1), int(1)),
                (int(3), int(-8)),
                (int(-1), int(6)),
                (int(-2), Cbor::Bytes(k.verifying_key().to_bytes().to_vec())),
            ])),
        }
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.key {
            Key::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_der().as_bytes().to_vec()
            }
            Key::Ed25519(k) => ed25519_dalek::Signer::sign(k, msg).to_bytes().to_vec(),
        }
    }

    pub fn auth_data(&self, rp_id: &str, flags: u8, count: u32, attested: bool) -> Vec<u8> {
        let mut d = Sha256::digest(rp_id.as_bytes()).to_vec();
        d.push(flags | if attested { AT } else { 0 });
        d.extend_from_slice(&count.to_be_bytes());
        if attested {
            d.extend_from_slice(&[0u8; 16]);
            d.extend_from_slice(&u16::try_from(self.cred_id.len()).unwrap().to_be_bytes());
            d.extend_from_slice(&self.cred_id);
            d.extend_from_slice(&self.cose_key());
        }
        d
    }

    /// `navigator.credentials.create()`.
    pub fn create(&mut self, options: &Value, origin: &str, flags: u8) -> Value {
        let rp_id = options["rp"]["id"].as_str().unwrap();
        self.user_handle = Some(options["user"]["id"].as_str().unwrap().to_owned());
        let client_data = json!({
            "type": "webauthn.create",
            "challenge": options["challenge"],
            "origin": origin,
            "crossOrigin": false,
        })
        .to_string();
        let att = cbor(&Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (
                Cbor::Text("authData".into()),
                Cbor::Bytes(self.auth_data(rp_id, flags, self.count, true)),
            ),
        ]));
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(client_data.as_bytes()),
                "attestationObject": b64(&att),
            },
        })
    }

    /// `navigator.credentials.get()`; the counter goes up by one unless tweaked.
    pub fn get(&mut self, options: &Value, origin: &str, t: Tweak) -> Value {
        self.count += 1;
        let rp_id = t
            .rp_id
            .clone()
            .unwrap_or_else(|| options["rpId"].as_str().unwrap().to_owned());
        let client_data = json!({
            "type": "webauthn.get",
            "challenge": options["challenge"],
            "origin": t.origin.as_deref().unwrap_or(origin),
        })
        .to_string();
        let auth = self.auth_data(
            &rp_id,
            t.flags.unwrap_or(UP | UV),
            t.count.unwrap_or(self.count),
            false,
        );
        let mut msg = auth.clone();
        msg.extend_from_slice(&Sha256::digest(client_data.as_bytes()));
        let mut sig = self.sign(&msg);
        if t.bad_signature {
            let last = sig.len() - 2;
            sig[last] ^= 0x55;
        }
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(client_data.as_bytes()),
                "authenticatorData": b64(&auth),
                "signature": b64(&sig),
                "userHandle": self.user_handle,
            },
        })
    }
}

pub fn origin(gw: &Gateway) -> String {
    format!("http://{}", gw.addr)
}
