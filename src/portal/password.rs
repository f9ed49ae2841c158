//! Changing one's password in the portal: the page (`{prefix}/password`, a form that works
//! without JavaScript, CSRF-protected) and the JSON API (`PUT /api/password`). Both need a
//! recent login that met the user's full requirement; the rules live in `Login` and
//! `Accounts` (`Login::change_password`).

use askama::Template;
use serde::Deserialize;

use super::Ctx;
use super::http::{Response, field};
use super::i18n::{Lang, PasswordTexts, Texts};
use super::pages::render;
use crate::accounts::new_password::Weak;
use crate::accounts::password::ChangeError;
use crate::login::service::password_change::PasswordChangeRefused;

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage {
    pub t: &'static Texts,
    pub pt: &'static PasswordTexts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub site: super::views::Site,
    pub csrf: String,
    /// Users can change their password here (else: the operator's page, if any).
    pub writable: bool,
    pub account_url: Option<String>,
    pub needs_recent_login: bool,
    /// Just changed: the form is not shown again.
    pub changed: bool,
    pub message: Option<String>,
    pub error: Option<String>,
}

impl PasswordPage {
    pub fn page_heading(&self) -> &str {
        if self.writable {
            self.pt.heading
        } else {
            self.pt.managed_heading
        }
    }
}

async fn page(
    ctx: &Ctx<'_>,
    status: u16,
    changed: bool,
    msg: Option<&str>,
    error: Option<&str>,
) -> Response {
    let (live, _) = match super::pages::page_session(ctx, "password").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let needs_recent_login = match super::pages::manages(ctx, &live).await {
        Ok(m) => !m,
        Err(r) => return r,
    };
    render(
        PasswordPage {
            t: ctx.t,
            pt: ctx.lang.password(),
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            writable: ctx.app.accounts.passwords_writable(),
            account_url: ctx.app.cfg.portal.account_url.clone(),
            needs_recent_login,
            changed,
            message: msg.map(str::to_owned),
            error: error.map(str::to_owned),
        },
        status,
    )
    .with("cache-control", "no-store")
}

pub async fn get(ctx: &Ctx<'_>) -> Response {
    page(ctx, 200, false, None, None).await
}

pub async fn post(ctx: &Ctx<'_>) -> Response {
    let (form, _) = match super::pages::recent_user(ctx, "password").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let current = field(&form, "current_password").unwrap_or("");
    let new = field(&form, "new_password").unwrap_or("");
    let pt = ctx.lang.password();
    if field(&form, "confirm_password").unwrap_or("") != new {
        return page(ctx, 400, false, None, Some(pt.err_mismatch)).await;
    }
    match change(ctx, current, new).await {
        Ok(()) => page(ctx, 200, true, Some(pt.msg_changed), None).await,
        Err(Refusal::Page(status, text)) => page(ctx, status, false, None, Some(text)).await,
        Err(Refusal::Unavailable) => super::pages::unavailable_page(ctx),
        Err(Refusal::Wait(s)) => page(ctx, 429, false, None, Some(pt.err_wait))
            .await
            .with("retry-after", s.to_string()),
    }
}

/// Why the change did not happen, for the page.
enum Refusal {
    Page(u16, &'static str),
    Wait(u64),
    Unavailable,
}

/// The change from this request's session; the session stays.
async fn change(ctx: &Ctx<'_>, current: &str, new: &str) -> Result<(), Refusal> {
    let (Some(keep), Some((_, user))) = (
        session_hash(ctx),
        ctx.session_checked()
            .await
            .map_err(|()| Refusal::Unavailable)?,
    ) else {
        return Err(Refusal::Page(401, ctx.t.err_bad_request));
    };
    let pt = ctx.lang.password();
    let ip = ctx.req.peer.to_string();
    let r = ctx
        .app
        .login
        .change_password(&user, &keep, current, new, &ip, ctx.lang)
        .await;
    match r {
        Ok(()) => Ok(()),
        Err(PasswordChangeRefused::Wait(s)) => Err(Refusal::Wait(s)),
        Err(PasswordChangeRefused::Refused(e)) => Err(match e {
            ChangeError::Unavailable(why) => {
                tracing::error!(error = %why, "a password change could not be made");
                Refusal::Unavailable
            }
            ChangeError::NotWritable | ChangeError::NotAllowed => Refusal::Page(409, pt.managed),
            ChangeError::WrongPassword => Refusal::Page(400, pt.err_wrong),
            ChangeError::Rejected => Refusal::Page(400, pt.err_rejected),
            ChangeError::Weak(w) => Refusal::Page(400, weak_text(pt, w)),
        }),
    }
}

/// The stored key of this request's session (its cookie value's hex SHA-256).
fn session_hash(ctx: &Ctx<'_>) -> Option<String> {
    ctx.session_token().map(|t| crate::secret::token_hash(&t))
}

fn weak_text(pt: &PasswordTexts, w: Weak) -> &'static str {
    match w {
        Weak::TooShort => pt.err_too_short,
        Weak::TooLong => pt.err_too_long,
        Weak::LikeId => pt.err_like_id,
        Weak::Common => pt.err_common,
        Weak::Unchanged => pt.err_unchanged,
        Weak::Control => pt.err_invalid,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    current_password: String,
    new_password: String,
}

/// `PUT /api/password`: 204 when changed (this session stays, every other one ends).
pub async fn api_put(ctx: &Ctx<'_>) -> Response {
    if let Err(r) = super::endpoints::recent(ctx).await {
        return r;
    }
    let body: ChangeBody = match super::endpoints::parse(ctx) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (keep, user) = match (session_hash(ctx), ctx.session_checked().await) {
        (Some(keep), Ok(Some((_, user)))) => (keep, user),
        (_, Err(())) => return super::endpoints::unavailable(),
        _ => return super::endpoints::unauthorized(),
    };
    let ip = ctx.req.peer.to_string();
    let r = ctx
        .app
        .login
        .change_password(
            &user,
            &keep,
            &body.current_password,
            &body.new_password,
            &ip,
            ctx.lang,
        )
        .await;
    match r {
        Ok(()) => Response::no_content().with("cache-control", "no-store"),
        Err(PasswordChangeRefused::Wait(s)) => {
            Response::json_error(429, "too_many_failures", "too many wrong passwords; wait")
                .with("retry-after", s.to_string())
        }
        Err(PasswordChangeRefused::Refused(e)) => api_refused(ctx, &e),
    }
}

fn api_refused(ctx: &Ctx<'_>, e: &ChangeError) -> Response {
    match e {
        ChangeError::Unavailable(why) => {
            tracing::error!(error = %why, "a password change could not be made");
            super::endpoints::unavailable()
        }
        ChangeError::NotWritable | ChangeError::NotAllowed => {
            let mut r = Response::json_error(
                409,
                "password_managed_elsewhere",
                "passwords are changed on the operator's account page",
            );
            if let Some(url) = &ctx.app.cfg.portal.account_url {
                r = r.with("link", format!("<{url}>; rel=\"account\""));
            }
            r
        }
        ChangeError::WrongPassword => {
            Response::json_error(403, "wrong_password", "the current password is not right")
        }
        ChangeError::Rejected => Response::json_error(
            400,
            "password_rejected",
            "the directory's rules do not allow this password",
        ),
        ChangeError::Weak(w) => Response::json_error(400, w.code(), &w.to_string()),
    }
}
