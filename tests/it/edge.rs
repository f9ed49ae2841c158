//! The request edge through the real binary (SECURITY 25, 38, 39; DESIGN "The request
//! edge"): request-target forms, Host, letter case, double encodings and size limits, each
//! tried as an attacker would. Requests are written byte for byte over a socket, and the
//! backend is a raw TCP one that records the exact request head it gets, so every test
//! shows what was decided *and* what was forwarded.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// A backend that answers every request with its own request head, and remembers it.

struct RawBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawBackend {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let seen = seen.clone();
                std::thread::spawn(move || serve_one(conn, &seen));
            }
        });
        Self { addr, heads }
    }

    /// Every request head received so far.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The request lines received so far.
    fn lines(&self) -> Vec<String> {
        self.heads()
            .iter()
            .map(|h| h.lines().next().unwrap_or("").to_owned())
            .collect()
    }

    fn clear(&self) {
        self.heads.lock().unwrap().clear();
    }
}

fn serve_one(mut conn: TcpStream, seen: &Mutex<Vec<String>>) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while find(&buf, b"\r\n\r\n").is_none() {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let end = find(&buf, b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    seen.lock().unwrap().push(head.clone());
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
        head.len()
    );
    let _ = conn.write_all(reply.as_bytes());
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` in a recorded request head.
fn header_in<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Raw requests.

struct Answer {
    status: u16,
    body: String,
}

/// Sends `request` as it is and reads the answer until the gateway closes. `0` when the
/// connection closed without an answer.
fn send(gw: &Gateway, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // A refused request may close before all of it is written; the answer still counts.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Answer { status, body }
}

/// `METHOD target HTTP/1.1` with `headers` (each `Name: value`), closing after the answer.
fn request(gw: &Gateway, line: &str, headers: &[&str]) -> Answer {
    let mut req = format!("{line}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    send(gw, req.as_bytes())
}

fn start(routes: &str, backend: &RawBackend) -> Gateway {
    let routes = routes.replace("RAW", &backend.addr.to_string());
    Gateway::builder().set("routes", &routes).start()
}

/// Routes by path: `/admin` two_factor, `/public` bypass, everything else login.
fn path_gateway(backend: &RawBackend) -> Gateway {
    start(
        r#"
- { name: admin, path_prefix: /admin, upstream: ["RAW"], policy: two_factor }
- { name: public, path_prefix: /public, upstream: ["RAW"], policy: bypass }
- { name: app, hosts: ["*"], path_prefix: /, upstream: ["RAW"], policy: login }
"#,
        backend,
    )
}

/// Routes by host: `wiki.test` and `*.corp.test` need a login, any other host is public.
fn host_gateway(backend: &RawBackend) -> Gateway {
    start(
        r#"
- { name: wiki, hosts: [wiki.test], path_prefix: /, upstream: ["RAW"], policy: login }
- { name: corp, hosts: ["*.corp.test"], path_prefix: /, upstream: ["RAW"], policy: login }
- { name: open, hosts: ["*"], path_prefix: /, upstream: ["RAW"], policy: bypass }
"#,
        backend,
    )
}

/// A one-step session for taro (2-step off): `Cookie:` header line.
async fn taro_cookie(gw: &Gateway) -> String {
    let r = password_only_login(&plain(), gw, "taro").await;
    let session = set_cookie(&r, "nidan_session").expect("a session cookie");
    format!("Cookie: nidan_session={session}")
}

// ---------------------------------------------------------------------------------------
// Target forms.

#[tokio::test]
async fn targets_that_are_not_origin_form_are_refused() {
    let backend = RawBackend::start();
    let gw = path_gateway(&backend);
    let cookie = taro_cookie(&gw).await;
    // The session is good for the login route, and the backend answers.
    let ok = request(&gw, "GET /x HTTP/1.1", &["Host: wiki.test", &cookie]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    backend.clear();
    // Each was decided as `/` (a login route the session meets) and forwarded as sent,
    // which werkzeug and http.server serve as the two_factor `/admin/x`.
    for target in [
        "admin/x",
        "x:/admin/x",
        "mailto:/admin/x",
        "foo:bar://h/admin/x",
        "http:/admin/x",
        "ftp://wiki.test/admin/x",
    ] {
        let a = request(
            &gw,
            &format!("GET {target} HTTP/1.1"),
            &["Host: wiki.test", &cookie],
        );
        assert_eq!(a.status, 400, "{target}: {}", a.body);
    }
    // `*` is for OPTIONS only; OPTIONS * is answered here, with nothing forwarded.
    let a = request(&gw, "GET * HTTP/1.1", &["Host: wiki.test", &cookie]);
    assert_eq!(a.status, 400);
    let a = request(&gw, "OPTIONS * HTTP/1.1", &["Host: wiki.test"]);
    assert_eq!(a.status, 200);
    // CONNECT is not a gateway's business.
    let a = request(
        &gw,
        "CONNECT wiki.test:443 HTTP/1.1",
        &["Host: wiki.test:443", &cookie],
    );
    assert_eq!(a.status, 405, "{}", a.body);
    assert_eq!(backend.heads(), Vec::<String>::new());
}

#[tokio::test]
async fn the_request_line_upstream_is_rebuilt_from_the_decision() {
    let backend = RawBackend::start();
    let gw = host_gateway(&backend);
    for (line, forwarded) in [
        ("GET //a/./b/../c?x=1 HTTP/1.1", "GET /a/c?x=1 HTTP/1.1"),
        ("GET /%61%62c HTTP/1.1", "GET /abc HTTP/1.1"),
        (
            "GET http://open.test/p?q=%2F HTTP/1.1",
            "GET /p?q=%2F HTTP/1.1",
        ),
        ("GET HTTP://OPEN.test./p HTTP/1.1", "GET /p HTTP/1.1"),
        ("GET http://open.test HTTP/1.1", "GET / HTTP/1.1"),
        ("GET http://open.test?x HTTP/1.1", "GET /?x HTTP/1.1"),
    ] {
        backend.clear();
        // Absolute-form carries its own host.
        let host: &[&str] = if line.contains("://") {
            &[]
        } else {
            &["Host: open.test"]
        };
        let a = request(&gw, line, host);
        assert_eq!(a.status, 200, "{line}: {}", a.body);
        assert_eq!(backend.lines(), vec![forwarded.to_owned()], "{line}");
        let head = &backend.heads()[0];
        assert_eq!(header_in(head, "host"), vec!["open.test"], "{head}");
    }
}

// ---------------------------------------------------------------------------------------
// Host.

#[tokio::test]
async fn absolute_form_is_decided_on_its_own_authority() {
    let backend = RawBackend::start();
    let gw = host_gateway(&backend);
    // Without a Host header the request was routed on host "" (the public `*` route),
    // and pingora then sent `Host: wiki.test` upstream: the protected vhost, anonymously.
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let a = request(&gw, &format!("GET http://wiki.test/secret {version}"), &[]);
        assert_eq!(a.status, 401, "{version}: {}", a.body);
        let a = request(&gw, &format!("GET http://Wiki.Test./secret {version}"), &[]);
        assert_eq!(a.status, 401, "{version}: {}", a.body);
    }
    // A Host header that disagrees with the target's authority is refused outright.
    let a = request(
        &gw,
        "GET http://wiki.test/secret HTTP/1.1",
        &["Host: open.test"],
    );
    assert_eq!(a.status, 400, "{}", a.body);
    let a = request(
        &gw,
        "GET http://open.test/secret HTTP/1.1",
        &["Host: wiki.test"],
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(backend.heads(), Vec::<String>::new());
    // A public host in absolute-form goes upstream in origin-form, with that host.
    let a = request(&gw, "GET http://open.test:8080/x HTTP/1.0", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    let head = &backend.heads()[0];
    assert!(head.starts_with("GET /x HTTP/1."), "{head}");
    assert_eq!(header_in(head, "host"), vec!["open.test:8080"], "{head}");
    assert_eq!(header_in(head, "x-forwarded-host"), vec!["open.test:8080"]);
}

/// The upstream request is rebuilt from the decision (issue 14 edits it as plain `http`
/// parts): one spelling per header name, the gateway's headers exactly once, whatever case
/// the client used for the ones it may not send.
#[tokio::test]
async fn the_backend_gets_one_spelling_and_one_copy_of_each_header() {
    let backend = RawBackend::start();
    let gw = host_gateway(&backend);
    let cookie = taro_cookie(&gw).await;
    let a = request(
        &gw,
        "GET /a/./b?q=1 HTTP/1.1",
        &[
            "Host: Wiki.Test",
            &cookie,
            "X-App-Trace: T1",
            "REMOTE-USER: admin",
            "remote_user: admin",
            "X-Forwarded-For: 6.6.6.6",
            "X-FORWARDED-HOST: evil.test",
            "Accept: */*",
        ],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let head = &backend.heads()[0];
    assert!(head.starts_with("GET /a/b?q=1 HTTP/1.1\r\n"), "{head}");
    // Names in one spelling: lower case, pingora's titled form for the common ones.
    assert!(head.contains("\r\nx-app-trace: T1\r\n"), "{head}");
    assert!(head.contains("\r\nHost: wiki.test\r\n"), "{head}");
    assert!(!head.contains("X-App-Trace"), "{head}");
    for (name, value) in [
        ("remote-user", "taro"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-host", "wiki.test"),
        ("x-forwarded-proto", "http"),
        ("host", "wiki.test"),
        ("accept", "*/*"),
    ] {
        assert_eq!(header_in(head, name), vec![value], "{name} in {head}");
    }
    assert!(header_in(head, "remote_user").is_empty(), "{head}");
    // The session cookie stays with the gateway.
    assert!(header_in(head, "cookie").is_empty(), "{head}");
}

#[tokio::test]
async fn host_syntax_is_strict_and_normalised() {
    let backend = RawBackend::start();
    let gw = host_gateway(&backend);
    // nginx cuts these at the first colon and serves wiki.test; read at the last colon
    // they matched no login route and fell through to the public one.
    for host in [
        "wiki.test:80:80",
        "wiki.test:1:2:3",
        "wiki.test:",
        "wiki.test:x",
        "wiki.test:99999",
        "wiki.test..",
        "wiki.test,open.test",
        "wiki.test/x",
        "user@wiki.test",
        "wiki%2etest",
        "[::1",
        "",
    ] {
        let a = request(&gw, "GET /secret HTTP/1.1", &[&format!("Host: {host}")]);
        assert_eq!(a.status, 400, "Host: {host}: {}", a.body);
    }
    // HTTP/1.1 needs a Host; exactly one.
    let a = request(&gw, "GET /secret HTTP/1.1", &[]);
    assert_eq!(a.status, 400, "{}", a.body);
    let a = request(
        &gw,
        "GET /secret HTTP/1.1",
        &["Host: open.test", "Host: wiki.test"],
    );
    assert_eq!(a.status, 400, "{}", a.body);
    // Case, a trailing dot and the port do not take a request off its route.
    for host in ["WIKI.test", "wiki.test.", "Wiki.Test.:8080", "wiki.test:80"] {
        let a = request(&gw, "GET /secret HTTP/1.1", &[&format!("Host: {host}")]);
        assert_eq!(a.status, 401, "Host: {host}: {}", a.body);
    }
    assert_eq!(backend.heads(), Vec::<String>::new());
    // What the decision used is what the backend gets.
    let a = request(&gw, "GET /x HTTP/1.1", &["Host: OPEN.Test.:8080"]);
    assert_eq!(a.status, 200, "{}", a.body);
    let head = &backend.heads()[0];
    assert_eq!(header_in(head, "host"), vec!["open.test:8080"], "{head}");
    assert_eq!(header_in(head, "x-forwarded-host"), vec!["open.test:8080"]);
    backend.clear();
    let a = request(&gw, "GET /x HTTP/1.1", &["Host: [0:0::1]:8443"]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(header_in(&backend.heads()[0], "host"), vec!["[::1]:8443"]);
    // HTTP/1.0 may leave Host out: only `*` routes match then.
    backend.clear();
    let a = request(&gw, "GET /x HTTP/1.0", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn wildcard_hosts_cover_every_depth() {
    let backend = RawBackend::start();
    let gw = host_gateway(&backend);
    // `*.corp.test` matched one label only, so `a.b.corp.test` fell through to the public
    // route and reached nginx's `*.corp.test` server.
    for host in [
        "a.corp.test",
        "a.b.corp.test",
        "x.y.z.corp.test",
        "A.B.Corp.Test.",
    ] {
        let a = request(&gw, "GET /x HTTP/1.1", &[&format!("Host: {host}")]);
        assert_eq!(a.status, 401, "Host: {host}: {}", a.body);
    }
    assert_eq!(backend.heads(), Vec::<String>::new());
    // The domain itself is not below itself.
    let a = request(&gw, "GET /x HTTP/1.1", &["Host: corp.test"]);
    assert_eq!(a.status, 200, "{}", a.body);
}

// ---------------------------------------------------------------------------------------
// Paths.

#[tokio::test]
async fn double_encodings_and_letter_case_never_weaken_the_rule() {
    let backend = RawBackend::start();
    let gw = path_gateway(&backend);
    let cookie = taro_cookie(&gw).await;
    // `%2561` is `a` to a backend that decodes twice.
    for path in [
        "/%2561dmin/x",
        "/admin%252fx",
        "/%2541DMIN/x",
        "/x/%252e%252e/admin",
    ] {
        let a = request(
            &gw,
            &format!("GET {path} HTTP/1.1"),
            &["Host: wiki.test", &cookie],
        );
        assert_eq!(a.status, 400, "{path}: {}", a.body);
    }
    // Many backends fold case: `/ADMIN/x` is `/admin/x` to them, which needs both steps;
    // taro's one-step session is sent to step up, not through.
    for path in ["/admin/x", "/ADMIN/x", "/Admin/x", "/aDMIN"] {
        let a = request(
            &gw,
            &format!("GET {path} HTTP/1.1"),
            &["Host: wiki.test", &cookie, "Accept: application/json"],
        );
        assert_eq!(a.status, 401, "{path}: {}", a.body);
    }
    assert_eq!(backend.heads(), Vec::<String>::new());
    // The login route itself, and public paths in any case, still work.
    let a = request(&gw, "GET /Other HTTP/1.1", &["Host: wiki.test", &cookie]);
    assert_eq!(a.status, 200, "{}", a.body);
    let a = request(&gw, "GET /public/x HTTP/1.1", &["Host: wiki.test"]);
    assert_eq!(a.status, 200, "{}", a.body);
    let a = request(&gw, "GET /PUBLIC/x HTTP/1.1", &["Host: wiki.test"]);
    assert_eq!(
        a.status, 401,
        "decided as the login route it goes to: {}",
        a.body
    );
}

/// A `#` anywhere in a target, and percent-escapes that do not spell UTF-8, are refused
/// (SECURITY 25, 45): nidan decided on the part before `#` while the whole target went on,
/// and kept `%C0%AE` (an overlong `.`, read as one by lenient decoders: `/public/%C0%AE%C0%AE`
/// is `/public/..` to them) as an opaque byte of a bypass path.
#[tokio::test]
async fn fragments_and_escapes_that_are_not_utf8_are_refused() {
    let backend = RawBackend::start();
    let gw = path_gateway(&backend);
    let cookie = taro_cookie(&gw).await;
    for target in [
        "/public#/../admin/x",
        "/public/x#",
        "/public/x?q=1#/../../admin/x",
        "http://wiki.test/public#/../admin/x",
        "http://wiki.test#/admin/x",
        // Overlong forms of `.`, `/` and `\`.
        "/public/%C0%AE%C0%AE/admin/x",
        "/public/%c0%ae%c0%ae/admin/x",
        "/public/%E0%80%AE%E0%80%AE/admin/x",
        "/public/..%C0%AFadmin/x",
        "/public/..%C1%9Cadmin/x",
        "/public/..%E0%80%AFadmin/x",
        "/public/..%F0%80%80%AFadmin/x",
        // Lone continuation bytes, cut sequences, surrogates, beyond U+10FFFF, never UTF-8.
        "/public/%80x",
        "/public/%BF",
        "/public/%C3",
        "/public/%C3x",
        "/public/%E3%81",
        "/public/%ED%A0%80",
        "/public/%ED%BF%BF",
        "/public/%F4%90%80%80",
        "/public/%F8%88%80%80%80",
        "/public/%FE",
        "/public/%FF",
    ] {
        let a = request(
            &gw,
            &format!("GET {target} HTTP/1.1"),
            &["Host: wiki.test", &cookie],
        );
        assert_eq!(a.status, 400, "{target}: {}", a.body);
    }
    assert_eq!(backend.heads(), Vec::<String>::new());
    // UTF-8, escaped, and an escaped `#`, are path characters like any other.
    for (target, forwarded) in [
        ("/public/%E3%81%82", "GET /public/%E3%81%82 HTTP/1.1"),
        ("/public/%c3%a9", "GET /public/%C3%A9 HTTP/1.1"),
        ("/public/%F0%9F%98%80", "GET /public/%F0%9F%98%80 HTTP/1.1"),
        ("/public/a%23b", "GET /public/a%23b HTTP/1.1"),
        ("/public/x?q=%23", "GET /public/x?q=%23 HTTP/1.1"),
    ] {
        backend.clear();
        let a = request(&gw, &format!("GET {target} HTTP/1.1"), &["Host: wiki.test"]);
        assert_eq!(a.status, 200, "{target}: {}", a.body);
        assert_eq!(backend.lines(), vec![forwarded.to_owned()], "{target}");
    }
}

#[tokio::test]
async fn a_case_sensitive_backend_is_taken_at_its_word() {
    let backend = RawBackend::start();
    let gw = start(
        r#"
- { name: admin, path_prefix: /admin, upstream: ["RAW"], policy: two_factor }
- { name: app, hosts: ["*"], path_prefix: /, upstream: ["RAW"], policy: login, case_sensitive: true }
"#,
        &backend,
    );
    let cookie = taro_cookie(&gw).await;
    let a = request(&gw, "GET /ADMIN/x HTTP/1.1", &["Host: wiki.test", &cookie]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(backend.lines(), vec!["GET /ADMIN/x HTTP/1.1".to_owned()]);
}

// ---------------------------------------------------------------------------------------
// Sizes (SECURITY 39).

#[tokio::test]
async fn request_line_and_header_sizes_are_bounded() {
    let backend = RawBackend::start();
    let gw = Gateway::builder()
        .set(
            "routes",
            &format!(
                r#"[{{ name: open, hosts: ["*"], path_prefix: /, upstream: ["{}"], policy: bypass }}]"#,
                backend.addr
            ),
        )
        .set("server.limits", "{ max_request_line: 2048, max_header_bytes: 8192 }")
        .start();
    let fits = format!("GET /{} HTTP/1.1", "a".repeat(2000));
    let a = request(&gw, &fits, &["Host: open.test"]);
    assert_eq!(a.status, 200);
    let long = format!("GET /{} HTTP/1.1", "a".repeat(2100));
    let a = request(&gw, &long, &["Host: open.test"]);
    assert_eq!(a.status, 414, "{}", a.body);
    let header = format!("X-Big: {}", "b".repeat(7000));
    let a = request(&gw, "GET / HTTP/1.1", &["Host: open.test", &header]);
    assert_eq!(a.status, 200);
    let many: Vec<String> = (0..5)
        .map(|i| format!("X-Big-{i}: {}", "b".repeat(2000)))
        .collect();
    let mut headers: Vec<&str> = many.iter().map(String::as_str).collect();
    headers.push("Host: open.test");
    let a = request(&gw, "GET / HTTP/1.1", &headers);
    assert_eq!(a.status, 431, "{}", a.body);
    let a = request(
        &gw,
        "GET / HTTP/1.1",
        &[&format!("Host: {}.test", "h".repeat(9000))],
    );
    assert_eq!(a.status, 431, "{}", a.body);
    assert_eq!(backend.heads().len(), 2);
}

/// The process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Anonymous requests with large values (Host on passkey login start, return addresses on
/// ID steps): what the gateway keeps for them is bounded in bytes. 300 passkey starts with
/// a 200 KB Host used to grow the process by about 120 MiB.
#[tokio::test]
async fn large_anonymous_values_do_not_grow_memory() {
    // Memory is what is measured here: the per-address limits on anonymous work (tested in
    // tests/it/budgets.rs) are raised so every request of the flood is served.
    // The passkey origin comes from `public_url` (SECURITY 44), so the huge Hosts below are
    // read and refused by nothing but the edge and the byte bounds.
    let gw = Gateway::builder()
        .set("portal.public_url", "http://login.test")
        .set("passkeys.enabled", "true")
        .set("login_limits.id_steps_per_address", "100000")
        .set("login_limits.passkey_starts_per_address", "100000")
        .start();
    let pid = gw.pid().unwrap();
    let flood = |rounds: usize, gw: &Gateway| {
        let big_host = format!("{}.test", "h".repeat(200 * 1024));
        let longest_host = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        // The largest the JSON API takes (16 KiB bodies).
        let return_to = format!("/{}", "r".repeat(15 * 1024));
        let id_step = json!({"id": "taro", "return_to": return_to}).to_string();
        let passkey_body = json!({"return_to": return_to}).to_string();
        for i in 0..rounds {
            for host in [&big_host, &longest_host] {
                let req = format!(
                    "POST /_nidan/api/passkeys/login/start HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{passkey_body}",
                    passkey_body.len()
                );
                let a = send(gw, req.as_bytes());
                assert!(
                    matches!(a.status, 200 | 431),
                    "{i}: {} {}",
                    a.status,
                    a.body
                );
            }
            let req = format!(
                "POST /_nidan/api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{id_step}",
                id_step.len()
            );
            let a = send(gw, req.as_bytes());
            assert!(
                matches!(a.status, 200 | 429),
                "{i}: {} {}",
                a.status,
                a.body
            );
        }
    };
    // Warm up: allocator pools, caches, connections.
    flood(50, &gw);
    let before = rss_kib(pid);
    let started = Instant::now();
    flood(300, &gw);
    let after = rss_kib(pid);
    let grown = after.saturating_sub(before);
    eprintln!(
        "RSS {before} KiB -> {after} KiB (+{grown} KiB) in {:?}",
        started.elapsed()
    );
    assert!(grown < 16 * 1024, "grew by {grown} KiB");
}

// ---------------------------------------------------------------------------------------
// Connections and heads bounded while they are read (SECURITY 42).

/// The standard test gateway (`/public` is a bypass route) with these `server.limits`.
fn limited_gateway(limits: &str) -> Gateway {
    Gateway::builder().set("server.limits", limits).start()
}

/// A connection to the gateway from `from` (a 127.0.0.x address: another client network).
fn connect_from(gw: &Gateway, from: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&gw.addr.into()).unwrap();
    socket.into()
}

/// Reads what the gateway sends until it closes (or `limit` passes): the status line's
/// code (0: closed without an answer) and how long it took.
fn answer_within(s: &mut TcpStream, limit: Duration) -> (u16, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
        if started.elapsed() > limit {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, started.elapsed())
}

/// A head that never ends is answered 431 as soon as it crosses the limit, long before
/// pingora's own 1 MiB: the attacker's 100 × 8000-byte lines are never all read.
#[tokio::test]
async fn a_head_past_the_limit_is_refused_while_it_is_read() {
    let gw = limited_gateway("{ max_header_bytes: 32768 }");
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: open.test\r\n")
        .unwrap();
    let pad = format!("X-Pad: {}\r\n", "a".repeat(8000));
    let mut written = 0;
    for _ in 0..100 {
        match s.write_all(pad.as_bytes()) {
            Ok(()) => written += pad.len(),
            Err(_) => break,
        }
        // Let the gateway read what was sent, so a refusal shows up before the rest.
        std::thread::sleep(Duration::from_millis(2));
    }
    let (status, _) = answer_within(&mut s, Duration::from_secs(5));
    assert_eq!(status, 431, "after {written} bytes");
    // The request line alone, past its limit, is a 414 before its end arrives.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    let _ = s.write_all(format!("GET /{}", "a".repeat(20_000)).as_bytes());
    let (status, _) = answer_within(&mut s, Duration::from_secs(5));
    assert_eq!(status, 414);
    // Heads within the limits still pass.
    let a = request(
        &gw,
        "GET /public/ HTTP/1.1",
        &["Host: open.test", &format!("X-Ok: {}", "o".repeat(30_000))],
    );
    assert_eq!(a.status, 200, "{}", a.body);
}

/// A head fed a byte at a time is answered 408 at the head deadline, and a connection
/// that sends nothing is closed at it; a kept-alive connection is closed once idle.
#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_at_their_deadline() {
    let gw = limited_gateway("{ head_timeout: 2s, idle_timeout: 1s }");
    let started = Instant::now();
    let mut slow = TcpStream::connect(gw.addr).unwrap();
    let mut silent = TcpStream::connect(gw.addr).unwrap();
    let feeder = {
        let mut s = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for b in b"GET /public/ HTTP/1.1\r\nHost: open.test\r\nX-Slow: "
                .iter()
                .chain([b'a'; 100].iter())
            {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (status, _) = answer_within(&mut slow, Duration::from_secs(6));
    assert_eq!(status, 408);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3500), "closed after {took:?}");
    let (status, took) = answer_within(&mut silent, Duration::from_secs(6));
    assert_eq!(
        status, 0,
        "a connection that never sent a byte is closed quietly"
    );
    assert!(took < Duration::from_millis(3000), "closed after {took:?}");
    feeder.join().unwrap();
    // Kept alive after an answer, then idle: closed after `idle_timeout`.
    let mut kept = TcpStream::connect(gw.addr).unwrap();
    kept.write_all(b"GET /public/ HTTP/1.1\r\nHost: open.test\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let (status, took) = answer_within(&mut kept, Duration::from_secs(6));
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "{took:?} after the answer"
    );
    let _ = started;
    // A kept-alive connection serves its next request while it is not idle for long.
    let mut kept = TcpStream::connect(gw.addr).unwrap();
    for _ in 0..3 {
        kept.write_all(b"GET /public/ HTTP/1.1\r\nHost: open.test\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 12];
        kept.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        let mut rest = [0u8; 65536];
        kept.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = kept.read(&mut rest);
        std::thread::sleep(Duration::from_millis(400));
    }
}

/// Open connections are capped per client network and in all: over the cap a connection
/// gets 503 and is closed at once, while other networks are still served.
#[tokio::test]
async fn open_connections_are_capped_per_network_and_in_all() {
    let gw = limited_gateway("{ max_connections_per_network: 4, max_connections: 10 }");
    let held: Vec<TcpStream> = (0..4).map(|_| connect_from(&gw, "127.0.0.2")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = connect_from(&gw, "127.0.0.2");
    let (status, took) = answer_within(&mut over, Duration::from_secs(3));
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Another network is served meanwhile.
    let mut other = connect_from(&gw, "127.0.0.3");
    other
        .write_all(b"GET /public/ HTTP/1.1\r\nHost: open.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(answer_within(&mut other, Duration::from_secs(5)).0, 200);
    // The total: 4 + 4 more from two other networks, then 2 more reach the 10.
    let more: Vec<TcpStream> = ["127.0.0.4", "127.0.0.5"]
        .iter()
        .flat_map(|ip| (0..3).map(|_| connect_from(&gw, ip)).collect::<Vec<_>>())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = connect_from(&gw, "127.0.0.6");
    assert_eq!(answer_within(&mut over, Duration::from_secs(3)).0, 503);
    // Closing some gives their places back.
    drop(held);
    drop(more);
    std::thread::sleep(Duration::from_millis(300));
    let mut again = connect_from(&gw, "127.0.0.2");
    again
        .write_all(b"GET /public/ HTTP/1.1\r\nHost: open.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(answer_within(&mut again, Duration::from_secs(5)).0, 200);
}

/// 1,000 slow or oversized heads from eight client addresses: the gateway's memory grows
/// by less than 64 MiB, every one of them is closed within the head deadline, and a normal
/// client is answered all along (the review's flood cost ~1.4 MiB a connection, for ever).
#[tokio::test]
async fn a_flood_of_slow_and_big_heads_is_bounded_and_others_are_served() {
    let gw = limited_gateway("{ head_timeout: 3s }");
    let pid = gw.pid().unwrap();
    let a = request(&gw, "GET /public/ HTTP/1.1", &["Host: open.test"]);
    assert_eq!(a.status, 200);
    let before = rss_kib(pid);
    let started = Instant::now();
    let mut conns = Vec::new();
    for i in 0..1000 {
        let from = format!("127.0.0.{}", 2 + i % 8);
        let mut s = connect_from(&gw, &from);
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // Half stall just under the limit, half go over it.
        let pad = if i % 2 == 0 { 30_000 } else { 50_000 };
        let head = format!(
            "GET /public/x HTTP/1.1\r\nHost: open.test\r\nX-Pad: {}",
            "a".repeat(pad)
        );
        let _ = s.write_all(head.as_bytes());
        conns.push(s);
    }
    let opened = started.elapsed();
    // The peak of the gateway's memory while the flood is open.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    // A normal client meanwhile, several times.
    let mut normal = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let a = request(&gw, "GET /public/ HTTP/1.1", &["Host: open.test"]);
        assert_eq!(a.status, 200);
        normal = normal.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every flood connection is closed by the deadline (3 s after its accept) + slack.
    let mut statuses = std::collections::BTreeMap::new();
    for s in &mut conns {
        let left = Duration::from_secs(6)
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        let (status, _) = answer_within(s, left);
        *statuses.entry(status).or_insert(0) += 1;
    }
    let closed = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    eprintln!(
        "opened 1000 in {opened:?}; RSS {before} -> {peak} KiB; normal client {normal:?}; \
         all closed by {closed:?}: {statuses:?}"
    );
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "grew by {} KiB",
        peak - before
    );
    assert!(closed < Duration::from_secs(7), "{closed:?}");
    assert!(
        statuses.keys().all(|s| [408, 431].contains(s)),
        "{statuses:?}"
    );
    assert!(normal < Duration::from_secs(2), "{normal:?}");
}
