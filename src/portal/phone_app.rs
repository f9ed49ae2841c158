//! The phone app's side of the portal: enrolling an app (verified with a security code),
//! listing and removing enrollments, and the signed API the app uses to list and answer
//! login approvals.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use super::http::Response;
use crate::login::approval::Ticket;
use crate::login::approval::{Answer, AnswerError, SignedRequest, Status};
use crate::login::code::{CodeCheck, IssuedCode};
use crate::notify::{self, Channel, Message};
use crate::session::device;
use crate::users::{PhoneStatus, User};

/// What the settings page shows after "set up the app".
pub struct Enrollment {
    pub enrollment_code: String,
    pub uri: String,
    pub code_destination: String,
}

#[derive(Debug)]
pub enum EnrollError {
    /// The session's second step (or the channel the enrollment code would go by) is one a
    /// route that accepts the app refuses: enrolling here would launder it.
    StepUp,
    /// No absolute address of the portal is known: `portal.public_url` is not set and the
    /// request's host is not one the configuration names.
    NoPublicUrl,
    NoDestination,
    Limited(u64),
    Delivery,
    /// The short-lived state could not be reached (503).
    Busy,
}

/// Opens an enrollment: a one-time enrollment code for the app, and a security code sent
/// to the user's phone (or email) that the app must also present, as the seed asks when
/// the ID is set into the app.
pub async fn open(ctx: &Ctx<'_>, user: &User) -> Result<Enrollment, EnrollError> {
    let app = ctx.app;
    // Before anything is sent: the app must be told where to reach us (SECURITY 21).
    let Some(base) = ctx.public_base() else {
        tracing::error!(
            "app enrollment needs portal.public_url (the request's host is not a configured one)"
        );
        return Err(EnrollError::NoPublicUrl);
    };
    let destination = match (&user.phone, user.phone_status, &user.email) {
        (Some(p), PhoneStatus::Active, _) => (Channel::Sms, p.clone()),
        (_, _, Some(e)) => (Channel::Email, e.clone()),
        _ => return Err(EnrollError::NoDestination),
    };
    // An enrolled app is a second step wherever `app` is accepted: enrolling it must have
    // taken steps those routes accept, both the session's and the enrollment code's channel.
    if !may_enroll(ctx, destination.0).await {
        return Err(EnrollError::StepUp);
    }
    let now = ctx.now();
    let ip = ctx.req.peer.to_string();
    // A logged-in session enrolls: the account's own browser.
    app.login
        .budgets
        .send(
            ctx.req.peer,
            &user.id,
            crate::login::budget::Browser::Known,
            now,
        )
        .await
        .map_err(|_| EnrollError::Busy)?
        .map_err(EnrollError::Limited)?;
    let enrollment_code = crate::secret::random_token(15);
    let (issued, masked) = send_code(ctx, user, &enrollment_code, destination).await?;
    app.login
        .approvals
        .open_ticket(&enrollment_code, &user.id, Some(issued), now)
        .await
        .map_err(|_| EnrollError::Busy)?;
    app.audit
        .record(
            crate::audit::Event::AppEnrollmentOpened,
            &user.id,
            &ip,
            json!({"code_to": masked}),
        )
        .await;
    let server = format!("{base}{}", ctx.prefix());
    let uri = format!(
        "nidan-app://enroll?server={}&user={}&code={}",
        super::redirect::encode_rd(&server),
        super::redirect::encode_rd(&user.id),
        enrollment_code
    );
    Ok(Enrollment {
        enrollment_code,
        uri,
        code_destination: masked,
    })
}

/// Whether the session may add the app as a factor: enrolling it must have taken steps the
/// routes accepting `app` accept, both the session's and the enrollment code's channel.
async fn may_enroll(ctx: &Ctx<'_>, channel: Channel) -> bool {
    let code_factor = match channel {
        Channel::Email => crate::assurance::SecondFactor::Email,
        _ => crate::assurance::SecondFactor::Sms,
    };
    let session_fit = match ctx.session().await {
        Some((live, _)) => ctx.may_add_factor(&live),
        None => false,
    };
    session_fit && crate::assurance::may_add_factor(ctx.app.routes().routes(), code_factor)
}

/// Issues the security code bound to `enrollment_code` and sends it to `destination`; the
/// issued code and the masked destination.
async fn send_code(
    ctx: &Ctx<'_>,
    user: &User,
    enrollment_code: &str,
    destination: (Channel, String),
) -> Result<(IssuedCode, String), EnrollError> {
    let app = ctx.app;
    let ip = ctx.req.peer.to_string();
    let cfg = &app.cfg.security_code;
    let masked = match destination.0 {
        Channel::Email => notify::mask_email(&destination.1),
        _ => notify::mask_phone(&destination.1),
    };
    let (issued, plain) = IssuedCode::generate(
        &app.login.codes,
        enrollment_code,
        cfg.length,
        cfg.lifetime,
        cfg.max_attempts,
        destination.0,
        masked.clone(),
        crate::login::code::now_ms(),
    )
    .ok_or(EnrollError::Busy)?;
    let minutes = cfg.lifetime.as_secs().div_ceil(60);
    let site = app.cfg.portal.site_name();
    let (subject, body) = notify::messages::security_code(ctx.lang, &plain, minutes, site);
    let body = if destination.0 == Channel::Sms {
        notify::messages::security_code_sms(ctx.lang, &plain, minutes, site)
    } else {
        body
    };
    let msg = Message {
        channel: destination.0,
        user: user.id.clone(),
        to: destination.1,
        code: Some(plain),
        subject,
        body,
    };
    if app.notifier.send(&msg).await.is_err() {
        app.audit
            .record(
                crate::audit::Event::CodeSendFailed,
                &user.id,
                &ip,
                json!({"channel": destination.0, "to": masked, "for": "app_enrollment"}),
            )
            .await;
        return Err(EnrollError::Delivery);
    }
    Ok((issued, masked))
}

/// An SVG QR code of `text` as a `data:` URI (allowed by the portal's CSP for images).
pub fn qr_data_uri(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollBody {
    user: String,
    enrollment_code: String,
    security_code: String,
    /// Ed25519 public key, 32 bytes, base64url without padding.
    public_key: String,
    name: String,
}

/// The enrollment request: its body, the app's name and its Ed25519 public key; a 400
/// answer naming what is wrong.
pub(crate) fn enroll_request(bytes: &[u8]) -> Result<(EnrollBody, String, [u8; 32]), Response> {
    let body: EnrollBody = match serde_json::from_slice(bytes) {
        Ok(b) => b,
        Err(_) => {
            return Err(Response::json_error(
                400,
                "bad_request",
                "expected {user, enrollment_code, security_code, public_key, name}",
            ));
        }
    };
    let Some(name) = device::valid_name(&body.name) else {
        return Err(Response::json_error(
            400,
            "bad_name",
            "a name has 1 to 64 characters and no control characters",
        ));
    };
    let key: Option<[u8; 32]> = URL_SAFE_NO_PAD
        .decode(body.public_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok());
    let Some(key) = key.filter(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_ok()) else {
        return Err(Response::json_error(
            400,
            "bad_public_key",
            "public_key must be an Ed25519 key: 32 bytes, base64url",
        ));
    };
    Ok((body, name, key))
}

/// `POST /api/app/enroll`: the app registers its key with both codes.
pub async fn enroll(ctx: &Ctx<'_>) -> Response {
    let (body, name, key) = match enroll_request(&ctx.req.body) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let app = ctx.app;
    let ip = ctx.req.peer.to_string();
    // Taken out for the check: one check at a time, on any replica; a wrong code puts
    // it back with the try counted.
    let now = ctx.now();
    let mut t = match app
        .login
        .approvals
        .take_ticket(&body.enrollment_code, now)
        .await
    {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Response::json_error(
                401,
                "enrollment_failed",
                "the enrollment code or security code is wrong or has expired",
            );
        }
        Err(_) => {
            return Response::json_error(503, "busy", "the server is busy; try again shortly")
                .with("retry-after", crate::outage::retry_after());
        }
    };
    if let Err(answer) = check_codes(ctx, &body, &mut t, now).await {
        return answer;
    }
    let user_id = t.user_id.clone();
    match app.login.approvals.enroll(&user_id, &name, &key, now).await {
        Ok(rec) => {
            app.audit
                .record(
                    crate::audit::Event::AppEnrolled,
                    &user_id,
                    &ip,
                    json!({"app": rec.id}),
                )
                .await;
            // A new way to approve logins: the user hears of it (SECURITY 16).
            if let Ok(Some(user)) = app.active_user(&user_id).await {
                crate::login::notify_user(app, &user, ctx.lang, |lang, site| {
                    notify::messages::app_enrolled(lang, &name, &ip, site)
                });
            }
            Response::json(200, &json!({"app_id": rec.id, "user": user_id}))
        }
        // The enrollment could not be stored: try again (the ticket is spent; a new
        // enrollment starts from the portal).
        Err(_) => super::endpoints::unavailable(),
    }
}

fn signed<'a>(ctx: &'a Ctx<'a>, path: &'a str) -> SignedRequest<'a> {
    SignedRequest {
        app: ctx.req.header("x-nidan-app"),
        time: ctx.req.header("x-nidan-time"),
        nonce: ctx.req.header("x-nidan-nonce"),
        signature: ctx.req.header("x-nidan-signature"),
        method: ctx.req.method.as_str(),
        path,
        body: &ctx.req.body,
    }
}

fn unauthenticated(e: &crate::login::approval::AppAuthError) -> Response {
    if matches!(e, crate::login::approval::AppAuthError::Unavailable) {
        return busy();
    }
    Response::json_error(401, "app_unauthenticated", &e.to_string())
}

fn busy() -> Response {
    Response::json_error(503, "busy", "the server is busy; try again shortly")
        .with("retry-after", crate::outage::retry_after())
}

/// `GET /api/app/approvals`: the signed app lists its user's pending approval.
pub async fn approvals(ctx: &Ctx<'_>) -> Response {
    let path = format!("{}{}", ctx.prefix(), ctx.req.path);
    let rec = match ctx
        .app
        .login
        .approvals
        .authenticate(&signed(ctx, &path), ctx.now())
        .await
    {
        Ok(r) => r,
        Err(e) => return unauthenticated(&e),
    };
    let Ok(pending) = ctx
        .app
        .login
        .approvals
        .pending(&rec.user_id, ctx.now())
        .await
    else {
        return busy();
    };
    let list: Vec<Value> = pending
        .into_iter()
        .map(|a| json!({"id": a.id, "context": a.context, "expires_at": crate::time::rfc3339(a.expires)}))
        .collect();
    Response::json(200, &json!({"user": rec.user_id, "approvals": list}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnswerBody {
    approve: bool,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    not_me: bool,
}

/// `POST /api/app/approvals/{id}`: approve with the number, deny, or "this wasn't me".
pub async fn answer(ctx: &Ctx<'_>, id: &str) -> Response {
    let path = format!("{}{}", ctx.prefix(), ctx.req.path);
    let now = ctx.now();
    let rec = match ctx
        .app
        .login
        .approvals
        .authenticate(&signed(ctx, &path), now)
        .await
    {
        Ok(r) => r,
        Err(e) => return unauthenticated(&e),
    };
    let body: AnswerBody = match serde_json::from_slice(&ctx.req.body) {
        Ok(b) => b,
        Err(_) => {
            return Response::json_error(
                400,
                "bad_request",
                "expected {approve, number?, not_me?}",
            );
        }
    };
    let answer = match (body.approve, body.not_me, body.number) {
        (true, _, Some(number)) => Answer::Approve { number },
        // A bare "yes" never completes a login (SECURITY 10).
        (true, _, None) => Answer::Approve {
            number: String::new(),
        },
        (false, true, _) => Answer::NotMe,
        (false, false, _) => Answer::Deny,
    };
    let ip = ctx.req.peer.to_string();
    let result = ctx
        .app
        .login
        .approvals
        .answer(&rec.user_id, &rec.id, id, &answer, now)
        .await;
    let event = match (&answer, &result) {
        (_, Err(AnswerError::WrongNumber)) => crate::audit::Event::ApprovalWrongNumber,
        (Answer::Approve { .. }, Ok(Status::Approved)) => crate::audit::Event::ApprovalApproved,
        (Answer::NotMe, Ok(_)) => crate::audit::Event::ApprovalNotMe,
        (_, Ok(_)) => crate::audit::Event::ApprovalDenied,
        (_, Err(_)) => crate::audit::Event::ApprovalAnswerRefused,
    };
    ctx.app
        .audit
        .record(
            event,
            &rec.user_id,
            &ip,
            json!({"approval": id, "app": rec.id}),
        )
        .await;
    match result {
        Ok(status) => {
            if answer == Answer::NotMe
                && let Ok(Some(user)) = ctx.app.active_user(&rec.user_id).await
            {
                let minutes = ctx.app.cfg.app_approval.suspend_after_denial.as_secs() / 60;
                crate::login::notify_user(ctx.app, &user, ctx.lang, |lang, site| {
                    notify::messages::not_me_refused(lang, minutes, site)
                });
            }
            Response::json(200, &json!({"status": status.as_str()}))
        }
        Err(AnswerError::WrongNumber) => Response::json_error(
            403,
            "wrong_number",
            "the number does not match; the login was refused",
        ),
        Err(AnswerError::NotFound) => Response::json_error(404, "not_found", "no such approval"),
        Err(AnswerError::NotPending) => {
            Response::json_error(409, "not_pending", "the approval is no longer waiting")
        }
        Err(AnswerError::Unavailable) => busy(),
    }
}

/// Checks both codes against the taken-out ticket; a wrong code puts it back with the try
/// counted (unless no try is left). The 401 answer when they do not match.
async fn check_codes(
    ctx: &Ctx<'_>,
    body: &EnrollBody,
    t: &mut Ticket,
    now: i64,
) -> Result<(), Response> {
    let app = ctx.app;
    let ip = ctx.req.peer.to_string();
    let same_user = t.user_id == body.user;
    let check = match t.code.as_mut() {
        Some(c) if same_user => c.check(
            &app.login.codes,
            &body.enrollment_code,
            &body.security_code,
            crate::login::code::now_ms(),
        ),
        _ => CodeCheck::Exhausted,
    };
    if check != CodeCheck::Right {
        if !matches!(check, CodeCheck::Exhausted | CodeCheck::Expired)
            && let Err(e) = app
                .login
                .approvals
                .return_ticket(&body.enrollment_code, t, now)
                .await
        {
            tracing::error!(error = %e, "an enrollment ticket could not be put back");
        }
        app.audit
            .record(
                crate::audit::Event::AppEnrollmentFailed,
                &t.user_id,
                &ip,
                json!({"reason": format!("{check:?}")}),
            )
            .await;
        return Err(Response::json_error(
            401,
            "enrollment_failed",
            "the enrollment code or security code is wrong or has expired",
        ));
    }
    Ok(())
}

/// `GET /api/app/enrollments` (session): the user's enrolled apps.
pub async fn enrollments_json(ctx: &Ctx<'_>, user: &User) -> Response {
    // A store error is a 503, never an empty list.
    let Ok(list) = ctx.app.store.live_enrollments(&user.id).await else {
        return super::endpoints::unavailable();
    };
    let apps: Vec<Value> = list
        .iter()
        .map(|e| {
            json!({"id": e.id, "name": e.name, "created": crate::time::rfc3339(e.created), "last_used": crate::time::rfc3339(e.last_used)})
        })
        .collect();
    Response::json(200, &json!({"apps": apps}))
}

/// Removes one enrollment (or all with `None`); true when something was removed, `Err`
/// when the store could not be reached (nothing was removed: 503, try again).
pub async fn remove(ctx: &Ctx<'_>, user: &User, id: Option<&str>) -> Result<bool, ()> {
    let n = ctx
        .app
        .store
        .revoke_enrollments(&user.id, id)
        .await
        .map_err(|e| tracing::error!(error = %e, "an app could not be removed"))?;
    if n > 0 {
        ctx.app
            .audit
            .record(
                crate::audit::Event::AppRemoved,
                &user.id,
                &ctx.req.peer.to_string(),
                json!({"app": id, "count": n}),
            )
            .await;
    }
    Ok(n > 0)
}
