//! Logging in through the JSON API, the one set of helpers every test file uses (a test of the
//! login itself writes its requests out instead). Re-exported by `common`, so `use
//! crate::common::*;` brings them.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::CookieStore as _;
use serde_json::{Value, json};

use super::{Api, Gateway, PASSWORD};

/// A whole API login with `http` against `base` (the gateway's URL, or a proxy in front of
/// it): the ID step with `start` (`{"id": …}`, perhaps a `return_to`), then the password and,
/// when the step asks for one, the code from the outbox, with the fields of `more` added or
/// replacing those (`trust_device`, another `password`). Every request carries `headers`.
/// Both answers must be 200. Returns the ID step's answer and the response that completed
/// the login (its `Set-Cookie` and body are the caller's to read).
pub async fn api_login(
    http: &reqwest::Client,
    base: &str,
    gw: &Gateway,
    start: Value,
    more: Value,
    headers: &[(&str, &str)],
) -> (Value, reqwest::Response) {
    let id = start["id"]
        .as_str()
        .expect("the ID step needs an id")
        .to_owned();
    let mut req = http.post(format!("{base}/_nidan/api/login")).json(&start);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(s, 200, "{v}");
    let flow = v["flow"].as_str().unwrap();
    let mut body = json!({"password": PASSWORD});
    if v["step"] == "password_and_code" {
        body["code"] = json!(gw.last_code(&id));
    }
    for (k, val) in more.as_object().into_iter().flatten() {
        body[k] = val.clone();
    }
    let mut req = http
        .post(format!("{base}/_nidan/api/login/{flow}/complete"))
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    if r.status() != 200 {
        panic!(
            "completing the login: {} {}",
            r.status(),
            r.text().await.unwrap()
        );
    }
    (v, r)
}

/// A login of `id` at the gateway with `http` that must ask for the password only (the
/// user's 2-step is off, or a trusted device or network skips it). Returns the completing
/// response; the session is in `http`'s jar when it has one.
pub async fn password_only_login(
    http: &reqwest::Client,
    gw: &Gateway,
    id: &str,
) -> reqwest::Response {
    let (v, r) = api_login(http, &gw.url(""), gw, json!({"id": id}), json!({}), &[]).await;
    assert_eq!(v["step"], "password", "{v}");
    r
}

/// The session cookie's value in `jar` for the gateway, if there is one.
pub fn jar_session(jar: &Arc<reqwest::cookie::Jar>, gw: &Gateway) -> Option<String> {
    let url: reqwest::Url = gw.url("/").parse().unwrap();
    let cookies = jar.cookies(&url)?;
    cookies
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|c| c.strip_prefix("nidan_session=").map(str::to_owned))
}

/// A logged-in API client for `id`, and the session cookie as `nidan_session=…` for raw
/// requests.
pub async fn login<'a>(gw: &'a Gateway, id: &str) -> (Api<'a>, String) {
    pingora::tls::install_default_crypto_provider();
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let api = Api { gw, http };
    api.login(id).await;
    let session = jar_session(&jar, gw).expect("a session cookie after the login");
    (api, format!("nidan_session={session}"))
}

/// The step the ID step asks `id` for from a browser that sends exactly `device` as its
/// device cookie (and nothing else).
pub async fn step_with_device(gw: &Gateway, id: &str, device: &str) -> String {
    let r = super::plain()
        .post(gw.url("/_nidan/api/login"))
        .header("cookie", format!("nidan_device={device}"))
        .json(&json!({"id": id}))
        .send()
        .await
        .unwrap();
    let s = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(s, 200, "{v}");
    v["step"].as_str().unwrap().to_owned()
}
