//! Forward-auth: nginx `auth_request`, Traefik `forwardAuth` and Caddy `forward_auth` ask
//! nidan about a request they hold instead of sending it through nidan. The request they
//! describe is decided exactly as the proxy decides one it receives: the same reading of
//! target and host ([`target::read`]), the same canonical path ([`path::canonicalize_parts`]),
//! the same route table, caller and gate ([`Authenticator::authorize`](crate::auth::Authenticator::authorize)); the answer is a status plus the
//! identity headers (and the signed assertion) instead of a forwarded request, and the host
//! and target decided on, for the proxy to send the app instead of the client's.
//!
//! The headers that describe the request are believed only from `trusted_proxies` (SECURITY
//! 8, 26): from anyone else they would let a client name the URL it is judged on.

use std::net::IpAddr;

use pingora::proxy::Session;

use super::{Ctx, Gateway, basic_challenge, path, target};
use crate::assurance::Missing;
use crate::auth::Refused;
use crate::auth::gate::{self, Decision, Identity};
use crate::portal::http::Response;

/// Under the portal prefix.
pub(crate) const PATH: &str = "/api/authz/forward-auth";

/// Answer headers with what the proxy must send the app in place of the client's (SECURITY
/// 45): the host and the canonical target (path and query) nidan decided on. nginx knows
/// neither otherwise (`$http_host` and `$request_uri` are the client's spelling), and the
/// host a proxy describes is not always the one it forwards (a trusted `X-Forwarded-Host`).
pub(crate) const DECIDED_HOST: &str = "x-nidan-host";
pub(crate) const DECIDED_URI: &str = "x-nidan-uri";

/// The request the proxy asks about, as it describes it.
#[derive(Debug, PartialEq, Eq)]
struct Original<'a> {
    /// `http` or `https`.
    scheme: &'a str,
    /// The request target: an absolute URL (`X-Original-URL`) or a path (`X-Forwarded-Uri`).
    target: &'a str,
    /// `X-Forwarded-Host`; `None` with an absolute target.
    host: Option<&'a str>,
    method: &'a str,
}

/// The value of a header sent at most once, as visible ASCII.
fn single<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(format!("{name} is sent more than once"));
    }
    first
        .to_str()
        .ok()
        .filter(|v| !v.is_empty())
        .map(Some)
        .ok_or_else(|| format!("{name} is empty or not visible ASCII"))
}

/// Reads which request the proxy asks about: nginx's `X-Original-URL` (+ `X-Original-Method`),
/// or Traefik's and Caddy's `X-Forwarded-Host` + `X-Forwarded-Uri` (+ `-Proto`, `-Method`).
/// Both at once is refused: a proxy of one kind passes the other kind's headers on from the
/// client, and the client must not get to choose which one is believed.
fn original(headers: &http::HeaderMap) -> Result<Original<'_>, String> {
    let url = single(headers, "x-original-url")?;
    let fwd_host = single(headers, "x-forwarded-host")?;
    let fwd_uri = single(headers, "x-forwarded-uri")?;
    let method = |name: &str| -> Result<&str, String> {
        match single(headers, name)? {
            None => Ok("GET"),
            Some(m) if m.bytes().all(|b| b.is_ascii_uppercase()) && m.len() <= 16 => Ok(m),
            Some(_) => Err(format!("{name} is not an HTTP method")),
        }
    };
    match (url, fwd_host, fwd_uri) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(
            "both X-Original-URL and X-Forwarded-Host/-Uri are present: the proxy must send one kind and clear the other".into(),
        ),
        (Some(url), None, None) => {
            let scheme = url.split_once("://").map_or("", |(s, _)| s);
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "http" => "http",
                "https" => "https",
                _ => return Err("X-Original-URL must be an absolute http(s) URL".into()),
            };
            Ok(Original {
                scheme,
                target: url,
                host: None,
                method: method("x-original-method")?,
            })
        }
        (None, Some(host), Some(uri)) => {
            let scheme = match single(headers, "x-forwarded-proto")?.map(str::to_ascii_lowercase) {
                None => "https",
                Some(p) if p == "https" => "https",
                Some(p) if p == "http" => "http",
                Some(_) => return Err("X-Forwarded-Proto must be http or https".into()),
            };
            if !uri.starts_with('/') {
                return Err("X-Forwarded-Uri must be a path starting with /".into());
            }
            Ok(Original {
                scheme,
                target: uri,
                host: Some(host),
                method: method("x-forwarded-method")?,
            })
        }
        (None, None, None) => Err(
            "say which request to decide: X-Original-URL (nginx) or X-Forwarded-Host and X-Forwarded-Uri (Traefik, Caddy)".into(),
        ),
        (None, _, _) => Err("X-Forwarded-Host and X-Forwarded-Uri go together".into()),
    }
}

fn bad(status: u16, code: &str, message: &str) -> Response {
    Response::json_error(status, code, message).with("cache-control", "no-store")
}

/// The described request, read as the proxy reads the requests it receives: its host and
/// canonical target, or why it is refused (400).
fn read_described(original: &Original<'_>) -> Result<(target::Authority, path::Canonical), String> {
    let method = match original.method {
        "CONNECT" => target::MethodKind::Connect,
        "OPTIONS" => target::MethodKind::Options,
        _ => target::MethodKind::Other,
    };
    let hosts: Vec<&[u8]> = original.host.map(str::as_bytes).into_iter().collect();
    let reading = target::read(method, original.target.as_bytes(), &hosts, None, true)
        .map_err(|e| e.to_string())?;
    let (Some(authority), target::Target::Path { path, query: q }) =
        (reading.authority, reading.target)
    else {
        return Err("the request names no resource".into());
    };
    let canonical = path::canonicalize_parts(path, q).map_err(|e| e.to_string())?;
    Ok((authority, canonical))
}

/// The whole reading of a forward-auth question from its headers, for the fuzz targets
/// (`fuzz/`): the described scheme, method, host and canonical target, or why it is refused.
pub(crate) fn described_for_fuzzing(
    headers: &http::HeaderMap,
) -> Result<(String, String, target::Authority, path::Canonical), String> {
    let original = original(headers)?;
    let (authority, canonical) = read_described(&original)?;
    Ok((
        original.scheme.to_owned(),
        original.method.to_owned(),
        authority,
        canonical,
    ))
}

impl Gateway {
    /// `GET {prefix}/api/authz/forward-auth` (any method: nginx asks with the original one).
    /// 200 + identity headers when the request may pass; 401 (with `Location` of the login
    /// for nginx's `error_page`) or, for browsers when `?redirect=1` asks, 302 to the login;
    /// 403 when the route forbids it for this user or no route serves it.
    pub(super) async fn forward_auth(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        query: Option<&str>,
        peer: IpAddr,
        client: IpAddr,
    ) -> Response {
        let app = &self.app;
        if !app.cfg.trusted_proxies.iter().any(|n| n.contains(&peer)) {
            return bad(
                403,
                "untrusted_proxy",
                "forward-auth answers only the proxies listed in trusted_proxies",
            );
        }
        let headers = &session.req_header().headers;
        let (original, authority, canonical) = match self.described(headers, ctx) {
            Ok(d) => d,
            Err(resp) => return resp,
        };
        let table = app.routes();
        let found = table.find(&authority.host, &canonical.path);
        ctx.route = found.as_ref().map(|f| f.index);
        ctx.table = Some(table.clone());
        let route = found.as_ref().map(|f| f.route.as_ref());
        let crate::auth::Authorized {
            caller,
            used_basic,
            decision,
        } = match self.auth.authorize(route, headers, ctx.https, client).await {
            Ok(a) => a,
            Err(refused) => return refused_answer(refused),
        };
        let decided = (&authority, &canonical);
        match decision {
            Decision::Allow(identity) => {
                let assertion = match self.auth.assertion(route, &caller) {
                    Ok(a) => a,
                    Err(crate::auth::Unsigned) => {
                        return bad(503, "unavailable", "the service is unavailable; try again")
                            .with("retry-after", crate::outage::retry_after());
                    }
                };
                let resp = self.allowed(
                    headers,
                    identity.as_deref(),
                    assertion.as_deref(),
                    used_basic,
                    decided,
                );
                ctx.identity = identity;
                resp
            }
            Decision::Login { .. }
                if route
                    .is_some_and(|r| (r.accept.basic || r.accept.token) && !r.accept.session) =>
            {
                basic_challenge().with("cache-control", "no-store")
            }
            Decision::Login { step_up } => {
                self.to_login(headers, query, step_up, original.scheme, decided)
            }
            Decision::Deny => bad(403, "forbidden", "this account may not open this address"),
            Decision::NoRoute => bad(403, "no_route", "no route serves this address"),
        }
    }

    /// The request the proxy describes, read as the proxy reads the requests it receives:
    /// how it was described, its host and its canonical target; sets `ctx.https`. `Err` is
    /// the answer (400).
    fn described<'h>(
        &self,
        headers: &'h http::HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<(Original<'h>, target::Authority, path::Canonical), Response> {
        let original = match original(headers) {
            Ok(o) => o,
            Err(why) => return Err(bad(400, "bad_forwarded_request", &why)),
        };
        // HTTPS is the described request's scheme (the trusted proxy's word, as
        // `X-Forwarded-Proto` is in proxy mode) or the configuration's; this connection is
        // the proxy's, not the browser's. The session cookie is read under that scheme's
        // name only, as the portal behind the same proxy wrote it (SECURITY 44).
        ctx.https = super::scheme::https(self.app.cfg.always_https(), false, Some(original.scheme));
        let (authority, canonical) =
            read_described(&original).map_err(|why| bad(400, "bad_forwarded_request", &why))?;
        Ok((original, authority, canonical))
    }

    /// The 200 for an allowed request: the identity headers and the assertion, the request's
    /// `Cookie` and `Authorization` as the app may see them, and the host and target decided
    /// on (`decided`).
    fn allowed(
        &self,
        headers: &http::HeaderMap,
        identity: Option<&Identity>,
        assertion: Option<&str>,
        used_basic: bool,
        (authority, canonical): (&target::Authority, &path::Canonical),
    ) -> Response {
        let app = &self.app;
        // Every header a proxy copies onto the request is in the answer, empty when
        // the request gets none: a proxy that copies only headers present would
        // otherwise leave a client's own copy (or, Caddy 2.6, its literal
        // placeholder) for the app. nginx drops a header whose value is empty.
        let h = &app.cfg.identity_headers;
        let (user, name, email, groups) = identity.map_or(("", "", "", ""), |id| {
            (
                id.user.as_str(),
                id.name.as_str(),
                id.email.as_str(),
                id.groups.as_str(),
            )
        });
        let mut resp = Response::new(200, "text/plain; charset=utf-8", "")
            .with("cache-control", "no-store")
            .with_named(&h.user, user)
            .with_named(&h.name, name)
            .with_named(&h.email, email)
            .with_named(&h.groups, groups);
        // Empty, under its default name, when assertions are off: the README's
        // snippets copy it either way.
        let assertion_header = app
            .auth
            .assertions
            .as_ref()
            .map_or("x-nidan-assertion", |a| a.header());
        resp = resp.with_named(assertion_header, assertion.unwrap_or(""));
        // The request's cookies without the gateway's (the session opens every
        // route): the proxy puts this `Cookie` on the request it forwards in place
        // of the client's, empty when nothing is left (SECURITY 20).
        let kept = crate::session::cookie::without(headers, &super::gateway_cookies(app));
        resp = resp.with("cookie", kept.unwrap_or_default());
        // Likewise `Authorization`: credentials nidan checked (Basic, an app
        // password) stay with nidan (empty), as the proxy removes them; anything
        // else (a bearer token for the app itself) is handed back to be forwarded.
        let handed_back = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .filter(|_| !used_basic);
        resp.with("authorization", handed_back.unwrap_or("").to_owned())
            .with(DECIDED_HOST, authority.to_header())
            .with(DECIDED_URI, canonical.to_target())
    }

    /// The answer for a caller who must log in (`step_up`: what a known caller lacks): 401
    /// with the login's `Location`, or 302 to it for a browser when `?redirect=1` asks.
    fn to_login(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
        step_up: Option<Missing>,
        scheme: &str,
        (authority, canonical): (&target::Authority, &path::Canonical),
    ) -> Response {
        let app = &self.app;
        let prefix = &app.cfg.portal.path_prefix;
        let wanted = canonical.to_target();
        // Where the login is: the configured public address, else the same host
        // (the proxy passes `{prefix}/` to nidan). The return address is then
        // absolute or a path accordingly; the portal validates it either way.
        let (login, rd) = match &app.cfg.portal.public_url {
            Some(base) => (
                format!("{base}{prefix}/login"),
                format!("{scheme}://{}{wanted}", authority.to_header()),
            ),
            None => (format!("{prefix}/login"), wanted),
        };
        let extra = if step_up.is_some() { "&step_up=1" } else { "" };
        let location = format!(
            "{login}?rd={}{extra}",
            crate::portal::redirect::encode_rd(&rd)
        );
        let accept = headers.get("accept").and_then(|v| v.to_str().ok());
        let asked = query.is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "redirect" && v == "1")
        });
        if asked && gate::is_browser(accept) {
            return Response::redirect(302, &location).with("cache-control", "no-store");
        }
        let body = match step_up {
            Some(missing) => serde_json::json!({
                "error": "step_up_required",
                "reason": missing.as_str(),
                "message": "this route needs a stronger login: log in again with the second step",
            }),
            None => {
                serde_json::json!({"error": "unauthenticated", "message": "log in first"})
            }
        };
        Response::json(401, &body)
            .with(
                "www-authenticate",
                format!("Cookie realm=\"nidan\", login=\"{login}\""),
            )
            .with("location", location)
            .with("cache-control", "no-store")
    }
}

/// Forward-auth's answer when the gateway answers without deciding.
fn refused_answer(refused: Refused) -> Response {
    match refused {
        Refused::BadBasic => basic_challenge().with("cache-control", "no-store"),
        Refused::Unavailable => bad(503, "unavailable", "the service is unavailable; try again")
            .with("retry-after", crate::outage::retry_after()),
        Refused::Throttled(s) => bad(
            429,
            "too_many_attempts",
            "too many failed attempts; try later",
        )
        .with("retry-after", s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn nginx_style() {
        let h = headers(&[
            ("x-original-url", "https://app.example.com/admin?x=1"),
            ("x-original-method", "POST"),
        ]);
        assert_eq!(
            original(&h).unwrap(),
            Original {
                scheme: "https",
                target: "https://app.example.com/admin?x=1",
                host: None,
                method: "POST"
            }
        );
        let rel = headers(&[("x-original-url", "/admin")]);
        assert!(original(&rel).is_err());
        let odd = headers(&[("x-original-url", "ftp://h/admin")]);
        assert!(original(&odd).is_err());
    }

    #[test]
    fn traefik_and_caddy_style() {
        let h = headers(&[
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/admin"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-method", "GET"),
        ]);
        let o = original(&h).unwrap();
        assert_eq!(
            (o.scheme, o.target, o.host),
            ("http", "/admin", Some("app.example.com"))
        );
        let no_uri = headers(&[("x-forwarded-host", "app.example.com")]);
        assert!(original(&no_uri).is_err());
        let bad_proto = headers(&[
            ("x-forwarded-host", "a"),
            ("x-forwarded-uri", "/"),
            ("x-forwarded-proto", "gopher"),
        ]);
        assert!(original(&bad_proto).is_err());
    }

    #[test]
    fn ambiguity_is_refused() {
        // Both kinds: one of them came from the client through a proxy of the other kind.
        let both = headers(&[
            ("x-original-url", "https://app.example.com/admin"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert!(original(&both).unwrap_err().contains("both"));
        let twice = headers(&[
            ("x-original-url", "https://app.example.com/public"),
            ("x-original-url", "https://app.example.com/admin"),
        ]);
        assert!(original(&twice).unwrap_err().contains("more than once"));
        assert!(original(&headers(&[])).is_err());
        let method = headers(&[
            ("x-original-url", "https://app.example.com/"),
            ("x-original-method", "get; x"),
        ]);
        assert!(original(&method).is_err());
    }
}
