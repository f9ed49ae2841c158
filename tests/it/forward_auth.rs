//! Forward-auth through a real nginx (`auth_request`) in front of the echo backend, and the
//! endpoint's own rules: an anonymous browser is sent to the login, a session reaches the
//! backend as its user (with a verifiable assertion), path tricks and forged headers get
//! nothing, and only `trusted_proxies` may describe a request (SECURITY 8, 24–26).
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common::{self, caddy, nginx};

use std::io::{Read, Write};
use std::net::TcpStream;

use caddy::Caddy;
use common::*;
use nginx::Nginx;
use serde_json::{Value, json};

const ISSUER: &str = "https://login.example.test";
const FORWARD_AUTH: &str = "/_nidan/api/authz/forward-auth";

/// The test routes, an `admins` route for the `admins` group first; nginx's address is the
/// one trusted proxy; assertions on.
fn gateway() -> Gateway {
    let mut b = Gateway::builder()
        .set("trusted_proxies", "[\"127.0.0.1\"]")
        .set("identity_assertion", &format!("{{ issuer: \"{ISSUER}\" }}"));
    let up = b.backend_addr().to_string();
    let routes = b
        .doc()
        .get_mut("routes")
        .unwrap()
        .as_sequence_mut()
        .unwrap();
    routes.insert(
        0,
        yaml(&format!(
            "{{ name: admins, path_prefix: /admins, upstream: [\"{up}\"], policy: login, groups: [admins] }}"
        )),
    );
    b.start()
}

/// The README's nginx snippet, verbatim but for addresses: nidan's and the app's, and the
/// `listen` line (plain HTTP on a free loopback port instead of `443 ssl`; the TLS-in-front
/// test covers TLS). Its `server_name` stays `wiki.example.com`.
fn nginx_for(gw: &Gateway) -> Nginx {
    let snippet = readme_snippet("nginx-forward-auth");
    let nidan = gw.addr.to_string();
    let app = gw.backend.addr.to_string();
    Nginx::start_http(|port| {
        substitute(
            &snippet,
            &[
                ("127.0.0.1:8080", &nidan),
                ("127.0.0.1:3000", &app),
                ("listen 443 ssl;", &format!("listen 127.0.0.1:{port};")),
            ],
        )
    })
}

/// One raw HTTP/1.1 request (paths exactly as written: no client-side normalisation).
/// Returns (status, headers lower-cased, body).
fn raw(
    addr: std::net::SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    raw_as(addr, path, &addr.to_string(), extra)
}

/// Like [`raw`], with the request line's target and the `Host` header chosen apart.
fn raw_as(
    addr: std::net::SocketAddr,
    target: &str,
    host: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Logs `id` in through nginx's `/_nidan/` (the portal behind the same host), with the code
/// from the outbox when one is asked. The session cookie lands in `http`'s jar.
async fn login_via(http: &reqwest::Client, base: &str, gw: &Gateway, id: &str) {
    api_login(http, base, gw, json!({"id": id}), json!({}), &[]).await;
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = http
        .get(url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    (
        r.status().as_u16(),
        r.headers().clone(),
        r.text().await.unwrap(),
    )
}

#[tokio::test]
async fn nginx_auth_request_sends_strangers_to_login_and_users_to_the_backend() {
    let gw = gateway();
    let ng = nginx_for(&gw);
    let base = ng.url("");
    let http = client();
    // Anonymous: nginx turns nidan's 401 into a redirect to the login, with the way back.
    let (s, h, _) = get(&http, &ng.url("/wiki/page?x=1")).await;
    assert_eq!(s, 302, "{}", ng.error_log());
    assert_eq!(
        h["location"].to_str().unwrap(),
        format!("{base}/_nidan/login?rd=%2Fwiki%2Fpage%3Fx%3D1")
    );
    // The login page itself is served through nginx.
    let (s, _, page) = get(&http, &ng.url("/_nidan/login?rd=%2Fwiki%2Fpage")).await;
    assert_eq!(s, 200);
    assert!(page.contains("<form"), "{page}");
    login_via(&http, &base, &gw, "taro").await;
    // Signed in: the backend sees the user, from nidan, with an assertion it can verify.
    let r = http
        .get(ng.url("/wiki/page"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    let h = &echoed["headers"];
    assert_eq!(h["remote-user"], "taro", "{echoed}");
    assert_eq!(h["remote-name"], "Taro Yamada");
    assert_eq!(h["remote-groups"], "staff");
    assert_eq!(echoed["path"], "/wiki/page");
    let token = h["x-nidan-assertion"].as_str().expect("an assertion");
    let claims = verify(&http, &base, token, "app").await;
    assert_eq!(
        (claims["sub"].as_str(), claims["amr"].clone()),
        (Some("taro"), json!(["password"]))
    );
    // A route for another group: 403 from nginx, the backend never asked.
    let (s, _, body) = get(&http, &ng.url("/admins/x")).await;
    assert_eq!(s, 403);
    assert!(!body.contains("remote-user"), "{body}");
    // A route that needs the second step taro's login did not do: to the login, as a step-up.
    let (s, h, _) = get(&http, &ng.url("/admin/x")).await;
    assert_eq!(s, 302);
    assert_eq!(
        h["location"].to_str().unwrap(),
        format!("{base}/_nidan/login?rd=%2Fadmin%2Fx&step_up=1")
    );
    // hanako, with her SMS code, opens both.
    let hanako = client();
    login_via(&hanako, &base, &gw, "hanako").await;
    for path in ["/admins/x", "/admin/x"] {
        let r = hanako.get(ng.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["headers"]["remote-user"], "hanako");
    }
    // Logged out: the same cookie gets nothing any more.
    let r = http
        .post(format!("{base}/_nidan/api/logout"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _, _) = get(&http, &ng.url("/wiki/page")).await;
    assert_eq!(s, 302);
}

/// Verifies an assertion against the JWKS, fetched through nginx.
async fn verify(http: &reqwest::Client, base: &str, token: &str, aud: &str) -> Value {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let jwks: JwkSet = http
        .get(format!("{base}/_nidan/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = decode_header(token).unwrap().kid.unwrap();
    let key = DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&[aud]);
    v.set_issuer(&[ISSUER]);
    decode::<Value>(token, &key, &v).unwrap().claims
}

#[tokio::test]
async fn path_tricks_and_forged_headers_through_nginx_get_nothing() {
    let gw = gateway();
    let ng = nginx_for(&gw);
    // The public route is open, and the backend is reached: the baseline.
    let (s, _, body) = raw(ng.addr, "/public/x", &[]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"path\""), "{body}");
    // Spellings that reach /admin (two_factor) from /public, or /admin in another case:
    // nidan decides on the canonical path, so each is sent to the login or refused; none
    // reaches the backend.
    // 302: nidan decided on the canonical path (/admin) and sent the browser to the login.
    // 500: nidan refused the description as ambiguous (400), which nginx reports as an error.
    // 400: nginx itself refused the request line.
    for (path, want) in [
        ("/public/../admin/x", 302),
        ("/public/%2e%2e/admin/x", 302),
        ("/public/%2E%2E/admin/x", 302),
        ("/public/.%2e/admin/x", 302),
        ("/ADMIN/x", 302),
        ("/Admin/x", 302),
        ("/%61dmin/x", 302),
        ("//admin/x", 302),
        ("/./admin/x", 302),
        ("/public/..%2fadmin/x", 500),
        ("/public/%252e%252e/admin/x", 500),
        ("/admin%00/x", 400),
    ] {
        let (s, h, body) = raw(ng.addr, path, &[]);
        assert_eq!(s, want, "{path}: {body}");
        assert!(
            !body.contains("\"path\""),
            "{path} reached the backend: {body}"
        );
        if s == 302 {
            let to = header(&h, "location").unwrap_or("");
            let login = ng.url("/_nidan/login?rd=");
            assert!(to.starts_with(&login), "{path}: {to}");
        }
    }
    // Forged identity from the client: never believed, never passed on.
    let forged = [
        ("Remote-User", "hanako"),
        ("Remote-Groups", "admins"),
        ("Remote_User", "hanako"),
        ("X-Nidan-Assertion", "forged"),
        ("X-Original-URL", "http://127.0.0.1/public/x"),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Forwarded-Host", "127.0.0.1"),
    ];
    let (s, h, _) = raw(ng.addr, "/admin/x", &forged);
    assert_eq!(s, 302, "a forged description of the request opened /admin");
    assert!(header(&h, "location").unwrap().contains("rd=%2Fadmin%2Fx"));
    let (s, _, body) = raw(ng.addr, "/public/x", &forged);
    assert_eq!(s, 200);
    let echoed: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&String> = echoed["headers"].as_object().unwrap().keys().collect();
    for bad in [
        "remote-user",
        "remote_user",
        "remote-groups",
        "x-nidan-assertion",
    ] {
        assert!(
            !names.iter().any(|n| n.as_str() == bad),
            "{bad} reached the backend: {names:?}"
        );
    }
}

#[tokio::test]
async fn only_trusted_proxies_may_describe_a_request() {
    let gw = gateway();
    let direct = |local: [u8; 4]| {
        pingora::tls::install_default_crypto_provider();
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(local))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let ask = |http: &reqwest::Client, pairs: &[(&str, &str)], query: &str| {
        let mut r = http.get(gw.url(&format!("{FORWARD_AUTH}{query}")));
        for (k, v) in pairs {
            r = r.header(*k, *v);
        }
        r.send()
    };
    let url = [("X-Original-URL", "http://app.example.com/public/x")];
    // 127.0.0.2 is not in trusted_proxies: whatever it says, nothing is decided on it.
    let stranger = direct([127, 0, 0, 2]);
    let r = ask(&stranger, &url, "").await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "untrusted_proxy");
    // The trusted proxy's address.
    let proxy = direct([127, 0, 0, 1]);
    assert_eq!(ask(&proxy, &url, "").await.unwrap().status(), 200);
    // Nothing described, both kinds at once, a relative X-Original-URL, a repeated one.
    for pairs in [
        vec![],
        vec![url[0], ("X-Forwarded-Uri", "/admin")],
        vec![("X-Original-URL", "/public/x")],
        vec![url[0], ("X-Original-URL", "http://app.example.com/admin")],
        vec![("X-Original-URL", "http://app.example.com/public/%252e")],
        // `#`: the proxy passes the whole target on, so nothing before it is decided alone.
        vec![(
            "X-Original-URL",
            "http://app.example.com/public#/../admin/x",
        )],
        vec![("X-Original-URL", "http://app.example.com/public/x?a#b")],
        vec![
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "/public#/../admin/x"),
        ],
        // Escapes that are not UTF-8 (`%C0%AE`: an overlong `.`).
        vec![(
            "X-Original-URL",
            "http://app.example.com/public/%C0%AE%C0%AE/admin",
        )],
        vec![
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "/public/%ED%A0%80"),
        ],
    ] {
        let r = ask(&proxy, &pairs, "").await.unwrap();
        assert_eq!(r.status(), 400, "{pairs:?}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "bad_forwarded_request"
        );
    }
    // Traefik / Caddy style, anonymous: 401 with the login's address; a browser that asks
    // for it (`?redirect=1`) gets the redirect itself.
    let traefik = [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "app.example.com"),
        ("X-Forwarded-Uri", "/wiki?a=b"),
    ];
    let r = ask(&proxy, &traefik, "").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["location"], "/_nidan/login?rd=%2Fwiki%3Fa%3Db");
    let mut browser = traefik.to_vec();
    browser.push(("Accept", "text/html,application/xhtml+xml"));
    let r = ask(&proxy, &browser, "?redirect=1").await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/_nidan/login?rd=%2Fwiki%3Fa%3Db");
    // A session: 200 with the identity headers and the assertion for the proxy to pass on.
    // The described request is https: the browser holds the cookie the portal set over
    // https (`__Host-`); the plain-HTTP one is not read for it (SECURITY 44).
    let plain = login(&gw, "taro").await.1;
    let mut with_plain = traefik.to_vec();
    with_plain.push(("Cookie", plain.as_str()));
    assert_eq!(ask(&proxy, &with_plain, "").await.unwrap().status(), 401);
    let jar_cookie = plain.replacen("nidan_session=", "__Host-nidan_session=", 1);
    let mut with_session = traefik.to_vec();
    with_session.push(("Cookie", jar_cookie.as_str()));
    let r = ask(&proxy, &with_session, "").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "taro");
    assert_eq!(r.headers()["remote-email"], "taro@example.com");
    assert!(r.headers().contains_key("x-nidan-assertion"));
    // What the proxy must send the app: the host and the target nidan decided on.
    assert_eq!(r.headers()["x-nidan-host"], "app.example.com");
    assert_eq!(r.headers()["x-nidan-uri"], "/wiki?a=b");
    // Only nidan's cookie was sent: an empty `Cookie` (none for the proxy to forward), and
    // an empty `Authorization` (the client sent none).
    assert_eq!(r.headers()["cookie"], "");
    assert_eq!(r.headers()["authorization"], "");
    // The same cookie from a stranger's address still gets nothing.
    let r = ask(&stranger, &with_session, "").await.unwrap();
    assert_eq!(r.status(), 403);
}

/// The client names the host it is judged on: a route for another host (a public status
/// site, bypass) must not open this server's app. nginx picks its `server` block by the
/// request line's host (absolute form) or `Host`, and falls back to its default server for
/// names it does not serve; `$http_host` is whatever the client wrote in `Host`. Only the
/// server block's own name says which app is about to be served.
#[tokio::test]
async fn another_hosts_route_does_not_open_this_servers_app() {
    let mut b = Gateway::builder().set("trusted_proxies", "[\"127.0.0.1\"]");
    let up = b.backend_addr().to_string();
    let routes = b
        .doc()
        .get_mut("routes")
        .unwrap()
        .as_sequence_mut()
        .unwrap();
    routes.insert(
        0,
        yaml(&format!(
            "{{ name: status, hosts: [status.example.test], path_prefix: /, upstream: [\"{up}\"], policy: bypass }}"
        )),
    );
    let gw = b.start();
    let ng = nginx_for(&gw);
    let here = ng.addr.to_string();
    for (target, host) in [
        // The default server answers for a name it does not serve.
        ("/admin/x".to_owned(), "status.example.test"),
        ("/admin/x".to_owned(), "STATUS.example.test."),
        // Absolute form: nginx serves the request line's host; `Host` says another.
        (format!("http://{here}/admin/x"), "status.example.test"),
    ] {
        let (s, _, body) = raw_as(ng.addr, &target, host, &[]);
        assert_eq!(s, 302, "{target} with Host: {host}: {body}");
        assert!(
            !body.contains("\"path\""),
            "{target} with Host: {host} reached the backend: {body}"
        );
    }
    // The server's own name, and its public route, still work.
    let (s, _, body) = raw_as(ng.addr, "/public/x", &here, &[]);
    assert_eq!(s, 200, "{body}");
}

/// The gateway's cookies (the session above all: it opens every route) never reach an app
/// behind nginx (SECURITY 20); the app's own cookies still do.
#[tokio::test]
async fn the_session_cookie_stays_with_nidan() {
    let gw = gateway();
    let ng = nginx_for(&gw);
    let session = login(&gw, "taro").await.1;
    let cookies = format!("app_pref=dark; {session}; app_id=7");
    for (path, user) in [("/wiki/page", Some("taro")), ("/public/x", None)] {
        let (s, _, body) = raw(ng.addr, path, &[("Cookie", cookies.as_str())]);
        assert_eq!(s, 200, "{path}: {body}");
        let echoed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echoed["headers"]["remote-user"].as_str(), user, "{echoed}");
        let cookie = echoed["headers"]["cookie"].as_str().unwrap_or("");
        assert!(!cookie.contains("nidan_session"), "{path}: {cookie}");
        assert_eq!(cookie, "app_pref=dark; app_id=7", "{path}: {echoed}");
    }
}

/// taro's password as an `Authorization: Basic` value.
fn taro_basic() -> String {
    use base64::Engine;
    let pair = format!("taro:{PASSWORD}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Credentials nidan checked stay with nidan, as in proxy mode: the owner's Basic password
/// on a Basic route opens it but never reaches the app; an `Authorization` nidan did not
/// read (a bearer token for the app itself, on a bypass route) is passed on untouched.
#[tokio::test]
async fn a_checked_basic_password_stays_with_nidan() {
    let gw = gateway();
    let ng = nginx_for(&gw);
    let basic = taro_basic();
    let (s, _, body) = raw(ng.addr, "/sync/mail", &[("Authorization", basic.as_str())]);
    assert_eq!(s, 200, "{body}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["headers"]["remote-user"], "taro", "{echoed}");
    assert!(
        echoed["headers"].get("authorization").is_none(),
        "the password reached the app: {echoed}"
    );
    let (s, _, body) = raw(
        ng.addr,
        "/public/x",
        &[("Authorization", "Bearer app-own-token")],
    );
    assert_eq!(s, 200, "{body}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        echoed["headers"]["authorization"], "Bearer app-own-token",
        "{echoed}"
    );
}

/// A client cannot ask nidan's forward-auth through nginx itself (nidan trusts nginx's
/// description of a request; through the `/_nidan/` location a client would write it).
#[tokio::test]
async fn clients_cannot_reach_forward_auth_through_nginx() {
    let gw = gateway();
    let ng = nginx_for(&gw);
    let url = format!("http://{}/admins/x", ng.addr);
    let (s, _, body) = raw(
        ng.addr,
        FORWARD_AUTH,
        &[
            ("X-Original-URL", url.as_str()),
            ("X-Original-Method", "GET"),
        ],
    );
    assert_eq!(s, 404, "{body}");
}

/// The README's Caddy snippet, verbatim but for addresses: nidan's, the app's and the
/// site's (`http://127.0.0.1:{port}` for `wiki.example.com`: plain HTTP on a free port).
fn caddy_for(gw: &Gateway) -> Caddy {
    let snippet = readme_snippet("caddy-forward-auth");
    let nidan = gw.addr.to_string();
    let app = gw.backend.addr.to_string();
    Caddy::start_sites(|port| {
        substitute(
            &snippet,
            &[
                ("nidan:8080", &nidan),
                ("app:3000", &app),
                ("wiki.example.com {", &format!("http://127.0.0.1:{port} {{")),
            ],
        )
    })
}

#[tokio::test]
async fn caddy_forward_auth_as_the_readme_configures_it() {
    let gw = gateway();
    let cd = caddy_for(&gw);
    let base = cd.url("");
    let http = client();
    // Anonymous browser: nidan's 302 (`?redirect=1`) passed on, with the way back.
    let (s, h, _) = get(&http, &cd.url("/wiki/page?x=1")).await;
    assert_eq!(s, 302, "{}", cd.log());
    let location = h["location"].to_str().unwrap().to_owned();
    assert!(
        location.ends_with("/_nidan/login?rd=%2Fwiki%2Fpage%3Fx%3D1"),
        "{location}"
    );
    login_via(&http, &base, &gw, "taro").await;
    // Signed in: the backend sees the user from nidan, never the client's claim.
    let r = http
        .get(cd.url("/wiki/page"))
        .header("accept", "application/json")
        .header("remote-user", "admin")
        .header("remote-groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", cd.log());
    let echoed: Value = r.json().await.unwrap();
    let h = &echoed["headers"];
    assert_eq!(h["remote-user"], "taro", "{echoed}");
    assert_eq!(h["remote-groups"], "staff", "{echoed}");
    assert!(h["x-nidan-assertion"].is_string(), "{echoed}");
    assert!(
        !h["cookie"].as_str().unwrap_or("").contains("nidan_session"),
        "{echoed}"
    );
    // A bypass route: nidan's 200 names nobody, and a client's claim must not pass either.
    let r = plain()
        .get(cd.url("/public/x"))
        .header("accept", "application/json")
        .header("remote-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", cd.log());
    let echoed: Value = r.json().await.unwrap();
    let h = echoed["headers"].as_object().unwrap();
    assert_eq!(
        h.get("remote-user").and_then(Value::as_str).unwrap_or(""),
        "",
        "a client's Remote-User reached the app: {echoed}"
    );
    // Caddy 2.6 copies a header the answer lacks as its literal placeholder: none is lacking.
    assert!(
        h.values()
            .all(|v| !v.as_str().unwrap_or("").contains("{http.")),
        "{echoed}"
    );
    // A Basic password nidan checked never reaches the app through Caddy either.
    let basic = taro_basic();
    let (s, _, body) = raw(cd.addr, "/sync/mail", &[("Authorization", basic.as_str())]);
    assert_eq!(s, 200, "{body}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["headers"]["remote-user"], "taro", "{echoed}");
    assert_eq!(
        echoed["headers"]["authorization"].as_str().unwrap_or(""),
        "",
        "the password reached the app: {echoed}"
    );
    // Another group's route: 403, the backend never asked.
    let (s, _, body) = get(&http, &cd.url("/admins/x")).await;
    assert_eq!(s, 403);
    assert!(!body.contains("remote-user"), "{body}");
    // The endpoint itself is not reachable through Caddy.
    let (s, _, _) = raw(
        cd.addr,
        &format!("{FORWARD_AUTH}?x"),
        &[("x-forwarded-uri", "/admins/x")],
    );
    assert_eq!(s, 404);
}

// ---------------------------------------------------------------------------------------
// The documented deployments, attacked (SECURITY 45, 26, 38): what reaches the APP behind
// the README's nginx and Caddy, run verbatim.

/// Forwarding and rewrite headers a client may send, each naming another host, path,
/// address, scheme or method than the real ones: proxy mode's list (`CLIENT_FORBIDDEN` in
/// `src/proxy/upstream.rs`), `X-Original-Method`, and spellings with `_` that CGI, PHP and
/// WSGI read as the dashed names. Apps read them to pick a virtual host or route, build
/// URLs, log and throttle; none may reach the app.
const SPOOFED: &[(&str, &str)] = &[
    ("X-Forwarded-Host", "admin.example.com"),
    ("X-Forwarded-For", "203.0.113.66"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "8443"),
    ("X-Forwarded-Prefix", "/admin/spoof"),
    ("X-Forwarded-Uri", "/admin/spoof"),
    ("X-Forwarded-Method", "DELETE"),
    ("X-Original-URL", "http://admin.example.com/admin/spoof"),
    ("X-Original-URI", "/admin/spoof"),
    ("X-Original-Method", "DELETE"),
    ("X-Rewrite-URL", "/admin/spoof"),
    ("X-Real-IP", "203.0.113.66"),
    (
        "Forwarded",
        "for=203.0.113.66;host=admin.example.com;proto=https",
    ),
    ("X_Forwarded_Host", "admin.example.com"),
    ("X_Forwarded_For", "203.0.113.66"),
    ("X_Original_URL", "/admin/spoof"),
    ("Remote_User", "hanako-spoof"),
];

/// nidan for the deployment attacks: `admin.example.com` is a `two_factor` host; any other
/// host's `/` needs a login (taro's one-step session meets it), `/public` is open.
fn two_hosts() -> Gateway {
    let mut b = Gateway::builder().set("trusted_proxies", "[\"127.0.0.1\"]");
    let up = b.backend_addr().to_string();
    let routes = b
        .doc()
        .get_mut("routes")
        .unwrap()
        .as_sequence_mut()
        .unwrap();
    routes.insert(
        0,
        yaml(&format!(
            "{{ name: admin-host, hosts: [admin.example.com], path_prefix: /, upstream: [\"{up}\"], policy: two_factor }}"
        )),
    );
    b.start()
}

/// The request the app (the echo backend) received, from its answer; `None` when the
/// answer is not the echo's, so the app was never reached.
fn app_request(body: &str) -> Option<Value> {
    serde_json::from_str::<Value>(body)
        .ok()
        .filter(|v| v.get("path").is_some() && v.get("headers").is_some())
}

/// The app got the host `host` and target `path` (`?query`) nidan decided on, the real
/// peer as `X-Forwarded-For`, the real scheme, and nothing of [`SPOOFED`].
fn assert_app_got(app: &Value, host: &str, path: &str, query: Option<&str>, what: &str) {
    let h = app["headers"].as_object().unwrap();
    let get = |n: &str| h.get(n).and_then(Value::as_str);
    assert_eq!(get("host"), Some(host), "{what}: Host: {app}");
    assert_eq!(app["path"].as_str(), Some(path), "{what}: target: {app}");
    assert_eq!(app["query"].as_str(), query, "{what}: query: {app}");
    assert_eq!(get("x-forwarded-for"), Some("127.0.0.1"), "{what}: {app}");
    assert!(
        get("x-forwarded-host").is_none_or(|v| v == host),
        "{what}: X-Forwarded-Host: {app}"
    );
    assert!(
        get("x-forwarded-proto").is_none_or(|v| v == "http"),
        "{what}: X-Forwarded-Proto: {app}"
    );
    for (name, value) in h {
        let v = value.as_str().unwrap_or("");
        for mark in ["admin.example.com", "203.0.113.66", "spoof", "DELETE"] {
            assert!(
                !v.contains(mark),
                "{what}: {name}: {v} reached the app: {app}"
            );
        }
        assert!(!name.contains('_'), "{what}: {name} reached the app: {app}");
        // Caddy 2.6 copies a header nidan's answer lacks as its literal placeholder.
        assert!(!v.contains("{http."), "{what}: {name}: {v}: {app}");
    }
    for gone in [
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-uri",
        "x-forwarded-method",
        "x-original-url",
        "x-original-uri",
        "x-original-method",
        "x-rewrite-url",
        "x-real-ip",
        "forwarded",
    ] {
        assert!(get(gone).is_none(), "{what}: {gone} reached the app: {app}");
    }
}

/// The review's attack on the README's nginx: `Host: admin.example.com` (two_factor) was
/// decided as this server's `wiki.example.com` (a one-step session opens it) while the app
/// got `Host: admin.example.com`; the client's forwarding and rewrite headers all reached
/// the app; the target went on as the client wrote it, not as nidan read it.
#[tokio::test]
async fn nginx_sends_the_app_only_what_nidan_decided() {
    let gw = two_hosts();
    let ng = nginx_for(&gw);
    let here = ng.addr.to_string();
    let session = login(&gw, "taro").await.1;
    let cookie = [("Cookie", session.as_str())];
    // A Host, or an absolute-form target, naming another host than the server's.
    for (target, host) in [
        ("/wiki/page", here.as_str()),
        ("/wiki/page", "admin.example.com"),
        ("http://wiki.example.com/wiki/page", "admin.example.com"),
        ("http://admin.example.com/wiki/page", "wiki.example.com"),
        ("http://admin.example.com/wiki/page", "admin.example.com"),
    ] {
        let what = format!("{target} with Host: {host}");
        let (s, _, body) = raw_as(ng.addr, target, host, &cookie);
        assert_eq!(s, 200, "{what}: {body}");
        let app = app_request(&body).unwrap_or_else(|| panic!("{what}: {body}"));
        assert_app_got(&app, "wiki.example.com", "/wiki/page", None, &what);
    }
    // Every forwarding and rewrite header a client can send, on a login route and a bypass.
    let mut spoofed = SPOOFED.to_vec();
    spoofed.push(cookie[0]);
    for path in ["/wiki/page", "/public/x"] {
        let (s, _, body) = raw_as(ng.addr, path, &here, &spoofed);
        assert_eq!(s, 200, "{path}: {body}");
        let app = app_request(&body).unwrap_or_else(|| panic!("{path}: {body}"));
        assert_app_got(&app, "wiki.example.com", path, None, path);
    }
    // The target the app gets is the one nidan decided on, not the client's spelling.
    for (target, path, query) in [
        ("//wiki/./x/../page?q=%2F", "/wiki/page", Some("q=%2F")),
        ("/wiki/%70age", "/wiki/page", None),
        ("/public/a/%2e%2e/x", "/public/x", None),
        ("http://wiki.example.com/public/x?a", "/public/x", Some("a")),
    ] {
        let (s, _, body) = raw_as(ng.addr, target, &here, &cookie);
        assert_eq!(s, 200, "{target}: {body}");
        let app = app_request(&body).unwrap_or_else(|| panic!("{target}: {body}"));
        assert_app_got(&app, "wiki.example.com", path, query, target);
    }
    // `#` (nginx passes it on; nidan decided on the part before it), `;` and escapes that
    // are not UTF-8 (`%C0%AE` is `.` to lenient decoders): refused, the app never asked.
    // nginx reports nidan's 400 as 500.
    for target in [
        "/public#/../admin/x",
        "/public/x?a#/../../admin/x",
        "/public;/../admin/x",
        "/admin;x",
        "/public/%C0%AE%C0%AE/admin/x",
        "/public/..%C0%AFadmin/x",
    ] {
        let (s, _, body) = raw_as(ng.addr, target, &here, &cookie);
        assert!(matches!(s, 400 | 500), "{target}: {s} {body}");
        assert!(
            app_request(&body).is_none(),
            "{target} reached the app: {body}"
        );
    }
}

/// The same attacks on the README's Caddy. Caddy serves a site by the request's host (an
/// absolute-form target's, else `Host`) and describes it to nidan; the app must get that
/// host and the target nidan decided on, and none of the client's forwarding headers.
#[tokio::test]
async fn caddy_sends_the_app_only_what_nidan_decided() {
    let gw = two_hosts();
    let cd = caddy_for(&gw);
    let here = cd.addr.to_string();
    let session = login(&gw, "taro").await.1;
    let cookie = [("Cookie", session.as_str())];
    // A host this site does not serve gets nothing; an absolute-form target names the host.
    let (_, _, body) = raw_as(cd.addr, "/wiki/page", "admin.example.com", &cookie);
    assert!(app_request(&body).is_none(), "{body}");
    for host in [here.as_str(), "admin.example.com"] {
        let target = format!("http://{here}/wiki/page");
        let what = format!("{target} with Host: {host}");
        let (s, _, body) = raw_as(cd.addr, &target, host, &cookie);
        assert_eq!(s, 200, "{what}: {body}");
        let app = app_request(&body).unwrap_or_else(|| panic!("{what}: {body}"));
        assert_app_got(&app, &here, "/wiki/page", None, &what);
    }
    let mut spoofed = SPOOFED.to_vec();
    spoofed.push(cookie[0]);
    for path in ["/wiki/page", "/public/x"] {
        let (s, _, body) = raw_as(cd.addr, path, &here, &spoofed);
        assert_eq!(s, 200, "{path}: {body}\n{}", cd.log());
        let app = app_request(&body).unwrap_or_else(|| panic!("{path}: {body}"));
        assert_app_got(&app, &here, path, None, path);
    }
    for (target, path, query) in [
        ("//wiki/./x/../page?q=%2F", "/wiki/page", Some("q=%2F")),
        ("/public/a/%2e%2e/x", "/public/x", None),
        ("/wiki/a/..%2F..%2Fpublic/x", "", None),
    ] {
        let (s, _, body) = raw_as(cd.addr, target, &here, &cookie);
        if path.is_empty() {
            assert_eq!(s, 400, "{target}: {body}");
            continue;
        }
        assert_eq!(s, 200, "{target}: {body}");
        let app = app_request(&body).unwrap_or_else(|| panic!("{target}: {body}"));
        assert_app_got(&app, &here, path, query, target);
    }
    // Caddy 2.6.2's rewrite keeps the client's spelling of a path that decodes to the same
    // one (Go's `RawPath`): `%70` for `p`, `%e3` for `%E3`. The app gets the path nidan
    // decided on, spelled with escapes of unreserved characters or in lower-case hex
    // (equivalent, RFC 3986 6.2.2), never another path.
    let (s, _, body) = raw_as(cd.addr, "/wiki/%70age", &here, &cookie);
    assert_eq!(s, 200, "{body}");
    let app = app_request(&body).unwrap_or_else(|| panic!("{body}"));
    let got = app["path"].as_str().unwrap_or("");
    assert!(matches!(got, "/wiki/page" | "/wiki/%70age"), "{app}");
    assert_app_got(&app, &here, got, None, "/wiki/%70age");
    for target in [
        "/public#/../admin/x",
        "/public;/../admin/x",
        "/admin;x",
        "/public/%C0%AE%C0%AE/admin/x",
    ] {
        let (s, _, body) = raw_as(cd.addr, target, &here, &cookie);
        assert_ne!(s, 200, "{target}: {body}");
        assert!(
            app_request(&body).is_none(),
            "{target} reached the app: {body}"
        );
    }
}
