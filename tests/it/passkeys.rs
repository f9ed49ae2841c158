//! Passkeys through the real binary, with the test itself as the authenticator (a software
//! P-256 or Ed25519 key, attestation objects built with ciborium, assertions signed here):
//! registration, a login that counts as both steps, and every refusal — wrong origin,
//! replayed challenge, wrong rpIdHash, no user verification, bad signature, a counter that
//! did not increase, a disabled user, a deleted passkey.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common::{self, audit, webauthn};

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};
use webauthn::*;

/// Registers `auth` for the user logged in on `api`; returns the passkey's ID.
async fn register(api: &Api<'_>, auth: &mut Authenticator, name: &str) -> String {
    let (s, options) = api.post("/passkeys/register/start", json!({})).await;
    assert_eq!(s, 200, "{options}");
    let cred = auth.create(&options, &origin(api.gw), UP | UV);
    let (s, v) = api
        .post(
            "/passkeys/register/finish",
            json!({"name": name, "credential": cred}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// A passkey login on a fresh browser; returns (status, body, the browser).
async fn passkey_login<'a>(
    gw: &'a Gateway,
    auth: &mut Authenticator,
    return_to: &str,
    t: Tweak,
) -> (u16, Value, Api<'a>) {
    let api = Api::new(gw);
    let (s, options) = api
        .post("/passkeys/login/start", json!({"return_to": return_to}))
        .await;
    assert_eq!(s, 200, "{options}");
    let cred = auth.get(&options, &origin(gw), t);
    let (s, v) = api
        .post("/passkeys/login/finish", json!({"credential": cred}))
        .await;
    (s, v, api)
}

fn gateway() -> Gateway {
    // The refusal tests fail many times on one account; keep the growing delays out of the way.
    Gateway::builder()
        .set("login_limits.free_failures", "50")
        .start()
}

#[tokio::test]
async fn register_and_log_in_with_a_passkey() {
    let gw = gateway();
    let api = Api::new(&gw);
    api.login("hanako").await;
    let (s, options) = api.post("/passkeys/register/start", json!({})).await;
    assert_eq!(s, 200, "{options}");
    assert_eq!(options["rp"]["id"], "127.0.0.1");
    assert_eq!(options["rp"]["name"], "nidan");
    assert_eq!(options["user"]["name"], "hanako");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(options["challenge"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    let algs: Vec<i64> = options["pubKeyCredParams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["alg"].as_i64().unwrap())
        .collect();
    assert!(algs.contains(&-7) && algs.contains(&-8), "{algs:?}");

    let mut auth = Authenticator::es256();
    let cred = auth.create(&options, &origin(&gw), UP | UV);
    let body = json!({"name": "My phone", "credential": cred});
    // A name is required, like a trusted device's.
    let (s, v) = api
        .post(
            "/passkeys/register/finish",
            json!({"name": " ", "credential": cred}),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_passkey_name")));
    let (s, v) = api.post("/passkeys/register/finish", body.clone()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["name"], "My phone");
    assert_eq!(v["alg"], "ES256");
    // The challenge answered once.
    let (s, _) = api.post("/passkeys/register/finish", body).await;
    assert_eq!(s, 400);
    let (s, list) = api.get("/passkeys").await;
    assert_eq!(s, 200);
    assert_eq!(list["passkeys"].as_array().unwrap().len(), 1, "{list}");
    // Registering the same authenticator again is excluded.
    let (_, options) = api.post("/passkeys/register/start", json!({})).await;
    assert_eq!(options["excludeCredentials"][0]["id"], b64(&auth.cred_id));

    // A fresh browser logs in with the passkey alone: both steps done.
    let (s, v, browser) = passkey_login(&gw, &mut auth, "/app/x?y=1", Tweak::default()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["redirect"], "/app/x?y=1");
    let (_, me) = browser.get("/me").await;
    assert_eq!(me["user"], "hanako");
    assert_eq!(me["two_step"], true);
    assert_eq!(me["methods"], json!(["passkey"]));
    let echo: Value = browser
        .http
        .get(gw.url("/admin/panel"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        echo["headers"]["remote-user"], "hanako",
        "a two_factor route lets a passkey session through: {echo}"
    );
    // An unsafe return address falls back to `/`.
    let (s, v, _) = passkey_login(&gw, &mut auth, "//evil.example/", Tweak::default()).await;
    assert_eq!((s, v["redirect"].as_str()), (200, Some("/")));

    let db = gw.path("nidan.db");
    let ok = audit::last(&db, "hanako", "login_succeeded").await.unwrap();
    assert_eq!(ok["method"], "passkey", "{ok}");
    let skipped = audit::last(&db, "hanako", "second_step_skipped")
        .await
        .unwrap();
    assert_eq!(skipped["reason"], "passkey", "{skipped}");
    assert!(
        audit::last(&db, "hanako", "passkey_registered")
            .await
            .is_some()
    );
    let (_, list) = browser.get("/passkeys").await;
    assert!(list["passkeys"][0]["last_used"].is_string(), "{list}");
}

#[tokio::test]
async fn every_refusal_is_a_generic_401() {
    let gw = gateway();
    let api = Api::new(&gw);
    api.login("hanako").await;
    let mut auth = Authenticator::es256();
    register(&api, &mut auth, "key").await;
    let o = origin(&gw);
    let cases = [
        (
            "wrong_origin",
            Tweak {
                origin: Some("http://evil.example".into()),
                ..Tweak::default()
            },
        ),
        (
            "wrong_rp_id",
            Tweak {
                rp_id: Some("evil.example".into()),
                ..Tweak::default()
            },
        ),
        (
            "user_not_verified",
            Tweak {
                flags: Some(UP),
                ..Tweak::default()
            },
        ),
        (
            "user_not_present",
            Tweak {
                flags: Some(UV),
                ..Tweak::default()
            },
        ),
        (
            "bad_signature",
            Tweak {
                bad_signature: true,
                ..Tweak::default()
            },
        ),
    ];
    let mut answers = Vec::new();
    for (reason, tweak) in cases {
        let (s, v, browser) = passkey_login(&gw, &mut auth, "/", tweak).await;
        assert_eq!(s, 401, "{reason}: {v}");
        assert_eq!(browser.get("/me").await.0, 401, "{reason}");
        let rec = audit::last(&gw.path("nidan.db"), "hanako", "login_failed")
            .await
            .unwrap();
        assert_eq!(rec["reason"], reason, "{rec}");
        assert_eq!(rec["method"], "passkey");
        answers.push(v);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    // A good login, then the same assertion again: the challenge is spent.
    let api2 = Api::new(&gw);
    let (_, options) = api2.post("/passkeys/login/start", json!({})).await;
    let cred = auth.get(&options, &o, Tweak::default());
    let (s, _) = api2
        .post("/passkeys/login/finish", json!({"credential": cred}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = api2
        .post("/passkeys/login/finish", json!({"credential": cred}))
        .await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(answers[0], v);

    // A counter that did not go up: a cloned authenticator.
    let last = auth.count;
    let (s, _, _) = passkey_login(
        &gw,
        &mut auth,
        "/",
        Tweak {
            count: Some(last - 1),
            ..Tweak::default()
        },
    )
    .await;
    assert_eq!(s, 401);
    let rec = audit::last(&gw.path("nidan.db"), "hanako", "login_failed")
        .await
        .unwrap();
    assert_eq!(rec["reason"], "counter_not_increased", "{rec}");
    // A challenge for another purpose (registration) does not log in.
    let (_, reg) = api.post("/passkeys/register/start", json!({})).await;
    let fake = json!({"challenge": reg["challenge"], "rpId": "127.0.0.1"});
    let cred = auth.get(&fake, &o, Tweak::default());
    let (s, _) = Api::new(&gw)
        .post("/passkeys/login/finish", json!({"credential": cred}))
        .await;
    assert_eq!(s, 401);
    // An unknown credential.
    let mut stranger = Authenticator::es256();
    let (s, _, _) = passkey_login(&gw, &mut stranger, "/", Tweak::default()).await;
    assert_eq!(s, 401);
    // After all that the real passkey still works (delays were configured away).
    let (s, _, _) = passkey_login(&gw, &mut auth, "/", Tweak::default()).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn failures_count_against_the_account() {
    let gw = Gateway::builder()
        .set("login_limits.base_delay", "30s")
        .start();
    let api = Api::new(&gw);
    api.login("hanako").await;
    let mut auth = Authenticator::es256();
    register(&api, &mut auth, "key").await;
    // Five free failures, then a delay: the sixth attempt is throttled.
    for _ in 0..5 {
        let (s, _, _) = passkey_login(
            &gw,
            &mut auth,
            "/",
            Tweak {
                bad_signature: true,
                ..Tweak::default()
            },
        )
        .await;
        assert_eq!(s, 401);
    }
    let browser = Api::new(&gw);
    let (_, options) = browser.post("/passkeys/login/start", json!({})).await;
    let cred = auth.get(&options, &origin(&gw), Tweak::default());
    let r = browser
        .http
        .post(gw.url("/_nidan/api/passkeys/login/finish"))
        .json(&json!({"credential": cred}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn registration_needs_both_steps_a_recent_login_and_our_site() {
    let gw = gateway();
    // Without a session.
    let anon = Api::new(&gw);
    assert_eq!(
        anon.post("/passkeys/register/start", json!({})).await.0,
        401
    );
    // taro has 2-step off: his password-only session cannot add what stands for both steps.
    let taro = Api::new(&gw);
    taro.login("taro").await;
    let (s, v) = taro.post("/passkeys/register/start", json!({})).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("second_step_required"))
    );
    // Cross-site and non-JSON requests are refused.
    let api = Api::new(&gw);
    api.login("hanako").await;
    let r = api
        .http
        .post(gw.url("/_nidan/api/passkeys/register/start"))
        .header("origin", "http://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = api
        .http
        .post(gw.url("/_nidan/api/passkeys/register/start"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // A registration whose origin, rpIdHash or UV flag is wrong is refused.
    let mut auth = Authenticator::es256();
    for (origin_used, flags) in [
        ("http://evil.example".to_owned(), UP | UV),
        (origin(&gw), UP),
    ] {
        let (_, options) = api.post("/passkeys/register/start", json!({})).await;
        let cred = auth.create(&options, &origin_used, flags);
        let (s, v) = api
            .post(
                "/passkeys/register/finish",
                json!({"name": "x", "credential": cred}),
            )
            .await;
        assert_eq!((s, v["error"].as_str()), (400, Some("registration_failed")));
    }
    let (_, mut options) = api.post("/passkeys/register/start", json!({})).await;
    options["rp"]["id"] = json!("evil.example");
    let cred = auth.create(&options, &origin(&gw), UP | UV);
    let (s, _) = api
        .post(
            "/passkeys/register/finish",
            json!({"name": "x", "credential": cred}),
        )
        .await;
    assert_eq!(s, 400);
    // Another browser of the same user cannot finish this session's registration.
    let (_, options) = api.post("/passkeys/register/start", json!({})).await;
    let other = Api::new(&gw);
    other.login("hanako").await;
    let cred = auth.create(&options, &origin(&gw), UP | UV);
    let (s, _) = other
        .post(
            "/passkeys/register/finish",
            json!({"name": "x", "credential": cred}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(api.get("/passkeys").await.1["passkeys"], json!([]));
}

#[tokio::test]
async fn an_ed25519_passkey_works_too() {
    let gw = gateway();
    let api = Api::new(&gw);
    api.login("emi").await;
    let mut auth = Authenticator::ed25519();
    register(&api, &mut auth, "security key").await;
    let (_, list) = api.get("/passkeys").await;
    assert_eq!(list["passkeys"][0]["alg"], "EdDSA");
    let (s, v, browser) = passkey_login(&gw, &mut auth, "/app", Tweak::default()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(browser.get("/me").await.1["user"], "emi");
}

#[tokio::test]
async fn a_deleted_passkey_and_a_disabled_user_cannot_log_in() {
    let gw = gateway();
    let api = Api::new(&gw);
    api.login("hanako").await;
    let mut first = Authenticator::es256();
    let mut second = Authenticator::es256();
    let id = register(&api, &mut first, "first").await;
    register(&api, &mut second, "second").await;
    // Both share the user handle the authenticators keep.
    assert_eq!(first.user_handle, second.user_handle);
    // Rename, then delete the first.
    let r = api
        .http
        .patch(gw.url(&format!("/_nidan/api/passkeys/{id}")))
        .json(&json!({"name": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = api
        .http
        .delete(gw.url(&format!("/_nidan/api/passkeys/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = api
        .http
        .delete(gw.url(&format!("/_nidan/api/passkeys/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (s, _, _) = passkey_login(&gw, &mut first, "/", Tweak::default()).await;
    assert_eq!(s, 401, "a deleted passkey");
    let (s, _, _) = passkey_login(&gw, &mut second, "/", Tweak::default()).await;
    assert_eq!(s, 200, "the other passkey still works");

    // mika registers one, then the operator disables her account.
    let mika = Api::new(&gw);
    mika.login("mika").await;
    let mut key = Authenticator::es256();
    register(&mika, &mut key, "mika's phone").await;
    let (s, _, _) = passkey_login(&gw, &mut key, "/", Tweak::default()).await;
    assert_eq!(s, 200);
    let path = gw.path("users.yaml");
    let text = read(&path);
    std::fs::write(
        &path,
        text.replacen("- id: mika\n", "- id: mika\n    disabled: true\n", 1),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mika.get("/me").await.0 != 401 {
        assert!(Instant::now() < deadline, "the disable was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, v, browser) = passkey_login(&gw, &mut key, "/", Tweak::default()).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(browser.get("/me").await.0, 401);
    let rec = audit::last(&gw.path("nidan.db"), "mika", "login_failed")
        .await
        .unwrap();
    assert_eq!(rec["reason"], "account_inactive", "{rec}");
}

#[tokio::test]
async fn the_passkeys_page_and_the_login_button() {
    let gw = gateway();
    let api = Api::new(&gw);
    let page = api
        .http
        .get(gw.url("/_nidan/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"nidan-passkey-login\""), "{page}");
    assert!(page.contains("/_nidan/static/nidan.js"));
    api.login("hanako").await;
    let mut auth = Authenticator::es256();
    register(&api, &mut auth, "<b>laptop</b>").await;
    let page = api
        .http
        .get(gw.url("/_nidan/passkeys"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("&#60;b&#62;laptop") || page.contains("&lt;b&gt;laptop"),
        "{page}"
    );
    assert!(page.contains("id=\"nidan-passkey-register\""));
    let home = api
        .http
        .get(gw.url("/_nidan/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("href=\"/_nidan/passkeys\""));

    // Disabled in the configuration: no button, no API.
    let off = Gateway::builder()
        .set("passkeys", "{ enabled: false }")
        .start();
    let a = Api::new(&off);
    let page = a
        .http
        .get(off.url("/_nidan/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("nidan-passkey-login"));
    assert_eq!(a.post("/passkeys/login/start", json!({})).await.0, 404);
}

#[tokio::test]
async fn registering_a_passkey_is_mailed_and_removing_one_is_confirmed() {
    let gw = gateway();
    let api = Api::new(&gw);
    api.login("hanako").await;
    let mut auth = Authenticator::es256();
    let id = register(&api, &mut auth, "My phone").await;
    // A new way in, like a trusted device: the user hears of it (SECURITY 16).
    let mail = (0..100)
        .find_map(|_| {
            let found = gw.outbox().into_iter().find(|m| {
                m["channel"] == "email" && m["subject"].as_str().unwrap().contains("passkey")
            });
            if found.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            found
        })
        .expect("the passkey notice");
    assert_eq!(mail["to"], "hanako@example.com");
    assert!(
        mail["body"].as_str().unwrap().contains("My phone"),
        "{mail}"
    );

    // The list links to a confirmation page; only its form removes.
    let get = |path: String| {
        let http = api.http.clone();
        let url = gw.url(&path);
        async move {
            let r = http
                .get(url)
                .header("accept", "text/html")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (_, list) = get("/_nidan/passkeys".into()).await;
    let confirm = format!("/_nidan/passkeys/{id}/delete");
    assert!(list.contains(&format!("href=\"{confirm}\"")), "{list}");
    let (s, page) = get(confirm.clone()).await;
    assert_eq!(s, 200);
    assert!(page.contains("Remove the passkey"), "{page}");
    assert!(page.contains(&format!("action=\"{confirm}\"")));
    let (_, v) = api.get("/passkeys").await;
    assert_eq!(
        v["passkeys"].as_array().unwrap().len(),
        1,
        "asking removed nothing"
    );
    let csrf = {
        let m = "name=\"csrf\" value=\"";
        let i = page.find(m).unwrap() + m.len();
        page[i..][..43].to_owned()
    };
    let r = api
        .http
        .post(gw.url(&confirm))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_nidan/passkeys?m=removed");
    let (_, v) = api.get("/passkeys").await;
    assert!(v["passkeys"].as_array().unwrap().is_empty());
}
