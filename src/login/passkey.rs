//! Passkey login (WebAuthn with user verification): the seed's "biometric authentication",
//! which counts as both steps. Owns the WebAuthn checks (clientDataJSON, authenticator data,
//! the attestation object's CBOR, COSE keys, ES256/EdDSA signatures, the sign counter),
//! the single-use challenges, registration and the login that ends in a session.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciborium::Value as Cbor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// COSE algorithm numbers we accept: ES256 (P-256 ECDSA with SHA-256) and EdDSA (Ed25519).
pub const ALG_ES256: i64 = -7;
pub const ALG_EDDSA: i64 = -8;

/// How long a challenge may be answered.
pub const CHALLENGE_LIFETIME: Duration = Duration::from_secs(300);
/// What the browser is told to wait (milliseconds), a little under the challenge lifetime.
pub(crate) const TIMEOUT_MS: u64 = 240_000;
/// Passkeys per user.
pub const MAX_PER_USER: usize = 20;
/// Credential IDs are at most 1023 bytes (WebAuthn level 3).
const MAX_CREDENTIAL_ID: usize = 1023;

/// authenticatorData flags.
const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

/// Why a WebAuthn response was refused. The codes go to the audit trail; the browser only
/// ever hears a generic failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebAuthnError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("clientDataJSON has the wrong type")]
    WrongType,
    #[error("the challenge is unknown, expired or used")]
    WrongChallenge,
    #[error("the origin is not this site")]
    WrongOrigin,
    #[error("the relying party ID hash does not match")]
    WrongRpId,
    #[error("the user was not present")]
    NotPresent,
    #[error("the user was not verified")]
    NotVerified,
    #[error("no attested credential in the authenticator data")]
    NoCredential,
    #[error("the credential's key type or algorithm is not supported")]
    UnsupportedKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the signature counter did not increase (a cloned authenticator?)")]
    CounterNotIncreased,
}

impl WebAuthnError {
    /// A reason code for the audit trail.
    pub fn code(self) -> &'static str {
        match self {
            WebAuthnError::Malformed(_) => "malformed",
            WebAuthnError::WrongType => "wrong_type",
            WebAuthnError::WrongChallenge => "wrong_challenge",
            WebAuthnError::WrongOrigin => "wrong_origin",
            WebAuthnError::WrongRpId => "wrong_rp_id",
            WebAuthnError::NotPresent => "user_not_present",
            WebAuthnError::NotVerified => "user_not_verified",
            WebAuthnError::NoCredential => "no_credential",
            WebAuthnError::UnsupportedKey => "unsupported_key",
            WebAuthnError::BadSignature => "bad_signature",
            WebAuthnError::CounterNotIncreased => "counter_not_increased",
        }
    }
}

// --- the pure checks ----------------------------------------------------------------

/// The fields of clientDataJSON we check.
#[derive(Debug, Clone, Deserialize)]
pub struct ClientData {
    #[serde(rename = "type")]
    pub typ: String,
    pub challenge: String,
    pub origin: String,
    #[serde(default, rename = "crossOrigin")]
    pub cross_origin: bool,
}

pub fn parse_client_data(bytes: &[u8]) -> Result<ClientData, WebAuthnError> {
    serde_json::from_slice(bytes).map_err(|_| WebAuthnError::Malformed("clientDataJSON"))
}

/// What the response must be bound to.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `webauthn.create` or `webauthn.get`.
    pub typ: &'a str,
    pub challenge: &'a str,
    /// `http(s)://host[:port]` of the request.
    pub origin: &'a str,
    pub rp_id: &'a str,
}

fn check_client_data(cd: &ClientData, exp: &Expected<'_>) -> Result<(), WebAuthnError> {
    if cd.typ != exp.typ {
        return Err(WebAuthnError::WrongType);
    }
    if !crate::secret::equal(cd.challenge.as_bytes(), exp.challenge.as_bytes()) {
        return Err(WebAuthnError::WrongChallenge);
    }
    if cd.cross_origin || !cd.origin.eq_ignore_ascii_case(exp.origin) {
        return Err(WebAuthnError::WrongOrigin);
    }
    Ok(())
}

/// A credential created at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredential {
    pub aaguid: [u8; 16],
    pub id: Vec<u8>,
    /// The COSE_Key exactly as the authenticator encoded it.
    pub cose_key: Vec<u8>,
}

/// Parsed authenticatorData.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthData {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub sign_count: u32,
    pub credential: Option<AttestedCredential>,
}

impl AuthData {
    fn check(&self, rp_id: &str) -> Result<(), WebAuthnError> {
        let want: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
        if !crate::secret::equal(&self.rp_id_hash, &want) {
            return Err(WebAuthnError::WrongRpId);
        }
        if self.flags & FLAG_UP == 0 {
            return Err(WebAuthnError::NotPresent);
        }
        if self.flags & FLAG_UV == 0 {
            return Err(WebAuthnError::NotVerified);
        }
        Ok(())
    }
}

/// Parses authenticatorData: rpIdHash ‖ flags ‖ signCount ‖ [attested credential data].
pub fn parse_auth_data(data: &[u8]) -> Result<AuthData, WebAuthnError> {
    const BAD: WebAuthnError = WebAuthnError::Malformed("authenticatorData");
    if data.len() < 37 {
        return Err(BAD);
    }
    let mut rp_id_hash = [0u8; 32];
    rp_id_hash.copy_from_slice(&data[..32]);
    let flags = data[32];
    let sign_count = u32::from_be_bytes([data[33], data[34], data[35], data[36]]);
    let credential = if flags & FLAG_AT != 0 {
        let rest = &data[37..];
        if rest.len() < 18 {
            return Err(BAD);
        }
        let mut aaguid = [0u8; 16];
        aaguid.copy_from_slice(&rest[..16]);
        let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        if len == 0 || len > MAX_CREDENTIAL_ID || rest.len() < 18 + len {
            return Err(BAD);
        }
        let id = rest[18..18 + len].to_vec();
        let key_bytes = &rest[18 + len..];
        // The COSE key is one CBOR item; extensions may follow it.
        let mut reader: &[u8] = key_bytes;
        let _: Cbor = ciborium::de::from_reader(&mut reader).map_err(|_| BAD)?;
        let used = key_bytes.len() - reader.len();
        Some(AttestedCredential {
            aaguid,
            id,
            cose_key: key_bytes[..used].to_vec(),
        })
    } else {
        None
    };
    Ok(AuthData {
        rp_id_hash,
        flags,
        sign_count,
        credential,
    })
}

fn map_get<'a>(map: &'a [(Cbor, Cbor)], key: &str) -> Option<&'a Cbor> {
    map.iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn map_int(map: &[(Cbor, Cbor)], key: i128) -> Option<&Cbor> {
    map.iter()
        .find(|(k, _)| k.as_integer().map(i128::from) == Some(key))
        .map(|(_, v)| v)
}

/// The attestation object's `authData` (its `fmt`/`attStmt` are not checked: we ask for
/// attestation `none`, so the authenticator's make is not vouched for).
pub fn attestation_auth_data(attestation_object: &[u8]) -> Result<Vec<u8>, WebAuthnError> {
    const BAD: WebAuthnError = WebAuthnError::Malformed("attestationObject");
    let v: Cbor = ciborium::de::from_reader(attestation_object).map_err(|_| BAD)?;
    let map = v.as_map().ok_or(BAD)?;
    map_get(map, "fmt").and_then(Cbor::as_text).ok_or(BAD)?;
    map_get(map, "authData")
        .and_then(Cbor::as_bytes)
        .cloned()
        .ok_or(BAD)
}

/// A credential public key.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Es256(p256::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    pub fn alg(&self) -> i64 {
        match self {
            PublicKey::Es256(_) => ALG_ES256,
            PublicKey::EdDsa(_) => ALG_EDDSA,
        }
    }

    /// Verifies a WebAuthn signature (ES256: ASN.1 DER; EdDSA: 64 raw bytes).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), WebAuthnError> {
        match self {
            PublicKey::Es256(key) => {
                use p256::ecdsa::signature::Verifier;
                let sig = p256::ecdsa::Signature::from_der(sig)
                    .map_err(|_| WebAuthnError::BadSignature)?;
                key.verify(msg, &sig)
                    .map_err(|_| WebAuthnError::BadSignature)
            }
            PublicKey::EdDsa(key) => {
                let sig = ed25519_dalek::Signature::from_slice(sig)
                    .map_err(|_| WebAuthnError::BadSignature)?;
                key.verify_strict(msg, &sig)
                    .map_err(|_| WebAuthnError::BadSignature)
            }
        }
    }
}

/// Parses a COSE_Key: EC2 P-256 with ES256, or OKP Ed25519 with EdDSA.
pub fn parse_cose_key(bytes: &[u8]) -> Result<PublicKey, WebAuthnError> {
    const BAD: WebAuthnError = WebAuthnError::Malformed("COSE key");
    let v: Cbor = ciborium::de::from_reader(bytes).map_err(|_| BAD)?;
    let map = v.as_map().ok_or(BAD)?;
    let int = |k: i128| map_int(map, k).and_then(Cbor::as_integer).map(i128::from);
    let bytes_of = |k: i128| map_int(map, k).and_then(Cbor::as_bytes);
    let (kty, alg, crv) = (int(1), int(3), int(-1));
    match (kty, alg, crv) {
        // kty EC2, alg ES256, crv P-256
        (Some(2), Some(-7), Some(1)) => {
            let (Some(x), Some(y)) = (bytes_of(-2), bytes_of(-3)) else {
                return Err(BAD);
            };
            if x.len() != 32 || y.len() != 32 {
                return Err(BAD);
            }
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(0x04);
            sec1.extend_from_slice(x);
            sec1.extend_from_slice(y);
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map(PublicKey::Es256)
                .map_err(|_| BAD)
        }
        // kty OKP, alg EdDSA, crv Ed25519
        (Some(1), Some(-8), Some(6)) => {
            let x: [u8; 32] = bytes_of(-2)
                .and_then(|x| x.as_slice().try_into().ok())
                .ok_or(BAD)?;
            ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map(PublicKey::EdDsa)
                .map_err(|_| BAD)
        }
        _ => Err(WebAuthnError::UnsupportedKey),
    }
}

/// What registration keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub id: Vec<u8>,
    pub cose_key: Vec<u8>,
    pub alg: i64,
    pub sign_count: u32,
}

/// Checks a `navigator.credentials.create()` response.
pub fn verify_registration(
    client_data_json: &[u8],
    attestation_object: &[u8],
    exp: &Expected<'_>,
) -> Result<NewCredential, WebAuthnError> {
    let cd = parse_client_data(client_data_json)?;
    check_client_data(&cd, exp)?;
    let auth_data = parse_auth_data(&attestation_auth_data(attestation_object)?)?;
    auth_data.check(exp.rp_id)?;
    let cred = auth_data.credential.ok_or(WebAuthnError::NoCredential)?;
    let key = parse_cose_key(&cred.cose_key)?;
    Ok(NewCredential {
        id: cred.id,
        alg: key.alg(),
        cose_key: cred.cose_key,
        sign_count: auth_data.sign_count,
    })
}

/// A `navigator.credentials.get()` response's signed parts.
#[derive(Debug, Clone, Copy)]
pub struct Assertion<'a> {
    pub client_data_json: &'a [u8],
    pub authenticator_data: &'a [u8],
    pub signature: &'a [u8],
}

/// The counter rule: authenticators that count must count up; a counter that did not
/// increase means two copies of the key exist.
pub fn check_counter(stored: u32, received: u32) -> Result<(), WebAuthnError> {
    if (stored == 0 && received == 0) || received > stored {
        Ok(())
    } else {
        Err(WebAuthnError::CounterNotIncreased)
    }
}

/// Checks an assertion against the stored key and counter; returns the new counter.
/// (The challenge in `exp` was taken from the store already; it is compared here again.)
pub fn verify_assertion(
    a: &Assertion<'_>,
    exp: &Expected<'_>,
    cose_key: &[u8],
    stored_count: u32,
) -> Result<u32, WebAuthnError> {
    let cd = parse_client_data(a.client_data_json)?;
    check_client_data(&cd, exp)?;
    let auth_data = parse_auth_data(a.authenticator_data)?;
    auth_data.check(exp.rp_id)?;
    let key = parse_cose_key(cose_key)?;
    let mut signed = Vec::with_capacity(a.authenticator_data.len() + 32);
    signed.extend_from_slice(a.authenticator_data);
    signed.extend_from_slice(&Sha256::digest(a.client_data_json));
    key.verify(&signed, a.signature)?;
    check_counter(stored_count, auth_data.sign_count)?;
    Ok(auth_data.sign_count)
}

// --- challenges -----------------------------------------------------------------------

/// What a challenge was issued for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// Adding a passkey: bound to the user and the session (hash) that asked; `handle` is
    /// the WebAuthn user handle the authenticator was given.
    Register {
        user: String,
        session: String,
        handle: String,
    },
    /// Logging in; the validated return address.
    Login { return_to: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub purpose: Purpose,
    pub rp_id: String,
    pub origin: String,
}

/// Outstanding challenges (5 minutes, single use), keyed by the challenge itself, in the
/// short-lived state (bounded in bytes in process: anyone may ask for a login challenge).
pub struct Challenges {
    state: Arc<dyn crate::state::Ephemeral>,
}

impl Challenges {
    pub fn new(state: Arc<dyn crate::state::Ephemeral>) -> Self {
        Self { state }
    }

    /// A new 32-byte random challenge (base64url) for `pending`.
    pub async fn issue(&self, pending: &Pending) -> Result<String, crate::state::StateError> {
        let challenge = crate::secret::random_token(32);
        let bytes = serde_json::to_vec(pending).map_err(|_| crate::state::StateError::Corrupt)?;
        self.state
            .put("challenge", &challenge, &bytes, CHALLENGE_LIFETIME)
            .await?;
        Ok(challenge)
    }

    /// Takes a challenge out: it answers once.
    pub async fn take(&self, challenge: &str) -> Result<Option<Pending>, crate::state::StateError> {
        if challenge.len() != 43 {
            return Ok(None);
        }
        match self.state.take("challenge", challenge).await? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|_| crate::state::StateError::Corrupt),
            None => Ok(None),
        }
    }
}

// --- registration and login ----------------------------------------------------------

/// Why a passkey call failed, for the web edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    #[error("bad input: {0}")]
    BadInput(&'static str),
    #[error("the passkey could not be verified")]
    Failed(WebAuthnError),
    #[error("too many attempts; try again in {0} s")]
    Throttled(u64),
    #[error("this account already has the maximum number of passkeys")]
    Full,
    #[error("this passkey is already registered")]
    Duplicate,
    #[error("no such passkey")]
    NotFound,
    #[error("internal error")]
    Internal,
    #[error("the server is busy; try again shortly")]
    Busy,
    /// A store the answer needs could not be reached: 503, try again.
    #[error("the service is unavailable; try again")]
    Unavailable,
}

/// Does RP ID `rp_id` cover `host` (the same name, or a parent domain of it)? Browsers
/// refuse a passkey for any other RP ID.
pub fn rp_id_covers(rp_id: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let rp_id = rp_id.to_ascii_lowercase();
    host == rp_id
        || host
            .strip_suffix(rp_id.as_str())
            .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1)
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url (padding and standard alphabet tolerated, as some clients send them).
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    let t = s.trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(t).ok().or_else(|| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(t)
            .ok()
    })
}

/// The browser's credential, as nidan.js sends it (base64url fields).
#[derive(Debug, Clone, Deserialize)]
pub struct CredentialJson {
    pub id: String,
    #[serde(default, rename = "rawId")]
    pub raw_id: Option<String>,
    #[serde(rename = "type")]
    pub typ: String,
    pub response: CredentialResponseJson,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CredentialResponseJson {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(default, rename = "attestationObject")]
    pub attestation_object: Option<String>,
    #[serde(default, rename = "authenticatorData")]
    pub authenticator_data: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default, rename = "userHandle")]
    pub user_handle: Option<String>,
}

impl CredentialJson {
    pub(crate) fn credential_id(&self) -> Result<Vec<u8>, PasskeyError> {
        if self.typ != "public-key" {
            return Err(PasskeyError::BadInput("type"));
        }
        let id = unb64(self.raw_id.as_deref().unwrap_or(&self.id))
            .filter(|id| !id.is_empty() && id.len() <= MAX_CREDENTIAL_ID)
            .ok_or(PasskeyError::BadInput("id"))?;
        Ok(id)
    }

    pub(crate) fn client_data(&self) -> Result<(Vec<u8>, ClientData), PasskeyError> {
        let raw = unb64(&self.response.client_data_json)
            .ok_or(PasskeyError::BadInput("clientDataJSON"))?;
        let cd = parse_client_data(&raw).map_err(|_| PasskeyError::BadInput("clientDataJSON"))?;
        Ok((raw, cd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use serde_json::json;

    const RP: &str = "login.example.com";
    const ORIGIN: &str = "https://login.example.com";
    const CHALLENGE: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA";

    fn es256_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap()
    }

    fn cose_es256(key: &p256::ecdsa::SigningKey) -> Vec<u8> {
        let point = key.verifying_key().to_encoded_point(false);
        let map = Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(2.into())),
            (Cbor::Integer(3.into()), Cbor::Integer((-7).into())),
            (Cbor::Integer((-1).into()), Cbor::Integer(1.into())),
            (
                Cbor::Integer((-2).into()),
                Cbor::Bytes(point.x().unwrap().to_vec()),
            ),
            (
                Cbor::Integer((-3).into()),
                Cbor::Bytes(point.y().unwrap().to_vec()),
            ),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&map, &mut out).unwrap();
        out
    }

    fn cose_ed25519(key: &ed25519_dalek::SigningKey) -> Vec<u8> {
        let map = Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(1.into())),
            (Cbor::Integer(3.into()), Cbor::Integer((-8).into())),
            (Cbor::Integer((-1).into()), Cbor::Integer(6.into())),
            (
                Cbor::Integer((-2).into()),
                Cbor::Bytes(key.verifying_key().to_bytes().to_vec()),
            ),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&map, &mut out).unwrap();
        out
    }

    fn auth_data(rp: &str, flags: u8, count: u32, cred: Option<(&[u8], &[u8])>) -> Vec<u8> {
        let mut d = Sha256::digest(rp.as_bytes()).to_vec();
        d.push(flags | if cred.is_some() { FLAG_AT } else { 0 });
        d.extend_from_slice(&count.to_be_bytes());
        if let Some((id, key)) = cred {
            d.extend_from_slice(&[7u8; 16]);
            d.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
            d.extend_from_slice(id);
            d.extend_from_slice(key);
        }
        d
    }

    fn client_data(typ: &str, challenge: &str, origin: &str) -> Vec<u8> {
        json!({"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    fn attestation(auth: &[u8]) -> Vec<u8> {
        let obj = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth.to_vec())),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&obj, &mut out).unwrap();
        out
    }

    fn exp(typ: &'static str) -> Expected<'static> {
        Expected {
            typ,
            challenge: CHALLENGE,
            origin: ORIGIN,
            rp_id: RP,
        }
    }

    fn sign_es256(key: &p256::ecdsa::SigningKey, auth: &[u8], cd: &[u8]) -> Vec<u8> {
        let mut msg = auth.to_vec();
        msg.extend_from_slice(&Sha256::digest(cd));
        let sig: p256::ecdsa::Signature = key.sign(&msg);
        sig.to_der().as_bytes().to_vec()
    }

    #[test]
    fn an_rp_id_covers_its_host_and_subdomains_only() {
        assert!(rp_id_covers("login.example.com", "login.example.com"));
        assert!(rp_id_covers("example.com", "Login.Example.com"));
        assert!(!rp_id_covers("example.com", "badexample.com"));
        assert!(!rp_id_covers("login.example.com", "example.com"));
        assert!(!rp_id_covers("example.com", ".example.com"));
        assert!(!rp_id_covers("other.example.org", "login.example.com"));
    }

    #[test]
    fn registration_yields_the_credential_and_its_key() {
        let key = es256_key();
        let cose = cose_es256(&key);
        // Extension bytes after the key must not end up in it.
        let mut auth = auth_data(RP, FLAG_UP | FLAG_UV, 0, Some((b"cred-1", &cose)));
        auth.extend_from_slice(&[0xa0]);
        let cd = client_data("webauthn.create", CHALLENGE, ORIGIN);
        let new = verify_registration(&cd, &attestation(&auth), &exp("webauthn.create")).unwrap();
        assert_eq!(new.id, b"cred-1");
        assert_eq!(new.cose_key, cose);
        assert_eq!(new.alg, ALG_ES256);
        assert_eq!(new.sign_count, 0);
        let parsed = parse_auth_data(&auth).unwrap();
        assert_eq!(parsed.credential.unwrap().aaguid, [7u8; 16]);
    }

    #[test]
    fn registration_refusals() {
        let key = es256_key();
        let cose = cose_es256(&key);
        let good_auth = auth_data(RP, FLAG_UP | FLAG_UV, 0, Some((b"c", &cose)));
        let good_cd = client_data("webauthn.create", CHALLENGE, ORIGIN);
        let e = exp("webauthn.create");
        let cases: Vec<(Vec<u8>, Vec<u8>, WebAuthnError)> = vec![
            (
                client_data("webauthn.get", CHALLENGE, ORIGIN),
                good_auth.clone(),
                WebAuthnError::WrongType,
            ),
            (
                client_data("webauthn.create", "other", ORIGIN),
                good_auth.clone(),
                WebAuthnError::WrongChallenge,
            ),
            (
                client_data("webauthn.create", CHALLENGE, "https://evil.example"),
                good_auth.clone(),
                WebAuthnError::WrongOrigin,
            ),
            (
                good_cd.clone(),
                auth_data("evil.example", FLAG_UP | FLAG_UV, 0, Some((b"c", &cose))),
                WebAuthnError::WrongRpId,
            ),
            (
                good_cd.clone(),
                auth_data(RP, FLAG_UP, 0, Some((b"c", &cose))),
                WebAuthnError::NotVerified,
            ),
            (
                good_cd.clone(),
                auth_data(RP, FLAG_UV, 0, Some((b"c", &cose))),
                WebAuthnError::NotPresent,
            ),
            (
                good_cd.clone(),
                auth_data(RP, FLAG_UP | FLAG_UV, 0, None),
                WebAuthnError::NoCredential,
            ),
        ];
        for (cd, auth, want) in cases {
            assert_eq!(verify_registration(&cd, &attestation(&auth), &e), Err(want));
        }
        assert!(matches!(
            verify_registration(&good_cd, b"\xff\x00", &e),
            Err(WebAuthnError::Malformed(_))
        ));
        let cross = json!({"type": "webauthn.create", "challenge": CHALLENGE, "origin": ORIGIN, "crossOrigin": true}).to_string();
        assert_eq!(
            verify_registration(cross.as_bytes(), &attestation(&good_auth), &e),
            Err(WebAuthnError::WrongOrigin)
        );
    }

    #[test]
    fn truncated_and_unsupported_inputs_are_refused() {
        assert!(parse_auth_data(&[0u8; 36]).is_err());
        let mut d = auth_data(RP, FLAG_UP | FLAG_UV, 0, None);
        d[32] |= FLAG_AT;
        d.extend_from_slice(&[0u8; 16]);
        d.extend_from_slice(&[0, 200]);
        d.extend_from_slice(&[1, 2, 3]);
        assert!(
            parse_auth_data(&d).is_err(),
            "credential ID longer than the data"
        );
        // An RSA key (kty 3, alg -257) is not supported.
        let rsa = Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(3.into())),
            (Cbor::Integer(3.into()), Cbor::Integer((-257).into())),
        ]);
        let mut b = Vec::new();
        ciborium::ser::into_writer(&rsa, &mut b).unwrap();
        assert!(matches!(
            parse_cose_key(&b),
            Err(WebAuthnError::UnsupportedKey)
        ));
        // A point that is not on the curve.
        let bad = Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(2.into())),
            (Cbor::Integer(3.into()), Cbor::Integer((-7).into())),
            (Cbor::Integer((-1).into()), Cbor::Integer(1.into())),
            (Cbor::Integer((-2).into()), Cbor::Bytes(vec![1; 32])),
            (Cbor::Integer((-3).into()), Cbor::Bytes(vec![2; 32])),
        ]);
        let mut b = Vec::new();
        ciborium::ser::into_writer(&bad, &mut b).unwrap();
        assert!(parse_cose_key(&b).is_err());
    }

    #[test]
    fn es256_assertions_verify_and_count() {
        let key = es256_key();
        let cose = cose_es256(&key);
        let e = exp("webauthn.get");
        let auth = auth_data(RP, FLAG_UP | FLAG_UV, 5, None);
        let cd = client_data("webauthn.get", CHALLENGE, ORIGIN);
        let sig = sign_es256(&key, &auth, &cd);
        let a = Assertion {
            client_data_json: &cd,
            authenticator_data: &auth,
            signature: &sig,
        };
        assert_eq!(verify_assertion(&a, &e, &cose, 4), Ok(5));
        assert_eq!(
            verify_assertion(&a, &e, &cose, 5),
            Err(WebAuthnError::CounterNotIncreased)
        );
        // A signature by another key, or over other data.
        let other = p256::ecdsa::SigningKey::from_slice(&[0x43; 32]).unwrap();
        let bad = sign_es256(&other, &auth, &cd);
        let a2 = Assertion {
            signature: &bad,
            ..a
        };
        assert_eq!(
            verify_assertion(&a2, &e, &cose, 0),
            Err(WebAuthnError::BadSignature)
        );
        let cd2 = client_data("webauthn.get", CHALLENGE, "https://login.example.com:8443");
        let a3 = Assertion {
            client_data_json: &cd2,
            ..a
        };
        assert_eq!(
            verify_assertion(&a3, &e, &cose, 0),
            Err(WebAuthnError::WrongOrigin)
        );
        let no_uv = auth_data(RP, FLAG_UP, 6, None);
        let sig = sign_es256(&key, &no_uv, &cd);
        let a4 = Assertion {
            client_data_json: &cd,
            authenticator_data: &no_uv,
            signature: &sig,
        };
        assert_eq!(
            verify_assertion(&a4, &e, &cose, 0),
            Err(WebAuthnError::NotVerified)
        );
        assert_eq!(
            verify_assertion(&a, &exp("webauthn.create"), &cose, 0),
            Err(WebAuthnError::WrongType)
        );
    }

    #[test]
    fn ed25519_assertions_verify() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let cose = cose_ed25519(&key);
        assert_eq!(parse_cose_key(&cose).unwrap().alg(), ALG_EDDSA);
        let auth = auth_data(RP, FLAG_UP | FLAG_UV, 0, None);
        let cd = client_data("webauthn.get", CHALLENGE, ORIGIN);
        let mut msg = auth.clone();
        msg.extend_from_slice(&Sha256::digest(&cd));
        let sig = ed25519_dalek::Signer::sign(&key, &msg).to_bytes();
        let a = Assertion {
            client_data_json: &cd,
            authenticator_data: &auth,
            signature: &sig,
        };
        assert_eq!(verify_assertion(&a, &exp("webauthn.get"), &cose, 0), Ok(0));
        let mut bad = sig;
        bad[0] ^= 1;
        let a = Assertion {
            signature: &bad,
            ..a
        };
        assert_eq!(
            verify_assertion(&a, &exp("webauthn.get"), &cose, 0),
            Err(WebAuthnError::BadSignature)
        );
    }

    #[test]
    fn the_counter_rule() {
        assert!(
            check_counter(0, 0).is_ok(),
            "authenticators that do not count"
        );
        assert!(check_counter(0, 1).is_ok());
        assert!(check_counter(7, 8).is_ok());
        assert!(check_counter(7, 7).is_err());
        assert!(check_counter(7, 0).is_err());
        assert!(check_counter(7, 3).is_err());
    }

    #[tokio::test]
    async fn challenges_answer_once() {
        let c = Challenges::new(Arc::new(crate::state::memory::MemoryState::new()));
        let ch = c
            .issue(&Pending {
                purpose: Purpose::Login {
                    return_to: "/".into(),
                },
                rp_id: RP.into(),
                origin: ORIGIN.into(),
            })
            .await
            .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&ch).unwrap().len(), 32);
        assert!(c.take(&ch).await.unwrap().is_some());
        assert!(c.take(&ch).await.unwrap().is_none());
        assert!(c.take("short").await.unwrap().is_none());
    }

    #[test]
    fn base64url_is_read_leniently() {
        assert_eq!(unb64("AQID").unwrap(), vec![1, 2, 3]);
        assert_eq!(unb64("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(unb64("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert!(unb64("!!").is_none());
    }
}
