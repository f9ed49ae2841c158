//! API tokens (app passwords) in the portal: the page under settings and the JSON API
//! (`GET|POST /api/tokens`, `DELETE /api/tokens/{id}`). A new token is shown once.

use askama::Template;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use super::http::{Response, field};
use super::i18n::{Lang, Texts, TokenTexts};
use super::pages::{recent_user, render};
use crate::session::device;
use crate::tokens::{self, TokenError};

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: Option<String>,
}

#[derive(Template)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    pub t: &'static Texts,
    pub tt: &'static TokenTexts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub site: super::views::Site,
    pub csrf: String,
    pub tokens: Vec<TokenRow>,
    /// The token just created: shown this once.
    pub new_token: Option<String>,
    /// The page was asked for a new token that was already shown (a reload): say so.
    pub reveal_gone: bool,
    pub needs_recent_login: bool,
    pub message: Option<String>,
    pub error: Option<String>,
}

impl TokensPage {
    pub fn page_heading(&self) -> &str {
        self.tt.heading
    }
}

/// What the page shows of a new token.
pub enum NewToken<'a> {
    None,
    /// Just created, shown on the POST answer (only when it could not be kept for the GET).
    Plain(String),
    /// The one-time handle of the GET after the POST (`?new=`).
    Handle(&'a str),
}

/// `GET settings/tokens`: `?m=removed` after a removal, `?new=` after a creation.
pub async fn page_get(ctx: &Ctx<'_>) -> Response {
    let removed = ctx.req.query_param("m").as_deref() == Some("removed");
    let msg = removed.then_some(ctx.lang.tokens().msg_revoked);
    match ctx.req.query_param("new") {
        Some(h) => page(ctx, NewToken::Handle(&h), msg, None).await,
        None => page(ctx, NewToken::None, msg, None).await,
    }
}

pub async fn page(
    ctx: &Ctx<'_>,
    new: NewToken<'_>,
    msg: Option<&str>,
    error: Option<&str>,
) -> Response {
    let (live, user) = match super::pages::page_session(ctx, "settings/tokens").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (new_token, reveal_gone) = match new {
        NewToken::None => (None, false),
        NewToken::Plain(p) => (Some(p), false),
        // HEAD takes nothing: only the GET that shows it uses the password up.
        NewToken::Handle(_) if ctx.req.method == http::Method::HEAD => (None, false),
        NewToken::Handle(h) => {
            let state = &*ctx.app.login.state;
            match tokens::take_reveal(state, &session_key(ctx), h).await {
                Ok(Some(p)) => (Some(p), false),
                Ok(None) => (None, true),
                Err(e) => {
                    tracing::error!(error = %e, "a new app password could not be read");
                    return super::pages::unavailable_page(ctx);
                }
            }
        }
    };
    let msg = if new_token.is_some() {
        Some(ctx.lang.tokens().msg_created)
    } else {
        msg
    };
    // A store error is a 503, never an empty list; except right after a token was made,
    // whose only showing must not be lost: then the page says the list is unavailable.
    let (list, error) = match tokens::list(&ctx.app.store, &user.id).await {
        Ok(list) => (list, error),
        Err(e) => {
            tracing::error!(error = %e, "app passwords could not be listed");
            if new_token.is_none() {
                return super::pages::unavailable_page(ctx);
            }
            (Vec::new(), Some(ctx.t.err_unavailable))
        }
    };
    let rows = list
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            created: ctx.time(t.created),
            last_used: t.last_used.map(|u| ctx.time(u)),
        })
        .collect();
    render(
        TokensPage {
            t: ctx.t,
            tt: ctx.lang.tokens(),
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            tokens: rows,
            new_token,
            reveal_gone,
            needs_recent_login: !ctx.may_manage(&live).await,
            message: msg.map(str::to_owned),
            error: error.map(str::to_owned),
        },
        if error.is_some() { 400 } else { 200 },
    )
    .with("cache-control", "no-store")
}

pub async fn create_post(ctx: &Ctx<'_>) -> Response {
    let form = match super::pages::checked_form(ctx) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (live, user) = match super::pages::page_session(ctx, "settings/tokens").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match super::pages::manages(ctx, &live).await {
        Ok(true) => {}
        Ok(false) => return super::pages::reauth_redirect(ctx, "settings/tokens"),
        Err(r) => return r,
    }
    let tt = ctx.lang.tokens();
    let raw = field(&form, "name").unwrap_or("");
    let Some(name) = device::valid_name(raw) else {
        let text = if raw.trim().is_empty() {
            ctx.t.err_name_empty
        } else {
            tt.err_name
        };
        return page(ctx, NewToken::None, None, Some(text)).await;
    };
    match create(ctx, &user.id, &name).await {
        Ok((plain, _)) => reveal(ctx, &session_key(ctx), plain).await,
        Err(TokenError::Full) => page(ctx, NewToken::None, None, Some(tt.err_full)).await,
        Err(e) => failed(ctx, &e),
    }
}

/// What binds a waiting token to this session: the hash of its cookie (the session was
/// checked first; the cached session record carries no hash).
fn session_key(ctx: &Ctx<'_>) -> String {
    crate::secret::token_hash(&ctx.session_token().unwrap_or_default())
}

/// Post/Redirect/Get for a new token: kept server-side (minutes, this session only) and
/// shown by the GET its handle names, so a reload creates no second one. Should the
/// short-lived state be unavailable, the POST answer shows it: it was made, and its only
/// showing must not be lost.
async fn reveal(ctx: &Ctx<'_>, session: &str, plain: String) -> Response {
    match tokens::stash_reveal(&*ctx.app.login.state, session, &plain).await {
        Ok(handle) => Response::redirect(
            303,
            &format!("{}/settings/tokens?new={handle}", ctx.prefix()),
        )
        .with("cache-control", "no-store"),
        Err(e) => {
            tracing::error!(error = %e, "a new app password could not be kept for its page");
            page(ctx, NewToken::Plain(plain), None, None).await
        }
    }
}

/// "Remove this app password?"
pub async fn delete_confirm(ctx: &Ctx<'_>, id: &str) -> Response {
    let (user, list) = match super::pages::confirming(ctx, "settings/tokens").await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let found = match tokens::list(&ctx.app.store, &user.id).await {
        Ok(list) => list.into_iter().find(|t| t.id == id),
        Err(e) => {
            tracing::error!(error = %e, "app passwords could not be listed");
            return super::pages::unavailable_page(ctx);
        }
    };
    let Some(tk) = found else {
        return page(
            ctx,
            NewToken::None,
            None,
            Some(ctx.lang.tokens().err_not_found),
        )
        .await;
    };
    super::pages::confirm(
        ctx,
        ctx.t.named(ctx.t.confirm_token, &tk.name),
        ctx.t.confirm_token_help,
        format!("{list}/{}/delete", super::redirect::encode_rd(id)),
        list,
    )
}

pub async fn delete_post(ctx: &Ctx<'_>, id: &str) -> Response {
    let (_, user) = match recent_user(ctx, "settings/tokens").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let tt = ctx.lang.tokens();
    match revoke(ctx, &user.id, id).await {
        Ok(()) => super::pages::done(ctx, "settings/tokens", "removed"),
        Err(TokenError::NotFound) => page(ctx, NewToken::None, None, Some(tt.err_not_found)).await,
        Err(e) => failed(ctx, &e),
    }
}

/// A token operation that failed: a store error is a 503 page (nothing changed; try
/// again), anything else a 500.
fn failed(ctx: &Ctx<'_>, e: &TokenError) -> Response {
    tracing::error!(error = %e, "app password operation failed");
    match e {
        TokenError::Store(_) => super::pages::unavailable_page(ctx),
        _ => super::pages::message(
            ctx,
            500,
            ctx.t.err_internal_heading,
            ctx.t.err_internal,
            None,
        ),
    }
}

/// The API's answer to a token operation that failed (see [`failed`]).
fn api_failed(e: &TokenError) -> Response {
    tracing::error!(error = %e, "app password operation failed");
    match e {
        TokenError::Store(_) => super::endpoints::unavailable(),
        _ => Response::json_error(500, "internal", "internal error"),
    }
}

async fn create(
    ctx: &Ctx<'_>,
    user: &str,
    name: &str,
) -> Result<(String, crate::store::TokenRecord), TokenError> {
    let (plain, rec) = tokens::create(&ctx.app.store, user, name, ctx.now()).await?;
    ctx.app
        .audit
        .record(
            crate::audit::Event::TokenCreated,
            user,
            &ctx.req.peer.to_string(),
            json!({"token": rec.id}),
        )
        .await;
    Ok((plain, rec))
}

async fn revoke(ctx: &Ctx<'_>, user: &str, id: &str) -> Result<(), TokenError> {
    tokens::revoke(&ctx.app.store, user, id).await?;
    ctx.app
        .audit
        .record(
            crate::audit::Event::TokenRevoked,
            user,
            &ctx.req.peer.to_string(),
            json!({"token": id}),
        )
        .await;
    Ok(())
}

fn token_json(t: &crate::store::TokenRecord) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "created": crate::time::rfc3339(t.created),
        "last_used": t.last_used.map(crate::time::rfc3339),
    })
}

pub async fn api_list(ctx: &Ctx<'_>) -> Response {
    let Some((_, user)) = (match ctx.session_checked().await {
        Ok(s) => s,
        Err(()) => return super::endpoints::unavailable(),
    }) else {
        return Response::json_error(401, "unauthenticated", "log in first");
    };
    match tokens::list(&ctx.app.store, &user.id).await {
        Ok(list) => Response::json(
            200,
            &json!({
                "tokens": list.iter().map(token_json).collect::<Vec<_>>(),
                "max": tokens::MAX_PER_USER,
            }),
        ),
        Err(e) => api_failed(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
}

pub async fn api_create(ctx: &Ctx<'_>) -> Response {
    let user = match super::endpoints::recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let body: CreateBody = match super::endpoints::parse(ctx) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = device::valid_name(&body.name) else {
        return Response::json_error(
            400,
            "bad_token_name",
            "a token name has 1 to 64 characters and no control characters",
        );
    };
    match create(ctx, &user.id, &name).await {
        Ok((plain, rec)) => {
            let mut j = token_json(&rec);
            j["token"] = json!(plain);
            Response::json(201, &j).with("cache-control", "no-store")
        }
        Err(TokenError::Full) => Response::json_error(
            409,
            "too_many_tokens",
            "this account already has the maximum number of API tokens",
        ),
        Err(e) => api_failed(&e),
    }
}

pub async fn api_delete(ctx: &Ctx<'_>, id: &str) -> Response {
    let user = match super::endpoints::recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match revoke(ctx, &user.id, id).await {
        Ok(()) => Response::no_content(),
        Err(TokenError::NotFound) => Response::json_error(404, "not_found", "no such token"),
        Err(e) => api_failed(&e),
    }
}
