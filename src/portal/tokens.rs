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
    pub needs_recent_login: bool,
    pub message: Option<String>,
    pub error: Option<String>,
}

impl TokensPage {
    pub fn page_heading(&self) -> &str {
        self.tt.heading
    }
}

pub async fn page(
    ctx: &Ctx<'_>,
    new_token: Option<String>,
    msg: Option<&str>,
    error: Option<&str>,
) -> Response {
    let (live, user) = match super::pages::page_session(ctx, "settings/tokens").await {
        Ok(s) => s,
        Err(r) => return r,
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
            needs_recent_login: !ctx.may_manage(&live).await,
            message: msg.map(str::to_owned),
            error: error.map(str::to_owned),
        },
        if error.is_some() { 400 } else { 200 },
    )
    .with("cache-control", "no-store")
}

pub async fn create_post(ctx: &Ctx<'_>) -> Response {
    let (form, user) = match recent_user(ctx, "settings/tokens").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let tt = ctx.lang.tokens();
    let raw = field(&form, "name").unwrap_or("");
    let Some(name) = device::valid_name(raw) else {
        let text = if raw.trim().is_empty() {
            ctx.t.err_name_empty
        } else {
            tt.err_name
        };
        return page(ctx, None, None, Some(text)).await;
    };
    match create(ctx, &user.id, &name).await {
        Ok((plain, _)) => page(ctx, Some(plain), Some(tt.msg_created), None).await,
        Err(TokenError::Full) => page(ctx, None, None, Some(tt.err_full)).await,
        Err(e) => failed(ctx, &e),
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
        return page(ctx, None, None, Some(ctx.lang.tokens().err_not_found)).await;
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
        Ok(()) => page(ctx, None, Some(tt.msg_revoked), None).await,
        Err(TokenError::NotFound) => page(ctx, None, None, Some(tt.err_not_found)).await,
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
