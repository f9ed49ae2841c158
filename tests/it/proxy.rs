//! The proxy layer through the real binary: header hygiene (SECURITY 20, 24, 26, 27), path
//! canonicalisation (25), smuggling (29), WebSocket (30), backend failures (33), graceful
//! shutdown (34), streaming, portal headers (23) and round robin.
//!
//! Many requests are written by hand over a TCP socket: HTTP clients normalise paths and
//! header names, and refuse to send the malformed framing these tests need.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common::{self, ws};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "app.example.com";
const HTML: &str = "text/html,application/xhtml+xml";

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client over a raw socket.

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads more bytes into `buf`; `false` at EOF (or on a reset).
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> Option<bool> {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(wait, s.read(&mut chunk)).await {
        Err(_) => None,
        Ok(Ok(0)) | Ok(Err(_)) => Some(false),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(true)
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response from `s` (bytes already read are in `buf`; what follows the response
/// stays there). `None` when the peer closed (or stayed silent for `wait`) before a whole
/// response head arrived.
async fn read_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
    wait: Duration,
) -> Option<Resp> {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        if fill(s, buf, wait).await != Some(true) {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status < 200 || status == 204 || status == 304 {
        return Some(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                assert_eq!(fill(s, buf, wait).await, Some(true), "chunked body cut");
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            while buf.len() < line_end + 2 + size + 2 {
                assert_eq!(fill(s, buf, wait).await, Some(true), "chunk cut");
            }
            resp.body
                .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                // No trailers are expected: the last chunk is followed by the empty line.
                return Some(resp);
            }
        }
    }
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().unwrap();
        while buf.len() < len {
            assert_eq!(fill(s, buf, wait).await, Some(true), "body cut");
        }
        resp.body = buf.drain(..len).collect();
        return Some(resp);
    }
    // Delimited by the end of the connection.
    while fill(s, buf, wait).await == Some(true) {}
    resp.body = std::mem::take(buf);
    Some(resp)
}

/// Sends `request` on a new connection and reads one response.
async fn raw(addr: SocketAddr, request: &str) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let head = request.starts_with("HEAD ");
    read_response(&mut s, &mut buf, head, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no response to {request:?}"))
}

/// A simple GET with extra header lines (each ending in `\r\n`).
async fn raw_get(addr: SocketAddr, target: &str, extra: &str) -> Resp {
    raw(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n"),
    )
    .await
}

/// Sends `request`, then reads every response until the connection closes or stays silent
/// for `idle`. Returns the responses and whether the gateway closed the connection.
async fn all_responses(s: &mut TcpStream, buf: &mut Vec<u8>, idle: Duration) -> (Vec<Resp>, bool) {
    let mut out = Vec::new();
    loop {
        match read_response(s, buf, false, idle).await {
            Some(r) => out.push(r),
            None => {
                let closed = fill(s, buf, Duration::from_millis(10)).await == Some(false);
                return (out, closed);
            }
        }
    }
}

fn echo_headers(v: &Value) -> &serde_json::Map<String, Value> {
    v["headers"].as_object().unwrap_or_else(|| panic!("{v}"))
}

/// Header names as a backend may read them (lower-case, `_` as `-`).
fn normalised_names(v: &Value) -> Vec<String> {
    echo_headers(v)
        .keys()
        .map(|k| k.to_ascii_lowercase().replace('_', "-"))
        .collect()
}

const IDENTITY_SPOOFS: &str = "Remote-User: admin\r\n\
    remote-user: admin2\r\n\
    REMOTE-USER: admin3\r\n\
    Remote_User: admin4\r\n\
    remote_user: admin5\r\n\
    Remote-Name: Admin\r\n\
    REMOTE_NAME: Admin\r\n\
    Remote-Email: admin@example.com\r\n\
    remote_email: admin@example.com\r\n\
    Remote-Groups: admins\r\n\
    Remote-Groups: root\r\n\
    REMOTE_GROUPS: admins\r\n";

// ---------------------------------------------------------------------------------------
// SECURITY 24: identity headers.

#[tokio::test]
async fn spoofed_identity_headers_never_reach_a_bypass_backend() {
    let gw = Gateway::start();
    let r = raw_get(gw.addr, "/public/who", IDENTITY_SPOOFS).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["path"], "/public/who");
    let names = normalised_names(&echo);
    for forbidden in [
        "remote-user",
        "remote-name",
        "remote-email",
        "remote-groups",
    ] {
        assert!(
            !names.contains(&forbidden.to_owned()),
            "{forbidden}: {echo}"
        );
    }
    assert!(!r.text().contains("admin"), "{echo}");
}

#[tokio::test]
async fn after_login_the_backend_sees_only_the_gateways_identity() {
    let gw = Gateway::start();
    let (_api, session) = login(&gw, "taro").await;
    let r = raw_get(
        gw.addr,
        "/app/who",
        &format!("{IDENTITY_SPOOFS}Cookie: {session}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    let h = echo_headers(&echo);
    assert_eq!(h["remote-user"], "taro", "{echo}");
    assert_eq!(h["remote-name"], "Taro Yamada", "{echo}");
    assert_eq!(h["remote-email"], "taro@example.com", "{echo}");
    assert_eq!(h["remote-groups"], "staff", "{echo}");
    // Nothing else that a backend could read as an identity header.
    let names = normalised_names(&echo);
    for n in [
        "remote-user",
        "remote-name",
        "remote-email",
        "remote-groups",
    ] {
        assert_eq!(names.iter().filter(|x| *x == n).count(), 1, "{n}: {echo}");
    }
    assert!(!r.text().contains("admin"), "{echo}");
}

// ---------------------------------------------------------------------------------------
// SECURITY 26: forwarding and rewrite headers.

#[tokio::test]
async fn client_forwarding_and_rewrite_headers_never_reach_the_backend() {
    let gw = Gateway::start();
    let r = raw_get(
        gw.addr,
        "/public/fwd",
        "X-Forwarded-For: 6.6.6.6\r\n\
         X-Forwarded-Host: evil.example\r\n\
         X-Forwarded-Proto: https\r\n\
         X-Original-URL: /admin\r\n\
         X-Rewrite-URL: /admin\r\n\
         X-Forwarded-Uri: /admin\r\n\
         X-Real-IP: 6.6.6.6\r\n\
         Forwarded: for=6.6.6.6\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    let h = echo_headers(&echo);
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{echo}");
    assert_eq!(h["x-forwarded-host"], HOST, "{echo}");
    assert_eq!(h["x-forwarded-proto"], "http", "{echo}");
    for gone in [
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-uri",
        "x-real-ip",
        "forwarded",
    ] {
        assert!(h.get(gone).is_none(), "{gone}: {echo}");
    }
    assert!(!r.text().contains("6.6.6.6"), "{echo}");
    assert!(!r.text().contains("evil.example"), "{echo}");
    assert_eq!(echo["path"], "/public/fwd");
}

#[tokio::test]
async fn rewrite_headers_do_not_bypass_login() {
    let gw = Gateway::start();
    for header in ["X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Uri"] {
        let r = raw_get(
            gw.addr,
            "/app",
            &format!("{header}: /public/x\r\nAccept: {HTML}\r\n"),
        )
        .await;
        assert_eq!(r.status, 302, "{header}: {}", r.text());
        assert_eq!(r.header("location"), Some("/_nidan/login?rd=%2Fapp"));
        let r = raw_get(gw.addr, "/app", &format!("{header}: /public/x\r\n")).await;
        assert_eq!(r.status, 401, "{header}: {}", r.text());
    }
}

// ---------------------------------------------------------------------------------------
// SECURITY 25 and 26: paths.

#[tokio::test]
async fn ambiguous_paths_are_refused_or_sent_to_login() {
    let gw = Gateway::start();
    // (raw target, the canonical path a login redirect must carry, or None for 400)
    let cases: &[(&str, Option<&str>)] = &[
        ("//app", Some("%2Fapp")),
        ("/./app", Some("%2Fapp")),
        ("/public/..%2fapp", None),
        ("/public/..%2Fapp", None),
        ("/public/../app", Some("%2Fapp")),
        ("/%61pp", Some("%2Fapp")),
        // A double encoding (`%25` + two hex digits): 400 (SECURITY 25).
        ("/%2561pp", None),
        ("/app;x", None),
        ("/app%00", None),
        ("/public\\..\\app", None),
        ("/public/%2e%2e/app", Some("%2Fapp")),
        ("/public/%2E%2E/app", Some("%2Fapp")),
        ("/public/.%2e/app", Some("%2Fapp")),
        ("/public%2f..%2fapp", None),
        ("/public/..%5capp", None),
        ("/public/../../app", None),
    ];
    for (target, rd) in cases {
        let r = raw_get(gw.addr, target, &format!("Accept: {HTML}\r\n")).await;
        match rd {
            None => assert_eq!(r.status, 400, "{target}: {}", r.text()),
            Some(_) if r.status == 400 => {}
            Some(rd) => {
                assert_eq!(r.status, 302, "{target}: {}", r.text());
                let loc = r.header("location").unwrap_or_default();
                assert!(loc.starts_with("/_nidan/login?rd="), "{target}: {loc}");
                // The return address is the canonical path; it must not be the raw one.
                let got = loc.trim_start_matches("/_nidan/login?rd=");
                assert_eq!(got, *rd, "{target}");
            }
        }
        // Never the backend's answer without a login.
        assert!(!r.text().contains("\"path\""), "{target}: {}", r.text());
        // API clients: 401 or 400, never 200.
        let r = raw_get(gw.addr, target, "").await;
        assert!(
            r.status == 400 || r.status == 401,
            "{target}: {} {}",
            r.status,
            r.text()
        );
    }
}

#[tokio::test]
async fn the_bypass_backend_receives_exactly_the_canonical_path() {
    let gw = Gateway::start();
    let cases = [
        ("/public/./x", "/public/x", None),
        ("/public//x", "/public/x", None),
        ("//public/x", "/public/x", None),
        ("/public/a/../x", "/public/x", None),
        ("/public/%78", "/public/x", None),
        ("/%70ublic/x", "/public/x", None),
        ("/public/a/%2e%2e/x", "/public/x", None),
        ("/public/x/", "/public/x/", None),
        ("/public/%7e%41", "/public/~A", None),
        ("/public/a%2fb", "", None),
        // `%25` + two hex digits is a double encoding: refused (SECURITY 25). Otherwise
        // the %25 stays encoded: the backend must not decode it into a second meaning.
        ("/public/%2561", "", None),
        ("/public/100%25", "/public/100%25", None),
        (
            "/public/x?a=%2e%2e/../b&c",
            "/public/x",
            Some("a=%2e%2e/../b&c"),
        ),
    ];
    for (target, expected, query) in cases {
        let r = raw_get(gw.addr, target, "").await;
        if expected.is_empty() {
            assert_eq!(r.status, 400, "{target}: {}", r.text());
            continue;
        }
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let echo = r.json();
        assert_eq!(echo["path"], expected, "{target}");
        assert_eq!(
            echo["query"],
            query.map_or(Value::Null, Value::from),
            "{target}"
        );
    }
}

#[tokio::test]
async fn the_query_never_affects_route_matching() {
    let gw = Gateway::start();
    let r = raw_get(gw.addr, "/app?x=/public", &format!("Accept: {HTML}\r\n")).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("/_nidan/login?rd=%2Fapp%3Fx%3D%2Fpublic")
    );
    let r = raw_get(gw.addr, "/app?/public", "").await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = raw_get(gw.addr, "/app#/public", "").await;
    assert!(r.status == 401 || r.status == 400, "{}", r.text());
    let r = raw_get(gw.addr, "/public?x=../app", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["path"], "/public");
    assert_eq!(echo["query"], "x=../app");
    let r = raw_get(gw.addr, "/deny?x=/public", "").await;
    assert_eq!(r.status, 403, "{}", r.text());
}

// ---------------------------------------------------------------------------------------
// Decisions: unknown host, deny, login.

#[tokio::test]
async fn unknown_host_is_404_deny_is_403_and_login_differs_for_browsers() {
    let mut b = Gateway::builder();
    let backend = b.backend_addr();
    let routes = b
        .doc()
        .get_mut("routes")
        .unwrap()
        .as_sequence_mut()
        .unwrap();
    routes.insert(
        0,
        yaml(&format!(
            "{{ name: only, hosts: [only.example.com], path_prefix: /only, upstream: [\"{backend}\"], policy: bypass }}"
        )),
    );
    // Replace the catch-all so that an unknown host really finds no route.
    let last = routes.len() - 1;
    routes[last] = yaml(&format!(
        "{{ name: app, hosts: [app.example.com], path_prefix: /, upstream: [\"{backend}\"], policy: login }}"
    ));
    let gw = b.start();

    let r = raw(
        gw.addr,
        "GET /only/x HTTP/1.1\r\nHost: only.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/only/x");
    // Host matching ignores case and the port.
    let r = raw(
        gw.addr,
        "GET /only/x HTTP/1.1\r\nHost: ONLY.example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for host in ["other.example.com", "only.example.com.evil", "example.com"] {
        let r = raw(
            gw.addr,
            &format!("GET /only/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(r.status, 404, "{host}: {}", r.text());
        assert_eq!(r.json()["error"], "not_found", "{host}");
    }
    // Browsers get an HTML 404 page.
    let r = raw(
        gw.addr,
        &format!("GET /x HTTP/1.1\r\nHost: other.example.com\r\nAccept: {HTML}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));

    // Deny.
    let r = raw_get(gw.addr, "/deny/x", "").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "forbidden");
    let r = raw_get(gw.addr, "/deny", &format!("Accept: {HTML}\r\n")).await;
    assert_eq!(r.status, 403);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));

    // Login: API client 401 JSON with WWW-Authenticate, browser 302.
    let r = raw_get(gw.addr, "/app/x?y=1", "Accept: application/json\r\n").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(r.json()["error"], "unauthenticated");
    let www = r.header("www-authenticate").expect("WWW-Authenticate");
    assert!(www.contains("/_nidan/login"), "{www}");
    let r = raw_get(gw.addr, "/app/x?y=1", &format!("Accept: {HTML}\r\n")).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("/_nidan/login?rd=%2Fapp%2Fx%3Fy%3D1")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

// ---------------------------------------------------------------------------------------
// SECURITY 20: gateway cookies.

#[tokio::test]
async fn gateway_cookies_are_removed_before_the_backend() {
    let gw = Gateway::start();
    let (_api, session) = login(&gw, "taro").await;
    let r = raw_get(
        gw.addr,
        "/app/c",
        &format!(
            "Cookie: nidan_csrf=abc; app=1; {session}; nidan_device=forged; other=2\r\n\
             Cookie: nidan_lang=en; third=3\r\n"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["headers"]["remote-user"], "taro", "{echo}");
    let cookie = echo["headers"]["cookie"].as_str().unwrap_or_default();
    assert!(cookie.contains("app=1"), "{echo}");
    assert!(cookie.contains("other=2"), "{echo}");
    assert!(cookie.contains("third=3"), "{echo}");
    assert!(!cookie.contains("nidan_"), "{echo}");
    let value = session.split_once('=').unwrap().1;
    assert!(
        !r.text().contains(value),
        "the session id reached the backend"
    );

    // Only gateway cookies: no Cookie header at all.
    let r = raw_get(gw.addr, "/app/c", &format!("Cookie: {session}\r\n")).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"].get("cookie").is_none(), "{}", r.text());

    // On a bypass route too.
    let r = raw_get(
        gw.addr,
        "/public/c",
        &format!("Cookie: {session}; app=1; nidan_csrf=x\r\n"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["cookie"], "app=1", "{}", r.text());
}

#[tokio::test]
async fn a_backend_cannot_set_a_gateway_cookie() {
    let gw = Gateway::start();
    let (api, session) = login(&gw, "taro").await;
    for name in [
        "nidan_session",
        "nidan_device",
        "nidan_csrf",
        "NIDAN_SESSION",
        "__Host-nidan_session",
        "__Secure-nidan_device",
    ] {
        let r = api
            .http
            .get(gw.url(&format!("/__echo/set-cookie?name={name}&value=x")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(
            r.headers().get_all("set-cookie").iter().count(),
            0,
            "{name}"
        );
    }
    // The session was not replaced: still logged in with the same cookie.
    let r = raw_get(gw.addr, "/app", &format!("Cookie: {session}\r\n")).await;
    assert_eq!(r.status, 200);
    let r = api
        .http
        .get(gw.url("/__echo/set-cookie?name=app&value=v"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, vec!["app=v; Path=/"]);
    // The jar now sends app=v along to the backend.
    let echo: Value = api
        .http
        .get(gw.url("/app"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["cookie"], "app=v", "{echo}");
}

// ---------------------------------------------------------------------------------------
// SECURITY 27: hop-by-hop headers.

#[tokio::test]
async fn hop_by_hop_headers_do_not_reach_the_backend() {
    let gw = Gateway::start();
    let r = raw(
        gw.addr,
        &format!(
            "GET /public/hop HTTP/1.1\r\nHost: {HOST}\r\n\
             Connection: x-secret, X-Other, close\r\n\
             X-Secret: 1\r\nX-Other: 2\r\nX-Kept: 3\r\n\
             Keep-Alive: timeout=5\r\nTE: trailers\r\n\
             Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
             Proxy-Connection: keep-alive\r\nTrailer: x\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    let h = echo_headers(&echo);
    for gone in [
        "x-secret",
        "x-other",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
    ] {
        assert!(h.get(gone).is_none(), "{gone}: {echo}");
    }
    assert_eq!(h["x-kept"], "3");
    assert!(!r.text().contains("Zm9vOmJhcg"), "{echo}");
    if let Some(c) = h.get("connection") {
        let c = c.as_str().unwrap().to_ascii_lowercase();
        assert!(!c.contains("x-secret") && !c.contains("x-other"), "{echo}");
    }
}

#[tokio::test]
async fn connection_cannot_remove_gateway_set_headers() {
    let gw = Gateway::start();
    let (_api, session) = login(&gw, "taro").await;
    let r = raw(
        gw.addr,
        &format!(
            "GET /app/hop HTTP/1.1\r\nHost: {HOST}\r\n\
             Connection: remote-user, Remote-Groups, remote_email, cookie, close\r\n\
             Cookie: {session}; app=1\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    let h = echo_headers(&echo);
    assert_eq!(h["remote-user"], "taro", "{echo}");
    assert_eq!(h["remote-groups"], "staff", "{echo}");
    assert_eq!(h["remote-email"], "taro@example.com", "{echo}");
    assert_eq!(h["remote-name"], "Taro Yamada", "{echo}");
    // The cookie header is hop-by-hop for this request: the app cookie may go, the
    // session was still seen (the identity above) and never forwarded.
    assert!(!r.text().contains("nidan_session"), "{echo}");

    // pingora refuses a Connection header naming the forwarding headers it protects; either
    // way the backend never gets a request without the gateway's values.
    for name in [
        "x-forwarded-for",
        "X-Forwarded-Host",
        "x-forwarded-proto",
        "host",
    ] {
        let r = raw(
            gw.addr,
            &format!(
                "GET /app/hop HTTP/1.1\r\nHost: {HOST}\r\nConnection: {name}, close\r\n\
                 Cookie: {session}\r\n\r\n"
            ),
        )
        .await;
        if r.status == 400 {
            continue;
        }
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let echo = r.json();
        let h = echo_headers(&echo);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{name}: {echo}");
        assert_eq!(h["x-forwarded-host"], HOST, "{name}: {echo}");
        assert_eq!(h["x-forwarded-proto"], "http", "{name}: {echo}");
        assert_eq!(h["host"], HOST, "{name}: {echo}");
        assert_eq!(h["remote-user"], "taro", "{name}: {echo}");
    }
}

// ---------------------------------------------------------------------------------------
// SECURITY 29: framing and smuggling.

#[tokio::test]
async fn ambiguous_framing_is_refused() {
    let gw = Gateway::start();
    let requests = [
        format!(
            "POST /public/x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        format!(
            "POST /public/x HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"
        ),
        format!(
            "POST /public/x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd"
        ),
        format!(
            "POST /public/x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"
        ),
        format!("POST /public/x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4, 4\r\n\r\nabcd"),
        // The same on a login route: framing is checked before any decision.
        format!(
            "POST /app HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
    ];
    for req in &requests {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let (resps, _) = all_responses(&mut s, &mut buf, Duration::from_secs(2)).await;
        assert!(!resps.is_empty(), "no response to {req:?}");
        assert_eq!(resps[0].status, 400, "{req:?}: {}", resps[0].text());
        assert_eq!(resps.len(), 1, "{req:?}: {resps:?}");
    }
}

/// A body carrying a second request must never be read as a request when the gateway
/// answers the first itself.
#[tokio::test]
async fn a_smuggled_request_never_reaches_the_backend() {
    let gw = Gateway::start();
    let smuggled = format!("GET /public/smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let chunked = format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len());
    // (request head without the final CRLF, body, expected status)
    let cases = [
        (
            format!(
                "POST /app HTTP/1.1\r\nHost: {HOST}\r\nAccept: {HTML}\r\nContent-Length: {}\r\n",
                smuggled.len()
            ),
            smuggled.clone(),
            302,
        ),
        (
            format!(
                "GET /app HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n",
                smuggled.len()
            ),
            smuggled.clone(),
            401,
        ),
        (
            format!(
                "POST /deny HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n",
                smuggled.len()
            ),
            smuggled.clone(),
            403,
        ),
        (
            format!(
                "POST /nowhere%2f HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n",
                smuggled.len()
            ),
            smuggled.clone(),
            400,
        ),
        (
            format!(
                "POST /app HTTP/1.1\r\nHost: {HOST}\r\nAccept: {HTML}\r\nTransfer-Encoding: chunked\r\n"
            ),
            chunked.clone(),
            302,
        ),
    ];
    // Control: on a kept-alive connection a request sent after the first answer is
    // answered, so the reader below would see a smuggled request's answer if the gateway
    // took a body for the next request. (pingora does not answer pipelined bytes that
    // arrive with the first request, which is why every case also runs split.)
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("GET /public/first HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let first = read_response(&mut s, &mut buf, false, Duration::from_secs(5)).await;
    assert_eq!(first.unwrap().status, 200);
    s.write_all(smuggled.as_bytes()).await.unwrap();
    let (resps, _) = all_responses(&mut s, &mut buf, Duration::from_millis(1500)).await;
    assert_eq!(resps.len(), 1, "{resps:?}");
    assert_eq!(resps[0].json()["path"], "/public/smuggled");

    for (head, body, status) in &cases {
        // All at once, then with the body sent only after the gateway has answered.
        for split in [false, true] {
            let mut s = TcpStream::connect(gw.addr).await.unwrap();
            let mut buf = Vec::new();
            let mut resps = Vec::new();
            if split {
                s.write_all(format!("{head}\r\n").as_bytes()).await.unwrap();
                let first = read_response(&mut s, &mut buf, false, Duration::from_secs(5)).await;
                let first = first.unwrap_or_else(|| panic!("no answer to {head:?}"));
                resps.push(first);
                // The gateway may already have closed the connection: that is fine.
                let _ = s.write_all(body.as_bytes()).await;
            } else {
                s.write_all(format!("{head}\r\n{body}").as_bytes())
                    .await
                    .unwrap();
            }
            let (more, _closed) =
                all_responses(&mut s, &mut buf, Duration::from_millis(1500)).await;
            resps.extend(more);
            assert!(!resps.is_empty(), "{head:?}");
            assert_eq!(
                resps[0].status,
                *status,
                "{head:?} split={split}: {}",
                resps[0].text()
            );
            for r in &resps {
                assert!(
                    !r.text().contains("smuggled"),
                    "{head:?} split={split}: the smuggled request was answered: {r:?}"
                );
            }
            assert_eq!(resps.len(), 1, "{head:?} split={split}: {resps:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// SECURITY 33: a backend that is down.

#[tokio::test]
async fn a_backend_that_is_down_gives_502_and_nothing_else_breaks() {
    let closed = free_port();
    let mut b = Gateway::builder();
    b.doc()
        .get_mut("routes")
        .unwrap()
        .as_sequence_mut()
        .unwrap()
        .insert(
            0,
            yaml(&format!(
                "{{ name: down, path_prefix: /down, upstream: [\"127.0.0.1:{closed}\"], policy: login }}"
            )),
        );
    let gw = b.start();
    let (api, session) = login(&gw, "taro").await;
    for _ in 0..3 {
        let r = raw_get(
            gw.addr,
            "/down/x",
            &format!("Cookie: {session}\r\nAccept: {HTML}\r\n"),
        )
        .await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(
            r.header("content-type").unwrap().starts_with("text/html"),
            "{:?}",
            r.headers
        );
        assert!(r.text().contains("<html"), "{}", r.text());
        // A keep-alive request (no `Connection: close`).
        let r = raw(
            gw.addr,
            &format!("GET /down/x HTTP/1.1\r\nHost: {HOST}\r\nCookie: {session}\r\n\r\n"),
        )
        .await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.json()["error"], "bad_gateway", "{}", r.text());
        // The gateway does not reuse this connection, and says so.
        assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
        // Other routes keep working, with the same session.
        let r = api.http.get(gw.url("/app/ok")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["headers"]["remote-user"], "taro");
        let r = raw_get(gw.addr, "/public/ok", "").await;
        assert_eq!(r.status, 200);
    }
    // Without a session the down route still asks for a login first.
    let r = raw_get(gw.addr, "/down/x", "").await;
    assert_eq!(r.status, 401);
    // The session is still there.
    let (s, me) = api.get("/me").await;
    assert!(s == 200 || s == 404, "{s} {me}");
    let r = raw_get(gw.addr, "/app", &format!("Cookie: {session}\r\n")).await;
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------------------
// SECURITY 30: WebSocket.

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn ws_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn websocket_needs_a_login_and_then_works() {
    let gw = Gateway::start();
    let r = raw(gw.addr, &ws_request("")).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = raw(gw.addr, &ws_request(&format!("Accept: {HTML}\r\n"))).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some("/_nidan/login?rd=%2Fws"));
    let r = raw(gw.addr, &ws_request("Cookie: nidan_session=forged\r\n")).await;
    assert_eq!(r.status, 401, "{}", r.text());

    let (_api, session) = login(&gw, "taro").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(ws_request(&format!("Cookie: {session}\r\n")).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false, Duration::from_secs(10))
        .await
        .expect("a handshake answer");
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(r.header("sec-websocket-accept"), Some(WS_ACCEPT));
    assert!(
        r.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    );

    for message in ["hello, nidan", "second frame"] {
        let payload = message.as_bytes();
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81, 0x80 | u8::try_from(payload.len()).unwrap()];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        s.write_all(&frame).await.unwrap();
        let want = 2 + payload.len();
        let deadline = Instant::now() + Duration::from_secs(5);
        while buf.len() < want {
            assert!(Instant::now() < deadline, "no echo frame: {buf:?}");
            assert_eq!(
                fill(&mut s, &mut buf, Duration::from_secs(5)).await,
                Some(true)
            );
        }
        let got: Vec<u8> = buf.drain(..want).collect();
        assert_eq!(got[0], 0x81, "{got:?}");
        assert_eq!(usize::from(got[1]), payload.len(), "unmasked, same length");
        assert_eq!(&got[2..], payload);
    }
}

// ---------------------------------------------------------------------------------------
// SECURITY 46: a tunnel ends with what opened it.

/// A tunnel on `path` with these header lines; panics unless it opens.
async fn open_tunnel(gw: &Gateway, path: &str, extra: &str) -> ws::Tunnel {
    ws::open(gw.addr, path, extra)
        .await
        .unwrap_or_else(|status| panic!("the tunnel did not open: {status}"))
}

#[tokio::test]
async fn a_tunnel_ends_within_a_second_of_its_logout_or_revocation() {
    let gw = Gateway::start();
    // Logout from another connection of the same browser.
    let (api, session) = login(&gw, "taro").await;
    let mut tunnel = open_tunnel(&gw, "/ws", &format!("Cookie: {session}\r\n")).await;
    let (s, v) = api.post("/logout", serde_json::json!({})).await;
    assert!(s == 200 || s == 204, "{s} {v}");
    let took = tunnel.closed_within(Duration::from_secs(3)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_millis(1200)),
        "{took:?}"
    );
    // "Sign out everywhere else" from another browser ends this browser's tunnel.
    let (_one, session) = login(&gw, "taro").await;
    let (other, _) = login(&gw, "taro").await;
    let mut tunnel = open_tunnel(&gw, "/ws", &format!("Cookie: {session}\r\n")).await;
    let r = other
        .http
        .delete(gw.url("/_nidan/api/sessions"))
        .header("origin", gw.url("").trim_end_matches('/'))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let took = tunnel.closed_within(Duration::from_secs(3)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_millis(1200)),
        "{took:?}"
    );
    // Another user's tunnel is untouched.
    let (_h, jiro) = login(&gw, "jiro").await;
    let mut kept = open_tunnel(&gw, "/ws", &format!("Cookie: {jiro}\r\n")).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(kept.echoes().await, "an unrelated tunnel stays open");
}

#[tokio::test]
async fn a_tunnel_ends_with_its_session_absolute_timeout() {
    let gw = Gateway::builder()
        .set("session", "{ idle_timeout: 5s, absolute_timeout: 5s }")
        .start();
    let started = Instant::now();
    let (_api, session) = login(&gw, "taro").await;
    let mut tunnel = open_tunnel(&gw, "/ws", &format!("Cookie: {session}\r\n")).await;
    // Kept busy, so the idle timeout is not what ends it.
    while started.elapsed() < Duration::from_secs(3) {
        assert!(tunnel.echoes().await, "ended early");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let took = tunnel.closed_within(Duration::from_secs(6)).await;
    let at = started.elapsed();
    assert!(took.is_some(), "still open at {at:?}");
    // Whole seconds: the session ends 5 s after the login, give or take one.
    assert!(at < Duration::from_millis(6300), "ended at {at:?}");
}

#[tokio::test]
async fn a_tunnel_ends_with_a_password_change_or_a_disabled_account() {
    let gw = Gateway::start();
    let users_file = gw.path("users.yaml");
    let original = std::fs::read_to_string(&users_file).unwrap();
    // A session tunnel, and a Basic one on a route that takes Basic.
    let (_api, session) = login(&gw, "taro").await;
    let mut by_session = open_tunnel(&gw, "/ws", &format!("Cookie: {session}\r\n")).await;
    let basic = base64_basic("taro", PASSWORD);
    let mut by_basic = open_tunnel(
        &gw,
        "/basic/ws",
        &format!("Authorization: Basic {basic}\r\n"),
    )
    .await;
    // The users file changes taro's password (read again within a second).
    let old_hash = original
        .lines()
        .skip_while(|l| !l.contains("id: taro"))
        .find_map(|l| l.trim().strip_prefix("password_hash: "))
        .unwrap()
        .to_owned();
    let changed = original.replacen(
        &old_hash,
        &format!("\"{}\"", hash_password("another-password-2")),
        1,
    );
    std::fs::write(&users_file, changed).unwrap();
    let changed_at = Instant::now();
    for (name, tunnel) in [("session", &mut by_session), ("basic", &mut by_basic)] {
        let took = tunnel.closed_within(Duration::from_secs(5)).await;
        assert!(
            took.is_some(),
            "the {name} tunnel outlived the password change"
        );
    }
    // reload_interval 1s + a look every 250 ms.
    assert!(
        changed_at.elapsed() < Duration::from_millis(2600),
        "{:?}",
        changed_at.elapsed()
    );
    // A disabled account: hanako's tunnel ends.
    let (_api, hanako) = login(&gw, "hanako").await;
    let mut tunnel = open_tunnel(&gw, "/ws", &format!("Cookie: {hanako}\r\n")).await;
    let current = std::fs::read_to_string(&users_file).unwrap();
    let disabled = current.replacen(
        "  - id: hanako\n",
        "  - id: hanako\n    disabled: true\n",
        1,
    );
    assert_ne!(disabled, current);
    std::fs::write(&users_file, disabled).unwrap();
    let took = tunnel.closed_within(Duration::from_secs(5)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_millis(2600)),
        "{took:?}"
    );
}

fn base64_basic(id: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{password}"))
}

// ---------------------------------------------------------------------------------------
// Bodies.

#[tokio::test]
async fn streamed_and_large_bodies_pass_whole() {
    let gw = Gateway::start();
    let (api, _) = login(&gw, "taro").await;
    let r = api
        .http
        .get(gw.url("/__echo/stream?chunks=50"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    let expected: Vec<u8> = (0..50usize)
        .rev()
        .flat_map(|n| std::iter::repeat_n(b'a' + u8::try_from(n % 26).unwrap(), 1024))
        .collect();
    assert_eq!(body.len(), expected.len());
    assert!(body.as_ref() == expected.as_slice(), "chunks out of order");

    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for path in ["/app/upload", "/public/upload"] {
        let r = api
            .http
            .post(gw.url(path))
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["body_length"], 1024 * 1024, "{path}");
        assert_eq!(echo["method"], "POST");
    }
    // A chunked upload of 1 MiB over a raw socket.
    let mut req = format!(
        "POST /public/chunked HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for part in big.chunks(64 * 1024) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_length"], 1024 * 1024);
}

// ---------------------------------------------------------------------------------------
// SECURITY 23 and 20: portal headers.

#[tokio::test]
async fn portal_pages_carry_security_headers_and_cookies_are_not_cached() {
    let gw = Gateway::start();
    let http = client();
    let r = http
        .get(gw.url("/_nidan/login?rd=%2Fapp"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let rp = h["referrer-policy"].to_str().unwrap();
    assert!(
        ["no-referrer", "same-origin", "strict-origin"].contains(&rp),
        "{rp}"
    );
    // Plain HTTP here: no HSTS.
    assert!(h.get("strict-transport-security").is_none());
    if h.get("set-cookie").is_some() {
        assert_eq!(h["cache-control"], "no-store");
    }

    // Every response of a login that sets a cookie says no-store.
    let api = Api::new(&gw);
    let (s, v) = api.start("taro").await;
    assert_eq!(s, 200, "{v}");
    let flow = v["flow"].as_str().unwrap();
    let r = api
        .http
        .post(gw.url(&format!("/_nidan/api/login/{flow}/complete")))
        .json(&serde_json::json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_some());
    assert_eq!(r.headers()["cache-control"], "no-store");

    // Gateway error pages are portal pages too.
    let r = http
        .get(gw.url("/deny"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // Backend responses pass through without portal headers.
    let r = http.get(gw.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-security-policy").is_none());
}

// ---------------------------------------------------------------------------------------
// Round robin.

/// A tiny HTTP server answering every request with its own name, counting requests, so
/// which upstream served a request is known exactly (two echo backends would answer
/// identically). Stopping it closes the listener and every open connection.
struct Named {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Named {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, t) = (hits.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let h = h.clone();
                let conn = tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        while find(&buf, b"\r\n\r\n").is_none() {
                            if fill(&mut s, &mut buf, Duration::from_secs(30)).await != Some(true) {
                                return;
                            }
                        }
                        let end = find(&buf, b"\r\n\r\n").unwrap();
                        buf.drain(..end + 4);
                        h.fetch_add(1, Ordering::SeqCst);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
                t.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { addr, hits, tasks }
    }

    async fn stop(&self) {
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap());
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_alternate_between_upstreams() {
    let a = Named::start("A").await;
    let b = Named::start("B").await;
    let mut builder = Gateway::builder();
    builder
        .doc()
        .get_mut("routes")
        .unwrap()
        .as_sequence_mut()
        .unwrap()
        .insert(
            0,
            yaml(&format!(
                "{{ name: rr, path_prefix: /rr, upstream: [\"{}\", \"{}\"], policy: bypass }}",
                a.addr, b.addr
            )),
        );
    let gw = builder.start();
    let http = client();
    let mut seen = Vec::new();
    for _ in 0..8 {
        let r = http.get(gw.url("/rr/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        seen.push(r.text().await.unwrap());
    }
    // Strict alternation, whichever comes first.
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "{seen:?}");
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), 4);
    assert_eq!(b.hits.load(Ordering::SeqCst), 4);

    // With B gone, B's turns fail with 502 (or, if the gateway retries on another
    // upstream, succeed on A); A keeps answering and nothing else breaks.
    b.stop().await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http.get(gw.url("/rr/x")).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        if status == 200 {
            assert_eq!(text, "A");
        }
        statuses.push(status);
    }
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 3,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );
    assert_eq!(b.hits.load(Ordering::SeqCst), 4);
    let r = http.get(gw.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    a.stop().await;
}

// ---------------------------------------------------------------------------------------
// SECURITY 34: graceful shutdown.

fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name; `Z` is a zombie (exited).
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish() {
    let gw = Gateway::builder().set("server.grace_period", "3s").start();
    let (api, _) = login(&gw, "taro").await;
    let pid = gw.pid().unwrap();
    let url = gw.url("/__echo/slow?ms=1500");
    let http = api.http.clone();
    let started = Instant::now();
    let inflight = tokio::spawn(async move { http.get(url).send().await });
    // Let the request reach the backend before the signal.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let r = tokio::time::timeout(Duration::from_secs(10), inflight)
        .await
        .expect("the in-flight request did not finish")
        .unwrap()
        .expect("the in-flight request failed");
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/__echo/slow");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // And the process does exit.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !exited(pid) {
        assert!(
            Instant::now() < deadline,
            "the gateway did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The access log: one line per request with the same fields, written in batches off the
// worker threads, and none lost at shutdown.

#[tokio::test]
async fn the_access_log_has_one_line_per_request_and_loses_none_at_shutdown() {
    let mut gw = Gateway::builder()
        .set("server.admin_listen", "\"127.0.0.1:1\"")
        .start();
    let (api, _) = login(&gw, "taro").await;
    let http = plain();
    for i in 0..20 {
        let r = http
            .get(gw.url(&format!("/public/access-{i}?secret=q{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for i in 0..5 {
        let r = http
            .get(gw.url(&format!("/app/access-{i}")))
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
    let r = api
        .http
        .get(gw.url("/app/access-taro"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = http
        .get(format!("http://{}/metrics", gw.admin.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("nidan_access_log_dropped_total 0"),
        "{metrics}"
    );
    // The newest lines may still wait for the writer: SIGINT writes them before the exit.
    gw.interrupt();
    let log = gw.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" INFO access: "))
        .collect();
    let one = |path: &str, rest: &str| {
        let found: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains(&format!(" path=\"{path}\" ")))
            .collect();
        assert_eq!(found.len(), 1, "{path}: {found:?}\n{log}");
        assert!(found[0].contains(rest), "{path}: {}", found[0]);
        assert!(found[0].starts_with("20"), "timestamp first: {}", found[0]);
        assert!(found[0].contains(" micros="), "{}", found[0]);
    };
    for i in 0..20 {
        one(
            &format!("/public/access-{i}"),
            "method=GET path=\"/public/access-",
        );
        one(
            &format!("/public/access-{i}"),
            " status=200 route=\"public\" user=\"-\" client=127.0.0.1 ",
        );
    }
    for i in 0..5 {
        one(
            &format!("/app/access-{i}"),
            " status=302 route=\"app\" user=\"-\" client=127.0.0.1 ",
        );
    }
    one(
        "/app/access-taro",
        " status=200 route=\"app\" user=\"taro\" client=127.0.0.1 ",
    );
    // The query is never logged.
    assert!(!log.contains("secret=q"), "{log}");
}
