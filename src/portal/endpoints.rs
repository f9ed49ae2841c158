//! The JSON API's table of endpoints and the helpers every endpoint handler shares:
//! body parsing, the recent-login gate and the common error answers. The dispatcher
//! (`api.rs`) and the handlers (`passkeys.rs`, `sessions.rs`, `tokens.rs`) import this
//! file; it imports none of them, so the arrows point one way.

use ::http::Method;
use serde::Deserialize;

use super::Ctx;
use super::http::Response;

/// Largest JSON body the API reads.
const MAX_JSON: usize = 16 * 1024;

/// What answers one endpoint of the JSON API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    OpenApi,
    LoginStart,
    LoginStatus,
    LoginComplete,
    LoginResend,
    LoginUseEmail,
    LoginUseCode,
    AppEnroll,
    AppEnrollStart,
    AppApprovals,
    AppAnswer,
    AppEnrollments,
    AppEnrollmentDelete,
    Logout,
    Me,
    Devices,
    DevicesDeleteAll,
    DeviceRename,
    DeviceDelete,
    SettingsGet,
    SettingsPut,
    PasswordPut,
    Tokens,
    TokenCreate,
    TokenDelete,
    Passkeys,
    PasskeyRegisterStart,
    PasskeyRegisterFinish,
    PasskeyLoginStart,
    PasskeyLoginFinish,
    PasskeyRename,
    PasskeyDelete,
    Sessions,
    SessionsEndOthers,
    SessionEnd,
}

/// Every endpoint of the JSON API: method, path under `{prefix}/api` (`{name}` is one path
/// segment), and what answers it. Requests are dispatched from this table only, and the
/// published OpenAPI description is checked against it, so the two cannot drift apart.
/// Literal paths come before templates that could also match them.
pub const ENDPOINTS: &[(&str, &str, Endpoint)] = &[
    ("GET", "/openapi.json", Endpoint::OpenApi),
    ("POST", "/login", Endpoint::LoginStart),
    ("GET", "/login/{flow}", Endpoint::LoginStatus),
    ("POST", "/login/{flow}/complete", Endpoint::LoginComplete),
    ("POST", "/login/{flow}/resend", Endpoint::LoginResend),
    ("POST", "/login/{flow}/use-email", Endpoint::LoginUseEmail),
    ("POST", "/login/{flow}/use-code", Endpoint::LoginUseCode),
    ("POST", "/app/enroll", Endpoint::AppEnroll),
    ("POST", "/app/enroll/start", Endpoint::AppEnrollStart),
    ("GET", "/app/approvals", Endpoint::AppApprovals),
    ("POST", "/app/approvals/{id}", Endpoint::AppAnswer),
    ("GET", "/app/enrollments", Endpoint::AppEnrollments),
    (
        "DELETE",
        "/app/enrollments/{id}",
        Endpoint::AppEnrollmentDelete,
    ),
    ("POST", "/logout", Endpoint::Logout),
    ("GET", "/me", Endpoint::Me),
    ("GET", "/devices", Endpoint::Devices),
    ("DELETE", "/devices", Endpoint::DevicesDeleteAll),
    ("PATCH", "/devices/{id}", Endpoint::DeviceRename),
    ("DELETE", "/devices/{id}", Endpoint::DeviceDelete),
    ("GET", "/settings", Endpoint::SettingsGet),
    ("PUT", "/settings", Endpoint::SettingsPut),
    ("PUT", "/password", Endpoint::PasswordPut),
    ("GET", "/tokens", Endpoint::Tokens),
    ("POST", "/tokens", Endpoint::TokenCreate),
    ("DELETE", "/tokens/{id}", Endpoint::TokenDelete),
    ("GET", "/passkeys", Endpoint::Passkeys),
    (
        "POST",
        "/passkeys/register/start",
        Endpoint::PasskeyRegisterStart,
    ),
    (
        "POST",
        "/passkeys/register/finish",
        Endpoint::PasskeyRegisterFinish,
    ),
    ("POST", "/passkeys/login/start", Endpoint::PasskeyLoginStart),
    (
        "POST",
        "/passkeys/login/finish",
        Endpoint::PasskeyLoginFinish,
    ),
    ("PATCH", "/passkeys/{id}", Endpoint::PasskeyRename),
    ("DELETE", "/passkeys/{id}", Endpoint::PasskeyDelete),
    ("GET", "/sessions", Endpoint::Sessions),
    ("DELETE", "/sessions", Endpoint::SessionsEndOthers),
    ("DELETE", "/sessions/{id}", Endpoint::SessionEnd),
];

/// Does `path` (segments, without `{prefix}/api`) fit `template`? The one `{name}` segment
/// it captures, if any.
pub(crate) fn fits<'a>(template: &str, path: &[&'a str]) -> Option<Option<&'a str>> {
    let mut captured = None;
    let mut parts = template.trim_start_matches('/').split('/');
    for &segment in path {
        let part = parts.next()?;
        if part.starts_with('{') {
            if segment.is_empty() {
                return None;
            }
            captured = Some(segment);
        } else if part != segment {
            return None;
        }
    }
    parts.next().is_none().then_some(captured)
}

/// The endpoint for a request, or the answer when there is none: 405 with `Allow` when the
/// path exists under other methods, else 404.
pub fn resolve<'a>(method: &Method, rest: &'a str) -> Result<(Endpoint, &'a str), Response> {
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let mut allowed: Vec<&str> = Vec::new();
    for (m, template, endpoint) in ENDPOINTS {
        if let Some(param) = fits(template, &segments) {
            if *m == method.as_str() {
                return Ok((*endpoint, param.unwrap_or("")));
            }
            allowed.push(m);
        }
    }
    if allowed.is_empty() {
        Err(Response::json_error(
            404,
            "not_found",
            "no such API endpoint",
        ))
    } else {
        Err(
            Response::json_error(405, "method_not_allowed", "this method is not allowed here")
                .with("allow", allowed.join(", ")),
        )
    }
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(ctx: &Ctx<'_>) -> Result<T, Response> {
    if ctx.req.body.len() > MAX_JSON {
        return Err(Response::json_error(
            413,
            "too_large",
            "the request body is too large",
        ));
    }
    serde_json::from_slice(&ctx.req.body).map_err(|e| {
        Response::json_error(
            400,
            "bad_request",
            &format!("invalid JSON body: {}", e.classify_reason()),
        )
    })
}

trait Reason {
    fn classify_reason(&self) -> &'static str;
}

impl Reason for serde_json::Error {
    /// A reason without echoing the body (it may hold a password).
    fn classify_reason(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or mistyped field",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

/// 503 when the session store cannot be read: never "logged out", never a pass.
/// 503: a store needed for the answer failed (nothing changed; try again).
pub(super) fn unavailable() -> Response {
    Response::json_error(503, "unavailable", "the service is unavailable; try again")
        .with("retry-after", crate::outage::retry_after())
}

pub(super) fn unauthorized() -> Response {
    Response::json_error(401, "unauthenticated", "log in first")
}

fn recent_required() -> Response {
    Response::json_error(403, "recent_login_required", "log in again to change this")
}

/// A session with a recent login, or the error response.
pub(super) async fn recent(ctx: &Ctx<'_>) -> Result<std::sync::Arc<crate::users::User>, Response> {
    let Some((live, user)) = (match ctx.session_checked().await {
        Ok(s) => s,
        Err(()) => return Err(unavailable()),
    }) else {
        return Err(unauthorized());
    };
    if !ctx.is_recent(&live) {
        return Err(recent_required());
    }
    if !ctx.manage_check(&live).await.map_err(|()| unavailable())? {
        return Err(Response::json_error(
            403,
            "step_up_required",
            "log in again with the second step to change this",
        ));
    }
    Ok(user)
}
