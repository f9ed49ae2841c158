//! Password login through the real binary: the HTML flow without JavaScript, the JSON API,
//! no user enumeration, password length, open redirects, CSRF, sessions and timeouts,
//! disabled users and the two_factor route (SECURITY 3, 4, 18, 19, 21, 22, 32).
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SESSION: &str = "nidan_session";
const CSRF: &str = "nidan_csrf";

/// The `value` of the hidden input `name` in an HTML page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&#x2f;", "/")
            .replace("&amp;", "&"),
    )
}

async fn post_json(
    http: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    body: Value,
    cookie: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http.post(gw.url(&format!("/_nidan/api{path}"))).json(&body);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{SESSION}={c}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let v = r.json().await.unwrap_or(Value::Null);
    (status, headers, v)
}

/// A whole API login with a plain client; returns the session cookie value and the body.
async fn login_token(
    gw: &Gateway,
    user: &str,
    password: &str,
    rd: Option<&str>,
) -> (String, Value) {
    let mut start = json!({"id": user});
    if let Some(rd) = rd {
        start["return_to"] = json!(rd);
    }
    let more = json!({"password": password});
    let (_, r) = api_login(&plain(), &gw.url(""), gw, start, more, &[]).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let token = set_cookie(&r, SESSION).expect("a session cookie");
    (token, r.json().await.unwrap())
}

async fn me(gw: &Gateway, token: &str) -> (u16, Value) {
    let r = plain()
        .get(gw.url("/_nidan/api/me"))
        .header("cookie", format!("{SESSION}={token}"))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A proxied GET as a non-browser client with a session cookie.
async fn app_get(gw: &Gateway, path: &str, token: &str) -> reqwest::Response {
    plain()
        .get(gw.url(path))
        .header("cookie", format!("{SESSION}={token}"))
        .send()
        .await
        .unwrap()
}

// --- the HTML flow --------------------------------------------------------------------

#[tokio::test]
async fn html_login_without_javascript() {
    let gw = Gateway::start();
    let http = client();
    // A browser is sent to the login page with its return address.
    let r = http
        .get(gw.url("/app/page?q=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let login = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(login, "/_nidan/login?rd=%2Fapp%2Fpage%3Fq%3D1");

    let r = http.get(gw.url(&login)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csrf_cookie = set_cookie(&r, CSRF).expect("the login page sets the CSRF cookie");
    assert_eq!(csrf_cookie.len(), 43);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert_eq!(hidden(&html, "csrf").as_deref(), Some(csrf_cookie.as_str()));
    let rd = hidden(&html, "rd").unwrap();
    assert_eq!(rd, "/app/page?q=1");

    let r = http
        .post(gw.url("/_nidan/login"))
        .form(&[("id", "taro"), ("rd", rd.as_str()), ("csrf", &csrf_cookie)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let flow_url = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(flow_url.starts_with("/_nidan/login/"), "{flow_url}");

    let r = http.get(gw.url(&flow_url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"password\""), "{html}");
    assert!(
        !html.contains("name=\"code\""),
        "taro has no 2-step: {html}"
    );
    // The same CSRF token is repeated on the flow page.
    assert_eq!(hidden(&html, "csrf").as_deref(), Some(csrf_cookie.as_str()));

    let r = http
        .post(gw.url(&flow_url))
        .form(&[("password", PASSWORD), ("csrf", &csrf_cookie)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/app/page?q=1");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let token = set_cookie(&r, SESSION).unwrap();
    assert_eq!(token.len(), 43);
    let sc = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(SESSION))
        .unwrap();
    assert!(
        sc.contains("HttpOnly") && sc.contains("SameSite=Lax"),
        "{sc}"
    );
    assert!(!sc.contains("Max-Age") && !sc.contains("Expires"), "{sc}");

    let echo: Value = http
        .get(gw.url("/app/page?q=1"))
        .header("remote-user", "hanako")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["remote-user"], "taro");

    // The flow is finished: posting it again is refused.
    let r = http
        .post(gw.url(&flow_url))
        .form(&[("password", PASSWORD), ("csrf", &csrf_cookie)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn html_wrong_password_shows_the_generic_error() {
    let gw = Gateway::start();
    let http = client();
    let r = http.get(gw.url("/_nidan/login")).send().await.unwrap();
    let csrf = set_cookie(&r, CSRF).unwrap();
    let r = http
        .post(gw.url("/_nidan/login"))
        .form(&[("id", "taro"), ("rd", "/"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    let flow_url = r.headers()["location"].to_str().unwrap().to_owned();
    let r = http
        .post(gw.url(&flow_url))
        .form(&[("password", "wrong-password"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r, SESSION).is_none());
    let html = r.text().await.unwrap();
    assert!(
        html.contains("The ID, password or security code is incorrect."),
        "{html}"
    );
}

// --- enumeration (SECURITY 4) ------------------------------------------------------------

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn unknown_ids_answer_like_the_typical_user() {
    // Most test users have 2-step on (SMS): an unknown ID answers like one of them, so the
    // ID step does not tell 2-step users from unknown IDs (SECURITY 4, 41).
    let gw = Gateway::start();
    let api = Api::new(&gw);
    let (s_known, known) = api.start("hanako").await;
    let (s_unknown, unknown) = api.start("nobody-here").await;
    assert_eq!((s_known, s_unknown), (200, 200), "{known} {unknown}");
    assert_eq!(keys(&known), keys(&unknown));
    assert_eq!(known["step"], "password_and_code");
    assert_eq!(unknown["step"], known["step"]);
    assert_eq!(unknown["code_channel"], known["code_channel"]);
    assert_eq!(unknown["email_alternative"], known["email_alternative"]);
    // Nothing is sent for the unknown ID.
    assert_eq!(gw.codes_sent("nobody-here"), 0);
    assert_eq!(
        unknown["flow"].as_str().unwrap().len(),
        known["flow"].as_str().unwrap().len()
    );

    // Wrong password for a real user and any password for an unknown one: same 401 body.
    let (s1, b1) = api
        .complete(
            known["flow"].as_str().unwrap(),
            json!({"password": "not-the-password"}),
        )
        .await;
    let (s2, b2) = api
        .complete(
            unknown["flow"].as_str().unwrap(),
            json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(b1, b2);
    assert_eq!(b1["error"], "login_failed");

    // The HTML ID step answers the same way too.
    let http = client();
    let r = http.get(gw.url("/_nidan/login")).send().await.unwrap();
    let csrf = set_cookie(&r, CSRF).unwrap();
    for id in ["taro", "nobody-here"] {
        let r = http
            .post(gw.url("/_nidan/login"))
            .form(&[("id", id), ("rd", "/"), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{id}");
    }

    // Nothing was ever sent for the unknown ID.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        gw.outbox().iter().all(|m| m["user"] != "nobody-here"),
        "{:?}",
        gw.outbox()
    );
}

#[tokio::test]
async fn disabled_user_cannot_log_in() {
    let gw = Gateway::start();
    let api = Api::new(&gw);
    let (s, v) = api.start("gone").await;
    assert_eq!(s, 200);
    // A disabled ID answers like an unknown one: like the typical user here (a code step).
    assert_eq!(v["step"], "password_and_code");
    let (s, right) = api
        .complete(
            v["flow"].as_str().unwrap(),
            json!({"password": PASSWORD, "code": "000000"}),
        )
        .await;
    assert_eq!(s, 401);
    let (_, v) = api.start("taro").await;
    let (_, wrong) = api
        .complete(v["flow"].as_str().unwrap(), json!({"password": "nope"}))
        .await;
    assert_eq!(
        right, wrong,
        "a disabled account answers like a wrong password"
    );
    assert_eq!(api.get("/me").await.0, 401);
}

// --- password length (SECURITY 3) ------------------------------------------------------

#[tokio::test]
async fn huge_password_is_refused_quickly() {
    let gw = Gateway::start();
    let api = Api::new(&gw);
    let (_, v) = api.start("taro").await;
    let flow = v["flow"].as_str().unwrap().to_owned();
    let huge = "a".repeat(10 * 1024);
    let t = Instant::now();
    let (s, body) = api.complete(&flow, json!({"password": huge})).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"], "password_too_long");

    // The form path too.
    let http = client();
    let r = http.get(gw.url("/_nidan/login")).send().await.unwrap();
    let csrf = set_cookie(&r, CSRF).unwrap();
    let t = Instant::now();
    let r = http
        .post(gw.url(&format!("/_nidan/login/{flow}")))
        .form(&[("password", huge.as_str()), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(r.status(), 400);

    // The refused attempts did not use up the flow: the right password still works.
    let (s, _) = api.complete(&flow, json!({"password": PASSWORD})).await;
    assert_eq!(s, 200);
}

/// Appends a user to the gateway's users file and waits for the reload.
fn add_user(gw: &Gateway, yaml_entry: &str) {
    let path = gw.path("users.yaml");
    let reloads = gw.log().matches("users file reloaded").count();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(yaml_entry);
    std::fs::write(&path, text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.log().matches("users file reloaded").count() == reloads {
        assert!(
            Instant::now() < deadline,
            "the users file was not reloaded:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn sixty_four_character_password_works_and_is_not_truncated() {
    let gw = Gateway::start();
    let long: String = "Lp-0123456789abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        .chars()
        .take(64)
        .collect();
    assert_eq!(long.len(), 64);
    let hash = hash_password(&long);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    add_user(
        &gw,
        &format!(
            "  - id: longpw\n    password_hash: \"{hash}\"\n    name: Long Password\n    groups: [staff]\n"
        ),
    );
    let api = Api::new(&gw);
    for wrong in [&long[..63], &format!("{long}x")[..]] {
        let (_, v) = api.start("longpw").await;
        let (s, _) = api
            .complete(v["flow"].as_str().unwrap(), json!({"password": wrong}))
            .await;
        assert_eq!(s, 401, "{} characters", wrong.len());
    }
    let (token, _) = login_token(&gw, "longpw", &long, None).await;
    assert_eq!(me(&gw, &token).await.1["user"], "longpw");
}

// --- open redirects (SECURITY 21) --------------------------------------------------------

const BAD_RETURNS: &[&str] = &[
    "//evil.com",
    "///evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "https://evil.com",
    "http://evil.com/",
    "HTTPS://EVIL.COM/x",
    "https:evil.com",
    "https:/evil.com",
    "/%09/evil.com",
    "/\t/evil.com",
    "%2F%2Fevil.com",
    "/%2F%2Fevil.com",
    "/%2f/evil.com",
    "/%5cevil.com",
    "/%252F%252Fevil.com",
    " //evil.com",
    "https://app.example.com@evil.com",
    "https://app.example.com:@evil.com/",
    "//app.example.com@evil.com",
    "https://app.example.com.evil.com",
    "https://evil.com\\@app.example.com",
    "https://evil.com#@app.example.com",
    "https://evil.com?@app.example.com",
    "https://evilapp.example.com/",
    "javascript:alert(1)",
    "JavaScript://app.example.com/%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "ftp://app.example.com/",
    "http://127.0.0.1:1/",
];

#[tokio::test]
async fn open_redirect_corpus_ends_at_root() {
    let gw = Gateway::start();
    for bad in BAD_RETURNS {
        let (_, done) = login_token(&gw, "taro", PASSWORD, Some(bad)).await;
        assert_eq!(done["redirect"], "/", "return_to {bad:?} was kept: {done}");
    }
    for good in ["https://app.example.com/x", "/app/y?z=1"] {
        let (_, done) = login_token(&gw, "taro", PASSWORD, Some(good)).await;
        assert_eq!(done["redirect"], *good);
    }
}

#[tokio::test]
async fn open_redirects_through_the_html_pages() {
    let gw = Gateway::start();
    let cases: Vec<(&str, &str)> = [
        "//evil.com",
        "/\\evil.com",
        "https://evil.com",
        "/%09/evil.com",
        "https://app.example.com@evil.com",
        "https://app.example.com.evil.com",
        "javascript:alert(1)",
    ]
    .iter()
    .map(|b| (*b, "/"))
    .chain([
        ("https://app.example.com/x", "https://app.example.com/x"),
        ("/app/y?z=1", "/app/y?z=1"),
    ])
    .collect();
    for (rd, expected) in cases {
        let http = client();
        // The ID page already replaces an unsafe rd in its hidden field ...
        let url = format!(
            "{}?rd={}",
            gw.url("/_nidan/login"),
            form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
        );
        let r = http.get(url).send().await.unwrap();
        let csrf = set_cookie(&r, CSRF).unwrap();
        let html = r.text().await.unwrap();
        assert_eq!(hidden(&html, "rd").as_deref(), Some(expected), "{rd}");
        // ... and a forged form field is checked again on POST.
        let r = http
            .post(gw.url("/_nidan/login"))
            .form(&[("id", "taro"), ("rd", rd), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let flow_url = r.headers()["location"].to_str().unwrap().to_owned();
        let r = http
            .post(gw.url(&flow_url))
            .form(&[("password", PASSWORD), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], expected, "rd {rd:?}");
    }
}

// --- CSRF (SECURITY 22) ------------------------------------------------------------------

#[tokio::test]
async fn forms_need_the_csrf_token_and_our_origin() {
    let gw = Gateway::start();
    let http = client();
    let r = http.get(gw.url("/_nidan/login")).send().await.unwrap();
    let csrf = set_cookie(&r, CSRF).unwrap();
    let post = |form: Vec<(&'static str, String)>, headers: Vec<(&'static str, String)>| {
        let mut req = http.post(gw.url("/_nidan/login")).form(&form);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let id = || ("id", "taro".to_owned());
    // No token.
    let r = post(vec![id()], vec![]).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("This page has expired"));
    // A wrong token (same length).
    let wrong = "A".repeat(43);
    let r = post(vec![id(), ("csrf", wrong)], vec![]).await.unwrap();
    assert_eq!(r.status(), 403);
    // The right token from a foreign origin.
    let r = post(
        vec![id(), ("csrf", csrf.clone())],
        vec![("origin", "http://evil.example".to_owned())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(
        vec![id(), ("csrf", csrf.clone())],
        vec![("sec-fetch-site", "cross-site".to_owned())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(
        vec![id(), ("csrf", csrf.clone())],
        vec![("origin", "null".to_owned())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    // The token without its cookie (another browser) is refused.
    let r = plain()
        .post(gw.url("/_nidan/login"))
        .form(&[("id", "taro"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Control: the right token from our own origin works.
    let r = post(
        vec![id(), ("csrf", csrf.clone())],
        vec![
            ("origin", format!("http://{}", gw.addr)),
            ("sec-fetch-site", "same-origin".to_owned()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let flow_url = r.headers()["location"].to_str().unwrap().to_owned();

    // The password step is guarded the same way.
    let r = http
        .post(gw.url(&flow_url))
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, SESSION).is_none());
    let r = http
        .post(gw.url(&flow_url))
        .header("origin", "http://evil.example")
        .form(&[("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, SESSION).is_none());
    // Logout too.
    let r = http
        .post(gw.url("/_nidan/logout"))
        .form(&[("x", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn json_api_refuses_cross_site_and_non_json() {
    let gw = Gateway::start();
    let http = plain();
    let r = http
        .post(gw.url("/_nidan/api/login"))
        .header("content-type", "text/plain")
        .body(r#"{"id":"taro"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "json_required");
    let r = http
        .post(gw.url("/_nidan/api/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("id=taro")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    for (h, v) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let r = http
            .post(gw.url("/_nidan/api/login"))
            .header(h, v)
            .json(&json!({"id": "taro"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{h}: {v}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "cross_site");
    }
    // Cross-site logout is refused as well (it would end the session).
    let (token, _) = login_token(&gw, "taro", PASSWORD, None).await;
    let r = http
        .post(gw.url("/_nidan/api/logout"))
        .header("cookie", format!("{SESSION}={token}"))
        .header("origin", "http://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(me(&gw, &token).await.0, 200);
    // Control: our own origin is accepted.
    let r = http
        .post(gw.url("/_nidan/api/login"))
        .header("origin", format!("http://{}", gw.addr))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"id": "taro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// --- sessions (SECURITY 18, 19, 32) ------------------------------------------------------

#[tokio::test]
async fn every_login_gets_a_new_session_and_logout_ends_it() {
    let gw = Gateway::start();
    let (first, _) = login_token(&gw, "taro", PASSWORD, None).await;
    let (second, _) = login_token(&gw, "taro", PASSWORD, None).await;
    assert_ne!(first, second);
    assert_eq!(first.len(), 43);
    // A new login creates a new session; the earlier one stays valid until logout/expiry.
    assert_eq!(me(&gw, &first).await.0, 200);
    assert_eq!(me(&gw, &second).await.0, 200);

    // A login from a browser that already holds a session cookie still gets a new one.
    let http = plain();
    let (_, _, v) = post_json(&http, &gw, "/login", json!({"id": "taro"}), Some(&first)).await;
    let r = http
        .post(gw.url(&format!(
            "/_nidan/api/login/{}/complete",
            v["flow"].as_str().unwrap()
        )))
        .header("cookie", format!("{SESSION}={first}"))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let third = set_cookie(&r, SESSION).unwrap();
    assert!(third != first && third != second);

    // Logout ends the session on the server: replaying the cookie fails.
    let (s, h, v) = post_json(&http, &gw, "/logout", json!({}), Some(&first)).await;
    assert_eq!(s, 200, "{v}");
    let removal = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(SESSION))
        .unwrap();
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert_eq!(me(&gw, &first).await.0, 401);
    let r = app_get(&gw, "/app/x", &first).await;
    assert_eq!(r.status(), 401);
    // The other sessions are untouched.
    assert_eq!(me(&gw, &second).await.0, 200);
    assert_eq!(me(&gw, &third).await.0, 200);
    // And the replayed cookie still fails after a restart (the store forgot it too).
    let mut gw = gw;
    gw.restart();
    assert_eq!(me(&gw, &first).await.0, 401);
    assert_eq!(me(&gw, &second).await.0, 200);
}

#[tokio::test]
async fn html_logout_ends_the_session() {
    let gw = Gateway::start();
    let http = client();
    let r = http.get(gw.url("/_nidan/login")).send().await.unwrap();
    let csrf = set_cookie(&r, CSRF).unwrap();
    let r = http
        .post(gw.url("/_nidan/login"))
        .form(&[("id", "taro"), ("rd", "/"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    let flow_url = r.headers()["location"].to_str().unwrap().to_owned();
    let r = http
        .post(gw.url(&flow_url))
        .form(&[("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    let token = set_cookie(&r, SESSION).unwrap();
    let r = http
        .post(gw.url("/_nidan/logout"))
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&gw, &token).await.0, 401);
    let r = http
        .get(gw.url("/app/x"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
}

#[tokio::test]
async fn made_up_session_cookies_are_rejected() {
    let gw = Gateway::start();
    let forged = [
        "A".repeat(43),
        "x".to_owned(),
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG".to_owned(),
        format!("{}==", "B".repeat(43)),
    ];
    for token in &forged {
        assert_eq!(me(&gw, token).await.0, 401, "{token}");
        let r = app_get(&gw, "/app/x", token).await;
        assert_eq!(r.status(), 401, "{token}");
        let r = plain()
            .get(gw.url("/app/x"))
            .header("accept", "text/html")
            .header("cookie", format!("{SESSION}={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
    // A real cookie with one character changed is not valid either.
    let (token, _) = login_token(&gw, "taro", PASSWORD, None).await;
    let mut bytes = token.into_bytes();
    bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
    let changed = String::from_utf8(bytes).unwrap();
    assert_eq!(me(&gw, &changed).await.0, 401);
}

#[tokio::test]
async fn sessions_survive_kill_and_restart() {
    let mut gw = Gateway::start();
    let (token, _) = login_token(&gw, "taro", PASSWORD, None).await;
    assert_eq!(me(&gw, &token).await.0, 200);
    gw.restart();
    let (s, v) = me(&gw, &token).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["user"], "taro");
    let echo: Value = app_get(&gw, "/app/x", &token).await.json().await.unwrap();
    assert_eq!(echo["headers"]["remote-user"], "taro");
}

#[tokio::test]
async fn idle_timeout_is_enforced() {
    let gw = Gateway::builder().set("session.idle_timeout", "2s").start();
    let (token, _) = login_token(&gw, "taro", PASSWORD, None).await;
    // Activity every half second keeps the session alive past the idle timeout.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            app_get(&gw, "/app/x", &token).await.status(),
            200,
            "after {:?}",
            t.elapsed()
        );
    }
    // Three idle seconds end it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app_get(&gw, "/app/x", &token).await.status(), 401);
    assert_eq!(me(&gw, &token).await.0, 401);
}

#[tokio::test]
async fn absolute_timeout_is_enforced_despite_activity() {
    let gw = Gateway::builder()
        .set("session.idle_timeout", "3s")
        .set("session.absolute_timeout", "5s")
        .start();
    // Times are whole seconds: the session ends 4 to 5 s after the login, however long the
    // answer took to come back on a loaded machine.
    let (token, _) = login_token(&gw, "taro", PASSWORD, None).await;
    let t = Instant::now();
    let mut last = 0;
    while t.elapsed() < Duration::from_millis(6_500) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = me(&gw, &token).await.0;
        if t.elapsed() < Duration::from_millis(1_500) {
            assert_eq!(s, 200, "after {:?}", t.elapsed());
        }
        last = s;
    }
    assert_eq!(last, 401);
    assert_eq!(app_get(&gw, "/app/x", &token).await.status(), 401);
}

#[tokio::test]
async fn idle_longer_than_absolute_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    let mut text = std::fs::read_to_string(&gw.config).unwrap();
    text.push_str("session: { idle_timeout: 1h, absolute_timeout: 30m }\n");
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, text).unwrap();
    for f in ["device-key", "users.yaml"] {
        std::fs::copy(gw.path(f), dir.path().join(f)).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nidan"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("session.idle_timeout"), "{err}");
}

// --- who am I, and the two_factor route ------------------------------------------------

#[tokio::test]
async fn me_shows_the_user() {
    let gw = Gateway::start();
    let (token, _) = login_token(&gw, "taro", PASSWORD, None).await;
    let (s, v) = me(&gw, &token).await;
    assert_eq!(s, 200);
    assert_eq!(v["user"], "taro");
    assert_eq!(v["name"], "Taro Yamada");
    assert_eq!(v["groups"], json!(["staff"]));
    assert_eq!(v["two_step"], false);
    assert_eq!(v["methods"], json!(["password"]));
    let (token, _) = login_token(&gw, "hanako", PASSWORD, None).await;
    let (_, v) = me(&gw, &token).await;
    assert_eq!(v["user"], "hanako");
    assert_eq!(v["groups"], json!(["staff", "admins"]));
    assert_eq!(v["two_step"], true);
    assert_eq!(v["methods"], json!(["password", "sms"]));
    assert_eq!(
        plain()
            .get(gw.url("/_nidan/api/me"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn two_factor_route_asks_taro_for_a_code() {
    let gw = Gateway::start();
    // A password-only session does not open /admin: browsers are sent to step up.
    let (token, _) = login_token(&gw, "taro", PASSWORD, None).await;
    assert_eq!(app_get(&gw, "/app/x", &token).await.status(), 200);
    let r = plain()
        .get(gw.url("/admin/x"))
        .header("accept", "text/html")
        .header("cookie", format!("{SESSION}={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/_nidan/login?rd=%2Fadmin%2Fx&step_up=1"
    );
    assert_eq!(app_get(&gw, "/admin/x", &token).await.status(), 401);

    // Logging in for /admin asks taro (2-step off) for a code.
    let api = Api::new(&gw);
    let (s, v) = api
        .post("/login", json!({"id": "taro", "return_to": "/admin/x"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step"], "password_and_code");
    assert_eq!(v["code_destination"], "***-****-1111");
    let flow = v["flow"].as_str().unwrap().to_owned();
    // The password alone is not enough.
    let (s, _) = api.complete(&flow, json!({"password": PASSWORD})).await;
    assert_eq!(s, 401);
    let (s, done) = api
        .complete(
            &flow,
            json!({"password": PASSWORD, "code": gw.last_code("taro")}),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["redirect"], "/admin/x");
    let echo: Value = api
        .http
        .get(gw.url("/admin/x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["remote-user"], "taro");
    assert_eq!(api.get("/me").await.1["two_step"], true);

    // The HTML ID step with rd=/admin/x shows the code field.
    let http = client();
    let r = http
        .get(gw.url("/_nidan/login?rd=/admin/x&step_up=1"))
        .send()
        .await
        .unwrap();
    let csrf = set_cookie(&r, CSRF).unwrap();
    let html = r.text().await.unwrap();
    let rd = hidden(&html, "rd").unwrap();
    assert_eq!(rd, "/admin/x");
    let r = http
        .post(gw.url("/_nidan/login"))
        .form(&[("id", "taro"), ("rd", rd.as_str()), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let flow_url = r.headers()["location"].to_str().unwrap().to_owned();
    let html = http
        .get(gw.url(&flow_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("name=\"code\""), "{html}");
    assert!(html.contains("***-****-1111"), "{html}");
}

/// SECURITY 4 on a two_factor route: every real user is asked for a code there, so an
/// unknown ID gets the same step (a decoy code flow that sends nothing).
#[tokio::test]
async fn unknown_ids_on_a_two_factor_route_look_like_real_users() {
    let gw = Gateway::start();
    let api = Api::new(&gw);
    let (_, known) = api
        .post("/login", json!({"id": "taro", "return_to": "/admin/x"}))
        .await;
    let (_, unknown) = api
        .post(
            "/login",
            json!({"id": "nobody-here", "return_to": "/admin/x"}),
        )
        .await;
    assert_eq!(known["step"], "password_and_code");
    assert_eq!(unknown["step"], known["step"]);
    assert_eq!(keys(&known), keys(&unknown));
}

/// The decoy keeps its made-up destination stable and sends nothing.
#[tokio::test]
async fn the_decoy_for_unknown_ids_sends_nothing_and_stays_stable() {
    let gw = Gateway::start();
    let api = Api::new(&gw);
    let (_, a) = api
        .post(
            "/login",
            json!({"id": "nobody-here", "return_to": "/admin/x"}),
        )
        .await;
    let (_, b) = api
        .post(
            "/login",
            json!({"id": "nobody-here", "return_to": "/admin/x"}),
        )
        .await;
    assert_eq!(a["code_destination"], b["code_destination"]);
    assert!(
        a["code_destination"]
            .as_str()
            .unwrap()
            .starts_with("***-****-")
    );
    let flow = a["flow"].as_str().unwrap();
    let (s, e) = api
        .complete(flow, json!({"password": PASSWORD, "code": "123456"}))
        .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("login_failed")));
    assert!(
        gw.outbox().iter().all(|m| m["user"] != "nobody-here"),
        "nothing is sent"
    );
}
