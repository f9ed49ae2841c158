//! Passkeys in the portal: the page `{prefix}/passkeys` (list, rename, delete; registering
//! needs JavaScript, as WebAuthn does) and the JSON API under `{prefix}/api/passkeys`
//! (register start/finish, login start/finish, list, rename, delete).

use std::sync::Arc;

use ::http::Method;
use askama::Template;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use super::http::{Response, field};
use super::i18n::{Lang, PasskeyTexts, Texts};
use super::pages::{recent_user, render, signed_in_redirect};
use crate::login::passkey::{self, CredentialJson, PasskeyError};
use crate::session::LiveSession;
use crate::session::device;
use crate::store::PasskeyRecord;
use crate::users::User;

pub struct PasskeyRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: Option<String>,
}

#[derive(Template)]
#[template(path = "passkeys.html")]
pub struct PasskeysPage {
    pub t: &'static Texts,
    pub pt: &'static PasskeyTexts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub site: super::views::Site,
    pub csrf: String,
    pub passkeys: Vec<PasskeyRow>,
    pub needs_recent_login: bool,
    /// The session did not do both steps: a passkey cannot be added from it.
    pub needs_two_step: bool,
    pub message: Option<String>,
    pub error: Option<String>,
}

impl PasskeysPage {
    pub fn page_heading(&self) -> &str {
        self.pt.heading
    }

    pub fn can_register(&self) -> bool {
        !self.needs_recent_login && !self.needs_two_step
    }
}

fn disabled(ctx: &Ctx<'_>) -> bool {
    !ctx.app.cfg.passkeys.enabled
}

/// The relying party, from configuration (SECURITY 44): `(RP ID, origin)`. The origin the
/// browser must report is [`Ctx::origin`] (`portal.public_url`, else a host the
/// configuration names, with the request's HTTPS notion as its scheme — never the socket's
/// alone, never an arbitrary `Host`); the RP ID is `passkeys.rp_id`, else the origin's
/// host. `None` when no configured address fits this request, or the RP ID does not cover
/// the origin's host (browsers would refuse every passkey).
fn relying_party(ctx: &Ctx<'_>) -> Option<(String, String)> {
    let origin = ctx.origin()?;
    let rest = origin.split_once("://").map_or(origin.as_str(), |(_, r)| r);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => rest.split(':').next().unwrap_or(rest),
    };
    let rp_id = match &ctx.app.cfg.passkeys.rp_id {
        Some(id) => id.clone(),
        None => host.to_owned(),
    };
    passkey::rp_id_covers(&rp_id, host).then_some((rp_id, origin))
}

/// No relying party for this request (see [`relying_party`]).
fn not_configured() -> Response {
    tracing::error!(
        "passkeys need portal.public_url (the request's host is not a configured one, or passkeys.rp_id does not cover it)"
    );
    Response::json_error(
        503,
        "not_configured",
        "the gateway's public address is not configured (portal.public_url)",
    )
}

// --- the page --------------------------------------------------------------------------

pub async fn route(ctx: &Ctx<'_>, rest: &[&str]) -> Response {
    if disabled(ctx) {
        return not_found(ctx);
    }
    let method = &ctx.req.method;
    match (method, rest) {
        (&Method::GET | &Method::HEAD, []) => {
            let pt = ctx.lang.passkeys();
            let msg = match ctx.req.query_param("m").as_deref() {
                Some("renamed") => Some(pt.msg_renamed),
                Some("removed") => Some(pt.msg_deleted),
                _ => None,
            };
            page(ctx, msg, None).await
        }
        (&Method::POST, [id, "rename"]) => rename_post(ctx, id).await,
        (&Method::GET | &Method::HEAD, [id, "delete"]) => delete_confirm(ctx, id).await,
        (&Method::POST, [id, "delete"]) => delete_post(ctx, id).await,
        _ => not_found(ctx),
    }
}

fn not_found(ctx: &Ctx<'_>) -> Response {
    super::pages::not_found(ctx)
}

pub async fn page(ctx: &Ctx<'_>, msg: Option<&str>, error: Option<&str>) -> Response {
    let (live, user) = match super::pages::page_session(ctx, "passkeys").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let pt = ctx.lang.passkeys();
    let msg = msg.or_else(|| match ctx.req.query_param("m").as_deref() {
        Some("registered") => Some(pt.msg_registered),
        _ => None,
    });
    // A store error is a 503, never an empty list (the user would think them all gone).
    let Ok(stored) = ctx.app.store.user_passkeys(&user.id).await else {
        return super::pages::unavailable_page(ctx);
    };
    let rows = stored
        .into_iter()
        .map(|p| PasskeyRow {
            id: p.id,
            name: p.name,
            created: ctx.time(p.created),
            last_used: p.last_used.map(|u| ctx.time(u)),
        })
        .collect();
    render(
        PasskeysPage {
            t: ctx.t,
            pt,
            lang: ctx.lang,
            other_lang: ctx.lang.other(),
            prefix: ctx.prefix().to_owned(),
            site: ctx.site(),
            csrf: ctx.csrf.clone(),
            passkeys: rows,
            needs_recent_login: !ctx.may_manage(&live).await,
            needs_two_step: !ctx.may_add_factor(&live),
            message: msg.map(str::to_owned),
            error: error.map(str::to_owned),
        },
        if error.is_some() { 400 } else { 200 },
    )
    .with("cache-control", "no-store")
}

async fn rename_post(ctx: &Ctx<'_>, id: &str) -> Response {
    let (form, user) = match recent_user(ctx, "passkeys").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let pt = ctx.lang.passkeys();
    let raw = field(&form, "name").unwrap_or("");
    let Some(name) = device::valid_name(raw) else {
        let text = if raw.trim().is_empty() {
            ctx.t.err_name_empty
        } else {
            pt.err_name
        };
        return page(ctx, None, Some(text)).await;
    };
    match rename(ctx, &user, id, &name).await {
        Ok(()) => super::pages::done(ctx, "passkeys", "renamed"),
        Err(PasskeyError::NotFound) => page(ctx, None, Some(pt.err_not_found)).await,
        Err(e) => failed(ctx, &e),
    }
}

/// "Remove this passkey?"
async fn delete_confirm(ctx: &Ctx<'_>, id: &str) -> Response {
    let (user, list) = match super::pages::confirming(ctx, "passkeys").await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let Ok(stored) = ctx.app.store.user_passkeys(&user.id).await else {
        return super::pages::unavailable_page(ctx);
    };
    let found = stored.into_iter().find(|p| p.id == id);
    let Some(p) = found else {
        return page(ctx, None, Some(ctx.lang.passkeys().err_not_found)).await;
    };
    super::pages::confirm(
        ctx,
        ctx.t.named(ctx.t.confirm_passkey, &p.name),
        ctx.t.confirm_passkey_help,
        format!("{list}/{}/delete", super::redirect::encode_rd(id)),
        list,
    )
}

async fn delete_post(ctx: &Ctx<'_>, id: &str) -> Response {
    let (_, user) = match recent_user(ctx, "passkeys").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let pt = ctx.lang.passkeys();
    match delete(ctx, &user, id).await {
        Ok(()) => super::pages::done(ctx, "passkeys", "removed"),
        Err(PasskeyError::NotFound) => page(ctx, None, Some(pt.err_not_found)).await,
        Err(e) => failed(ctx, &e),
    }
}

/// A change the page could not make: a store error is the "unavailable" page (503),
/// anything else the internal-error page.
fn failed(ctx: &Ctx<'_>, e: &PasskeyError) -> Response {
    if *e == PasskeyError::Unavailable {
        return super::pages::unavailable_page(ctx);
    }
    super::pages::message(
        ctx,
        500,
        ctx.t.err_internal_heading,
        ctx.t.err_internal,
        None,
    )
}

async fn rename(ctx: &Ctx<'_>, user: &User, id: &str, name: &str) -> Result<(), PasskeyError> {
    match ctx.app.store.rename_passkey(&user.id, id, name).await {
        Ok(true) => {
            ctx.app
                .audit
                .record(
                    crate::audit::Event::PasskeyRenamed,
                    &user.id,
                    &ctx.req.peer.to_string(),
                    json!({"passkey": id}),
                )
                .await;
            Ok(())
        }
        Ok(false) => Err(PasskeyError::NotFound),
        Err(_) => Err(PasskeyError::Unavailable),
    }
}

async fn delete(ctx: &Ctx<'_>, user: &User, id: &str) -> Result<(), PasskeyError> {
    match ctx.app.store.delete_passkey(&user.id, id).await {
        Ok(true) => {
            ctx.app
                .audit
                .record(
                    crate::audit::Event::PasskeyDeleted,
                    &user.id,
                    &ctx.req.peer.to_string(),
                    json!({"passkey": id}),
                )
                .await;
            Ok(())
        }
        Ok(false) => Err(PasskeyError::NotFound),
        Err(_) => Err(PasskeyError::Unavailable),
    }
}

// --- the JSON API -----------------------------------------------------------------------

/// `{prefix}/api/passkeys/...`; the API dispatcher resolved the endpoint and checked
/// same-site and JSON.
pub async fn api(ctx: &Ctx<'_>, endpoint: super::endpoints::Endpoint, id: &str) -> Response {
    use super::endpoints::Endpoint as E;
    if disabled(ctx) {
        return Response::json_error(404, "not_found", "passkeys are not enabled");
    }
    match endpoint {
        E::Passkeys => api_list(ctx).await,
        E::PasskeyRegisterStart => register_start(ctx).await,
        E::PasskeyRegisterFinish => register_finish(ctx).await,
        E::PasskeyLoginStart => login_start(ctx).await,
        E::PasskeyLoginFinish => login_finish(ctx).await,
        E::PasskeyRename => api_rename(ctx, id).await,
        E::PasskeyDelete => api_delete(ctx, id).await,
        _ => Response::json_error(404, "not_found", "no such API endpoint"),
    }
}

fn passkey_json(p: &PasskeyRecord) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "created": crate::time::rfc3339(p.created),
        "last_used": p.last_used.map(crate::time::rfc3339),
        "alg": match p.alg {
            passkey::ALG_EDDSA => "EdDSA",
            _ => "ES256",
        },
    })
}

fn error(e: &PasskeyError) -> Response {
    match e {
        PasskeyError::BadInput(what) => {
            Response::json_error(400, "bad_request", &format!("bad input: {what}"))
        }
        PasskeyError::Failed(_) => Response::json_error(
            400,
            "registration_failed",
            "the passkey could not be verified",
        ),
        PasskeyError::Throttled(s) => {
            Response::json_error(429, "too_many_attempts", "too many attempts; try later")
                .with("retry-after", s.to_string())
        }
        PasskeyError::Full => Response::json_error(
            409,
            "too_many_passkeys",
            "this account already has the maximum number of passkeys",
        ),
        PasskeyError::Duplicate => {
            Response::json_error(409, "passkey_exists", "this passkey is already registered")
        }
        PasskeyError::NotFound => Response::json_error(404, "not_found", "no such passkey"),
        PasskeyError::Internal => Response::json_error(500, "internal", "internal error"),
        PasskeyError::Busy => {
            Response::json_error(503, "busy", "the server is busy; try again shortly")
                .with("retry-after", crate::outage::retry_after())
        }
        PasskeyError::Unavailable => super::endpoints::unavailable(),
    }
}

async fn api_list(ctx: &Ctx<'_>) -> Response {
    let Some((_, user)) = (match ctx.session_checked().await {
        Ok(s) => s,
        Err(()) => return super::endpoints::unavailable(),
    }) else {
        return Response::json_error(401, "unauthenticated", "log in first");
    };
    match ctx.app.store.user_passkeys(&user.id).await {
        Ok(list) => Response::json(
            200,
            &json!({
                "passkeys": list.iter().map(passkey_json).collect::<Vec<_>>(),
                "max": passkey::MAX_PER_USER,
            }),
        ),
        Err(_) => super::endpoints::unavailable(),
    }
}

/// A session with a recent login in which both steps were done: a passkey stands for both
/// steps, so only such a login may add one.
async fn registering_user(
    ctx: &Ctx<'_>,
) -> Result<(Arc<LiveSession>, Arc<User>, String), Response> {
    let Some((live, user)) = ctx
        .session_checked()
        .await
        .map_err(|()| super::endpoints::unavailable())?
    else {
        return Err(Response::json_error(401, "unauthenticated", "log in first"));
    };
    if !ctx
        .manage_check(&live)
        .await
        .map_err(|()| super::endpoints::unavailable())?
    {
        return Err(Response::json_error(
            403,
            "recent_login_required",
            "log in again to change this",
        ));
    }
    if !ctx.may_add_factor(&live) {
        return Err(Response::json_error(
            403,
            "second_step_required",
            "log in with both steps (a second step every route accepts) to register a passkey",
        ));
    }
    let session = crate::secret::token_hash(&ctx.session_token().unwrap_or_default());
    Ok((live, user, session))
}

async fn register_start(ctx: &Ctx<'_>) -> Response {
    let (_, user, session) = match registering_user(ctx).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some((rp_id, origin)) = relying_party(ctx) else {
        return not_configured();
    };
    match ctx
        .app
        .login
        .passkey_register_start(&user, &session, &rp_id, &origin)
        .await
    {
        Ok(options) => Response::json(200, &options).with("cache-control", "no-store"),
        Err(e) => error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    name: String,
    credential: CredentialJson,
}

async fn register_finish(ctx: &Ctx<'_>) -> Response {
    let (_, user, session) = match registering_user(ctx).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let body: RegisterBody = match super::endpoints::parse(ctx) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = device::valid_name(&body.name) else {
        return Response::json_error(
            400,
            "bad_passkey_name",
            "a passkey name has 1 to 64 characters and no control characters",
        );
    };
    let Some((_, origin)) = relying_party(ctx) else {
        return not_configured();
    };
    let ip = ctx.req.peer.to_string();
    match ctx
        .app
        .login
        .passkey_register_finish(&user, &session, &origin, &name, &body.credential, &ip)
        .await
    {
        Ok(rec) => {
            // A new way in, like a trusted device: the user hears of it (SECURITY 16).
            let browser = crate::session::device::browser_summary(&ctx.req.user_agent());
            crate::login::notify_user(ctx.app, &user, ctx.lang, |lang, site| {
                crate::notify::messages::passkey_added(lang, &rec.name, &browser, &ip, site)
            });
            Response::json(201, &passkey_json(&rec))
        }
        Err(e) => error(&e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginStartBody {
    #[serde(default)]
    return_to: Option<String>,
}

async fn login_start(ctx: &Ctx<'_>) -> Response {
    // Each start keeps a challenge: limited per network (SECURITY 39, 40).
    match ctx.app.login.passkey_start(ctx.req.peer, ctx.now()).await {
        Ok(()) => {}
        Err(Some(s)) => return error(&PasskeyError::Throttled(s)),
        Err(None) => return error(&PasskeyError::Busy),
    }
    let body: LoginStartBody = if ctx.req.body.iter().all(u8::is_ascii_whitespace) {
        LoginStartBody::default()
    } else {
        match super::endpoints::parse(ctx) {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
    let Some((rp_id, origin)) = relying_party(ctx) else {
        return not_configured();
    };
    let rd = ctx.safe_rd(body.return_to.as_deref());
    match ctx
        .app
        .login
        .passkey_login_start(&rp_id, &origin, &rd)
        .await
    {
        Ok(options) => Response::json(200, &options).with("cache-control", "no-store"),
        Err(e) => error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginFinishBody {
    credential: CredentialJson,
}

async fn login_finish(ctx: &Ctx<'_>) -> Response {
    let body: LoginFinishBody = match super::endpoints::parse(ctx) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some((_, origin)) = relying_party(ctx) else {
        return not_configured();
    };
    match ctx
        .app
        .login
        .passkey_login_finish(&ctx.client(), &origin, &body.credential)
        .await
    {
        Ok(done) => signed_in_redirect(ctx, done, 200),
        Err(e @ (PasskeyError::BadInput(_) | PasskeyError::Throttled(_))) => error(&e),
        Err(e @ (PasskeyError::Internal | PasskeyError::Busy | PasskeyError::Unavailable)) => {
            error(&e)
        }
        // One answer for every refusal: nothing tells which check failed.
        Err(_) => Response::json_error(401, "login_failed", "the passkey login failed"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameBody {
    name: String,
}

async fn api_rename(ctx: &Ctx<'_>, id: &str) -> Response {
    let user = match super::endpoints::recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let body: RenameBody = match super::endpoints::parse(ctx) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = device::valid_name(&body.name) else {
        return Response::json_error(
            400,
            "bad_passkey_name",
            "a passkey name has 1 to 64 characters and no control characters",
        );
    };
    match rename(ctx, &user, id, &name).await {
        Ok(()) => Response::json(200, &json!({"id": id, "name": name})),
        Err(e) => error(&e),
    }
}

async fn api_delete(ctx: &Ctx<'_>, id: &str) -> Response {
    let user = match super::endpoints::recent(ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match delete(ctx, &user, id).await {
        Ok(()) => Response::no_content(),
        Err(e) => error(&e),
    }
}
