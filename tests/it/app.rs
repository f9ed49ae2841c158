//! Login approval in the phone app, through the real gateway and the reference approver
//! client (`nidan app …` as its own process): enrollment verified by a security code,
//! number matching, fatigue limits, "this wasn't me", fallback to a code, feature phones,
//! expiry, replay, the other order, and the push webhook (SECURITY 10–12).
#![allow(clippy::unwrap_used, clippy::panic)]
#![allow(clippy::too_many_lines)] // tests are exempt: a scenario reads top to bottom

use crate::common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};

/// Runs `nidan app --key KEY ARGS…`; returns (success, stdout JSON or stderr text).
fn app_cli(key: &Path, args: &[&str]) -> (bool, Value) {
    let out = Command::new(bin())
        .arg("app")
        .arg("--key")
        .arg(key)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    })
    .into_owned();
    (
        out.status.success(),
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Logs jiro in (a code, as no app is enrolled yet), enrolls the reference client, returns
/// the key file path.
async fn enroll_jiro(gw: &Gateway) -> std::path::PathBuf {
    let api = Api::new(gw);
    let (s, v) = api.start("jiro").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step"], "password_and_code", "no app yet: a code instead");
    assert_eq!(v["notice"], "app_unavailable");
    let flow = v["flow"].as_str().unwrap().to_owned();
    let (s, v) = api
        .complete(
            &flow,
            json!({"password": PASSWORD, "code": gw.last_code("jiro")}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let before = gw.codes_sent("jiro");
    let (s, e) = api.post("/app/enroll/start", json!({})).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["code_destination"], "***-****-2222");
    let uri = e["uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("nidan-app://enroll?"), "{uri}");
    // Setting up the app is verified with a security code of its own.
    assert_eq!(gw.codes_sent("jiro"), before + 1);
    let code = gw.last_code("jiro");
    let key = gw.path("app-key.json");
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (ok, err) = app_cli(&key, &["enroll", "--uri", &uri, "--security-code", wrong]);
    assert!(!ok, "a wrong security code must not enroll: {err}");
    let (ok, out) = app_cli(
        &key,
        &[
            "enroll",
            "--uri",
            &uri,
            "--security-code",
            &code,
            "--name",
            "test phone",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out["user"], "jiro");
    // The enrollment code is single use.
    let (ok, _) = app_cli(
        &gw.path("second-key.json"),
        &["enroll", "--uri", &uri, "--security-code", &code],
    );
    assert!(!ok);
    let (s, apps) = api.get("/app/enrollments").await;
    assert_eq!(s, 200);
    assert_eq!(apps["apps"][0]["name"], "test phone");
    key
}

fn pending(key: &Path) -> Vec<Value> {
    let (ok, v) = app_cli(key, &["list"]);
    assert!(ok, "{v}");
    v["approvals"].as_array().unwrap().clone()
}

#[tokio::test]
async fn approve_with_the_number_then_password() {
    let gw = Gateway::start();
    let key = enroll_jiro(&gw).await;
    let api = Api::new(&gw);
    let (s, v) = api.start("jiro").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step"], "app_approval");
    let number = v["approval_number"].as_str().unwrap().to_owned();
    assert_eq!(number.len(), 2);
    let flow = v["flow"].as_str().unwrap().to_owned();

    // The password alone, before the approval, fails (SECURITY 12).
    let (s, e) = api.complete(&flow, json!({"password": PASSWORD})).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("approval_required")));

    let list = pending(&key);
    assert_eq!(list.len(), 1);
    assert!(
        list[0].get("number").is_none(),
        "the app is never told the number"
    );
    assert_eq!(list[0]["context"]["ip"], "127.0.0.1");
    let id = list[0]["id"].as_str().unwrap().to_owned();
    // A bare "yes" without the number never approves (SECURITY 10).
    let (ok, out) = app_cli(&key, &["approve", "--number", "", "--", &id]);
    assert!(!ok, "{out}");
    let (_, v) = api.get(&format!("/login/{flow}")).await;
    assert_eq!(v["approval"], "denied", "a wrong number ends the approval");

    // A new login, approved with the right number.
    let (_, v) = api.start("jiro").await;
    let flow = v["flow"].as_str().unwrap().to_owned();
    let number = v["approval_number"].as_str().unwrap().to_owned();
    let id = pending(&key)[0]["id"].as_str().unwrap().to_owned();
    let (ok, out) = app_cli(&key, &["approve", "--number", &number, "--", &id]);
    assert!(ok, "{out}");
    assert_eq!(out["status"], "approved");
    // Single use: answering again is refused.
    let (ok, _) = app_cli(&key, &["approve", "--number", &number, "--", &id]);
    assert!(!ok);
    let (_, v) = api.get(&format!("/login/{flow}")).await;
    assert_eq!(
        (v["step"].as_str(), v["approval"].as_str()),
        (Some("password"), Some("approved"))
    );
    let (s, e) = api.complete(&flow, json!({"password": "wrong"})).await;
    assert_eq!(s, 401, "the approval does not replace the password: {e}");
    let (s, e) = api.complete(&flow, json!({"password": PASSWORD})).await;
    assert_eq!(s, 200, "{e}");
    let (_, me) = api.get("/me").await;
    assert_eq!(me["two_step"], true);
    assert_eq!(me["methods"], json!(["password", "app"]));
    let echo: Value = api
        .http
        .get(gw.url("/admin/x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        echo["headers"]["remote-user"], "jiro",
        "the app counts as the second step"
    );
}

#[tokio::test]
async fn approval_is_bound_to_its_flow_and_expires() {
    let gw = Gateway::builder()
        .set("app_approval.lifetime", "2s")
        .start();
    let key = enroll_jiro(&gw).await;
    let a = Api::new(&gw);
    let b = Api::new(&gw);
    let (_, va) = a.start("jiro").await;
    let (_, vb) = b.start("jiro").await;
    let flow_a = va["flow"].as_str().unwrap().to_owned();
    let flow_b = vb["flow"].as_str().unwrap().to_owned();
    // One pending approval per account: B's replaced A's.
    let (_, sa) = a.get(&format!("/login/{flow_a}")).await;
    assert_eq!(sa["approval"], "expired");
    let list = pending(&key);
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let (ok, _) = app_cli(
        &key,
        &[
            "approve",
            &id,
            "--number",
            vb["approval_number"].as_str().unwrap(),
        ],
    );
    assert!(ok);
    // B's approval does not complete A.
    let (s, _) = a.complete(&flow_a, json!({"password": PASSWORD})).await;
    assert_eq!(s, 401);
    let (s, _) = b.complete(&flow_b, json!({"password": PASSWORD})).await;
    assert_eq!(s, 200);

    // Expiry: an unanswered approval expires, and answering it then is refused.
    let (_, v) = a.start("jiro").await;
    let flow = v["flow"].as_str().unwrap().to_owned();
    let id = pending(&key)[0]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2_300)).await;
    let (_, s) = a.get(&format!("/login/{flow}")).await;
    assert_eq!(s["approval"], "expired");
    let (ok, out) = app_cli(
        &key,
        &[
            "approve",
            &id,
            "--number",
            v["approval_number"].as_str().unwrap(),
        ],
    );
    assert!(!ok, "{out}");
    let page = a
        .http
        .get(gw.url(&format!("/_nidan/login/{flow}")))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 410);
    assert!(
        page.text().await.unwrap().contains("/_nidan/login"),
        "an offer to start again"
    );
}

#[tokio::test]
async fn fatigue_limits_and_this_was_not_me() {
    let gw = Gateway::start();
    let key = enroll_jiro(&gw).await;
    let api = Api::new(&gw);
    for _ in 0..3 {
        let (_, v) = api.start("jiro").await;
        assert_eq!(v["step"], "app_approval");
    }
    // A fourth prompt within 10 minutes is refused: the code path instead.
    let (_, v) = api.start("jiro").await;
    assert_eq!(v["step"], "password_and_code", "{v}");
    assert_eq!(v["notice"], "app_unavailable");

    let gw = Gateway::start();
    let key2 = enroll_jiro(&gw).await;
    let api = Api::new(&gw);
    let (_, _v) = api.start("jiro").await;
    let id = pending(&key2)[0]["id"].as_str().unwrap().to_owned();
    let (ok, out) = app_cli(&key2, &["deny", "--not-me", "--", &id]);
    assert!(ok, "{out}");
    assert_eq!(out["status"], "denied");
    // Prompts pause and the user is told by email.
    let (_, v) = api.start("jiro").await;
    assert_eq!(v["step"], "password_and_code");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gw
        .outbox()
        .iter()
        .any(|m| m["user"] == "jiro" && m["channel"] == "email" && m["code"].is_null())
    {
        assert!(std::time::Instant::now() < deadline, "no notice to jiro");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = key;
}

#[tokio::test]
async fn fallback_to_a_code_and_feature_phones() {
    let gw = Gateway::start();
    let _key = enroll_jiro(&gw).await;
    let api = Api::new(&gw);
    let (_, v) = api.start("jiro").await;
    let flow = v["flow"].as_str().unwrap().to_owned();
    let before = gw.codes_sent("jiro");
    let (s, v) = api
        .post(&format!("/login/{flow}/use-code"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step"], "password_and_code");
    assert_eq!(gw.codes_sent("jiro"), before + 1);
    let (s, _) = api
        .complete(
            &flow,
            json!({"password": PASSWORD, "code": gw.last_code("jiro")}),
        )
        .await;
    assert_eq!(s, 200);

    // A feature phone's browser goes straight to the code.
    let r = api
        .http
        .post(gw.url("/_nidan/api/login"))
        .header("user-agent", "DoCoMo/2.0 P903i(c100;TB;W24H12)")
        .json(&json!({"id": "jiro"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["step"], "password_and_code");
}

#[tokio::test]
async fn signed_requests_cannot_be_replayed_or_forged() {
    let gw = Gateway::start();
    let key_file = enroll_jiro(&gw).await;
    let key: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let secret: [u8; 32] = URL_SAFE_NO_PAD
        .decode(key["secret_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
    let path = "/_nidan/api/app/approvals";
    let time = nidan::time::now();
    let nonce = "replay-test-nonce-0001";
    let msg = nidan::login::approval::signing_input("GET", path, time, nonce, b"");
    use ed25519_dalek::Signer;
    let sig = URL_SAFE_NO_PAD.encode(signing.sign(msg.as_bytes()).to_bytes());
    let http = client();
    let send = |sig: String, time: i64| {
        http.get(gw.url(path))
            .header("x-nidan-app", key["app_id"].as_str().unwrap())
            .header("x-nidan-time", time.to_string())
            .header("x-nidan-nonce", nonce)
            .header("x-nidan-signature", sig)
            .send()
    };
    assert_eq!(send(sig.clone(), time).await.unwrap().status(), 200);
    assert_eq!(
        send(sig.clone(), time).await.unwrap().status(),
        401,
        "a replay is refused"
    );
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let forged = URL_SAFE_NO_PAD.encode(other.sign(msg.as_bytes()).to_bytes());
    assert_eq!(send(forged, time).await.unwrap().status(), 401);
    assert_eq!(
        http.get(gw.url(path)).send().await.unwrap().status(),
        401,
        "unsigned"
    );
}

#[tokio::test]
async fn approval_after_the_password_order() {
    let gw = Gateway::builder()
        .set("app_approval.order", "after_password")
        .start();
    let key = enroll_jiro(&gw).await;
    let api = Api::new(&gw);
    let (_, v) = api.start("jiro").await;
    assert_eq!(v["step"], "app_approval");
    assert!(
        v.get("approval_number").is_none(),
        "nothing is pushed before the password"
    );
    assert!(pending(&key).is_empty());
    let flow = v["flow"].as_str().unwrap().to_owned();
    let (s, _) = api.complete(&flow, json!({"password": "wrong"})).await;
    assert_eq!(s, 401);
    assert!(
        pending(&key).is_empty(),
        "a wrong password never prompts the app"
    );
    let (s, v) = api.complete(&flow, json!({"password": PASSWORD})).await;
    assert_eq!(s, 202, "{v}");
    let number = v["approval_number"].as_str().unwrap().to_owned();
    let id = pending(&key)[0]["id"].as_str().unwrap().to_owned();
    let (s, _) = api.complete(&flow, json!({"password": ""})).await;
    assert_eq!(s, 401, "not approved yet");
    let (ok, _) = app_cli(&key, &["approve", "--number", &number, "--", &id]);
    assert!(ok);
    let (s, v) = api.complete(&flow, json!({"password": ""})).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn push_webhook_is_told_without_the_number() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let mut s = stream.unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= i + 4 + len {
                        s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                            .unwrap();
                        tx.send(text).unwrap();
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
        }
    });
    let gw = Gateway::builder()
        .set(
            "notifiers.push",
            &format!("{{ url: \"http://127.0.0.1:{port}/push\", headers: {{ X-Token: abc }} }}"),
        )
        .start();
    let _key = enroll_jiro(&gw).await;
    let api = Api::new(&gw);
    let (_, v) = api.start("jiro").await;
    let number = v["approval_number"].as_str().unwrap().to_owned();
    let request = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(request.starts_with("POST /push "), "{request}");
    assert!(request.to_ascii_lowercase().contains("x-token: abc"));
    let body: Value = serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["user"], "jiro");
    assert!(body.get("number").is_none() && !body.to_string().contains(&format!("\"{number}\"")));
    let text = body["body"].as_str().unwrap().replace("127.0.0.1", "");
    assert!(
        !text.contains(&number),
        "the push never carries the number: {text}"
    );
    // The outbox records the push too, right after the webhook call: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gw
        .outbox()
        .iter()
        .any(|m| m["channel"] == "push" && m["user"] == "jiro")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never recorded the push"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn waiting_page_works_without_javascript_and_the_setting_accepts_the_app() {
    let gw = Gateway::start();
    let api = Api::new(&gw);
    // Without an enrolled app, "app" cannot be chosen.
    api.login("jiro").await;
    let r = api
        .http
        .put(gw.url("/_nidan/api/settings"))
        .json(&json!({"enabled": true, "method": "app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    drop(api);
    let _key = enroll_jiro(&gw).await;
    let api = Api::new(&gw);
    let page = api
        .http
        .get(gw.url("/_nidan/login"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = api
        .http
        .post(gw.url("/_nidan/login"))
        .form(&[("id", "jiro"), ("rd", "/app"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let flow_url = r.headers()["location"].to_str().unwrap().to_owned();
    let waiting = api
        .http
        .get(gw.url(&flow_url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Without JavaScript: a button to move on, never a timed reload (axe `meta-refresh`).
    assert!(!waiting.contains("http-equiv=\"refresh\""), "{waiting}");
    assert!(
        waiting.contains(&format!("class=\"button primary\" href=\"{flow_url}\"")),
        "{waiting}"
    );
    assert!(
        waiting.contains("/use-code"),
        "a way to use a security code instead"
    );
    let (_, v) = api
        .get(&format!("/login/{}", flow_url.rsplit('/').next().unwrap()))
        .await;
    let number = v["approval_number"].as_str().unwrap();
    assert!(
        waiting.contains(&format!(">{number}<")),
        "the number is shown big"
    );
    let r = api
        .http
        .post(gw.url(&format!("{flow_url}/use-code")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let page = api
        .http
        .get(gw.url(&flow_url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("name=\"code\""),
        "now the password + code page"
    );
}

/// The `value` of the hidden input `name` in an HTML page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

async fn html(api: &Api<'_>, path: &str) -> (u16, String) {
    let r = api
        .http
        .get(api.gw.url(path))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// jiro's login up to the waiting page; returns (flow, approval ID in the app, number).
async fn waiting(api: &Api<'_>, key: &Path) -> (String, String, String) {
    let (_, v) = api.start("jiro").await;
    assert_eq!(v["step"], "app_approval", "{v}");
    let id = pending(key)[0]["id"].as_str().unwrap().to_owned();
    (
        v["flow"].as_str().unwrap().to_owned(),
        id,
        v["approval_number"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn each_page_says_what_happened_and_what_to_do_next() {
    let gw = Gateway::builder().set("app_approval.window", "3s").start();
    let api = Api::new(&gw);
    // The app is jiro's method but none is enrolled: the page says so and where to set it up.
    let (_, v) = api.start("jiro").await;
    assert_eq!(
        (v["notice"].as_str(), v["app_reason"].as_str()),
        (Some("app_unavailable"), Some("not_enrolled"))
    );
    let flow = v["flow"].as_str().unwrap().to_owned();
    let (_, page) = html(&api, &format!("/_nidan/login/{flow}")).await;
    assert!(page.contains("no app is set up yet"), "{page}");
    let (s, _) = api
        .complete(
            &flow,
            json!({"password": PASSWORD, "code": gw.last_code("jiro")}),
        )
        .await;
    assert_eq!(s, 200);

    // Choosing the app without one: the choice is off, with a link to set one up; forcing it
    // says to set the app up first.
    let (_, page) = html(&api, "/_nidan/settings").await;
    assert!(page.contains("value=\"app\" disabled"), "{page}");
    assert!(page.contains("Not available: no app is set up. <a href=\"/_nidan/app\">"));
    let csrf = hidden(&page, "csrf").unwrap();
    let r = api
        .http
        .post(gw.url("/_nidan/settings"))
        .form(&[("enabled", "on"), ("method", "app"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("set up the app first"));

    // After the QR code the page waits for the app (nidan.js polls the JSON list; without
    // JavaScript, a link checks), then says it is set up.
    let r = api
        .http
        .post(gw.url("/_nidan/app/enroll"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(
            "id=\"nidan-enroll\" data-poll=\"/_nidan/api/app/enrollments\" data-count=\"0\""
        ),
        "{page}"
    );
    assert!(page.contains("Waiting for the app"), "{page}");
    assert!(!page.contains("No app is enrolled"), "{page}");
    assert!(
        !page.contains("action=\"/_nidan/app/enroll\""),
        "no second setup button"
    );
    let uri_start = page.find("<code class=\"uri\">").unwrap() + "<code class=\"uri\">".len();
    let uri = page[uri_start..][..page[uri_start..].find("</code>").unwrap()]
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let (_, page) = html(&api, "/_nidan/app?m=check&n=0").await;
    assert!(page.contains("No app is set up yet"), "{page}");
    let key = gw.path("app-key.json");
    let (ok, out) = app_cli(
        &key,
        &[
            "enroll",
            "--uri",
            &uri,
            "--security-code",
            &gw.last_code("jiro"),
            "--name",
            "jiro's phone",
        ],
    );
    assert!(ok, "{out}");
    let (_, page) = html(&api, "/_nidan/app?m=check&n=0").await;
    assert!(page.contains("The app is set up."), "{page}");
    assert!(page.contains("href=\"/_nidan/settings\""), "{page}");
    // Enrolling is mailed like a new trusted device (SECURITY 16).
    let mail = gw
        .outbox()
        .into_iter()
        .find(|m| {
            m["channel"] == "email" && m["subject"].as_str().unwrap().contains("app for 2-step")
        })
        .expect("the enrollment notice");
    assert!(
        mail["body"].as_str().unwrap().contains("jiro's phone"),
        "{mail}"
    );

    // A wrong number and a plain "no" read differently, and both offer a fresh start to the
    // same return address.
    let (flow, id, number) = waiting(&api, &key).await;
    let wrong = if number == "10" { "11" } else { "10" };
    let (ok, _) = app_cli(&key, &["approve", "--number", wrong, "--", &id]);
    assert!(!ok);
    let (_, v) = api.get(&format!("/login/{flow}")).await;
    assert_eq!(
        (v["approval"].as_str(), v["denial"].as_str()),
        (Some("denied"), Some("wrong_number"))
    );
    let (s, page) = html(&api, &format!("/_nidan/login/{flow}")).await;
    assert_eq!(s, 403);
    assert!(page.contains("did not match"), "{page}");
    assert!(page.contains("href=\"/_nidan/login?rd=%2F\""), "{page}");
    let (flow, id, _) = waiting(&api, &key).await;
    let (ok, _) = app_cli(&key, &["deny", "--", &id]);
    assert!(ok);
    let (_, page) = html(&api, &format!("/_nidan/login/{flow}")).await;
    assert!(
        page.contains("was chosen in the app, so the login was stopped"),
        "{page}"
    );
    assert!(!page.contains("did not match"));

    // "Log in with a security code instead": the code page says so.
    let (flow, _, _) = waiting(&api, &key).await;
    let (s, v) = api
        .post(&format!("/login/{flow}/use-code"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["app_reason"], "code_chosen");
    let (_, page) = html(&api, &format!("/_nidan/login/{flow}")).await;
    assert!(
        page.contains("You chose to log in with a security code"),
        "{page}"
    );

    // "This wasn't me": the page says what happened, the next login how long the app rests.
    // (Three requests filled the window of three: let it pass.)
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    let (flow, id, _) = waiting(&api, &key).await;
    let (ok, _) = app_cli(&key, &["deny", "--not-me", "--", &id]);
    assert!(ok);
    let (_, v) = api.get(&format!("/login/{flow}")).await;
    assert_eq!(v["denial"], "not_me");
    let (_, page) = html(&api, &format!("/_nidan/login/{flow}")).await;
    assert!(page.contains("app requests are paused"), "{page}");
    let (_, v) = api.start("jiro").await;
    assert_eq!(v["app_reason"], "paused", "{v}");
    let (_, page) = html(
        &api,
        &format!("/_nidan/login/{}", v["flow"].as_str().unwrap()),
    )
    .await;
    assert!(page.contains("paused for about 15 minutes"), "{page}");
}
