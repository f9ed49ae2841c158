//! The login portal under the configured prefix: HTML pages (work without JavaScript, in
//! Japanese and English), the JSON API, and static assets. Entered from `request_filter`;
//! the request ends here.

pub mod api;
pub mod endpoints;
pub mod http;
pub mod i18n;
pub mod openapi;
pub mod pages;
pub mod passkeys;
pub mod password;
pub mod phone_app;
pub mod redirect;
pub mod sessions;
pub mod tokens;
pub mod views;

use std::sync::Arc;

use ::http::Method;

use crate::app::App;
use crate::config::Route;
use crate::login::Client;
use crate::session::LiveSession;
use crate::session::cookie;
use crate::users::User;
use http::{Request, Response};
use i18n::{Lang, Texts};

const CSS: &str = include_str!("static/nidan.css");
const JS: &str = include_str!("static/nidan.js");

/// Base names of the cookies the portal sets besides session and device.
pub const CSRF_COOKIE: &str = "nidan_csrf";
pub const LANG_COOKIE: &str = "nidan_lang";
/// The browser's time zone, set by nidan.js (`__Host-` + Secure over HTTPS like the others;
/// not HttpOnly, as a script sets it; it only chooses how times are shown).
pub const TZ_COOKIE: &str = "nidan_tz";

/// Per-request context shared by pages and API.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub req: &'a Request,
    pub lang: Lang,
    pub t: &'static Texts,
    /// The CSRF token for forms on this response.
    pub csrf: String,
    /// The CSRF cookie must be (re)set on this response.
    pub set_csrf: bool,
    pub set_lang: bool,
}

impl<'a> Ctx<'a> {
    fn new(app: &'a App, req: &'a Request) -> Self {
        let https = req.https;
        let chosen = req.query_param("lang").and_then(|l| Lang::parse(&l));
        let remembered = cookie::get(&req.headers, &cookie::name(LANG_COOKIE, https))
            .and_then(|l| Lang::parse(&l));
        let lang = chosen.or(remembered).unwrap_or_else(|| {
            Lang::from_accept_language(
                req.header("accept-language"),
                app.cfg.portal.default_language,
            )
        });
        let existing =
            cookie::get(&req.headers, &cookie::name(CSRF_COOKIE, https)).filter(|v| v.len() == 43);
        let (csrf, set_csrf) = match existing {
            Some(v) => (v, false),
            None => (crate::secret::random_token(32), true),
        };
        Self {
            app,
            req,
            lang,
            t: i18n::texts(lang),
            csrf,
            set_csrf,
            set_lang: chosen.is_some() && chosen != remembered,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.app.cfg.portal.path_prefix
    }

    /// The operator's name, logo, colour and footer links for this page's layout.
    pub fn site(&self) -> views::Site {
        let portal = &self.app.cfg.portal;
        let brand = &portal.brand;
        let prefix = self.prefix();
        views::Site {
            name: portal.site_name().to_owned(),
            logo: brand.logo.as_ref().map(|_| format!("{prefix}/static/logo")),
            brand_css: brand
                .primary_color
                .as_ref()
                .map(|_| format!("{prefix}/static/brand.css")),
            footer: self.footer(),
        }
    }

    /// The footer's links: the operator's help and account pages (`portal.help_url`,
    /// `portal.account_url`), then `portal.brand.footer_links`.
    fn footer(&self) -> Vec<(String, String)> {
        let portal = &self.app.cfg.portal;
        let own = [
            (&portal.help_url, self.t.help_link),
            (&portal.account_url, self.t.account_link),
        ];
        let mut links: Vec<(String, String)> = own
            .into_iter()
            .filter_map(|(url, label)| url.as_ref().map(|u| (u.clone(), label.to_owned())))
            .collect();
        links.extend(portal.brand.footer_links.iter().map(|l| {
            let label = match self.lang {
                Lang::Ja => &l.label_ja,
                Lang::En => &l.label_en,
            };
            (l.url.clone(), label.clone())
        }));
        links
    }

    /// The zone this user's times are shown in: the browser's (nidan.js reports it in a
    /// cookie; only a zone of the IANA database counts), else `portal.time_zone`, else by
    /// the page's language.
    pub fn zone(&self) -> chrono_tz::Tz {
        cookie::get(&self.req.headers, &self.cookie_name(TZ_COOKIE))
            .filter(|z| z.len() <= 64)
            .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
            .or(self.app.cfg.portal.time_zone)
            .unwrap_or(match self.lang {
                Lang::Ja => chrono_tz::Tz::Asia__Tokyo,
                Lang::En => chrono_tz::Tz::UTC,
            })
    }

    /// A time (Unix seconds) as the user reads it, with the zone next to it.
    pub fn time(&self, ts: i64) -> String {
        crate::time::display_in(ts, self.zone())
    }

    pub fn now(&self) -> i64 {
        crate::time::now()
    }

    /// The name cookie `base` goes by on this request (`__Host-` over HTTPS).
    pub fn cookie_name(&self, base: &str) -> String {
        cookie::name(base, self.req.https)
    }

    /// A `Set-Cookie` for cookie `base` as this request must get it (SECURITY 19, 44).
    pub fn set_cookie(&self, base: &str, value: &str, max_age: Option<i64>) -> String {
        cookie::set(base, value, self.req.https, max_age)
    }

    /// The `Set-Cookie` that removes what [`Ctx::set_cookie`] set.
    pub fn remove_cookie(&self, base: &str) -> String {
        cookie::remove(base, self.req.https)
    }

    pub fn client(&self) -> Client {
        Client {
            ip: self.req.peer,
            user_agent: self.req.user_agent(),
            device_cookie: cookie::get(
                &self.req.headers,
                &self.cookie_name(&self.app.cfg.trusted_devices.cookie_name),
            ),
            seen_cookie: cookie::get(
                &self.req.headers,
                &self.cookie_name(crate::login::risk::SEEN_COOKIE),
            ),
            session_cookie: self.session_token(),
            lang: self.lang,
        }
    }

    pub fn session_token(&self) -> Option<String> {
        cookie::get(
            &self.req.headers,
            &self.cookie_name(&self.app.cfg.session.cookie_name),
        )
    }

    /// The logged-in user, if the session is valid and the account still active.
    /// A store error counts as no session here (pages that need one send the user to log in;
    /// nothing is granted by it). The JSON API uses [`Ctx::session_checked`] to tell the two
    /// apart.
    pub async fn session(&self) -> Option<(Arc<LiveSession>, Arc<User>)> {
        self.session_checked().await.ok().flatten()
    }

    /// The logged-in user, or `Err(())` when the session store could not be read (the
    /// caller answers 503, SECURITY 36).
    pub async fn session_checked(&self) -> Result<Option<(Arc<LiveSession>, Arc<User>)>, ()> {
        let Some(token) = self.session_token() else {
            return Ok(None);
        };
        let Some(live) = self
            .app
            .sessions
            .check(&token, self.now())
            .await
            .map_err(|_| ())?
        else {
            return Ok(None);
        };
        Ok(self
            .app
            .active_user(&live.record.user_id)
            .await
            .map_err(|_| ())?
            .map(|user| (live, user)))
    }

    /// May this session add a factor that counts as a second step (a passkey, an enrolled
    /// app)? Its own second step must be one every restricting route accepts (SECURITY 35).
    pub fn may_add_factor(&self, live: &LiveSession) -> bool {
        let routes = self.app.routes();
        live.record
            .proof
            .second
            .is_some_and(|f| crate::assurance::may_add_factor(routes.routes(), f))
    }

    /// Logged in within `portal.recent_login`.
    pub fn is_recent(&self, live: &LiveSession) -> bool {
        let window = i64::try_from(self.app.cfg.portal.recent_login.as_secs()).unwrap_or(300);
        self.now() - live.record.auth_time <= window
    }

    /// May this session manage the account (2-step setting, devices, passkeys, tokens, app
    /// enrollment)? It must be a login within `portal.recent_login` that met the user's full
    /// requirement: a second step whenever the user's 2-step is on or the login's risk asked
    /// for one — a network exemption does not stand in here (SECURITY 35). Anything it cannot
    /// read counts as "no" (for what a page shows; gates use [`Ctx::manage_check`]).
    pub async fn may_manage(&self, live: &LiveSession) -> bool {
        self.manage_check(live).await.unwrap_or(false)
    }

    /// [`Ctx::may_manage`], with `Err(())` when the user's 2-step setting cannot be read:
    /// the caller answers 503, never "log in again" (SECURITY 36, 47).
    pub async fn manage_check(&self, live: &LiveSession) -> Result<bool, ()> {
        if !self.is_recent(live) {
            return Ok(false);
        }
        let proof = &live.record.proof;
        if proof.second.is_some() {
            return Ok(true);
        }
        if proof.required {
            return Ok(false);
        }
        let Some(user) = self
            .app
            .active_user(&live.record.user_id)
            .await
            .map_err(|_| ())?
        else {
            return Ok(false);
        };
        match self.app.two_step_of(&user).await {
            Ok((enabled, _)) => Ok(!enabled),
            Err(_) => Err(()),
        }
    }

    /// The portal's absolute address (scheme, host, port) for what is handed out of band or
    /// checked against the browser (the app enrollment's server, the passkey origin):
    /// `portal.public_url`, else the request's host only where the configuration names it —
    /// a route host, an allowed return host, or one of the listen addresses (`localhost`
    /// for a loopback one) — with the scheme of the request's HTTPS notion. Never an
    /// arbitrary `Host`, never the socket's scheme alone (SECURITY 21, 44).
    pub fn public_base(&self) -> Option<String> {
        let portal = &self.app.cfg.portal;
        if let Some(u) = &portal.public_url {
            return Some(u.clone());
        }
        let raw = self.req.header("host")?.trim().to_ascii_lowercase();
        let host = &self.req.host;
        let port = match raw.strip_prefix(host.as_str())? {
            "" => None,
            rest => {
                let p = rest.strip_prefix(':')?;
                Some(p.parse::<u16>().ok().filter(|n| *n > 0)?)
            }
        };
        let server = &self.app.cfg.server;
        let tls_listen = server.tls.iter().flat_map(|t| t.listen.iter());
        let bare = host.trim_matches(['[', ']']);
        let named = self.app.routes().names_host(host)
            || portal.allowed_return_hosts.iter().any(|h| h == host)
            || server.listen.iter().chain(tls_listen).any(|a| {
                Some(a.port()) == port
                    && (a.ip().to_string() == bare || (bare == "localhost" && a.ip().is_loopback()))
            });
        if !named {
            return None;
        }
        let scheme = if self.req.https { "https" } else { "http" };
        Some(match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        })
    }

    /// The origin browsers report for the portal (WebAuthn's `clientDataJSON.origin`):
    /// [`Ctx::public_base`] without a default port.
    pub fn origin(&self) -> Option<String> {
        let base = self.public_base()?;
        let origin = base
            .strip_suffix(":443")
            .filter(|b| b.starts_with("https://"))
            .or_else(|| {
                base.strip_suffix(":80")
                    .filter(|b| b.starts_with("http://"))
            })
            .unwrap_or(&base);
        Some(origin.to_owned())
    }

    /// The return address if it is safe, else `/`.
    pub fn safe_rd(&self, raw: Option<&str>) -> String {
        let routes = self.app.routes();
        let allowed = |h: &str| {
            routes.names_host(h)
                || self
                    .app
                    .cfg
                    .portal
                    .allowed_return_hosts
                    .iter()
                    .any(|a| a == h)
        };
        raw.and_then(|r| redirect::safe_return_to(r, &allowed))
            .unwrap_or_else(|| "/".to_owned())
    }

    /// The route a (validated) return address leads to.
    pub fn route_of(&self, rd: &str) -> Option<Route> {
        let (host, path) = if rd.starts_with('/') {
            (self.req.host.clone(), rd.to_owned())
        } else {
            let after = rd.split_once("://").map_or(rd, |(_, rest)| rest);
            let (authority, path) = after
                .split_once('/')
                .map_or((after, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
            (crate::proxy::route::host_of(authority), path)
        };
        let path = path.split(['?', '#']).next().unwrap_or("/");
        let path = crate::proxy::path::canonicalize(path).ok()?.path;
        let routes = self.app.routes();
        routes.find(&host, &path).map(|f| f.route.into_owned())
    }

    /// Is this state-changing request from our own site? (SECURITY 22)
    pub fn same_site(&self) -> bool {
        // Browsers set Sec-Fetch-Site themselves (no page script can): when present it
        // decides; an `Origin` is checked otherwise.
        match self.req.header("sec-fetch-site") {
            Some("same-origin") => return true,
            Some(_) => return false,
            None => {}
        }
        match self.req.header("origin") {
            None => true,
            Some(origin) => {
                let host = self.req.header("host").unwrap_or("");
                let authority = origin.split_once("://").map_or("", |(_, a)| a);
                !host.is_empty() && authority.eq_ignore_ascii_case(host)
            }
        }
    }

    /// The CSRF token in a form matches this browser's cookie.
    pub fn csrf_ok(&self, form: &[(String, String)]) -> bool {
        let sent = http::field(form, "csrf").unwrap_or("");
        !self.set_csrf && crate::secret::equal(sent.as_bytes(), self.csrf.as_bytes())
    }

    /// Adds the cookies this context owes the browser.
    pub fn finish(&self, mut resp: Response) -> Response {
        // Only pages carry forms; static files and JSON stay cacheable and cookie-free.
        let is_page = resp
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/html"));
        // Static files are cached (by browsers and shared caches): never a cookie on them.
        if self.req.path.starts_with("/static/") {
            return resp;
        }
        if self.set_csrf && is_page {
            resp = resp.with("set-cookie", self.set_cookie(CSRF_COOKIE, &self.csrf, None));
        }
        if self.set_lang {
            let lang = self.set_cookie(LANG_COOKIE, self.lang.code(), Some(365 * 86_400));
            resp = resp.with("set-cookie", lang);
        }
        resp
    }
}

/// Answers a portal request.
pub async fn handle(app: &App, req: &Request) -> Response {
    let ctx = Ctx::new(app, req);
    let resp = route(&ctx).await;
    security_headers(no_store_with_cookies(ctx.finish(resp)), req.https)
}

/// A response that sets a cookie is never stored by a cache (SECURITY 20).
fn no_store_with_cookies(mut resp: Response) -> Response {
    if resp.header("set-cookie").is_some() {
        resp.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("cache-control"));
        resp.headers
            .push(("cache-control".into(), "no-store".to_owned()));
    }
    resp
}

/// The portal's static files and the identity assertion's public keys; `None`: not one.
fn asset(ctx: &Ctx<'_>, segments: &[&str]) -> Option<Response> {
    let resp = match (&ctx.req.method, segments) {
        (&Method::GET | &Method::HEAD, ["static", "nidan.css"]) => {
            Response::new(200, "text/css; charset=utf-8", CSS)
                .with("cache-control", "public, max-age=3600")
        }
        (&Method::GET | &Method::HEAD, ["static", "logo"]) => {
            match &ctx.app.cfg.portal.brand.logo {
                Some(logo) => Response::new(200, logo.content_type, logo.bytes.as_slice().to_vec())
                    .with("cache-control", "public, max-age=3600"),
                None => pages::not_found(ctx),
            }
        }
        (&Method::GET | &Method::HEAD, ["static", "brand.css"]) => {
            match &ctx.app.cfg.portal.brand.primary_color {
                Some(c) => Response::new(200, "text/css; charset=utf-8", brand_css(c))
                    .with("cache-control", "public, max-age=3600"),
                None => pages::not_found(ctx),
            }
        }
        (&Method::GET | &Method::HEAD, ["static", "nidan.js"]) => {
            Response::new(200, "text/javascript; charset=utf-8", JS)
                .with("cache-control", "public, max-age=3600")
        }
        // The identity assertion's public keys (RFC 7517), for backends to verify it with.
        (&Method::GET | &Method::HEAD, [".well-known", "jwks.json"])
            if ctx.app.auth.assertions.is_some() =>
        {
            let jwks = ctx.app.auth.assertions.as_ref().map(|a| a.jwks(ctx.now()));
            Response::json(200, &jwks.unwrap_or_default())
                .with("cache-control", "public, max-age=300")
        }
        _ => return None,
    };
    Some(resp)
}

async fn route(ctx: &Ctx<'_>) -> Response {
    let req = ctx.req;
    let path = req.path.as_str();
    if let Some(r) = &ctx.app.replica
        && !r.health.all_ok()
        && starts_login(path)
    {
        // A login needs both shared stores; said at once rather than after timeouts.
        return if path.starts_with("/api/") {
            endpoints::unavailable()
        } else {
            pages::unavailable_page(ctx)
        };
    }
    if let Some(rest) = path.strip_prefix("/api/") {
        return api::handle(ctx, rest).await;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let Some(resp) = asset(ctx, segments.as_slice()) {
        return resp;
    }
    match (&req.method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, [""]) => pages::home(ctx).await,
        (&Method::GET | &Method::HEAD, ["login"]) => pages::id_page(ctx).await,
        (&Method::POST, ["login"]) => pages::id_post(ctx).await,
        (&Method::GET | &Method::HEAD, ["login", flow]) => {
            pages::flow_page(ctx, flow, None, 200).await
        }
        (&Method::POST, ["login", flow]) => pages::complete_post(ctx, flow).await,
        (&Method::POST, ["login", flow, "resend"]) => pages::resend_post(ctx, flow).await,
        (&Method::POST, ["login", flow, "use-email"]) => pages::use_email_post(ctx, flow).await,
        (&Method::POST, ["login", flow, "use-code"]) => pages::use_code_post(ctx, flow).await,
        (&Method::GET | &Method::HEAD, ["app"]) => pages::app_page(ctx).await,
        (&Method::POST, ["app", "enroll"]) => pages::app_enroll_post(ctx).await,
        (&Method::GET | &Method::HEAD, ["app", id, "delete"]) => {
            pages::app_delete_confirm(ctx, id).await
        }
        (&Method::POST, ["app", id, "delete"]) => pages::app_delete_post(ctx, id).await,
        (&Method::POST, ["logout"]) => pages::logout_post(ctx).await,
        (_, ["passkeys", rest @ ..]) => passkeys::route(ctx, rest).await,
        (_, ["sessions", rest @ ..]) => sessions::route(ctx, rest).await,
        (&Method::GET | &Method::HEAD, ["logout"]) => {
            Response::redirect(302, &format!("{}/", ctx.prefix()))
        }
        (&Method::GET | &Method::HEAD, ["devices"]) => {
            let m = ctx.req.query_param("m");
            pages::devices_page(ctx, pages::devices_message(ctx.t, m.as_deref()), None).await
        }
        (&Method::GET | &Method::HEAD, ["devices", "delete-all"]) => {
            pages::devices_delete_all_confirm(ctx).await
        }
        (&Method::POST, ["devices", "delete-all"]) => pages::devices_delete_all(ctx).await,
        (&Method::GET | &Method::HEAD, ["devices", id, "delete"]) => {
            pages::device_delete_confirm(ctx, id).await
        }
        (&Method::POST, ["devices", id, "rename"]) => pages::device_rename(ctx, id).await,
        (&Method::POST, ["devices", id, "delete"]) => pages::device_delete(ctx, id).await,
        (&Method::GET | &Method::HEAD, ["settings"]) => {
            let saved = ctx.req.query_param("m").as_deref() == Some("saved");
            pages::settings_page(ctx, saved.then_some(ctx.t.msg_settings_saved), None).await
        }
        (&Method::POST, ["settings"]) => pages::settings_post(ctx).await,
        (&Method::GET | &Method::HEAD, ["password"]) => password::get(ctx).await,
        (&Method::POST, ["password"]) => password::post(ctx).await,
        (&Method::GET | &Method::HEAD, ["settings", "tokens"]) => tokens::page_get(ctx).await,
        (&Method::POST, ["settings", "tokens"]) => tokens::create_post(ctx).await,
        (&Method::GET | &Method::HEAD, ["settings", "tokens", id, "delete"]) => {
            tokens::delete_confirm(ctx, id).await
        }
        (&Method::POST, ["settings", "tokens", id, "delete"]) => tokens::delete_post(ctx, id).await,
        _ => pages::not_found(ctx),
    }
}

/// The operator's primary colour over the default blue (checked for contrast with white at
/// load; a stylesheet, as the CSP allows no inline style).
fn brand_css(color: &str) -> String {
    format!(
        "/* portal.brand.primary_color */\n\
         .top, button.primary, a.button, .tag.this {{ background: {color}; }}\n\
         button, a.button, .number-box, .device.current, .steps li.current {{ border-color: {color}; }}\n\
         button.secondary, .tag, .steps li.current {{ color: {color}; }}\n\
         button.primary:hover, a.button:hover {{ background: {color}; filter: brightness(.85); }}\n\
         @media (prefers-color-scheme: dark) {{ button.secondary {{ color: #8ab4f8; border-color: #8ab4f8; }} }}\n"
    )
}

/// Login steps (pages, API, passkey login): refused with a 503 while a shared store is down
/// (replica mode). Sessions, devices and settings pages keep their own fail-closed rules.
fn starts_login(path: &str) -> bool {
    let p = path.strip_prefix("/api").unwrap_or(path);
    p == "/login" || p.starts_with("/login/") || p.starts_with("/passkeys/login/")
}

/// Headers on every portal response (SECURITY 20, 23).
fn security_headers(resp: Response, https: bool) -> Response {
    let mut resp = resp
        .with(
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .with("x-content-type-options", "nosniff")
        .with("x-frame-options", "DENY")
        // Not `no-referrer`: with it browsers send `Origin: null` on our own form posts.
        .with("referrer-policy", "same-origin");
    if resp.header("cache-control").is_none() {
        resp = resp.with("cache-control", "no-store");
    }
    crate::proxy::respond::hsts(resp, https)
}

/// The gateway's own error answer outside the portal (403, 404, 502, ...): an HTML page
/// for browsers, JSON for other clients, each naming `reference` (the request id) for the
/// user to quote. Carries the portal's security headers.
pub fn gateway_error(
    app: &App,
    req: &pingora::http::RequestHeader,
    status: u16,
    reference: &str,
) -> Response {
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    let lang =
        Lang::from_accept_language(header("accept-language"), app.cfg.portal.default_language);
    let t = i18n::texts(lang);
    let (heading, text, code) = match status {
        403 => (t.err_forbidden_heading, t.err_forbidden, "forbidden"),
        404 => (t.err_not_found_heading, t.err_not_found, "not_found"),
        421 => (t.err_not_found_heading, t.err_not_found, "misdirected"),
        502 | 504 => (t.err_bad_gateway_heading, t.err_bad_gateway, "bad_gateway"),
        503 => (t.err_unavailable_heading, t.err_unavailable, "unavailable"),
        400..=499 => (t.err_bad_request_heading, t.err_bad_request, "bad_request"),
        _ => (t.err_internal_heading, t.err_internal, "internal"),
    };
    let resp = if crate::auth::gate::is_browser(header("accept")) {
        let page = views::MessagePage {
            t,
            lang,
            other_lang: lang.other(),
            prefix: app.cfg.portal.path_prefix.clone(),
            site: views::Site::named(app.cfg.portal.site_name()),
            csrf: String::new(),
            heading: heading.to_owned(),
            message: text.to_owned(),
            hints: Vec::new(),
            link: None,
            reference: Some(reference.to_owned()),
        };
        match askama::Template::render(&page) {
            Ok(html) => Response::html(status, html),
            Err(_) => Response::new(status, "text/plain; charset=utf-8", text.to_owned()),
        }
    } else {
        Response::json(
            status,
            &serde_json::json!({"error": code, "message": text, "reference": reference}),
        )
    };
    security_headers(resp, false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn login_steps_are_the_ones_refused_during_an_outage() {
        for p in [
            "/login",
            "/login/abc",
            "/login/abc/resend",
            "/api/login",
            "/api/login/abc/complete",
            "/passkeys/login/start",
            "/api/passkeys/login/finish",
        ] {
            assert!(super::starts_login(p), "{p}");
        }
        for p in [
            "/",
            "/logout",
            "/devices",
            "/api/me",
            "/loginx",
            "/api/passkeys",
        ] {
            assert!(!super::starts_login(p), "{p}");
        }
    }
}
