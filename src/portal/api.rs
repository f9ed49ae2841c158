//! The JSON API under `{prefix}/api`: the same login, devices and settings as the pages,
//! for scripts and single-page front ends. Errors are `{"error", "message"}`.

use ::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use super::http::Response;
use super::pages::{SettingError, blocked_text, change_setting, signed_in_redirect};
use crate::config::TwoStepMethod;
use crate::login::{self, Completion, FlowView, LoginError};
use crate::session::device::{self, DeviceError};

use super::endpoints::{Endpoint, parse, recent, resolve, unauthorized, unavailable};

pub async fn handle(ctx: &Ctx<'_>, rest: &str) -> Response {
    let method = &ctx.req.method;
    let (endpoint, id) = match resolve(method, rest) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes {
        if !ctx.same_site() {
            return Response::json_error(403, "cross_site", "cross-site requests are refused");
        }
        if *method != Method::DELETE && !ctx.req.is_json() {
            return Response::json_error(
                415,
                "json_required",
                "send Content-Type: application/json",
            );
        }
    }
    use Endpoint as E;
    match endpoint {
        E::OpenApi => super::openapi::serve(ctx),
        E::LoginStart => login_start(ctx).await,
        E::LoginStatus => match ctx.app.login.status(id).await {
            Ok(v) => Response::json(200, &flow_json(&v)),
            Err(e) => login_error(ctx, &e),
        },
        E::LoginComplete => login_complete(ctx, id).await,
        E::LoginResend => flow_result(ctx, ctx.app.login.resend(&ctx.client(), id).await),
        E::LoginUseEmail => flow_result(ctx, ctx.app.login.use_email(&ctx.client(), id).await),
        E::LoginUseCode => flow_result(ctx, ctx.app.login.use_code(&ctx.client(), id).await),
        E::AppEnroll => super::phone_app::enroll(ctx).await,
        E::AppEnrollStart => app_enroll_start(ctx).await,
        E::AppApprovals => super::phone_app::approvals(ctx).await,
        E::AppAnswer => super::phone_app::answer(ctx, id).await,
        E::AppEnrollments => match ctx.session_checked().await {
            Ok(Some((_, user))) => super::phone_app::enrollments_json(ctx, &user).await,
            Ok(None) => unauthorized(),
            Err(()) => unavailable(),
        },
        E::AppEnrollmentDelete => match recent(ctx).await {
            Ok(user) => match super::phone_app::remove(ctx, &user, Some(id)).await {
                Ok(true) => Response::no_content(),
                Ok(false) => Response::json_error(404, "not_found", "no such app"),
                Err(()) => unavailable(),
            },
            Err(r) => r,
        },
        E::Logout => logout(ctx).await,
        E::Me => me(ctx).await,
        E::Devices => devices(ctx).await,
        E::DevicesDeleteAll => devices_delete_all(ctx).await,
        E::DeviceRename => device_rename(ctx, id).await,
        E::DeviceDelete => device_delete(ctx, id).await,
        E::SettingsGet => settings_get(ctx).await,
        E::SettingsPut => settings_put(ctx).await,
        E::PasswordPut => super::password::api_put(ctx).await,
        E::Tokens => super::tokens::api_list(ctx).await,
        E::TokenCreate => super::tokens::api_create(ctx).await,
        E::TokenDelete => super::tokens::api_delete(ctx, id).await,
        E::Passkeys
        | E::PasskeyRegisterStart
        | E::PasskeyRegisterFinish
        | E::PasskeyLoginStart
        | E::PasskeyLoginFinish
        | E::PasskeyRename
        | E::PasskeyDelete => super::passkeys::api(ctx, endpoint, id).await,
        E::Sessions | E::SessionsEndOthers | E::SessionEnd => {
            super::sessions::api(ctx, endpoint, id).await
        }
    }
}

fn flow_json(v: &FlowView) -> Value {
    let mut j = json!({"flow": v.id, "step": v.step.as_str()});
    if let Some(d) = &v.code_destination {
        j["code_destination"] = json!(d);
    }
    if let Some(c) = v.code_channel {
        j["code_channel"] = json!(c);
    }
    if let Some(n) = v.notice {
        // Every reason the app is not asked is `app_unavailable`; `app_reason` says which.
        match n.app_reason() {
            Some(reason) => {
                j["notice"] = json!("app_unavailable");
                j["app_reason"] = json!(reason);
            }
            None => j["notice"] = json!("phone_kept"),
        }
    }
    if v.step == login::flow::Step::PasswordAndCode {
        j["email_alternative"] = json!(v.email_alternative);
        j["code_live"] = json!(v.code_live);
    }
    if let Some(n) = &v.approval_number {
        j["approval_number"] = json!(n);
    }
    if let Some(a) = v.approval {
        j["approval"] = json!(a.as_str());
    }
    if let Some(d) = v.denial {
        j["denial"] = json!(d.as_str());
    }
    if v.step_up {
        j["step_up"] = json!(true);
    }
    if v.password_ok {
        j["password_ok"] = json!(true);
    }
    j
}

async fn app_enroll_start(ctx: &Ctx<'_>) -> Response {
    let user = match recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match super::phone_app::open(ctx, &user).await {
        Ok(e) => Response::json(
            200,
            &json!({"enrollment_code": e.enrollment_code, "uri": e.uri, "code_destination": e.code_destination}),
        )
        .with("cache-control", "no-store"),
        Err(super::phone_app::EnrollError::Limited(s)) => {
            Response::json_error(429, "too_many_codes", "too many codes were sent; try later").with("retry-after", s.to_string())
        }
        Err(super::phone_app::EnrollError::NoDestination) => {
            Response::json_error(403, "second_step_unavailable", "no phone or email can receive the security code")
        }
        Err(super::phone_app::EnrollError::StepUp) => Response::json_error(
            403,
            "step_up_required",
            "log in again with a second step every route accepts (SMS or the app) to enroll an app",
        ),
        Err(super::phone_app::EnrollError::NoPublicUrl) => Response::json_error(
            503,
            "not_configured",
            "the gateway's public address is not configured (portal.public_url)",
        ),
        Err(super::phone_app::EnrollError::Delivery) => {
            Response::json_error(503, "delivery_failed", "the security code could not be delivered")
        }
        Err(super::phone_app::EnrollError::Busy) => {
            Response::json_error(503, "busy", "the server is busy; try again shortly").with("retry-after", crate::outage::retry_after())
        }
    }
}

fn login_error(ctx: &Ctx<'_>, e: &LoginError) -> Response {
    let text = match e {
        LoginError::Blocked(b) => blocked_text(ctx.t, *b).to_owned(),
        other => other.to_string(),
    };
    let mut r = Response::json_error(e.status(), e.code(), &text);
    if let Some(s) = e.retry_after() {
        r = r.with("retry-after", s.to_string());
    }
    r
}

fn flow_result(ctx: &Ctx<'_>, r: Result<FlowView, LoginError>) -> Response {
    match r {
        Ok(v) => Response::json(200, &flow_json(&v)),
        Err(e) => login_error(ctx, &e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    id: String,
    #[serde(default)]
    return_to: Option<String>,
}

async fn login_start(ctx: &Ctx<'_>) -> Response {
    let body: StartBody = match parse(ctx) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let rd = ctx.safe_rd(body.return_to.as_deref());
    let target = ctx.route_of(&rd);
    match ctx
        .app
        .login
        .start(&ctx.client(), &body.id, &rd, target.as_ref())
        .await
    {
        Ok(started) => match started.send {
            Ok(()) => Response::json(200, &flow_json(&started.flow)),
            Err(e) => {
                let mut r = login_error(ctx, &e);
                // The flow exists; a client may resend or switch to email.
                r.body = {
                    let mut j: Value =
                        serde_json::from_slice(&r.body).unwrap_or_else(|_| json!({}));
                    j["flow"] = json!(started.flow.id);
                    j.to_string().into()
                };
                r
            }
        },
        Err(e) => login_error(ctx, &e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    /// Not needed in a step-up, where the session proved it.
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    trust_device: bool,
    #[serde(default)]
    device_name: Option<String>,
}

async fn login_complete(ctx: &Ctx<'_>, flow: &str) -> Response {
    let body: CompleteBody = match parse(ctx) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let input = Completion {
        password: &body.password,
        code: body.code.as_deref(),
        trust_device: body.trust_device,
        device_name: body.device_name.as_deref(),
    };
    match ctx.app.login.complete(&ctx.client(), flow, &input).await {
        Ok(done) => signed_in_redirect(ctx, done, 200),
        Err(LoginError::AwaitingApproval) => match ctx.app.login.status(flow).await {
            Ok(v) => Response::json(202, &flow_json(&v)),
            Err(e) => login_error(ctx, &e),
        },
        Err(e) => login_error(ctx, &e),
    }
}

async fn logout(ctx: &Ctx<'_>) -> Response {
    if let Some(token) = ctx.session_token() {
        if let Ok(Some(live)) = ctx.app.sessions.check(&token, ctx.now()).await {
            ctx.app
                .audit
                .record(
                    crate::audit::Event::Logout,
                    &live.record.user_id,
                    &ctx.req.peer.to_string(),
                    json!({}),
                )
                .await;
        }
        // A logout the store did not take is no logout: say so and keep the cookie, or the
        // user walks away from a session that still works (SECURITY 18, 36).
        if let Err(e) = ctx.app.sessions.end(&token).await {
            tracing::error!(error = %e, "logout: the session could not be ended");
            return Response::json_error(
                503,
                "unavailable",
                "you are not logged out yet: the service is unavailable; try again",
            )
            .with("retry-after", crate::outage::retry_after());
        }
    }
    Response::json(200, &json!({"logged_out": true}))
        .with(
            "set-cookie",
            ctx.remove_cookie(&ctx.app.cfg.session.cookie_name),
        )
        .with("cache-control", "no-store")
}

async fn me(ctx: &Ctx<'_>) -> Response {
    let Some((live, user)) = (match ctx.session_checked().await {
        Ok(s) => s,
        Err(()) => return unavailable(),
    }) else {
        return unauthorized();
    };
    let r = &live.record;
    let idle = i64::try_from(ctx.app.cfg.session.idle_timeout.as_secs()).unwrap_or(0);
    Response::json(
        200,
        &json!({
            "user": user.id,
            "name": user.name,
            "email": user.email,
            "groups": user.groups,
            "two_step": r.proof.second.is_some(),
            "methods": r.methods.split('+').collect::<Vec<_>>(),
            "proof": {
                "first_factor": r.proof.first.as_str(),
                "second_factor": r.proof.second.map(|f| f.as_str()),
                "exemption": r.proof.exemption.map(|e| e.to_string()),
                "second_step_required": r.proof.required,
            },
            "login_at": crate::time::rfc3339(r.created),
            "auth_time": crate::time::rfc3339(r.auth_time),
            "idle_expires_at": crate::time::rfc3339(live.last_seen() + idle),
            "expires_at": crate::time::rfc3339(r.expires),
        }),
    )
}

async fn devices(ctx: &Ctx<'_>) -> Response {
    let Some((_, user)) = (match ctx.session_checked().await {
        Ok(s) => s,
        Err(()) => return unavailable(),
    }) else {
        return unauthorized();
    };
    let now = ctx.now();
    let current = ctx
        .client()
        .device_cookie
        .and_then(|t| ctx.app.devices.token_device(&t, now))
        .map(|c| c.jti);
    // A store error is a 503, never an empty list (the user would think them all gone).
    let list = match ctx.app.devices.list(&user.id, now).await {
        Ok(list) => list,
        Err(e) => {
            tracing::error!(error = %e, "devices could not be listed");
            return unavailable();
        }
    };
    let devices: Vec<Value> = list
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "name": d.name,
                "created": crate::time::rfc3339(d.created),
                "last_used": crate::time::rfc3339(d.last_used),
                "expires": crate::time::rfc3339(d.expires),
                "browser": d.browser,
                "current": current.as_deref() == Some(d.id.as_str()),
            })
        })
        .collect();
    Response::json(
        200,
        &json!({"devices": devices, "max": ctx.app.devices.max_per_user()}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameBody {
    name: String,
}

async fn device_rename(ctx: &Ctx<'_>, id: &str) -> Response {
    let user = match recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let body: RenameBody = match parse(ctx) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = device::valid_name(&body.name) else {
        return Response::json_error(
            400,
            "bad_device_name",
            "a device name has 1 to 64 characters and no control characters",
        );
    };
    match ctx.app.devices.rename(&user.id, id, &name).await {
        Ok(()) => {
            ctx.app
                .audit
                .record(
                    crate::audit::Event::DeviceRenamed,
                    &user.id,
                    &ctx.req.peer.to_string(),
                    json!({"device": id}),
                )
                .await;
            Response::json(200, &json!({"id": id, "name": name}))
        }
        Err(DeviceError::NotFound) => Response::json_error(404, "not_found", "no such device"),
        Err(e) => device_failed(&e),
    }
}

async fn device_delete(ctx: &Ctx<'_>, id: &str) -> Response {
    let user = match recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match ctx.app.devices.revoke(&user.id, id).await {
        Ok(()) => {
            ctx.app
                .audit
                .record(
                    crate::audit::Event::DeviceRevoked,
                    &user.id,
                    &ctx.req.peer.to_string(),
                    json!({"device": id}),
                )
                .await;
            Response::no_content()
        }
        Err(DeviceError::NotFound) => Response::json_error(404, "not_found", "no such device"),
        Err(e) => device_failed(&e),
    }
}

async fn devices_delete_all(ctx: &Ctx<'_>) -> Response {
    let user = match recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match ctx.app.devices.revoke_all(&user.id).await {
        Ok(n) => {
            ctx.app
                .audit
                .record(
                    crate::audit::Event::DevicesRevoked,
                    &user.id,
                    &ctx.req.peer.to_string(),
                    json!({"count": n}),
                )
                .await;
            Response::no_content()
        }
        Err(e) => device_failed(&e),
    }
}

/// A device operation that failed: a store error is a 503 (nothing changed; try again),
/// anything else a 500.
fn device_failed(e: &DeviceError) -> Response {
    tracing::error!(error = %e, "device operation failed");
    match e {
        DeviceError::Store(_) => unavailable(),
        _ => Response::json_error(500, "internal", "internal error"),
    }
}

async fn settings_get(ctx: &Ctx<'_>) -> Response {
    let Some((_, user)) = (match ctx.session_checked().await {
        Ok(s) => s,
        Err(()) => return unavailable(),
    }) else {
        return unauthorized();
    };
    let Ok((enabled, method)) = ctx.app.two_step_of(&user).await else {
        return unavailable();
    };
    Response::json(
        200,
        &json!({
            "enabled": enabled,
            "method": method.as_str(),
            "phone": user.phone.as_deref().map(crate::notify::mask_phone),
            "email": user.email.as_deref().map(crate::notify::mask_email),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsBody {
    enabled: bool,
    method: String,
}

async fn settings_put(ctx: &Ctx<'_>) -> Response {
    let user = match recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let body: SettingsBody = match parse(ctx) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(method) = TwoStepMethod::parse(&body.method) else {
        return Response::json_error(400, "bad_method", "method is one of sms, email, app");
    };
    match change_setting(ctx, &user, body.enabled, method).await {
        Ok(token) => {
            let mut r = Response::json(
                200,
                &json!({"enabled": body.enabled, "method": body.method}),
            );
            if let Some(t) = token {
                r = r
                    .with(
                        "set-cookie",
                        ctx.set_cookie(&ctx.app.cfg.session.cookie_name, &t, None),
                    )
                    .with("cache-control", "no-store");
            }
            r
        }
        Err(SettingError::MethodUnusable) => Response::json_error(
            400,
            "method_unavailable",
            "that method cannot be used for this account",
        ),
        Err(SettingError::Store) => unavailable(),
    }
}
