//! "Where you are signed in": the user's sessions (browser, address, when, how), ending one
//! or all others — and, when the user asks, forgetting every trusted device and app password
//! with them. The JSON API (`{prefix}/api/sessions`) and the page (`{prefix}/sessions`,
//! works without JavaScript) both delegate to [`sign_out_elsewhere`]; ending sessions needs
//! a recent full-strength login, like every account change (SECURITY 35).

use ::http::Method;
use askama::Template;
use serde_json::{Value, json};

use super::Ctx;
use super::endpoints::{recent, unavailable};
use super::http::Response;
use super::i18n::{Lang, SessionTexts, Texts, session_texts};
use super::pages::{confirm_to, confirming, message, reauth_redirect, recent_user, render};
use crate::session::device::browser_summary;
use crate::session::list::SessionInfo;

/// `{prefix}/api/sessions…`
pub async fn api(ctx: &Ctx<'_>, endpoint: super::endpoints::Endpoint, id: &str) -> Response {
    use super::endpoints::Endpoint as E;
    match endpoint {
        E::Sessions => list_json(ctx).await,
        E::SessionsEndOthers => end_others_json(ctx).await,
        E::SessionEnd => end_json(ctx, id).await,
        _ => Response::json_error(404, "not_found", "no such API endpoint"),
    }
}

/// `{prefix}/sessions…`
pub async fn route(ctx: &Ctx<'_>, rest: &[&str]) -> Response {
    match (&ctx.req.method, rest) {
        (&Method::GET | &Method::HEAD, []) => {
            let s = session_texts(ctx.lang);
            let msg = match ctx.req.query_param("m").as_deref() {
                Some("ended") => Some(s.msg_ended),
                Some("others_ended") => Some(s.msg_others_ended),
                Some("forgotten") => Some(s.msg_forgotten),
                _ => None,
            };
            page(ctx, msg, None).await
        }
        (&Method::GET | &Method::HEAD, ["delete-others"]) => end_others_confirm(ctx, false).await,
        (&Method::POST, ["delete-others"]) => end_others_post(ctx, false).await,
        (&Method::GET | &Method::HEAD, ["delete-others-and-forget"]) => {
            end_others_confirm(ctx, true).await
        }
        (&Method::POST, ["delete-others-and-forget"]) => end_others_post(ctx, true).await,
        (&Method::POST, [id, "delete"]) => end_post(ctx, id).await,
        _ => super::pages::not_found(ctx),
    }
}

fn to_json(s: &SessionInfo) -> Value {
    json!({
        "id": s.handle,
        "browser": browser_summary(&s.user_agent),
        "user_agent": s.user_agent,
        "address": s.ip,
        "created": crate::time::rfc3339(s.created),
        "last_seen": crate::time::rfc3339(s.last_seen),
        "expires": crate::time::rfc3339(s.expires),
        "methods": s.methods,
        "current": s.current,
    })
}

async fn list_json(ctx: &Ctx<'_>) -> Response {
    let user = match ctx.session_checked().await {
        Ok(Some((_, user))) => user,
        Ok(None) => return Response::json_error(401, "unauthenticated", "log in first"),
        Err(()) => return unavailable(),
    };
    let token = ctx.session_token();
    match ctx
        .app
        .sessions
        .of_user(&user.id, token.as_deref(), ctx.now())
        .await
    {
        Ok(list) => Response::json(
            200,
            &json!({"sessions": list.iter().map(to_json).collect::<Vec<_>>()}),
        ),
        Err(_) => unavailable(),
    }
}

async fn end_json(ctx: &Ctx<'_>, id: &str) -> Response {
    let user = match recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match ctx.app.sessions.end_handle(&user.id, id).await {
        Ok(true) => {
            audit_ended(ctx, &user.id, json!({"session": id})).await;
            Response::no_content()
        }
        Ok(false) => Response::json_error(404, "not_found", "no such session"),
        Err(_) => unavailable(),
    }
}

/// The value of `forget` that also forgets devices and app passwords.
const FORGET: &str = "devices_and_app_passwords";

/// `DELETE {prefix}/api/sessions[?forget=devices_and_app_passwords]`.
async fn end_others_json(ctx: &Ctx<'_>) -> Response {
    let user = match recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let forget = match ctx.req.query_param("forget").as_deref() {
        None => false,
        Some(FORGET) => true,
        Some(_) => {
            return Response::json_error(
                400,
                "bad_forget",
                "forget is devices_and_app_passwords, or absent to keep them",
            );
        }
    };
    let Some(token) = ctx.session_token() else {
        return Response::json_error(401, "unauthenticated", "log in first");
    };
    match sign_out_elsewhere(ctx, &user.id, &token, forget).await {
        Ok(done) => Response::json(200, &done.to_json()),
        Err(()) => unavailable(),
    }
}

/// What "sign out everywhere else" did.
struct SignedOut {
    sessions: usize,
    /// Trusted devices and app passwords forgotten (only when asked).
    forgotten: Option<(usize, u64)>,
}

impl SignedOut {
    fn to_json(&self) -> Value {
        let mut v = json!({"ended": self.sessions});
        if let Some((devices, app_passwords)) = self.forgotten {
            v["devices"] = json!(devices);
            v["app_passwords"] = json!(app_passwords);
        }
        v
    }
}

/// Ends every session of the user but this browser's and, with `forget`, revokes every
/// trusted device (this browser's too) and every app password. Each goes the way of every
/// revocation: the durable write first, then this replica's cache, then the bus for the
/// others (devices and sessions; app passwords are read from the shared store on every
/// use). What was done is audited, also when a store error stopped it part-way (`Err`:
/// the caller answers 503 and the user may try again).
async fn sign_out_elsewhere(
    ctx: &Ctx<'_>,
    user: &str,
    token: &str,
    forget: bool,
) -> Result<SignedOut, ()> {
    let sessions = ctx.app.sessions.end_others(user, token).await;
    let (devices, app_passwords) = if forget {
        (
            Some(ctx.app.devices.revoke_all(user).await),
            Some(ctx.app.store.revoke_user_tokens(user).await),
        )
    } else {
        (None, None)
    };
    let mut detail = json!({"others": sessions.as_ref().ok()});
    if forget {
        detail["devices"] = json!(devices.as_ref().and_then(|r| r.as_ref().ok()));
        detail["app_passwords"] = json!(app_passwords.as_ref().and_then(|r| r.as_ref().ok()));
    }
    let failed = sessions.is_err()
        || devices.as_ref().is_some_and(Result::is_err)
        || app_passwords.as_ref().is_some_and(Result::is_err);
    if failed {
        tracing::error!(
            user,
            "sign out everywhere else: stopped by a store error (the user may try again)"
        );
        detail["incomplete"] = json!(true);
    }
    audit_ended(ctx, user, detail).await;
    match (sessions, devices, app_passwords) {
        (Ok(sessions), None, None) => Ok(SignedOut {
            sessions,
            forgotten: None,
        }),
        (Ok(sessions), Some(Ok(d)), Some(Ok(t))) => Ok(SignedOut {
            sessions,
            forgotten: Some((d, t)),
        }),
        _ => Err(()),
    }
}

async fn audit_ended(ctx: &Ctx<'_>, user: &str, detail: Value) {
    ctx.app
        .audit
        .record(
            crate::audit::Event::SessionsEndedByUser,
            user,
            &ctx.req.peer.to_string(),
            detail,
        )
        .await;
}

/// One row of [`SessionsPage`].
pub struct SessionRow {
    pub id: String,
    pub browser: String,
    pub address: String,
    pub created: String,
    pub last_seen: String,
    pub methods: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "sessions.html")]
pub struct SessionsPage {
    pub t: &'static Texts,
    pub s: &'static SessionTexts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub site: super::views::Site,
    pub csrf: String,
    pub sessions: Vec<SessionRow>,
    /// The login is too old (or short of the user's second step) to end sessions: a
    /// re-login link instead of the buttons.
    pub needs_recent_login: bool,
    pub message: Option<String>,
    pub error: Option<String>,
}

impl SessionsPage {
    pub fn page_heading(&self) -> &str {
        self.s.heading
    }
}

async fn page(ctx: &Ctx<'_>, msg: Option<&str>, error: Option<&str>) -> Response {
    let (live, user) = match super::pages::page_session(ctx, "sessions").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let token = ctx.session_token();
    let Ok(list) = ctx
        .app
        .sessions
        .of_user(&user.id, token.as_deref(), ctx.now())
        .await
    else {
        return message(
            ctx,
            503,
            ctx.t.err_unavailable_heading,
            ctx.t.err_unavailable,
            None,
        )
        .with("retry-after", crate::outage::retry_after());
    };
    let sessions = list
        .into_iter()
        .map(|s| SessionRow {
            browser: browser_summary(&s.user_agent),
            id: s.handle,
            address: s.ip,
            created: ctx.time(s.created),
            last_seen: ctx.time(s.last_seen),
            methods: ctx.t.how_logged_in(ctx.lang, &s.methods).to_owned(),
            current: s.current,
        })
        .collect();
    render(
        SessionsPage {
            t: ctx.t,
            s: session_texts(ctx.lang),
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            sessions,
            needs_recent_login: !ctx.may_manage(&live).await,
            message: msg.map(str::to_owned),
            error: error.map(str::to_owned),
        },
        if error.is_some() { 404 } else { 200 },
    )
}

async fn end_post(ctx: &Ctx<'_>, id: &str) -> Response {
    let (_, user) = match recent_user(ctx, "sessions").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let s = session_texts(ctx.lang);
    match ctx.app.sessions.end_handle(&user.id, id).await {
        Ok(true) => {
            audit_ended(ctx, &user.id, json!({"session": id})).await;
            super::pages::done(ctx, "sessions", "ended")
        }
        Ok(false) => page(ctx, None, Some(s.err_not_found)).await,
        Err(_) => message(
            ctx,
            503,
            ctx.t.err_unavailable_heading,
            ctx.t.err_unavailable,
            None,
        ),
    }
}

/// "Sign out every other browser?" (and, with `forget`, forget devices and app passwords):
/// the page's links lead here, the form posts the choice.
async fn end_others_confirm(ctx: &Ctx<'_>, forget: bool) -> Response {
    let (_, list) = match confirming(ctx, "sessions").await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let s = session_texts(ctx.lang);
    let (question, help, button, action) = if forget {
        (
            s.confirm_forget,
            s.forget_help,
            s.forget_button,
            "delete-others-and-forget",
        )
    } else {
        (
            s.confirm_end_others,
            s.end_others_help,
            s.end_others_button,
            "delete-others",
        )
    };
    confirm_to(
        ctx,
        question.to_owned(),
        help,
        format!("{list}/{action}"),
        list,
        button,
    )
}

async fn end_others_post(ctx: &Ctx<'_>, forget: bool) -> Response {
    let (_, user) = match recent_user(ctx, "sessions").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(token) = ctx.session_token() else {
        return reauth_redirect(ctx, "sessions");
    };
    match sign_out_elsewhere(ctx, &user.id, &token, forget).await {
        Ok(done) if done.forgotten.is_some() => super::pages::done(ctx, "sessions", "forgotten"),
        Ok(_) => super::pages::done(ctx, "sessions", "others_ended"),
        Err(()) => message(
            ctx,
            503,
            ctx.t.err_unavailable_heading,
            ctx.t.err_unavailable,
            None,
        )
        .with("retry-after", crate::outage::retry_after()),
    }
}
