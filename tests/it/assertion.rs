//! The signed identity assertion through the real binary: a backend verifies what it
//! received with an independent JWT library (Python's PyJWT) against nidan's JWKS; `amr`
//! says what the login proved; `exp` is at most five minutes away; a client's copy of the
//! header never reaches a backend; a route can turn it off; tokens are reused, not signed
//! per request.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common;

use std::process::Command;

use common::*;
use serde_json::Value;

const ISSUER: &str = "https://login.example.test";

fn gateway() -> Gateway {
    Gateway::builder()
        .set("portal.public_url", ISSUER)
        .set("identity_assertion", "{ enabled: true }")
        // The `basic` route (session or Basic) opts out.
        .set("routes[3].identity_assertion", "false")
        .start()
}

/// What the echo backend received for a GET (its JSON answer).
async fn echo(http: &reqwest::Client, gw: &Gateway, path: &str, extra: &[(&str, &str)]) -> Value {
    let mut req = http.get(gw.url(path)).header("accept", "application/json");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

fn assertion_of(echoed: &Value) -> Option<String> {
    echoed["headers"]["x-nidan-assertion"]
        .as_str()
        .map(str::to_owned)
}

/// Runs the Python verifier: Ok(claims) or Err(its complaint).
fn pyjwt(gw: &Gateway, token: &str, audience: &str) -> Result<Value, String> {
    let script = repo().join("tests/python/verify_assertion.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(gw.url("/_nidan/.well-known/jwks.json"))
        .arg(token)
        .arg(audience)
        .arg(ISSUER)
        .output()
        .expect("python3 runs (CI installs PyJWT and cryptography: .ci/run)");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Verifies with the Rust `jsonwebtoken` crate against the JWKS fetched over HTTP.
async fn verify(gw: &Gateway, token: &str, audience: &str) -> Value {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let jwks: JwkSet = plain()
        .get(gw.url("/_nidan/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = decode_header(token).unwrap().kid.unwrap();
    let key =
        DecodingKey::from_jwk(jwks.find(&kid).expect("the signing key is published")).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&[audience]);
    v.set_issuer(&[ISSUER]);
    decode::<Value>(token, &key, &v).unwrap().claims
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_backend_verifies_the_assertion_with_pyjwt() {
    let gw = gateway();
    let api = Api::new(&gw);
    api.login("taro").await;
    let got = echo(&api.http, &gw, "/wiki/page", &[]).await;
    let token = assertion_of(&got).expect("the backend got an assertion");
    let claims = pyjwt(&gw, &token, "app").unwrap_or_else(|e| panic!("PyJWT refused: {e}"));
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["sub"], "taro");
    assert_eq!(claims["name"], "Taro Yamada");
    assert_eq!(claims["email"], "taro@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["staff"]));
    assert_eq!(claims["amr"], serde_json::json!(["password"]));
    let (iat, exp, auth) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
        claims["auth_time"].as_i64().unwrap(),
    );
    assert!(exp - iat <= 300 && exp > now(), "{claims}");
    assert!(auth <= iat && iat <= now() + 1, "{claims}");
    // The same library refuses what it must: another audience, a changed payload.
    let wrong = pyjwt(&gw, &token, "admin").unwrap_err();
    assert!(wrong.contains("InvalidAudience"), "{wrong}");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let forged = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
        c["sub"] = "hanako".into();
        c["groups"] = serde_json::json!(["admins"]);
        b64.encode(c.to_string())
    };
    parts[1] = forged;
    let tampered = pyjwt(&gw, &parts.join("."), "app").unwrap_err();
    assert!(tampered.contains("InvalidSignature"), "{tampered}");
}

#[tokio::test]
async fn amr_says_what_the_login_proved_and_tokens_are_reused() {
    let gw = gateway();
    let api = Api::new(&gw);
    // hanako has 2-step on: password and an SMS code.
    api.login("hanako").await;
    let got = echo(&api.http, &gw, "/admin/panel", &[]).await;
    let token = assertion_of(&got).unwrap();
    let claims = verify(&gw, &token, "admin").await;
    assert_eq!(claims["sub"], "hanako");
    assert_eq!(claims["amr"], serde_json::json!(["password", "sms", "mfa"]));
    assert_eq!(claims["groups"], serde_json::json!(["staff", "admins"]));
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 300);
    // Signed once per session and route, then reused: the same token (same jti) on the
    // next requests; another route gets its own audience.
    let again = echo(&api.http, &gw, "/admin/other", &[]).await;
    assert_eq!(assertion_of(&again).unwrap(), token);
    let app = assertion_of(&echo(&api.http, &gw, "/wiki", &[]).await).unwrap();
    assert_ne!(app, token);
    assert_eq!(verify(&gw, &app, "app").await["aud"], "app");
}

#[tokio::test]
async fn client_copies_never_reach_a_backend_and_routes_can_turn_it_off() {
    let gw = gateway();
    let forged = [
        (
            "X-Nidan-Assertion",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJoYW5ha28ifQ.",
        ),
        ("x_nidan_assertion", "forged"),
    ];
    // A bypass route: nobody is identified, and the forged copies are gone.
    let anon = plain();
    let got = echo(&anon, &gw, "/public/x", &forged).await;
    let names: Vec<&String> = got["headers"].as_object().unwrap().keys().collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("nidan") && n.contains("assertion")),
        "{names:?}"
    );
    let api = Api::new(&gw);
    api.login("taro").await;
    // The route that turned it off: the user is identified, no assertion, no forged copy.
    let got = echo(&api.http, &gw, "/basic/x", &forged).await;
    assert_eq!(got["headers"]["remote-user"], "taro");
    assert!(assertion_of(&got).is_none(), "{got}");
    assert!(got["headers"].get("x_nidan_assertion").is_none(), "{got}");
    // A route that carries it: the forged value is replaced by nidan's.
    let got = echo(&api.http, &gw, "/wiki", &forged).await;
    let token = assertion_of(&got).unwrap();
    assert_ne!(token, forged[0].1);
    assert_eq!(verify(&gw, &token, "app").await["sub"], "taro");
}

#[tokio::test]
async fn without_the_section_there_is_no_jwks_and_copies_are_still_stripped() {
    let gw = Gateway::start();
    let r = plain()
        .get(gw.url("/_nidan/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let got = echo(
        &plain(),
        &gw,
        "/public/x",
        &[("X-Nidan-Assertion", "forged")],
    )
    .await;
    assert!(assertion_of(&got).is_none(), "{got}");
}

/// The token cache never serves what is no longer true: a user taken out of a group gets a
/// token without it on the next request (not the cached one), and two users never share
/// one.
#[tokio::test]
async fn a_changed_group_or_another_user_never_gets_a_cached_token() {
    let gw = gateway();
    let hanako = Api::new(&gw);
    hanako.login("hanako").await;
    let before = assertion_of(&echo(&hanako.http, &gw, "/wiki", &[]).await).unwrap();
    assert_eq!(
        verify(&gw, &before, "app").await["groups"],
        serde_json::json!(["staff", "admins"])
    );
    let taro = Api::new(&gw);
    taro.login("taro").await;
    let other = assertion_of(&echo(&taro.http, &gw, "/wiki", &[]).await).unwrap();
    assert_ne!(other, before);
    assert_eq!(verify(&gw, &other, "app").await["sub"], "taro");
    // hanako leaves `admins` (the users file is reloaded every second).
    let path = gw.path("users.yaml");
    let text = read(&path);
    let at = text.find("- id: hanako\n").unwrap();
    let (head, tail) = text.split_at(at);
    let tail = tail.replacen("groups: [staff, admins]", "groups: [staff]", 1);
    std::fs::write(&path, format!("{head}{tail}")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = hanako
            .http
            .get(gw.url("/wiki"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let got: Value = r.json().await.unwrap();
            let token = assertion_of(&got).unwrap();
            let claims = verify(&gw, &token, "app").await;
            // Whatever the backend is told matches the header nidan sends with it.
            assert_eq!(
                claims["groups"].as_array().unwrap().len(),
                got["headers"]["remote-groups"]
                    .as_str()
                    .unwrap()
                    .split(',')
                    .count(),
                "{got}"
            );
            if claims["groups"] == serde_json::json!(["staff"]) {
                assert_ne!(token, before);
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cached token still said admins"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `auth_time` is when the user last proved the factors: a 2-step setting change (a new
/// session ID for the same login) does not move it forward (SECURITY 43).
#[tokio::test]
async fn a_setting_change_does_not_move_auth_time() {
    let gw = gateway();
    let api = Api::new(&gw);
    api.login("taro").await;
    let token = assertion_of(&echo(&api.http, &gw, "/wiki/page", &[]).await).unwrap();
    let before = verify(&gw, &token, "app").await;
    let auth_time = before["auth_time"].as_i64().unwrap();
    // Whole seconds: past 2 s the clock has surely moved on.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    for method in ["email", "sms"] {
        let r = api
            .http
            .put(gw.url("/_nidan/api/settings"))
            .json(&serde_json::json!({"enabled": false, "method": method}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let token = assertion_of(&echo(&api.http, &gw, "/wiki/page", &[]).await).unwrap();
        let after = verify(&gw, &token, "app").await;
        assert_eq!(after["sub"], "taro");
        assert_eq!(after["auth_time"].as_i64(), Some(auth_time), "{after}");
    }
}
