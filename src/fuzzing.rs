//! Doors for the fuzz targets in `fuzz/` (docs/fuzzing.md) to parsers that are private to
//! their module: each is the smallest wrapper that runs exactly the code a request runs.
//! Not an API; nothing in nidan calls these.

use serde::de::DeserializeOwned;

pub use crate::path::Canonical;
pub use crate::proxy::target::Authority;
pub use pingora::http::RequestHeader;

/// What the proxy's request edge decided about a request head: the `Host` it forwards
/// (`None` for an HTTP/1.0 request without one), the routing host, and the canonical target
/// (`None` for `OPTIONS *`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRead {
    pub authority: Option<Authority>,
    pub canonical: Option<Canonical>,
}

/// The proxy's edge on one request: `head` is the raw head as received (for the checks that
/// read it: `#` in the request line, `Content-Length` lines), `req` the head as pingora
/// parsed it. `Err` is the status the gateway answers with.
pub fn read_edge(head: &[u8], req: &RequestHeader) -> Result<EdgeRead, u16> {
    if crate::proxy::target::line_has_fragment(head) {
        return Err(400);
    }
    let limits = crate::config::Limits::default();
    let edge = crate::proxy::read_edge(req, &limits, || crate::proxy::content_length_lines(head))
        .map_err(|r| r.status)?;
    Ok(EdgeRead {
        authority: edge.authority,
        canonical: edge.canonical,
    })
}

/// A forward-auth question, read from its headers as the gateway reads it: the described
/// scheme, method, host and canonical target, or why it is refused (400).
pub fn forward_auth(
    headers: &http::HeaderMap,
) -> Result<(String, String, Authority, Canonical), String> {
    crate::proxy::forward_auth::described_for_fuzzing(headers)
}

/// The portal's JSON bodies, one per endpoint that reads one.
pub const PORTAL_BODIES: &[&str] = &[
    "login_start",
    "login_complete",
    "device_rename",
    "settings",
    "passkey_register",
    "passkey_login_start",
    "passkey_login_finish",
    "passkey_rename",
    "app_enroll",
    "app_answer",
    "token_create",
];

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<T>(body).map(drop)
}

/// Parses `body` as the JSON body of endpoint `PORTAL_BODIES[which]` (modulo the list's
/// length), with the type the endpoint parses it into.
pub fn portal_body(which: usize, body: &[u8]) -> Result<(), serde_json::Error> {
    use crate::portal::{api, passkeys, phone_app, tokens};
    match which % PORTAL_BODIES.len() {
        0 => json::<api::StartBody>(body),
        1 => json::<api::CompleteBody>(body),
        2 => json::<api::RenameBody>(body),
        3 => json::<api::SettingsBody>(body),
        4 => json::<passkeys::RegisterBody>(body),
        5 => json::<passkeys::LoginStartBody>(body),
        6 => json::<passkeys::LoginFinishBody>(body),
        7 => json::<passkeys::RenameBody>(body),
        8 => json::<phone_app::EnrollBody>(body),
        9 => json::<phone_app::AnswerBody>(body),
        _ => json::<tokens::CreateBody>(body),
    }
}

/// The phone app's enrollment request: `Ok((name, public key))` as accepted, or the status
/// of the refusal.
pub fn app_enroll(body: &[u8]) -> Result<(String, [u8; 32]), u16> {
    crate::portal::phone_app::enroll_request(body)
        .map(|(_, name, key)| (name, key))
        .map_err(|r| r.status)
}

/// The gateway's cookie names with the default configuration.
pub const GATEWAY_COOKIES: [&str; 6] = [
    "nidan_session",
    "nidan_device",
    crate::portal::CSRF_COOKIE,
    crate::portal::LANG_COOKIE,
    crate::portal::TZ_COOKIE,
    crate::login::risk::SEEN_COOKIE,
];

/// The `Cookie` header the backend gets for the client's `sent` headers: `None` for the
/// client's unchanged, `Some(None)` for none, `Some(Some(value))` for a rebuilt one.
pub fn backend_cookie(sent: &http::HeaderMap) -> Option<Option<String>> {
    crate::proxy::backend_cookie(sent, &GATEWAY_COOKIES)
}
