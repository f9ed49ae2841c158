//! The pingora shell around the gateway, one phase per method, each a few lines that
//! delegate. Read top to bottom to follow a request:
//!
//! `request_filter` (canonical path → portal, or route + decision) → `upstream_peer` →
//! `upstream_request_filter` (header hygiene, identity) → `response_filter` → `logging`.

pub mod access;
pub mod conn;
pub(crate) mod forward_auth;
pub mod path;
pub mod peers;
pub mod respond;
pub mod route;
pub mod scheme;
pub mod target;
pub mod tunnel;
pub mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::HeaderName;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorSource, ErrorType};

use crate::app::App;
use crate::assurance;
use crate::auth::gate::{self, Decision, Identity};
use crate::auth::{Authenticator, CallerState, Refused};
use crate::metrics;
use crate::portal;
use crate::portal::http::Response;
use crate::request_id::RequestId;
use crate::session::cookie;
use tracing::Instrument;

/// Largest request body the portal reads.
const PORTAL_BODY_LIMIT: usize = 64 * 1024;

/// The gateway: what pingora calls for every request.
pub struct Gateway {
    pub app: Arc<App>,
    /// Normalised identity header names (lower-case, `-`), removed from every request.
    identity_headers: Vec<String>,
    /// The identity header names (user, name, email, groups), parsed once.
    identity_names: [HeaderName; 4],
    /// The identity assertion's header, parsed once (`None`: assertions are off).
    assertion_name: Option<HeaderName>,
    /// Who is calling and may they pass (shared with forward-auth and the tunnels).
    auth: Arc<Authenticator>,
    /// Open upgraded connections, held to what opened them.
    tunnels: Arc<tunnel::Tunnels>,
}

impl Gateway {
    pub fn new(app: Arc<App>) -> Self {
        Self::with_tunnels(app, Arc::default())
    }

    /// A gateway that shares `tunnels` (the one that decides open tunnels again).
    pub fn with_tunnels(app: Arc<App>, tunnels: Arc<tunnel::Tunnels>) -> Self {
        let h = &app.cfg.identity_headers;
        // The assertion's header is ours too: a client's copy never reaches a backend, on any
        // route, whether or not assertions are on.
        let assertion = app
            .auth
            .assertions
            .as_ref()
            .map_or("x-nidan-assertion", |a| a.header());
        let names = [&h.user, &h.name, &h.email, &h.groups];
        let identity_headers = names
            .iter()
            .map(|n| n.as_str())
            .chain([assertion])
            .map(upstream::normal)
            .collect();
        // Names were checked when the configuration was read.
        let parsed = |n: &str| HeaderName::from_bytes(n.as_bytes()).ok();
        let identity_names = names
            .map(|n| parsed(n).unwrap_or_else(|| HeaderName::from_static("x-nidan-invalid-name")));
        let assertion_name = app
            .auth
            .assertions
            .as_ref()
            .and_then(|a| parsed(a.header()));
        Self {
            auth: app.auth.clone(),
            app,
            identity_headers,
            identity_names,
            assertion_name,
            tunnels,
        }
    }
}

/// What one request carries from phase to phase.
pub struct Ctx {
    started: Instant,
    route: Option<usize>,
    /// The route table the decision was made with (a reload never changes it mid-request).
    table: Option<Arc<route::RouteTable>>,
    /// Canonical `path?query` forwarded upstream.
    target: Option<String>,
    /// The normalised host (`host[:port]`) the decision used; sent upstream as `Host`.
    host: Option<String>,
    identity: Option<Arc<Identity>>,
    /// The signed identity assertion for the backend (`identity_assertion`).
    assertion: Option<Arc<str>>,
    client: Option<IpAddr>,
    /// Served over HTTPS ([`scheme::https`]): `__Host-` cookies, HSTS (SECURITY 44).
    https: bool,
    upgrade: bool,
    /// The gateway checked an `Authorization: Basic` header; it is not forwarded.
    used_basic: bool,
    /// What the gateway itself answered (for the access log).
    answered: Option<u16>,
    /// An upgrade allowed on credentials: held to them once the tunnel opens.
    opened: Option<tunnel::Opened>,
    /// The request's id: made here, or a trusted proxy's `X-Request-Id`.
    id: RequestId,
    /// The request's span (carrying `id`): the phases' log lines are in it.
    span: tracing::Span,
    /// The upstream peer the request went to, and when it was chosen.
    peer: Option<(Arc<peers::Peer>, Instant)>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            route: None,
            table: None,
            target: None,
            host: None,
            identity: None,
            assertion: None,
            client: None,
            https: false,
            upgrade: false,
            used_basic: false,
            answered: None,
            opened: None,
            id: RequestId::generate(),
            span: tracing::Span::none(),
            peer: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if conn::draining() {
            // Handing over or stopping: this answer closes the connection (`Connection: close`).
            session.set_keepalive(None);
        }
        if let Some(id) = self.proxy_request_id(session) {
            ctx.id = id;
        }
        ctx.span = tracing::info_span!("request", id = %ctx.id);
        let (id, span) = (ctx.id.clone(), ctx.span.clone());
        // Every audit row the decision causes names the request.
        let resp = crate::request_id::scope(id, self.decide(session, ctx))
            .instrument(span)
            .await?;
        match resp {
            None => {
                // Going upstream: pingora copies this header for the backend next.
                upstream::forget_case(session.req_header_mut());
                Ok(false)
            }
            Some(resp) => {
                ctx.answered = Some(resp.status);
                let head = session.req_header().method == http::Method::HEAD;
                let resp = respond::with_request_id(respond::hsts(resp, ctx.https), &ctx.id);
                respond::write(session, resp, head).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let pool = ctx
            .route
            .zip(ctx.table.as_ref())
            .and_then(|(i, t)| t.pool(i));
        let Some(peer) = pool.and_then(peers::Pool::pick) else {
            ctx.span
                .in_scope(|| tracing::debug!("no upstream of the route is up"));
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "no upstream is up",
            ));
        };
        ctx.peer = Some((peer.clone(), Instant::now()));
        Ok(peer.http_peer(ctx.upgrade))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.clean_request(session, req, ctx)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS
            && let Some(opened) = ctx.opened.take()
        {
            // No request passes through a tunnel for the gateway to decide on: it is
            // decided again while it is open (SECURITY 46).
            match conn::of(session) {
                Some(c) => self.tunnels.add(c, opened),
                None => {
                    return Err(Error::explain(
                        ErrorType::HTTPStatus(502),
                        "unguarded tunnel",
                    ));
                }
            }
        }
        self.clean_response(resp, ctx)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent: the request may go to another peer that is up (the passive check
        // leaves this one out for a while).
        if let Some((peer, _)) = ctx.peer.take() {
            ctx.span.in_scope(|| peer.connect_failed());
            let pool = ctx
                .route
                .zip(ctx.table.as_ref())
                .and_then(|(i, t)| t.pool(i));
            e.set_retry(pool.is_some_and(|p| p.another_up(&peer)));
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 && session.response_written().is_none() {
            ctx.answered = Some(code);
            // The connection is not reused after this (below): say so, or a client
            // sends its next request into a closing connection.
            session.set_keepalive(None);
            let req = session.req_header();
            let resp = portal::gateway_error(&self.app, req, code, ctx.id.as_str());
            let resp = respond::with_request_id(respond::hsts(resp, ctx.https), &ctx.id);
            if let Err(err) = respond::write(session, resp, false).await {
                tracing::debug!(error = %err, "could not send the error page");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map_or(ctx.answered.unwrap_or(0), |r| r.status.as_u16());
        let found = ctx.route.zip(ctx.table.as_ref());
        let route = found
            .and_then(|(i, t)| t.get(i))
            .map_or("-", |r| r.name.as_str());
        let elapsed = ctx.started.elapsed();
        if let Some((peer, chosen)) = &ctx.peer {
            let failed = e.is_some_and(|e| matches!(e.esource(), ErrorSource::Upstream));
            peer.finished(chosen.elapsed(), failed);
        }
        match found.and_then(|(i, t)| t.counters(i)) {
            Some(counters) => counters.count(status, elapsed),
            None => metrics::request(route, status, elapsed),
        }
        let target = ctx.target.as_deref().unwrap_or("-");
        // Up to the query (an ASCII byte: a character boundary).
        let path = target
            .bytes()
            .position(|b| b == b'?')
            .and_then(|i| target.get(..i))
            .unwrap_or(target);
        access::record(&access::Entry {
            id: ctx.id.as_str(),
            method: session.req_header().method.as_str(),
            path,
            status,
            route,
            user: ctx.identity.as_ref().map_or("-", |i| i.user.as_str()),
            client: ctx.client,
            micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            error: e.map(|e| e.etype().as_str()),
        });
        conn::request_done(session).await;
    }
}

impl Gateway {
    /// The whole decision for a request. `Some(response)` when the gateway answers itself.
    async fn decide(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Option<Response>> {
        let app = &self.app;
        let (peer, client) = self.read_scheme(session, ctx);
        let edge = match read_request_edge(session, &app.cfg.server.limits) {
            Ok(e) => e,
            Err(resp) => return Ok(Some(resp)),
        };
        let host = edge.authority.as_ref().map_or("", |a| a.host.as_str());
        ctx.host = edge.authority.as_ref().map(target::Authority::to_header);
        let Some(canonical) = edge.canonical else {
            // `OPTIONS *` asks about the server, not a resource: nothing to route or forward.
            return Ok(Some(Response::new(200, "text/plain; charset=utf-8", "")));
        };
        ctx.upgrade = session.is_upgrade_req();
        ctx.target = Some(canonical.to_target());
        let prefix = app.cfg.portal.path_prefix.as_str();
        if let Some(rest) = portal_rest(prefix, &canonical.path) {
            let to = (peer, client);
            return self
                .portal_or_forward_auth(session, ctx, rest, &canonical, host, to)
                .await
                .map(Some);
        }
        let table = app.routes();
        let found = table.find(host, &canonical.path);
        ctx.route = found.as_ref().map(|f| f.index);
        ctx.table = Some(table.clone());
        let route = found.as_ref().map(|f| f.route.as_ref());
        let headers = &session.req_header().headers;
        let asked = self.auth.authorize(route, headers, ctx.https, client).await;
        let req = session.req_header();
        let (caller, decision) = match asked {
            Ok(a) => {
                ctx.used_basic = a.used_basic;
                (a.caller, a.decision)
            }
            Err(refused) => return Ok(Some(refused_answer(app, req, refused, &ctx.id))),
        };
        Ok(match decision {
            Decision::Allow(identity) => {
                match self.auth.assertion(route, &caller) {
                    Ok(a) => ctx.assertion = a,
                    Err(crate::auth::Unsigned) => {
                        return Ok(Some(unavailable(app, req, &ctx.id)));
                    }
                }
                ctx.identity = identity;
                if ctx.upgrade && !matches!(caller, CallerState::None) {
                    let headers = &session.req_header().headers;
                    let opened =
                        tunnel::Opened::new(headers, host, &canonical.path, client, ctx.https);
                    ctx.opened = Some(opened);
                }
                None
            }
            Decision::Login { step_up } => Some(login_answer(
                prefix,
                route,
                &req.headers,
                step_up,
                &canonical,
            )),
            Decision::Deny => Some(portal::gateway_error(app, req, 403, ctx.id.as_str())),
            Decision::NoRoute => Some(portal::gateway_error(app, req, 404, ctx.id.as_str())),
        })
    }

    /// The `X-Request-Id` a trusted proxy (the connection's peer in `trusted_proxies`)
    /// sent, if it is a valid id; anyone else's is replaced by ours, never forwarded.
    fn proxy_request_id(&self, session: &Session) -> Option<RequestId> {
        let peer = session.client_addr().and_then(|a| a.as_inet())?.ip();
        if !self
            .app
            .cfg
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&peer))
        {
            return None;
        }
        let mut sent = session
            .req_header()
            .headers
            .get_all(crate::request_id::HEADER)
            .iter();
        match (sent.next(), sent.next()) {
            (Some(one), None) => RequestId::parse(one.as_bytes()),
            _ => None,
        }
    }

    /// Reads the scheme (`ctx.https`) and the client (`ctx.client`) of the request; returns
    /// the connection's peer and the client address.
    fn read_scheme(&self, session: &Session, ctx: &mut Ctx) -> (IpAddr, IpAddr) {
        let app = &self.app;
        let socket_tls = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
        let req = session.req_header();
        let proto = scheme::forwarded_proto(&req.headers, peer, &app.cfg.trusted_proxies);
        ctx.https = scheme::https(app.cfg.always_https(), socket_tls, proto);
        // Every X-Forwarded-For line, in order; a line that is not text ends the list there
        // (read from the right, nothing before it is believed).
        let lines = req
            .headers
            .get_all(&upstream::X_FORWARDED_FOR)
            .into_iter()
            .map(|v| v.to_str().unwrap_or("?"));
        let client = upstream::client_ip(peer, lines, &app.cfg.trusted_proxies);
        ctx.client = Some(client);
        (peer, client)
    }

    /// A request for the portal (`rest`: its path under the prefix), forward-auth among them;
    /// `to`: the connection's peer and the client.
    async fn portal_or_forward_auth(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        rest: &str,
        canonical: &path::Canonical,
        host: &str,
        (peer, client): (IpAddr, IpAddr),
    ) -> Result<Response> {
        if rest == forward_auth::PATH {
            let query = canonical.query.as_deref();
            let answer = self.forward_auth(session, ctx, query, peer, client);
            // Boxed, like the portal below.
            return Ok(Box::pin(answer).await);
        }
        // Boxed: the portal's future is kilobytes, and inline it would make every
        // proxied request's future as large (copied whole when pingora boxes it).
        let portal = self.portal(
            session,
            ctx,
            rest.to_owned(),
            canonical.query.clone(),
            host.to_owned(),
            client,
        );
        Box::pin(portal).await
    }

    /// Whether what opened a tunnel still opens its route now (see [`tunnel`]); `active`:
    /// something moved through it since the last look.
    pub async fn still_open(&self, opened: &tunnel::Opened, active: bool) -> tunnel::Verdict {
        let table = self.app.routes();
        let Some(found) = table.find(&opened.host, &opened.path) else {
            return tunnel::Verdict::Closed;
        };
        let route = found.route.as_ref();
        let (headers, https, client) = (&opened.headers, opened.https, opened.client);
        let caller = match self.auth.session_caller(headers, https, active).await {
            Some(known) if route.accept.session => known,
            _ => {
                self.auth
                    .caller(headers, https, &mut false, route, client)
                    .await
            }
        };
        match self.auth.judge(Some(route), &caller, client).await {
            Ok(Decision::Allow(_)) => tunnel::Verdict::Open,
            // A store that cannot answer, or a throttled re-check, does not say the
            // credential ended: the tunnel is given a second at most (see `tunnel`).
            Err(Refused::Unavailable | Refused::Throttled(_)) => tunnel::Verdict::Unknown,
            _ => tunnel::Verdict::Closed,
        }
    }

    async fn portal(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        path: String,
        query: Option<String>,
        host: String,
        client: IpAddr,
    ) -> Result<Response> {
        let body = match respond::read_body(session, PORTAL_BODY_LIMIT).await? {
            Some(b) => b,
            None => {
                return Ok(Response::json_error(
                    413,
                    "too_large",
                    "the request body is too large",
                ));
            }
        };
        let req = session.req_header();
        let mut headers = req.headers.clone();
        // The portal sees the normalised host (also for an absolute-form target), never the
        // raw header: passkey origins and same-site checks are built from it.
        headers.remove(http::header::HOST);
        if let Some(h) = ctx
            .host
            .as_deref()
            .and_then(|h| http::HeaderValue::from_str(h).ok())
        {
            headers.insert(http::header::HOST, h);
        }
        let preq = portal::http::Request {
            method: req.method.clone(),
            path,
            query,
            headers,
            body,
            peer: client,
            https: ctx.https,
            host,
        };
        Ok(portal::handle(&self.app, &preq).await)
    }

    /// The request the backend gets, edited as plain `http` parts: pingora's own header
    /// API parses each name again and keeps a second map of spellings, which cost more
    /// than the rest of the gateway's work on a proxied request (issue 14).
    fn clean_request(
        &self,
        session: &Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        upstream::edit(req, |parts| self.clean_parts(session, parts, ctx))
    }

    fn clean_parts(
        &self,
        session: &Session,
        parts: &mut http::request::Parts,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let app = &self.app;
        let headers = &mut parts.headers;
        for name in upstream::request_removals(headers, &self.identity_headers, ctx.upgrade) {
            headers.remove(&name);
        }
        if ctx.used_basic {
            headers.remove(http::header::AUTHORIZATION);
        }
        let gateway = gateway_cookies(app);
        match backend_cookie(&session.req_header().headers, &gateway) {
            None => {}
            // Inserting replaces every `Cookie` line.
            Some(Some(kept)) => {
                headers.insert(http::header::COOKIE, value(kept)?);
            }
            Some(None) => {
                headers.remove(http::header::COOKIE);
            }
        }
        // Forward exactly the canonical target in origin-form (an absolute-form or odd
        // target is never passed on as sent, nor an HTTP/2 authority that would override
        // Host); parse a new URI only when it differs. The parts carry no raw target: what
        // goes on the wire is the URI's path and query.
        let forwarded = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let has_authority = parts.uri.authority().is_some();
        if let Some(target) = ctx
            .target
            .as_deref()
            .filter(|t| *t != forwarded || has_authority)
        {
            parts.uri = target
                .parse::<http::Uri>()
                .map_err(|_| Error::explain(ErrorType::HTTPStatus(400), "bad target"))?;
        }
        let headers = &mut parts.headers;
        // What is added below, in one growth of the map at most.
        headers.reserve(8);
        // The host the decision used, normalised, is the one the backend gets.
        if let Some(host) = &ctx.host
            && headers
                .get(http::header::HOST)
                .map(http::HeaderValue::as_bytes)
                != Some(host.as_bytes())
        {
            headers.insert(http::header::HOST, value(host.as_str())?);
        }
        if let (Some(name), Some(token)) = (&self.assertion_name, &ctx.assertion) {
            headers.insert(name.clone(), value(token.as_ref())?);
        }
        if let Some(id) = &ctx.identity {
            let values = id.values.as_ref().ok_or_else(|| {
                Error::explain(ErrorType::InternalError, "invalid identity header value")
            })?;
            for (name, value) in self.identity_names.iter().zip(values) {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let Some(client) = ctx.client {
            headers.insert(upstream::X_FORWARDED_FOR, upstream::ip_value(client));
        }
        // Ours replaces any the client sent (a trusted proxy's valid one became ours).
        headers.insert(crate::request_id::HEADER, ctx.id.header_value());
        let proto = if ctx.https { "https" } else { "http" };
        headers.insert(
            upstream::X_FORWARDED_PROTO,
            http::HeaderValue::from_static(proto),
        );
        if let Some(host) = &ctx.host {
            headers.insert(upstream::X_FORWARDED_HOST, value(host.as_str())?);
        }
        Ok(())
    }

    fn clean_response(&self, resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
        let upgrade = ctx.upgrade && resp.status.as_u16() == 101;
        for name in upstream::response_removals(&resp.headers, upgrade) {
            resp.remove_header(&name);
        }
        // The client learns the id to quote (a backend's own stays); after the removals, so
        // a backend's `Connection` cannot take it away.
        if !resp.headers.contains_key(crate::request_id::HEADER) {
            resp.insert_header(crate::request_id::HEADER, ctx.id.header_value())?;
        }
        // Served over HTTPS: the browser keeps to HTTPS for this host (SECURITY 23, 44); a
        // backend's own policy (includeSubDomains, preload) is left as it is.
        if ctx.https && !upgrade && !resp.headers.contains_key(respond::HSTS) {
            resp.insert_header(respond::HSTS, respond::HSTS_VALUE)?;
        }
        let gateway = gateway_cookies(&self.app);
        if !resp.headers.contains_key(http::header::SET_COOKIE) {
            return Ok(());
        }
        let cookies: Vec<http::HeaderValue> = resp
            .headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        if cookies
            .iter()
            .any(|c| upstream::sets_gateway_cookie(c.to_str().unwrap_or(""), &gateway))
        {
            resp.remove_header("set-cookie");
            for c in cookies {
                if !upstream::sets_gateway_cookie(c.to_str().unwrap_or(""), &gateway) {
                    resp.append_header("set-cookie", c)?;
                }
            }
        }
        Ok(())
    }
}

/// 503 when the gateway cannot decide (a store failed): never a weaker rule. `id`: the
/// request's, named on the page.
fn unavailable(app: &App, req: &RequestHeader, id: &RequestId) -> Response {
    portal::gateway_error(app, req, 503, id.as_str())
        .with("retry-after", crate::outage::retry_after())
}

/// The `Cookie` header the backend gets instead of the client's (SECURITY 20): `None` to
/// pass the client's on unchanged, `Some(None)` to remove it, `Some(Some(kept))` to replace
/// it. Rebuilt only when it carries a gateway cookie (hot path).
pub(crate) fn backend_cookie(sent: &http::HeaderMap, gateway: &[&str]) -> Option<Option<String>> {
    let carries_ours = sent
        .get_all(http::header::COOKIE)
        .iter()
        .any(|v| names_one_of(v.as_bytes(), gateway));
    carries_ours.then(|| cookie::without(sent, gateway))
}

/// Does a `Cookie` line carry one of the `hidden` cookies, as [`cookie::without`] reads
/// names (exact, with or without `__Host-`)? One pass over the line. A line with non-ASCII
/// bytes always counts: `cookie::without` decides those (Unicode trimming, invalid text).
fn names_one_of(line: &[u8], hidden: &[&str]) -> bool {
    !line.is_ascii()
        || line.split(|b| *b == b';').any(|pair| {
            let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
            let name = name.trim_ascii();
            let bare = name.strip_prefix(b"__Host-").unwrap_or(name);
            hidden.iter().any(|h| h.as_bytes() == bare)
        })
}

fn gateway_cookies(app: &App) -> [&str; 6] {
    [
        app.cfg.session.cookie_name.as_str(),
        app.cfg.trusted_devices.cookie_name.as_str(),
        portal::CSRF_COOKIE,
        portal::LANG_COOKIE,
        portal::TZ_COOKIE,
        crate::login::risk::SEEN_COOKIE,
    ]
}

fn basic_challenge() -> Response {
    Response::json_error(401, "unauthenticated", "valid credentials are required").with(
        "www-authenticate",
        "Basic realm=\"nidan\", charset=\"UTF-8\"",
    )
}

/// A header value for the backend; text that cannot be one refuses the request (500)
/// rather than going upstream without it.
fn value<T>(text: T) -> Result<http::HeaderValue>
where
    http::HeaderValue: TryFrom<T>,
{
    http::HeaderValue::try_from(text)
        .map_err(|_| Error::explain(ErrorType::InternalError, "invalid header value"))
}

/// The request edge of a request pingora received ([`read_edge`]), a fragment in its
/// request line refused first. `Err` is the answer to send.
fn read_request_edge(
    session: &Session,
    limits: &crate::config::Limits,
) -> std::result::Result<Edge, Response> {
    if sent_fragment(session) {
        let why = format!("bad request: {}\n", target::EdgeError::Fragment);
        return Err(Response::new(400, "text/plain; charset=utf-8", why));
    }
    read_edge(session.req_header(), limits, || {
        sent_content_lengths(session)
    })
}

/// The path under the portal prefix (`/` for the prefix itself), if `path` is the portal's.
fn portal_rest<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(prefix)
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .map(|rest| if rest.is_empty() { "/" } else { rest })
}

/// The proxy's answer when the gateway answers without deciding.
fn refused_answer(app: &App, req: &RequestHeader, refused: Refused, id: &RequestId) -> Response {
    match refused {
        Refused::BadBasic => basic_challenge(),
        Refused::Unavailable => unavailable(app, req, id),
        Refused::Throttled(s) => Response::json_error(
            429,
            "too_many_attempts",
            "too many failed attempts; try later",
        )
        .with("retry-after", s.to_string()),
    }
}

/// The proxy's answer to a caller who must log in (`step_up`: what a known caller lacks):
/// a Basic challenge where the route takes only Basic or tokens, a redirect to the login for
/// a browser, else 401 naming the login.
fn login_answer(
    prefix: &str,
    route: Option<&crate::config::Route>,
    headers: &http::HeaderMap,
    step_up: Option<assurance::Missing>,
    canonical: &path::Canonical,
) -> Response {
    if route.is_some_and(|r| (r.accept.basic || r.accept.token) && !r.accept.session) {
        return basic_challenge();
    }
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if gate::is_browser(accept) {
        let rd = portal::redirect::encode_rd(&canonical.to_target());
        let extra = if step_up.is_some() { "&step_up=1" } else { "" };
        Response::redirect(302, &format!("{prefix}/login?rd={rd}{extra}"))
            .with("cache-control", "no-store")
    } else {
        let challenge = format!("Cookie realm=\"nidan\", login=\"{prefix}/login\"");
        match step_up {
            Some(missing) => Response::json(
                401,
                &serde_json::json!({
                    "error": "step_up_required",
                    "reason": missing.as_str(),
                    "message": "this route needs a stronger login: log in again with the second step",
                }),
            ),
            None => Response::json_error(401, "unauthenticated", "log in first"),
        }
        .with("www-authenticate", challenge)
    }
}

/// What the request edge read: the host and the canonical target (`None` for `OPTIONS *`).
pub(crate) struct Edge {
    pub(crate) authority: Option<target::Authority>,
    pub(crate) canonical: Option<path::Canonical>,
}

/// The request read once, the way backends read it (DESIGN "The request edge"): sizes
/// (414/431), framing, target form and Host ([`target::read`]), then the path
/// ([`path::canonicalize_parts`]). `Err` is the answer to send.
pub(crate) fn read_edge(
    req: &RequestHeader,
    limits: &crate::config::Limits,
    sent_lengths: impl FnOnce() -> usize,
) -> std::result::Result<Edge, Response> {
    let text = |status: u16, msg: String| Response::new(status, "text/plain; charset=utf-8", msg);
    let raw = req.raw_path();
    // `METHOD SP target SP HTTP/1.1`
    let line = req.method.as_str().len() + raw.len() + 10;
    if line > limits.max_request_line {
        return Err(text(414, "request line too long\n".into()));
    }
    let header_bytes: usize = req
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Err(text(431, "request header fields too large\n".into()));
    }
    if let Some(reason) = ambiguous_framing(&req.headers, sent_lengths) {
        return Err(text(400, reason.into()));
    }
    let method = match req.method {
        http::Method::CONNECT => target::MethodKind::Connect,
        http::Method::OPTIONS => target::MethodKind::Options,
        _ => target::MethodKind::Other,
    };
    // At most two Host values matter (none, one, or "repeated"): no list to allocate.
    let mut lines = req
        .headers
        .get_all(http::header::HOST)
        .iter()
        .map(http::HeaderValue::as_bytes);
    let found: [&[u8]; 2];
    let hosts: &[&[u8]] = match (lines.next(), lines.next()) {
        (None, _) => &[],
        (Some(a), None) => {
            found = [a, a];
            &found[..1]
        }
        (Some(a), Some(b)) => {
            found = [a, b];
            &found
        }
    };
    let h2_authority = (req.version == http::Version::HTTP_2)
        .then(|| req.uri.authority().map(|a| a.as_str()))
        .flatten();
    let http11 = req.version == http::Version::HTTP_11;
    let reading = target::read(method, raw, hosts, h2_authority, http11).map_err(|e| {
        let resp = text(e.status(), format!("bad request: {e}\n"));
        if e == target::EdgeError::Connect {
            resp.with("allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
        } else {
            resp
        }
    })?;
    let canonical = match reading.target {
        target::Target::Asterisk => None,
        target::Target::Path { path, query } => Some(
            path::canonicalize_parts(path, query)
                .map_err(|e| text(400, format!("bad request: {e}\n")))?,
        ),
    };
    Ok(Edge {
        authority: reading.authority,
        canonical,
    })
}

/// Requests whose length is ambiguous are refused before anything else (SECURITY 29).
/// `sent_lengths` counts the `Content-Length` lines the client sent (see
/// [`sent_content_lengths`]).
/// `sent_lengths` counts the raw header block; it is called only when Transfer-Encoding is
/// present, so ordinary requests never scan it.
fn ambiguous_framing(
    headers: &http::HeaderMap,
    sent_lengths: impl FnOnce() -> usize,
) -> Option<&'static str> {
    let lengths = headers.get_all(http::header::CONTENT_LENGTH);
    let count = lengths.iter().count();
    if headers.contains_key(http::header::TRANSFER_ENCODING) && (count > 0 || sent_lengths() > 0) {
        return Some("bad request: both Content-Length and Transfer-Encoding\n");
    }
    if count > 1 || lengths.iter().any(|v| v.as_bytes().contains(&b',')) {
        return Some("bad request: repeated Content-Length\n");
    }
    None
}

/// How many `Content-Length` fields an HTTP/1 client sent. pingora drops `Content-Length`
/// from the parsed request when `Transfer-Encoding` is also present (RFC 9112 6.3), so only
/// the raw header block still shows that the client sent both.
fn sent_content_lengths(session: &Session) -> usize {
    let Some(h1) = session.as_http1() else {
        return 0;
    };
    content_length_lines(&h1.get_headers_raw_bytes())
}

/// How many header lines of a raw request head (request line first) name `Content-Length`.
pub(crate) fn content_length_lines(head: &[u8]) -> usize {
    head.split(|b| *b == b'\n')
        .skip(1)
        .filter(|line| {
            line.iter()
                .position(|b| *b == b':')
                .and_then(|i| line.get(..i))
                .is_some_and(|name| name.eq_ignore_ascii_case(b"content-length"))
        })
        .count()
}

/// Did the request line carry a `#` (SECURITY 45)? pingora drops a fragment from the target
/// before anyone reads it, so `raw_path()` never shows one; the raw head still does.
fn sent_fragment(session: &Session) -> bool {
    session
        .as_http1()
        .is_some_and(|h1| target::line_has_fragment(&h1.get_headers_raw_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns (never called).
    fn returned_size<'a, A: 'a, B: 'a, C: 'a, R>(
        _: impl Fn(&'a A, &'a mut B, &'a mut C) -> R,
    ) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn gateway_cookies_are_found_as_cookie_without_reads_them() {
        let hidden = ["nidan_session", "nidan_device"];
        assert!(names_one_of(b"a=1; nidan_session=x", &hidden));
        assert!(names_one_of(b"__Host-nidan_device=x", &hidden));
        assert!(names_one_of(b" nidan_session =x;b=2", &hidden));
        assert!(names_one_of("\u{a0}nidan_session=x".as_bytes(), &hidden));
        assert!(!names_one_of(
            b"a=nidan_session; xnidan_session=1; b",
            &hidden
        ));
        assert!(!names_one_of(b"", &hidden));
    }

    /// pingora boxes each phase's future, copying it whole, on every request: the decision
    /// keeps large rare paths (portal, Basic, tokens) boxed so it stays small. Measured on
    /// the test build (release futures are smaller); the portal inline made it 6.5 KiB.
    #[test]
    fn the_decision_future_stays_small() {
        let decide = returned_size(|g: &Gateway, s: &mut Session, c: &mut Ctx| g.decide(s, c));
        assert!(decide <= 3 * 1024, "decide's future is {decide} bytes");
    }
}
