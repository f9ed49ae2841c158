//! "Where you are signed in": the user's sessions (browser, address, when, how), ending one
//! or all others. The JSON API (`{prefix}/api/sessions`) and the page (`{prefix}/sessions`,
//! works without JavaScript) both delegate to [`crate::session::Sessions`]; ending sessions
//! needs a recent full-strength login, like every account change (SECURITY 35).

use ::http::Method;
use askama::Template;
use serde_json::{Value, json};

use super::Ctx;
use super::api::{recent, unavailable};
use super::http::Response;
use super::i18n::{Lang, SessionTexts, Texts, session_texts};
use super::pages::{message, reauth_redirect, recent_user, render};
use crate::session::device::browser_summary;
use crate::session::list::SessionInfo;

/// `{prefix}/api/sessions…`
pub async fn api(ctx: &Ctx<'_>, endpoint: super::api::Endpoint, id: &str) -> Response {
    use super::api::Endpoint as E;
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
        (&Method::GET | &Method::HEAD, []) => page(ctx, None, None).await,
        (&Method::POST, ["delete-others"]) => end_others_post(ctx).await,
        (&Method::POST, [id, "delete"]) => end_post(ctx, id).await,
        _ => message(
            ctx,
            404,
            ctx.t.err_not_found_heading,
            ctx.t.err_not_found,
            None,
        ),
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

async fn end_others_json(ctx: &Ctx<'_>) -> Response {
    let user = match recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Some(token) = ctx.session_token() else {
        return Response::json_error(401, "unauthenticated", "log in first");
    };
    match ctx.app.sessions.end_others(&user.id, &token).await {
        Ok(n) => {
            audit_ended(ctx, &user.id, json!({"others": n})).await;
            Response::json(200, &json!({"ended": n}))
        }
        Err(_) => unavailable(),
    }
}

async fn audit_ended(ctx: &Ctx<'_>, user: &str, detail: Value) {
    ctx.app
        .audit
        .record(
            "sessions_ended_by_user",
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
    let Some((live, user)) = ctx.session().await else {
        return reauth_redirect(ctx, "sessions");
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
        .with("retry-after", "5");
    };
    let sessions = list
        .into_iter()
        .map(|s| SessionRow {
            browser: browser_summary(&s.user_agent),
            id: s.handle,
            address: s.ip,
            created: ctx.time(s.created),
            last_seen: ctx.time(s.last_seen),
            methods: s.methods,
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
            page(ctx, Some(s.msg_ended), None).await
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

async fn end_others_post(ctx: &Ctx<'_>) -> Response {
    let (_, user) = match recent_user(ctx, "sessions").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(token) = ctx.session_token() else {
        return reauth_redirect(ctx, "sessions");
    };
    match ctx.app.sessions.end_others(&user.id, &token).await {
        Ok(n) => {
            audit_ended(ctx, &user.id, json!({"others": n})).await;
            page(ctx, Some(session_texts(ctx.lang).msg_others_ended), None).await
        }
        Err(_) => message(
            ctx,
            503,
            ctx.t.err_unavailable_heading,
            ctx.t.err_unavailable,
            None,
        ),
    }
}
