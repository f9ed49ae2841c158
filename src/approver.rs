//! The reference approver: a terminal client of the phone-app API (`nidan app …`), so the
//! app flow can be used and tested without a phone, and a mobile app has a working model
//! of every request.
//!
//! Protocol, for app authors:
//! - Enroll: `POST {server}/api/app/enroll` with JSON `{"user", "enrollment_code",
//!   "security_code", "public_key", "name"}`; `public_key` is a raw Ed25519 public key,
//!   base64url without padding. The answer `{"app_id"}` names the enrollment.
//! - Every later request carries `X-Nidan-App: <app_id>`, `X-Nidan-Time: <unix seconds>`,
//!   `X-Nidan-Nonce: <16..64 random characters, never reused>` and
//!   `X-Nidan-Signature: <base64url Ed25519 signature>` over the UTF-8 text
//!   `nidan-app-v1\n{METHOD}\n{path}\n{time}\n{nonce}\n{hex SHA-256 of the body}`
//!   where `path` is the request path including the portal prefix, without query.
//! - `GET /api/app/approvals` lists pending approvals (id, context, expiry — never the
//!   number); `POST /api/app/approvals/{id}` with `{"approve": true, "number": "NN"}`,
//!   `{"approve": false}` or `{"approve": false, "not_me": true}` answers one.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::login::approval::signing_input;

#[derive(Debug, thiserror::Error)]
pub enum ApproverError {
    #[error("{0}")]
    Usage(String),
    #[error("the key file could not be used: {0}")]
    KeyFile(String),
    #[error("the server could not be reached: {0}")]
    Network(String),
    #[error("the server refused: {status} {body}")]
    Refused { status: u16, body: String },
}

/// What the app keeps after enrolling (the key file).
#[derive(Debug, Serialize, Deserialize)]
pub struct AppKey {
    /// Portal base URL, e.g. `http://127.0.0.1:8080/_nidan`.
    pub server: String,
    pub user: String,
    pub app_id: String,
    /// Ed25519 secret key, 32 bytes, base64url.
    pub secret_key: String,
}

/// The parts of an enrollment URI (`nidan-app://enroll?server=…&user=…&code=…`).
pub fn parse_uri(uri: &str) -> Result<(String, String, String), ApproverError> {
    let query = uri.strip_prefix("nidan-app://enroll?").ok_or_else(|| {
        ApproverError::Usage("the URI must start with nidan-app://enroll?".into())
    })?;
    let mut server = None;
    let mut user = None;
    let mut code = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "server" => server = Some(v.into_owned()),
            "user" => user = Some(v.into_owned()),
            "code" => code = Some(v.into_owned()),
            _ => {}
        }
    }
    match (server, user, code) {
        (Some(s), Some(u), Some(c)) => Ok((s.trim_end_matches('/').to_owned(), u, c)),
        _ => Err(ApproverError::Usage(
            "the URI needs server, user and code".into(),
        )),
    }
}

fn http() -> Result<reqwest::Client, ApproverError> {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| ApproverError::Network(e.to_string()))
}

async fn answer_of(resp: reqwest::Response) -> Result<Value, ApproverError> {
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .map_err(|e| ApproverError::Network(e.to_string()))?;
    if !(200..300).contains(&status) {
        return Err(ApproverError::Refused { status, body });
    }
    serde_json::from_str(&body).map_err(|_| ApproverError::Refused { status, body })
}

/// Enrolls a new key and writes the key file.
pub async fn enroll(
    uri: &str,
    security_code: &str,
    name: &str,
    key_file: &Path,
) -> Result<AppKey, ApproverError> {
    let (server, user, code) = parse_uri(uri)?;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = SigningKey::from_bytes(&secret);
    let body = json!({
        "user": user,
        "enrollment_code": code,
        "security_code": security_code,
        "public_key": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
        "name": name,
    });
    let resp = http()?
        .post(format!("{server}/api/app/enroll"))
        .json(&body)
        .send()
        .await
        .map_err(|e| ApproverError::Network(e.to_string()))?;
    let v = answer_of(resp).await?;
    let app_id = v["app_id"]
        .as_str()
        .ok_or_else(|| ApproverError::Refused {
            status: 200,
            body: v.to_string(),
        })?
        .to_owned();
    let saved = AppKey {
        server,
        user,
        app_id,
        secret_key: URL_SAFE_NO_PAD.encode(secret),
    };
    save(key_file, &saved)?;
    Ok(saved)
}

fn save(path: &Path, key: &AppKey) -> Result<(), ApproverError> {
    let text =
        serde_json::to_string_pretty(key).map_err(|e| ApproverError::KeyFile(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ApproverError::KeyFile(e.to_string()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| ApproverError::KeyFile(e.to_string()))
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text).map_err(|e| ApproverError::KeyFile(e.to_string()))
    }
}

pub fn load(path: &Path) -> Result<AppKey, ApproverError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ApproverError::KeyFile(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| ApproverError::KeyFile(e.to_string()))
}

/// Sends one signed request.
async fn signed(
    key: &AppKey,
    method: reqwest::Method,
    endpoint: &str,
    body: Option<&Value>,
) -> Result<Value, ApproverError> {
    let secret: [u8; 32] = URL_SAFE_NO_PAD
        .decode(&key.secret_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApproverError::KeyFile("the secret key is malformed".into()))?;
    let signing = SigningKey::from_bytes(&secret);
    let url = reqwest::Url::parse(&format!("{}{endpoint}", key.server))
        .map_err(|e| ApproverError::Usage(e.to_string()))?;
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let time = crate::time::now();
    let nonce = crate::secret::random_token(18);
    let message = signing_input(method.as_str(), url.path(), time, &nonce, &bytes);
    let signature = URL_SAFE_NO_PAD.encode(signing.sign(message.as_bytes()).to_bytes());
    let mut req = http()?
        .request(method, url)
        .header("x-nidan-app", &key.app_id)
        .header("x-nidan-time", time.to_string())
        .header("x-nidan-nonce", nonce)
        .header("x-nidan-signature", signature);
    if body.is_some() {
        req = req.header("content-type", "application/json").body(bytes);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| ApproverError::Network(e.to_string()))?;
    answer_of(resp).await
}

/// Pending approvals for this app's user.
pub async fn list(key: &AppKey) -> Result<Value, ApproverError> {
    signed(key, reqwest::Method::GET, "/api/app/approvals", None).await
}

/// Approves (with the number shown in the browser) or denies an approval.
pub async fn answer(
    key: &AppKey,
    id: &str,
    approve: bool,
    number: Option<&str>,
    not_me: bool,
) -> Result<Value, ApproverError> {
    let mut body = json!({"approve": approve});
    if let Some(n) = number {
        body["number"] = json!(n);
    }
    if not_me {
        body["not_me"] = json!(true);
    }
    signed(
        key,
        reqwest::Method::POST,
        &format!("/api/app/approvals/{id}"),
        Some(&body),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let (s, u, c) = parse_uri(
            "nidan-app://enroll?server=http%3A%2F%2F127.0.0.1%3A8080%2F_nidan&user=jiro&code=abc",
        )
        .unwrap_or_default();
        assert_eq!(
            (s.as_str(), u.as_str(), c.as_str()),
            ("http://127.0.0.1:8080/_nidan", "jiro", "abc")
        );
        assert!(parse_uri("https://evil/").is_err());
        assert!(parse_uri("nidan-app://enroll?user=jiro").is_err());
    }
}
