//! The HTML side of the portal: one handler per page or form, each a thin translation
//! between forms and the login/device/settings logic, rendered with askama views.

use askama::Template;
use serde_json::json;

use super::http::{Response, field};
use super::redirect::encode_rd;
use super::views::{
    AppPage, AppRow, AppSetup, ConfirmPage, DeviceRow, DevicesPage, IdPage, MessagePage,
    PasswordPage, SettingsPage, SignedInPage, WaitingPage,
};
use super::{Ctx, i18n::Texts};
use crate::config::TwoStepMethod;
use crate::login::approval::{Denial, Status as ApprovalStatus};
use crate::login::flow::{Blocked, Notice, Step, Why};
use crate::login::{self, Completion, FlowView, LoginError};
use crate::notify::{self, Channel};
use crate::session::device::{self, DeviceError};

pub(super) fn render(t: impl Template, status: u16) -> Response {
    match t.render() {
        Ok(html) => Response::html(status, html),
        Err(e) => {
            tracing::error!(error = %e, "a portal page failed to render");
            Response::new(500, "text/plain; charset=utf-8", "internal error")
        }
    }
}

/// A page saying the service is unavailable (a store failed): 503, try again.
pub(super) fn unavailable_page(ctx: &Ctx<'_>) -> Response {
    message(
        ctx,
        503,
        ctx.t.err_unavailable_heading,
        ctx.t.err_unavailable,
        None,
    )
    .with("retry-after", crate::outage::retry_after())
}

/// A page with a heading, a message and an optional link.
pub fn message(
    ctx: &Ctx<'_>,
    status: u16,
    heading: &str,
    text: &str,
    link: Option<(String, String)>,
) -> Response {
    message_with_hints(ctx, status, heading, text, Vec::new(), link)
}

/// A message page that also lists other ways forward.
fn message_with_hints(
    ctx: &Ctx<'_>,
    status: u16,
    heading: &str,
    text: &str,
    hints: Vec<String>,
    link: Option<(String, String)>,
) -> Response {
    render(
        MessagePage {
            t: ctx.t,
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            heading: heading.to_owned(),
            message: text.to_owned(),
            hints,
            link,
            reference: None,
        },
        status,
    )
}

/// The portal's 404 page, with a way out (the portal's page, or the login before it).
pub fn not_found(ctx: &Ctx<'_>) -> Response {
    message(
        ctx,
        404,
        ctx.t.err_not_found_heading,
        ctx.t.err_not_found,
        Some((format!("{}/", ctx.prefix()), ctx.t.link_home.to_owned())),
    )
}

/// The prelude of every removal's confirmation page: a session (else the login again) that
/// may manage the account (else back to the list at `{prefix}/{page}`). The user, and the
/// list's URL for the page's "cancel".
pub(super) async fn confirming(
    ctx: &Ctx<'_>,
    page: &str,
) -> Result<(std::sync::Arc<crate::users::User>, String), Response> {
    let (live, user) = page_session(ctx, page).await?;
    let list = format!("{}/{page}", ctx.prefix());
    if !manages(ctx, &live).await? {
        return Err(Response::redirect(303, &list));
    }
    Ok((user, list))
}

/// "Remove this?" before a removal: the list's link leads here, the form posts the removal.
pub(super) fn confirm(
    ctx: &Ctx<'_>,
    question: String,
    help: &str,
    action: String,
    cancel: String,
) -> Response {
    confirm_to(ctx, question, help, action, cancel, ctx.t.confirm_button)
}

/// [`confirm`] with the button saying what it does (e.g. "Sign out other browsers").
pub(super) fn confirm_to(
    ctx: &Ctx<'_>,
    question: String,
    help: &str,
    action: String,
    cancel: String,
    button: &str,
) -> Response {
    render(
        ConfirmPage {
            t: ctx.t,
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            question,
            help: help.to_owned(),
            action,
            cancel,
            button: button.to_owned(),
        },
        200,
    )
}

/// Post/Redirect/Get: a change that was made is shown by a GET of its page, `?m=` naming
/// what was done, so reloading the result never posts the change again.
pub(super) fn done(ctx: &Ctx<'_>, page: &str, what: &str) -> Response {
    Response::redirect(303, &format!("{}/{page}?m={what}", ctx.prefix()))
        .with("cache-control", "no-store")
}

/// The message `?m=` names on the devices page.
pub fn devices_message(t: &Texts, m: Option<&str>) -> Option<&'static str> {
    match m? {
        "renamed" => Some(t.msg_device_renamed),
        "removed" => Some(t.msg_device_removed),
        "all_removed" => Some(t.msg_devices_all_removed),
        _ => None,
    }
}

/// "To the login page", keeping the return address this request carries (its query's or
/// its form's `rd`, validated again): a dead end never drops where the user was going.
fn login_link(ctx: &Ctx<'_>) -> Option<(String, String)> {
    let raw = ctx.req.query_param("rd").or_else(|| {
        ctx.req
            .form()
            .and_then(|f| field(&f, "rd").map(str::to_owned))
    });
    let href = match raw {
        Some(r) => format!(
            "{}/login?rd={}",
            ctx.prefix(),
            encode_rd(&ctx.safe_rd(Some(&r)))
        ),
        None => format!("{}/login", ctx.prefix()),
    };
    Some((href, ctx.t.link_login.to_owned()))
}

fn forbidden_csrf(ctx: &Ctx<'_>) -> Response {
    message(
        ctx,
        403,
        ctx.t.err_forbidden_heading,
        ctx.t.err_csrf,
        login_link(ctx),
    )
}

/// Reads the form of a state-changing request, refusing cross-site posts and bad tokens.
pub(super) fn checked_form(ctx: &Ctx<'_>) -> Result<Vec<(String, String)>, Response> {
    let Some(form) = ctx.req.form() else {
        return Err(message(
            ctx,
            400,
            ctx.t.err_bad_request_heading,
            ctx.t.err_bad_request,
            None,
        ));
    };
    if !ctx.same_site() || !ctx.csrf_ok(&form) {
        return Err(forbidden_csrf(ctx));
    }
    Ok(form)
}

/// Which other ways in a throttling page lists: only ways that work now. (Email is never
/// one: it spends the same sending budget and meets the same wait.)
#[derive(Clone, Copy, Default)]
struct OtherWays {
    /// A trusted device (or a browser the account used before) is not held up here.
    device: bool,
    /// A passkey login (it asks for no code): where the user has one, or where the user
    /// is not known yet.
    passkey: bool,
}

/// "Please wait": how long, in minutes rounded up, and the other ways in.
fn too_many(ctx: &Ctx<'_>, secs: u64, back: Option<(String, String)>, ways: OtherWays) -> Response {
    let t = ctx.t;
    let mut hints = Vec::new();
    if ways.passkey && ctx.app.cfg.passkeys.enabled {
        hints.push(t.other_way_passkey.to_owned());
    }
    if ways.device {
        hints.push(t.other_way_device.to_owned());
    }
    message_with_hints(
        ctx,
        429,
        t.err_too_many_heading,
        &format!("{} {}", t.err_too_many, t.retry_in(secs)),
        hints,
        back,
    )
    .with("retry-after", secs.to_string())
}

/// The ways around a limit on the login of `user_id`: a trusted device, and a passkey if the
/// user has one (an unknown ID has none, like most users).
async fn ways_for(ctx: &Ctx<'_>, user_id: &str) -> OtherWays {
    let passkey = ctx.app.cfg.passkeys.enabled
        && ctx
            .app
            .store
            .user_passkeys(user_id)
            .await
            .is_ok_and(|p| !p.is_empty());
    OtherWays {
        device: true,
        passkey,
    }
}

/// The ways around a limit on a login flow's sends or tries.
async fn flow_ways(ctx: &Ctx<'_>, flow: &str) -> OtherWays {
    match ctx.app.login.status(flow).await {
        Ok(v) => ways_for(ctx, &v.user_id).await,
        Err(_) => OtherWays {
            device: true,
            passkey: false,
        },
    }
}

pub fn blocked_text(t: &Texts, b: Blocked) -> &'static str {
    match b {
        Blocked::NoDestination => t.err_no_destination,
        Blocked::NoAllowedChannel => t.err_no_allowed_channel,
    }
}

// --- signed in -------------------------------------------------------------------------

pub async fn home(ctx: &Ctx<'_>) -> Response {
    let Some((live, user)) = ctx.session().await else {
        // A login started here comes back here, not to a backend's `/`.
        let back = format!("{}/?m=signed_in", ctx.prefix());
        return Response::redirect(
            302,
            &format!("{}/login?rd={}", ctx.prefix(), encode_rd(&back)),
        );
    };
    let r = &live.record;
    let two_step = ctx.t.how_logged_in(ctx.lang, &r.methods);
    // The deadline is the absolute one; the idle timeout is said as what it is.
    let idle_minutes = ctx.app.cfg.session.idle_timeout.as_secs().div_ceil(60);
    render(
        SignedInPage {
            t: ctx.t,
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            user_id: user.id.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
            groups: user.groups.clone(),
            two_step: two_step.to_owned(),
            login_at: ctx.time(r.created),
            expires_at: ctx.time(r.expires),
            idle_line: ctx.t.idle_line(idle_minutes),
            passkeys: ctx.app.cfg.passkeys.enabled,
            just_signed_in: ctx.req.query_param("m").as_deref() == Some("signed_in"),
        },
        200,
    )
}

pub async fn logout_post(ctx: &Ctx<'_>) -> Response {
    if let Err(r) = checked_form(ctx) {
        return r;
    }
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
        if let Err(e) = ctx.app.sessions.end(&token).await {
            tracing::error!(error = %e, "logout: the session could not be ended");
            return message(
                ctx,
                503,
                ctx.t.err_unavailable_heading,
                ctx.t.err_logout_failed,
                None,
            )
            .with("retry-after", crate::outage::retry_after());
        }
    }
    message(
        ctx,
        200,
        ctx.t.logged_out_heading,
        ctx.t.logged_out,
        login_link(ctx),
    )
    .with(
        "set-cookie",
        ctx.remove_cookie(&ctx.app.cfg.session.cookie_name),
    )
}

// --- the login --------------------------------------------------------------------------

fn id_view(ctx: &Ctx<'_>, rd: String, id: String, error: Option<String>, status: u16) -> Response {
    id_view_as(ctx, rd, id, error, status, None)
}

/// The ID page; `signed_in_as` names the user this browser is logged in as.
fn id_view_as(
    ctx: &Ctx<'_>,
    rd: String,
    id: String,
    error: Option<String>,
    status: u16,
    signed_in_as: Option<String>,
) -> Response {
    let step_up = ctx.req.query_param("step_up").as_deref() == Some("1");
    render(
        IdPage {
            t: ctx.t,
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            rd,
            id,
            error,
            passkeys: ctx.app.cfg.passkeys.enabled,
            step_up,
            signed_in_as,
            recovery_url: ctx.app.cfg.portal.recovery_url.clone(),
        },
        status,
    )
}

pub async fn id_page(ctx: &Ctx<'_>) -> Response {
    let rd = ctx.safe_rd(ctx.req.query_param("rd").as_deref());
    let Some((_, user)) = ctx.session().await else {
        return id_view(ctx, rd, String::new(), None, 200);
    };
    // A step-up of this browser's own session: the ID is known and the password proved, so
    // the second step starts at once (no "Next" on a page showing the user's own ID). Not
    // when another site sent the browser here: that page gets the button.
    // Only a real navigation sends a code: never a HEAD, a prefetch or a prerender.
    let step_up = ctx.req.query_param("step_up").as_deref() == Some("1");
    let cross_site = ctx.req.header("sec-fetch-site") == Some("cross-site");
    let speculative = ["sec-purpose", "purpose", "x-moz", "x-purpose"]
        .iter()
        .any(|h| ctx.req.header(h).is_some());
    if step_up && !cross_site && !speculative && ctx.req.method == ::http::Method::GET {
        return start_login(ctx, &user.id, rd).await;
    }
    id_view_as(ctx, rd, user.id.clone(), None, 200, Some(user.id.clone()))
}

pub async fn id_post(ctx: &Ctx<'_>) -> Response {
    let form = match checked_form(ctx) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let rd = ctx.safe_rd(field(&form, "rd"));
    let raw_id = field(&form, "id").unwrap_or("");
    if login::valid_id(raw_id).is_none() {
        return id_view(
            ctx,
            rd,
            String::new(),
            Some(ctx.t.err_id_required.to_owned()),
            400,
        );
    }
    start_login(ctx, raw_id, rd).await
}

/// Starts a login for `raw_id` going to `rd`: off to its flow's page, or why not.
async fn start_login(ctx: &Ctx<'_>, raw_id: &str, rd: String) -> Response {
    let target = ctx.route_of(&rd);
    match ctx
        .app
        .login
        .start(&ctx.client(), raw_id, &rd, target.as_ref())
        .await
    {
        Ok(started) => {
            let flow_url = format!("{}/login/{}", ctx.prefix(), started.flow.id);
            match started.send {
                Ok(()) => Response::redirect(303, &flow_url),
                Err(LoginError::Delivery) => {
                    Response::redirect(303, &format!("{flow_url}?e=delivery"))
                }
                Err(LoginError::SendLimited(s)) => {
                    let ways = ways_for(ctx, raw_id).await;
                    too_many(ctx, s, login_link(ctx), ways)
                }
                Err(LoginError::Blocked(b)) => message(
                    ctx,
                    403,
                    ctx.t.err_forbidden_heading,
                    blocked_text(ctx.t, b),
                    login_link(ctx),
                ),
                Err(e) => login_failed_page(ctx, &e),
            }
        }
        Err(LoginError::BadInput(_)) => id_view(
            ctx,
            rd,
            String::new(),
            Some(ctx.t.err_id_required.to_owned()),
            400,
        ),
        // Too many ID steps from this network: a passkey is the other way in.
        Err(LoginError::Throttled(s)) => too_many(
            ctx,
            s,
            login_link(ctx),
            OtherWays {
                device: false,
                passkey: true,
            },
        ),
        Err(e) => login_failed_page(ctx, &e),
    }
}

/// A login step that failed for a reason its page does not show in place: a store that
/// failed is the "unavailable" page (503 + Retry-After; never a weaker plan, SECURITY 36),
/// anything else the internal-error page.
fn login_failed_page(ctx: &Ctx<'_>, e: &LoginError) -> Response {
    if e.status() == 503 {
        return message(
            ctx,
            503,
            ctx.t.err_unavailable_heading,
            ctx.t.err_unavailable,
            login_link(ctx),
        )
        .with("retry-after", crate::outage::retry_after());
    }
    message(
        ctx,
        500,
        ctx.t.err_internal_heading,
        ctx.t.err_internal,
        login_link(ctx),
    )
}

fn expired(ctx: &Ctx<'_>) -> Response {
    message(
        ctx,
        404,
        ctx.t.err_flow_expired_heading,
        ctx.t.err_flow_expired,
        login_link(ctx),
    )
}

/// An error on the password page and the fields it is about.
pub struct FieldError {
    pub text: String,
    pub fields: &'static [&'static str],
}

impl FieldError {
    fn page(text: &str) -> Self {
        FieldError {
            text: text.to_owned(),
            fields: &[],
        }
    }
}

/// Starting over keeps where the login was going.
fn login_again_link(ctx: &Ctx<'_>, return_to: &str) -> Option<(String, String)> {
    Some((
        format!("{}/login?rd={}", ctx.prefix(), encode_rd(return_to)),
        ctx.t.link_login_again.to_owned(),
    ))
}

/// What the user chose on the password page: shown again as it was after an error (only
/// the password and code are cleared).
pub struct Kept {
    pub trust: bool,
    pub device_name: String,
}

/// The password (and code) page of a flow, with an optional error.
pub async fn flow_page(
    ctx: &Ctx<'_>,
    flow: &str,
    error: Option<FieldError>,
    status: u16,
) -> Response {
    flow_page_kept(ctx, flow, error, status, None).await
}

/// [`flow_page`] showing the trust choice as the user left it (`None`: ticked, as the seed
/// has it, with the browser's description as a name to keep or change).
pub async fn flow_page_kept(
    ctx: &Ctx<'_>,
    flow: &str,
    error: Option<FieldError>,
    status: u16,
    kept: Option<Kept>,
) -> Response {
    let v = match ctx.app.login.status(flow).await {
        Ok(v) => v,
        Err(_) => return expired(ctx),
    };
    if let Some(b) = v.blocked {
        return message(
            ctx,
            403,
            ctx.t.err_forbidden_heading,
            blocked_text(ctx.t, b),
            login_link(ctx),
        );
    }
    let error = error.or_else(|| match ctx.req.query_param("e").as_deref() {
        Some("delivery") => Some(FieldError::page(ctx.t.err_delivery_failed)),
        _ => None,
    });
    let t = ctx.t;
    let now = ctx.now();
    let m = ctx.req.query_param("m");
    let notice = if m.as_deref() == Some("cooldown") {
        let secs = ctx.req.query_param("s").and_then(|s| s.parse::<u64>().ok());
        Some(t.resend_in(secs.unwrap_or(30).clamp(1, 600)))
    } else {
        notice_text(t, m.as_deref(), v.notice, now)
    };
    if v.step == Step::AppApproval
        && let Some(page) = approval_page(ctx, &v, error.as_ref(), status)
    {
        return page;
    }
    let app_approved = v.approval == Some(ApprovalStatus::Approved);
    let with_code = v.step == Step::PasswordAndCode;
    let kept = kept.unwrap_or_else(|| Kept {
        trust: true,
        device_name: device::browser_summary(&ctx.req.user_agent()),
    });
    render(
        PasswordPage {
            t: ctx.t,
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            flow: v.id.clone(),
            user_id: v.user_id.clone(),
            with_code,
            code_destination: if with_code {
                v.code_destination.clone()
            } else {
                None
            },
            code_channel: v.code_channel.map(|c| match c {
                Channel::Email => "email".to_owned(),
                _ => "sms".to_owned(),
            }),
            notice,
            can_switch_to_email: with_code && v.email_alternative,
            can_resend: with_code,
            offer_trust: v.offer_trust,
            error_fields: error.as_ref().map_or(&[], |e| e.fields),
            error: error.map(|e| e.text),
            app_approved,
            password_known: v.step_up,
            return_to: v.return_to.clone(),
            risk_reason: with_code && v.why == Some(Why::Risk),
            trust_checked: kept.trust,
            device_name: kept.device_name,
            code_minutes: ctx.app.cfg.security_code.lifetime.as_secs().div_ceil(60),
            help_url: ctx.app.cfg.portal.help_url.clone(),
        },
        status,
    )
}

/// The notice above the form: one the query asks for (after a resend or a switch to
/// email), else the flow's own.
fn notice_text(t: &Texts, m: Option<&str>, notice: Option<Notice>, now: i64) -> Option<String> {
    match m {
        Some("resent") => Some(t.notice_code_resent.to_owned()),
        Some("email") => Some(t.notice_switched_to_email.to_owned()),
        _ => notice.map(|n| match n {
            Notice::PhoneKept => t.notice_phone_kept.to_owned(),
            Notice::AppUnavailable => t.err_app_unavailable.to_owned(),
            Notice::AppNotEnrolled => t.notice_app_not_enrolled.to_owned(),
            Notice::AppNotAccepted => t.notice_app_not_accepted.to_owned(),
            Notice::AppFeaturePhone => t.notice_app_feature_phone.to_owned(),
            Notice::AppCodeChosen => t.notice_app_code_chosen.to_owned(),
            Notice::AppTooMany { until } => t.minutes_until(t.notice_app_too_many, until, now),
            Notice::AppPaused { until } => t.minutes_until(t.notice_app_paused, until, now),
        }),
    }
}

/// The page of a flow waiting for approval in the phone app: the number to match while
/// pending, why it stopped when denied or expired; `None` when the password comes first.
fn approval_page(
    ctx: &Ctx<'_>,
    v: &FlowView,
    error: Option<&FieldError>,
    status: u16,
) -> Option<Response> {
    let t = ctx.t;
    match v.approval {
        Some(ApprovalStatus::Pending) => Some(render(
            WaitingPage {
                t: ctx.t,
                lang: ctx.lang,
                other_lang: ctx.lang.other(),
                prefix: ctx.prefix().to_owned(),
                site: ctx.site(),
                csrf: ctx.csrf.clone(),
                flow: v.id.clone(),
                user_id: v.user_id.clone(),
                number: v.approval_number.clone().unwrap_or_default(),
                poll_url: format!("{}/api/login/{}", ctx.prefix(), v.id),
                expiry_minutes: ctx.app.cfg.app_approval.lifetime.as_secs().div_ceil(60),
                return_to: v.return_to.clone(),
                error: error.map(|e| e.text.clone()),
            },
            status,
        )),
        Some(ApprovalStatus::Denied) => {
            // What happened decides what to do next: a wrong number is tried again,
            // "this wasn't me" pauses the app (a code comes next time).
            let text = match v.denial {
                Some(Denial::WrongNumber) => t.err_approval_wrong_number,
                Some(Denial::NotMe) => t.err_approval_not_me,
                Some(Denial::Denied) | None => t.err_approval_denied,
            };
            Some(message(
                ctx,
                403,
                t.approval_stopped_heading,
                text,
                login_again_link(ctx, &v.return_to),
            ))
        }
        Some(ApprovalStatus::Expired) => Some(message(
            ctx,
            410,
            t.err_flow_expired_heading,
            t.err_approval_expired,
            login_again_link(ctx, &v.return_to),
        )),
        // Approval after the password: the password comes first.
        _ => None,
    }
}

pub async fn use_code_post(ctx: &Ctx<'_>, flow: &str) -> Response {
    if let Err(r) = checked_form(ctx) {
        return r;
    }
    match ctx.app.login.use_code(&ctx.client(), flow).await {
        Ok(_) => Response::redirect(303, &format!("{}/login/{flow}", ctx.prefix())),
        Err(LoginError::FlowNotFound) => expired(ctx),
        Err(LoginError::SendLimited(s)) => {
            let ways = flow_ways(ctx, flow).await;
            too_many(ctx, s, login_link(ctx), ways)
        }
        Err(LoginError::Blocked(b)) => message(
            ctx,
            403,
            ctx.t.err_forbidden_heading,
            blocked_text(ctx.t, b),
            login_link(ctx),
        ),
        Err(LoginError::Delivery) => {
            Response::redirect(303, &format!("{}/login/{flow}?e=delivery", ctx.prefix()))
        }
        Err(e) => flow_page(ctx, flow, Some(error_text(ctx.t, &e, None)), e.status()).await,
    }
}

/// The text shown for a login error on the password page, and the fields it is about.
/// `device_name` is the name the form sent (an empty one gets its own message).
fn error_text(t: &Texts, e: &LoginError, device_name: Option<&str>) -> FieldError {
    let (text, fields): (String, &'static [&'static str]) = match e {
        LoginError::CodeExpired => (t.err_code_expired.to_owned(), &["code"]),
        LoginError::CodeExhausted | LoginError::NoCode => {
            (t.err_code_attempts.to_owned(), &["code"])
        }
        LoginError::Delivery => (t.err_delivery_failed.to_owned(), &[]),
        LoginError::DevicesFull => (t.err_device_limit.to_owned(), &[]),
        LoginError::BadInput("device_name") => {
            let empty = device_name.is_none_or(|n| n.trim().is_empty());
            let text = if empty {
                t.err_device_name_required
            } else {
                t.err_device_name_invalid
            };
            (text.to_owned(), &["device_name"])
        }
        LoginError::ResendTooSoon(s) => (t.resend_in(*s), &[]),
        LoginError::BadInput(_) | LoginError::PasswordTooLong => {
            (t.err_bad_request.to_owned(), &[])
        }
        LoginError::Busy => (t.err_unavailable.to_owned(), &[]),
        LoginError::ApprovalRequired => (t.err_approval_required.to_owned(), &[]),
        _ => (t.err_generic_login.to_owned(), &["password", "code"]),
    };
    FieldError { text, fields }
}

pub async fn complete_post(ctx: &Ctx<'_>, flow: &str) -> Response {
    let form = match checked_form(ctx) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let input = Completion {
        password: field(&form, "password").unwrap_or(""),
        code: field(&form, "code"),
        trust_device: field(&form, "trust_device").is_some_and(|v| v == "1" || v == "on"),
        device_name: field(&form, "device_name"),
    };
    let kept = || Kept {
        trust: input.trust_device,
        device_name: input.device_name.unwrap_or("").chars().take(64).collect(),
    };
    // Letters in the code: said as such (nothing is tried, nothing counted).
    if let Some(code) = input.code
        && !code.trim().is_empty()
        && !code.trim().chars().all(|c| c.is_ascii_digit())
    {
        let error = FieldError {
            text: ctx.t.err_code_format.to_owned(),
            fields: &["code"],
        };
        return flow_page_kept(ctx, flow, Some(error), 400, Some(kept())).await;
    }
    match ctx.app.login.complete(&ctx.client(), flow, &input).await {
        Ok(done) => signed_in_redirect(ctx, done, 303),
        // The password was right; the app is asked now: show the waiting page.
        Err(LoginError::AwaitingApproval) => {
            Response::redirect(303, &format!("{}/login/{flow}", ctx.prefix()))
        }
        Err(LoginError::FlowNotFound) => expired(ctx),
        Err(e @ (LoginError::Throttled(_) | LoginError::SendLimited(_))) => {
            let back = Some((
                format!("{}/login/{flow}", ctx.prefix()),
                ctx.t.back.to_owned(),
            ));
            let ways = flow_ways(ctx, flow).await;
            too_many(ctx, e.retry_after().unwrap_or(1), back, ways)
        }
        Err(LoginError::Blocked(b)) => message(
            ctx,
            403,
            ctx.t.err_forbidden_heading,
            blocked_text(ctx.t, b),
            login_link(ctx),
        ),
        Err(e) => {
            let status = e.status();
            let error = error_text(ctx.t, &e, input.device_name);
            let mut resp = flow_page_kept(ctx, flow, Some(error), status, Some(kept())).await;
            if let Some(s) = e.retry_after() {
                resp = resp.with("retry-after", s.to_string());
            }
            resp
        }
    }
}

/// The answer to a finished login: cookies, then off to the return address.
pub fn signed_in_redirect(ctx: &Ctx<'_>, done: login::Completed, status: u16) -> Response {
    let mut resp = if status == 200 {
        Response::json(200, &json!({"redirect": done.redirect}))
    } else {
        Response::redirect(status, &done.redirect)
    };
    resp = resp.with(
        "set-cookie",
        ctx.set_cookie(&ctx.app.cfg.session.cookie_name, &done.session_token, None),
    );
    resp = resp.with(
        "set-cookie",
        ctx.set_cookie(
            crate::login::risk::SEEN_COOKIE,
            &done.seen_token,
            Some(crate::login::risk::SEEN_MAX_AGE),
        ),
    );
    if let Some(token) = done.device_token {
        resp = resp.with(
            "set-cookie",
            ctx.set_cookie(
                &ctx.app.cfg.trusted_devices.cookie_name,
                &token,
                Some(ctx.app.devices.lifetime()),
            ),
        );
    }
    resp.with("cache-control", "no-store")
}

pub async fn resend_post(ctx: &Ctx<'_>, flow: &str) -> Response {
    if let Err(r) = checked_form(ctx) {
        return r;
    }
    match ctx.app.login.resend(&ctx.client(), flow).await {
        Ok(_) => Response::redirect(303, &format!("{}/login/{flow}?m=resent", ctx.prefix())),
        Err(LoginError::FlowNotFound) => expired(ctx),
        // Too soon: a notice on the page (nothing is wrong), after a redirect.
        Err(LoginError::ResendTooSoon(s)) => Response::redirect(
            303,
            &format!("{}/login/{flow}?m=cooldown&s={s}", ctx.prefix()),
        ),
        Err(LoginError::SendLimited(s)) => {
            let ways = flow_ways(ctx, flow).await;
            too_many(
                ctx,
                s,
                Some((
                    format!("{}/login/{flow}", ctx.prefix()),
                    ctx.t.back.to_owned(),
                )),
                ways,
            )
        }
        Err(e) => {
            let error = error_text(ctx.t, &e, None);
            let mut resp = flow_page(ctx, flow, Some(error), e.status()).await;
            if let Some(s) = e.retry_after() {
                resp = resp.with("retry-after", s.to_string());
            }
            resp
        }
    }
}

pub async fn use_email_post(ctx: &Ctx<'_>, flow: &str) -> Response {
    if let Err(r) = checked_form(ctx) {
        return r;
    }
    match ctx.app.login.use_email(&ctx.client(), flow).await {
        Ok(_) => Response::redirect(303, &format!("{}/login/{flow}?m=email", ctx.prefix())),
        Err(LoginError::FlowNotFound) => expired(ctx),
        Err(LoginError::SendLimited(s)) => {
            let ways = flow_ways(ctx, flow).await;
            too_many(
                ctx,
                s,
                Some((
                    format!("{}/login/{flow}", ctx.prefix()),
                    ctx.t.back.to_owned(),
                )),
                ways,
            )
        }
        Err(e) => flow_page(ctx, flow, Some(error_text(ctx.t, &e, None)), e.status()).await,
    }
}

// --- trusted devices --------------------------------------------------------------------

/// The signed-in session of a page at `{prefix}/{page}`, or the answer: the login again
/// without one, the "unavailable" page (503) when the session store cannot be read — never
/// a login asked of someone who is signed in (SECURITY 36, 47).
pub(super) async fn page_session(
    ctx: &Ctx<'_>,
    page: &str,
) -> Result<
    (
        std::sync::Arc<crate::session::LiveSession>,
        std::sync::Arc<crate::users::User>,
    ),
    Response,
> {
    match ctx.session_checked().await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(reauth_redirect(ctx, page)),
        Err(()) => Err(unavailable_page(ctx)),
    }
}

pub(super) fn reauth_redirect(ctx: &Ctx<'_>, page: &str) -> Response {
    let rd = format!("{}/{page}", ctx.prefix());
    Response::redirect(
        302,
        &format!("{}/login?rd={}", ctx.prefix(), encode_rd(&rd)),
    )
}

pub async fn devices_page(ctx: &Ctx<'_>, msg: Option<&str>, error: Option<&str>) -> Response {
    devices_view(ctx, msg, error, None).await
}

/// The devices page; `error_for` names the device whose rename field the error is about.
async fn devices_view(
    ctx: &Ctx<'_>,
    msg: Option<&str>,
    error: Option<&str>,
    error_for: Option<&str>,
) -> Response {
    let (live, user) = match page_session(ctx, "devices").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = ctx.now();
    let current = ctx
        .client()
        .device_cookie
        .and_then(|t| ctx.app.devices.token_device(&t, now))
        .map(|c| c.jti);
    // A store error is a 503, never an empty list (the user would think them all gone).
    let devices = match ctx.app.devices.list(&user.id, now).await {
        Ok(list) => list,
        Err(e) => {
            tracing::error!(error = %e, "devices could not be listed");
            return unavailable_page(ctx);
        }
    };
    let rows = devices
        .into_iter()
        .map(|d| DeviceRow {
            current: current.as_deref() == Some(d.id.as_str()),
            id: d.id,
            name: d.name,
            created: ctx.time(d.created),
            last_used: ctx.time(d.last_used),
            expires: ctx.time(d.expires),
            browser: d.browser,
        })
        .collect();
    render(
        DevicesPage {
            t: ctx.t,
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            devices: rows,
            needs_recent_login: !ctx.may_manage(&live).await,
            message: msg.map(str::to_owned),
            error: error.map(str::to_owned),
            error_for: error_for.map(str::to_owned),
            max_devices: ctx.app.devices.max_per_user(),
        },
        if error.is_some() { 400 } else { 200 },
    )
}

/// Common gate for device and settings changes: a form from our site, a session, a recent
/// login. Returns the user on success.
pub(super) async fn recent_user(
    ctx: &Ctx<'_>,
    page: &str,
) -> Result<(Vec<(String, String)>, std::sync::Arc<crate::users::User>), Response> {
    let form = checked_form(ctx)?;
    let (live, user) = page_session(ctx, page).await?;
    if !manages(ctx, &live).await? {
        return Err(reauth_redirect(ctx, page));
    }
    Ok((form, user))
}

/// Whether the session may manage the account ([`super::Ctx::manage_check`]); the
/// "unavailable" page when that cannot be read.
pub(super) async fn manages(
    ctx: &Ctx<'_>,
    live: &crate::session::LiveSession,
) -> Result<bool, Response> {
    ctx.manage_check(live)
        .await
        .map_err(|()| unavailable_page(ctx))
}

pub async fn device_rename(ctx: &Ctx<'_>, id: &str) -> Response {
    let (form, user) = match recent_user(ctx, "devices").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let raw = field(&form, "name").unwrap_or("");
    let Some(name) = device::valid_name(raw) else {
        let text = if raw.trim().is_empty() {
            ctx.t.err_device_name_empty
        } else {
            ctx.t.err_device_name_invalid
        };
        return devices_view(ctx, None, Some(text), Some(id)).await;
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
            done(ctx, "devices", "renamed")
        }
        Err(DeviceError::NotFound) => {
            devices_page(ctx, None, Some(ctx.t.err_device_not_found)).await
        }
        Err(e) => device_failed(ctx, &e),
    }
}

/// "Remove this trusted device?" (`GET …/devices/{id}/delete`; the form posts the removal).
pub async fn device_delete_confirm(ctx: &Ctx<'_>, id: &str) -> Response {
    let (user, list) = match confirming(ctx, "devices").await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let listed = match ctx.app.devices.list(&user.id, ctx.now()).await {
        Ok(list) => list,
        Err(e) => {
            tracing::error!(error = %e, "devices could not be listed");
            return unavailable_page(ctx);
        }
    };
    let Some(d) = listed.into_iter().find(|d| d.id == id) else {
        return devices_page(ctx, None, Some(ctx.t.err_device_not_found)).await;
    };
    confirm(
        ctx,
        ctx.t.named(ctx.t.confirm_device, &d.name),
        ctx.t.confirm_device_help,
        format!("{list}/{}/delete", encode_rd(id)),
        list,
    )
}

/// "Remove all trusted devices?"
pub async fn devices_delete_all_confirm(ctx: &Ctx<'_>) -> Response {
    let (_, list) = match confirming(ctx, "devices").await {
        Ok(found) => found,
        Err(r) => return r,
    };
    confirm(
        ctx,
        ctx.t.confirm_all_devices.to_owned(),
        ctx.t.remove_all_help,
        format!("{list}/delete-all"),
        list,
    )
}

pub async fn device_delete(ctx: &Ctx<'_>, id: &str) -> Response {
    let (_, user) = match recent_user(ctx, "devices").await {
        Ok(v) => v,
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
            done(ctx, "devices", "removed")
        }
        Err(DeviceError::NotFound) => {
            devices_page(ctx, None, Some(ctx.t.err_device_not_found)).await
        }
        Err(e) => device_failed(ctx, &e),
    }
}

/// A device operation that failed: a store error is a 503 page (nothing changed; try
/// again), anything else a 500.
fn device_failed(ctx: &Ctx<'_>, e: &DeviceError) -> Response {
    tracing::error!(error = %e, "device operation failed");
    match e {
        DeviceError::Store(_) => unavailable_page(ctx),
        _ => message(
            ctx,
            500,
            ctx.t.err_internal_heading,
            ctx.t.err_internal,
            None,
        ),
    }
}

pub async fn devices_delete_all(ctx: &Ctx<'_>) -> Response {
    let (_, user) = match recent_user(ctx, "devices").await {
        Ok(v) => v,
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
            done(ctx, "devices", "all_removed")
        }
        Err(e) => device_failed(ctx, &e),
    }
}

// --- 2-step setting ---------------------------------------------------------------------

pub async fn settings_page(ctx: &Ctx<'_>, msg: Option<&str>, error: Option<&str>) -> Response {
    let (live, user) = match page_session(ctx, "settings").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let has_app = ctx.app.login.approvals.has_app(&user.id).await;
    let Ok((enabled, method)) = ctx.app.two_step_of(&user).await else {
        return unavailable_page(ctx);
    };
    render(
        SettingsPage {
            t: ctx.t,
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            enabled,
            method: method.as_str().to_owned(),
            has_phone: user.phone.is_some(),
            has_email: user.email.is_some(),
            phone_masked: user.phone.as_deref().map(notify::mask_phone),
            email_masked: user.email.as_deref().map(notify::mask_email),
            has_app,
            needs_recent_login: !ctx.may_manage(&live).await,
            message: msg.map(str::to_owned),
            error: error.map(str::to_owned),
        },
        if error.is_some() { 400 } else { 200 },
    )
}

pub async fn settings_post(ctx: &Ctx<'_>) -> Response {
    let (form, user) = match recent_user(ctx, "settings").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let enabled = match field(&form, "enabled") {
        Some("on") => true,
        Some("off") => false,
        _ => return settings_page(ctx, None, Some(ctx.t.err_bad_request)).await,
    };
    let Some(method) = field(&form, "method").and_then(TwoStepMethod::parse) else {
        return settings_page(ctx, None, Some(ctx.t.err_bad_request)).await;
    };
    match change_setting(ctx, &user, enabled, method).await {
        // The change revoked this browser's old session: the page is shown by a new request
        // that carries the new one (rendering it here would find no session and ask for
        // the ID again), with the confirmation on it.
        Ok(Some(new_token)) => saved_redirect(ctx).with(
            "set-cookie",
            ctx.set_cookie(&ctx.app.cfg.session.cookie_name, &new_token, None),
        ),
        Ok(None) => saved_redirect(ctx),
        Err(SettingError::MethodUnusable) if method == TwoStepMethod::App => {
            // The page's app choice links to setting one up.
            settings_page(ctx, None, Some(ctx.t.err_method_app_not_enrolled)).await
        }
        Err(SettingError::MethodUnusable) => {
            settings_page(ctx, None, Some(ctx.t.err_method_unavailable)).await
        }
        Err(SettingError::Store) => unavailable_page(ctx),
    }
}

/// 303 to the settings page, which then says the change was saved.
fn saved_redirect(ctx: &Ctx<'_>) -> Response {
    Response::redirect(303, &format!("{}/settings?m=saved", ctx.prefix()))
        .with("cache-control", "no-store")
}

pub enum SettingError {
    /// The method cannot be used for this account (no phone, no email, no app).
    MethodUnusable,
    /// A store failed: the change may be partly made; trying again finishes it (503).
    Store,
}

/// Changes a user's 2-step setting. A real change revokes every device and session of the
/// user (SECURITY 15), notifies the contact address, and returns a new session ID for this
/// browser so the user stays logged in here: the same login, with its times (SECURITY 43).
pub async fn change_setting(
    ctx: &Ctx<'_>,
    user: &crate::users::User,
    enabled: bool,
    method: TwoStepMethod,
) -> Result<Option<String>, SettingError> {
    let usable = match method {
        TwoStepMethod::Sms => user.phone.is_some(),
        TwoStepMethod::Email => user.email.is_some(),
        // The app can be chosen once one is enrolled (a store that cannot say is a 503,
        // not "no app").
        TwoStepMethod::App => !ctx
            .app
            .store
            .live_enrollments(&user.id)
            .await
            .map_err(|_| SettingError::Store)?
            .is_empty(),
    };
    if enabled && !usable {
        return Err(SettingError::MethodUnusable);
    }
    let before = ctx
        .app
        .two_step_of(user)
        .await
        .map_err(|_| SettingError::Store)?;
    if before == (enabled, method) {
        return Ok(None);
    }
    ctx.app
        .put_two_step(&user.id, enabled, method)
        .await
        .map_err(|_| SettingError::Store)?;
    let ip = ctx.req.peer.to_string();
    ctx.app
        .audit
        .record(
            crate::audit::Event::SettingChanged,
            &user.id,
            &ip,
            json!({"enabled": enabled, "method": method.as_str(), "was_enabled": before.0, "was_method": before.1.as_str()}),
        )
        .await;
    // This browser keeps its login (what it proved, and when) under a new session ID.
    let Some((live, _)) = ctx.session().await else {
        return Err(SettingError::Store);
    };
    if !ctx
        .app
        .revoke_everything(&user.id, "setting_changed", &ip)
        .await
    {
        return Err(SettingError::Store);
    }
    let label = match method {
        TwoStepMethod::Sms => ctx.t.method_sms,
        TwoStepMethod::Email => ctx.t.method_email,
        TwoStepMethod::App => ctx.t.method_app,
    };
    login::notify_user(ctx.app, user, ctx.lang, |lang, site| {
        notify::messages::two_step_changed(lang, enabled, before.0, label, site)
    });
    let (token, _) = ctx
        .app
        .sessions
        .replace(
            &live.record,
            crate::session::NewSession {
                user_id: &user.id,
                proof: live.record.proof,
                methods: live.record.methods.clone(),
                device_id: None,
                ip: &ip,
                user_agent: &ctx.req.user_agent(),
            },
            ctx.now(),
        )
        .await
        .map_err(|_| SettingError::Store)?;
    Ok(Some(token))
}

// --- the phone app ----------------------------------------------------------------------

async fn app_view(
    ctx: &Ctx<'_>,
    setup: Option<AppSetup>,
    msg: Option<&str>,
    error: Option<&str>,
    status: u16,
) -> Response {
    let (live, user) = match page_session(ctx, "app").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // A store error is a 503, never an empty list (the user would think the app gone).
    let Ok(enrolled) = ctx.app.store.live_enrollments(&user.id).await else {
        return unavailable_page(ctx);
    };
    let apps: Vec<AppRow> = enrolled
        .into_iter()
        .map(|e| AppRow {
            id: e.id,
            name: e.name,
            created: ctx.time(e.created),
            last_used: ctx.time(e.last_used),
        })
        .collect();
    render(
        AppPage {
            t: ctx.t,
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            apps,
            setup,
            poll_url: format!("{}/api/app/enrollments", ctx.prefix()),
            use_hint: msg == Some(ctx.t.msg_app_enrolled),
            needs_recent_login: !ctx.may_manage(&live).await,
            message: msg.map(str::to_owned),
            error: error.map(str::to_owned),
        },
        status,
    )
}

/// The app page. `?m=enrolled` (nidan.js, once the app enrolled) confirms it; `?m=check&n=N`
/// (the link without JavaScript) says whether an app joined the `N` listed before.
pub async fn app_page(ctx: &Ctx<'_>) -> Response {
    let t = ctx.t;
    let msg = match ctx.req.query_param("m").as_deref() {
        Some("enrolled") => Some(t.msg_app_enrolled),
        Some("removed") => Some(t.msg_app_removed),
        Some("check") => {
            let before: usize = ctx
                .req
                .query_param("n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let now = match ctx.session().await {
                Some((_, user)) => match ctx.app.store.live_enrollments(&user.id).await {
                    Ok(l) => l.len(),
                    Err(_) => return unavailable_page(ctx),
                },
                None => 0,
            };
            if now > before {
                Some(t.msg_app_enrolled)
            } else {
                return app_view(ctx, None, None, Some(t.app_not_yet), 200).await;
            }
        }
        _ => None,
    };
    app_view(ctx, None, msg, None, 200).await
}

/// "Remove this app?"
pub async fn app_delete_confirm(ctx: &Ctx<'_>, id: &str) -> Response {
    let (user, page) = match confirming(ctx, "app").await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let Ok(enrolled) = ctx.app.store.live_enrollments(&user.id).await else {
        return unavailable_page(ctx);
    };
    let Some(e) = enrolled.into_iter().find(|e| e.id == id) else {
        return app_view(ctx, None, None, Some(ctx.t.err_device_not_found), 404).await;
    };
    confirm(
        ctx,
        ctx.t.named(ctx.t.confirm_app, &e.name),
        ctx.t.confirm_app_help,
        format!("{page}/{}/delete", encode_rd(id)),
        page,
    )
}

pub async fn app_enroll_post(ctx: &Ctx<'_>) -> Response {
    let (_, user) = match recent_user(ctx, "app").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match super::phone_app::open(ctx, &user).await {
        Ok(e) => {
            let setup = AppSetup {
                qr: super::phone_app::qr_data_uri(&e.uri),
                enrollment_code: e.enrollment_code,
                uri: e.uri,
                code_destination: e.code_destination,
            };
            app_view(ctx, Some(setup), None, None, 200).await
        }
        Err(super::phone_app::EnrollError::Limited(s)) => {
            too_many(ctx, s, None, OtherWays::default())
        }
        Err(super::phone_app::EnrollError::NoDestination) => {
            app_view(ctx, None, None, Some(ctx.t.err_no_destination), 400).await
        }
        Err(super::phone_app::EnrollError::StepUp) => {
            app_view(ctx, None, None, Some(ctx.t.err_enroll_step_up), 403).await
        }
        Err(super::phone_app::EnrollError::NoPublicUrl | super::phone_app::EnrollError::Busy) => {
            app_view(ctx, None, None, Some(ctx.t.err_unavailable), 503).await
        }
        Err(super::phone_app::EnrollError::Delivery) => {
            app_view(ctx, None, None, Some(ctx.t.err_delivery_failed), 503).await
        }
    }
}

pub async fn app_delete_post(ctx: &Ctx<'_>, id: &str) -> Response {
    let (_, user) = match recent_user(ctx, "app").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match super::phone_app::remove(ctx, &user, Some(id)).await {
        Ok(true) => done(ctx, "app", "removed"),
        Ok(false) => app_view(ctx, None, None, Some(ctx.t.err_device_not_found), 404).await,
        Err(()) => unavailable_page(ctx),
    }
}
