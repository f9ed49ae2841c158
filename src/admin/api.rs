//! The admin API on the admin listener, behind `Authorization: Bearer <server.admin_token>`
//! (compared in constant time). Without a configured token it does not exist (404).
//!
//! - `POST /admin/users/{id}/phone` `{"status": "active"|"kept"|"gone", "phone"?}`: a phone
//!   contract change (see `crate::phone`); 200 with the user's phone and 2-step state.

use http::Response;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

use super::reply;
use crate::app::App;

/// Largest request body read.
const MAX_BODY: usize = 16 * 1024;

pub(super) fn error(status: u16, code: &str, message: &str) -> Response<Vec<u8>> {
    reply(
        status,
        "application/json",
        json!({"error": code, "message": message}).to_string(),
    )
}

/// Is the request allowed? `None` when it is; else the answer.
fn authorize(app: &App, session: &ServerSession) -> Option<Response<Vec<u8>>> {
    let Some(expected) = &app.cfg.server.admin_token else {
        return Some(reply(404, "text/plain", "not found\n".into()));
    };
    let sent = session
        .req_header()
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().as_bytes().to_vec())
        .unwrap_or_default();
    // Hash both sides first: `equal` is constant-time only for equal lengths.
    let a = crate::secret::digest(&[&sent]);
    let b = crate::secret::digest(&[expected.expose()]);
    if sent.is_empty() || !crate::secret::equal(&a, &b) {
        let mut r = error(
            401,
            "unauthenticated",
            "a valid admin bearer token is required",
        );
        if let Ok(v) = http::HeaderValue::from_str("Bearer realm=\"nidan-admin\"") {
            r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
        return Some(r);
    }
    None
}

pub(super) async fn body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                out.extend_from_slice(&chunk);
                if out.len() > MAX_BODY {
                    return Err(error(413, "too_large", "the request body is too large"));
                }
            }
            Ok(None) => return Ok(out),
            Err(_) => {
                return Err(error(
                    400,
                    "bad_request",
                    "the request body could not be read",
                ));
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneBody {
    status: String,
    #[serde(default)]
    phone: Option<String>,
}

/// A phone contract change.
const PHONE: (&str, &str) = ("POST", "/admin/users/{id}/phone");

const USERS: (&str, &str) = ("GET", "/admin/users");
const USER_GET: (&str, &str) = ("GET", "/admin/users/{id}");
const USER_PUT: (&str, &str) = ("PUT", "/admin/users/{id}");
const USER_PATCH: (&str, &str) = ("PATCH", "/admin/users/{id}");
const USER_DELETE: (&str, &str) = ("DELETE", "/admin/users/{id}");

/// Every endpoint of the admin API (method, path); the OpenAPI description is checked
/// against this list.
pub const ENDPOINTS: &[(&str, &str)] = &[PHONE, USERS, USER_GET, USER_PUT, USER_PATCH, USER_DELETE];

pub async fn handle(app: &App, session: &mut ServerSession, path: &str) -> Response<Vec<u8>> {
    if let Some(r) = authorize(app, session) {
        return r;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = session.req_header().method.as_str().to_owned();
    let mut allowed: Vec<&str> = Vec::new();
    for &(m, template) in ENDPOINTS {
        let Some(param) = crate::portal::endpoints::fits(template, &segments) else {
            continue;
        };
        if m != method {
            allowed.push(m);
            continue;
        }
        let id = param.unwrap_or("").to_owned();
        return match (m, template) {
            _ if (m, template) == PHONE => phone(app, session, &id).await,
            _ if (m, template) == USERS => super::users::list(app, session).await,
            _ if (m, template) == USER_GET => super::users::get(app, &id).await,
            _ if (m, template) == USER_PUT => super::users::put(app, session, &id).await,
            _ if (m, template) == USER_PATCH => super::users::patch(app, session, &id).await,
            _ => super::users::delete(app, session, &id).await,
        };
    }
    if allowed.is_empty() {
        return error(404, "not_found", "no such admin endpoint");
    }
    let mut r = error(405, "method_not_allowed", "this method is not allowed here");
    if let Ok(v) = http::HeaderValue::from_str(&allowed.join(", ")) {
        r.headers_mut().insert(http::header::ALLOW, v);
    }
    r
}

async fn phone(app: &App, session: &mut ServerSession, id: &str) -> Response<Vec<u8>> {
    let json_body = session
        .req_header()
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !json_body {
        return error(415, "json_required", "send Content-Type: application/json");
    }
    let raw = match body(session).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(b) = serde_json::from_slice::<PhoneBody>(&raw) else {
        return error(
            400,
            "bad_request",
            "send {\"status\": \"active\"|\"kept\"|\"gone\", \"phone\"?: \"+81 90-...\"}",
        );
    };
    let Some(status) = crate::phone::status_from_str(&b.status) else {
        return error(400, "bad_status", "status is one of active, kept, gone");
    };
    let phone = b.phone.map(|p| p.trim().to_owned());
    if phone.as_deref().is_some_and(|p| !crate::phone::phone_ok(p)) {
        return error(
            400,
            "bad_phone",
            "write digits with an optional leading +, spaces, - and parentheses",
        );
    }
    match app.active_user(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(404, "not_found", "no such user"),
        Err(_) => {
            return error(
                503,
                "unavailable",
                "the user directory is unavailable; try again",
            );
        }
    }
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or_else(String::new, |a| a.ip().to_string());
    match app
        .accounts
        .phone_admin_change(id, status, phone, &ip)
        .await
    {
        Ok((user, action)) => {
            let Ok((enabled, method)) = app.two_step_of(&user).await else {
                return unavailable();
            };
            reply(
                200,
                "application/json",
                json!({
                    "user": user.id,
                    "phone_status": crate::phone::status_str(user.phone_status),
                    "phone": user.phone.as_deref().map(crate::notify::mask_phone),
                    "action": action.as_str(),
                    "two_step": {"enabled": enabled, "method": method.as_str()},
                })
                .to_string(),
            )
        }
        // The user left the directory meanwhile (a users-file reload).
        Err(crate::store::StoreError::Db(sqlx::Error::RowNotFound)) => {
            error(404, "not_found", "no such user")
        }
        Err(e) => {
            tracing::error!(error = %e, "the phone change could not be stored");
            unavailable()
        }
    }
}

/// A store could not be reached: 503 (with the one Retry-After, see [`super::reply`]);
/// nothing or part of the change was made, and sending it again finishes it.
fn unavailable() -> Response<Vec<u8>> {
    error(
        503,
        "unavailable",
        "the store could not be reached; try again",
    )
}
