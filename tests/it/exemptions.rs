//! Exemptions through the real binary: a trusted network seen from 127.0.0.2 but not from
//! 127.0.0.1, `X-Forwarded-For` only from trusted proxies, an exempt route with HTTP Basic,
//! API tokens (Bearer and Basic) on `token` routes, revocation, and the audit trail.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]
#![allow(clippy::too_many_lines)] // tests are exempt: a scenario reads top to bottom

use crate::common::{self, audit};

use audit::{FIREFOX, client_from, jar, last};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::post_api as post;
use common::*;
use serde_json::{Value, json};

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[tokio::test]
async fn a_trusted_network_skips_the_second_step_only_from_inside() {
    let gw = Gateway::builder()
        .set("exemptions", "{ networks: [\"127.0.0.2/32\"] }")
        .start();
    let db = gw.path("nidan.db");
    // 127.0.0.1 is outside: hanako (2-step by SMS) is asked for a code.
    let outside = client_from("127.0.0.1", &jar(), FIREFOX);
    let (_, v) = post(&outside, &gw, "/login", json!({"id": "hanako"})).await;
    assert_eq!(v["step"], "password_and_code", "{v}");

    // 127.0.0.2 is inside: the password alone, and the exemption is recorded.
    let inside = client_from("127.0.0.2", &jar(), FIREFOX);
    let start = json!({"id": "hanako", "return_to": "/"});
    let (v, _) = api_login(&inside, &gw.url(""), &gw, start, json!({}), &[]).await;
    assert_eq!(v["step"], "password", "{v}");
    let me: Value = inside
        .get(gw.url("/_nidan/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["methods"], json!(["password", "network"]), "{me}");
    assert_eq!(me["two_step"], false);
    let d = last(&db, "hanako", "second_step_skipped").await.unwrap();
    assert_eq!(d["reason"], "trusted_network", "{d}");
    assert_eq!(d["network"], "127.0.0.2/32");
    assert_eq!(d["asked_by"], "user_setting");

    // Never on a two_factor route: /admin still asks for the code from inside, and the
    // network session is not enough there.
    let r = inside
        .get(gw.url("/admin/x"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("step_up=1")
    );
    let (_, v) = post(
        &inside,
        &gw,
        "/login",
        json!({"id": "hanako", "return_to": "/admin/x"}),
    )
    .await;
    assert_eq!(v["step"], "password_and_code", "{v}");
    // Never the first step: a wrong password still fails from inside.
    let (_, v) = post(&inside, &gw, "/login", json!({"id": "hanako"})).await;
    let (s, _) = post(
        &inside,
        &gw,
        &format!("/login/{}/complete", v["flow"].as_str().unwrap()),
        json!({"password": "wrong"}),
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let gw = Gateway::builder()
        .set("trusted_proxies", "[\"127.0.0.1/32\"]")
        .set("exemptions", "{ networks: [\"10.9.0.0/16\"] }")
        .start();
    let start = |from: &str| {
        let http = client_from(from, &jar(), FIREFOX);
        let url = gw.url("/_nidan/api/login");
        async move {
            let v: Value = http
                .post(url)
                .header("x-forwarded-for", "10.9.1.1")
                .json(&json!({"id": "hanako"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    // From the trusted proxy, the forwarded client 10.9.1.1 is in the trusted network.
    assert_eq!(start("127.0.0.1").await["step"], "password");
    // From anyone else the header is ignored: the peer 127.0.0.3 is not trusted.
    assert_eq!(start("127.0.0.3").await["step"], "password_and_code");
}

#[tokio::test]
async fn an_exempt_route_takes_the_password_alone_over_basic() {
    let gw = Gateway::start();
    let db = gw.path("nidan.db");
    let http = client();
    // /sync: policy login, second_step exempt, accept [basic]. hanako has 2-step on.
    let r = http
        .get(gw.url("/sync/inbox"))
        .header("authorization", basic("hanako", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["remote-user"], "hanako", "{echo}");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    let d = last(&db, "hanako", "basic_auth_succeeded").await.unwrap();
    assert_eq!(d["exemption"], "route_exempt", "{d}");
    // Wrong password: 401 with a Basic challenge.
    let r = http
        .get(gw.url("/sync/inbox"))
        .header("authorization", basic("hanako", "nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    // /basic is not exempt: the password alone is not enough for hanako, but is for taro.
    let r = http
        .get(gw.url("/basic/x"))
        .header("authorization", basic("hanako", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(gw.url("/basic/x"))
        .header("authorization", basic("taro", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn api_tokens_work_where_allowed_and_stop_when_revoked() {
    let gw = Gateway::builder()
        .set("routes[2].accept", "[basic, token]")
        .set("routes[3].accept", "[session, basic, token]")
        .start();
    let db = gw.path("nidan.db");
    let api = Api::new(&gw);
    api.login("hanako").await;

    // Created through the API (recent login, JSON, same site), shown once.
    let (s, v) = api.post("/tokens", json!({"name": "mail app"})).await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("nidan_") && token.len() > 40);
    let (_, list) = api.get("/tokens").await;
    assert_eq!(list["tokens"][0]["name"], "mail app", "{list}");
    assert!(list["tokens"][0]["last_used"].is_null());
    assert!(
        list["tokens"][0].get("token").is_none(),
        "shown once: {list}"
    );
    // Cross-site creation is refused.
    let r = api
        .http
        .post(gw.url("/_nidan/api/tokens"))
        .header("origin", "https://evil.example")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let plain = client();
    let get = |path: &str, auth: String| {
        let req = plain.get(gw.url(path)).header("authorization", auth);
        async move { req.send().await.unwrap() }
    };
    // Bearer on the exempt token route.
    let r = get("/sync/inbox", format!("Bearer {token}")).await;
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["remote-user"], "hanako");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    // As the Basic password, with the right ID only.
    assert_eq!(
        get("/sync/inbox", basic("hanako", &token)).await.status(),
        200
    );
    assert_eq!(
        get("/sync/inbox", basic("taro", &token)).await.status(),
        401
    );
    // A token counts as the password alone: not on a login route for a user with 2-step,
    let r = get("/basic/x", format!("Bearer {token}")).await;
    assert_eq!(r.status(), 401);
    let d = last(&db, "hanako", "token_rejected").await.unwrap();
    assert_eq!(d["reason"], "second_step_required", "{d}");
    // and never on routes that do not list `token`.
    assert_ne!(
        get("/admin/x", format!("Bearer {token}")).await.status(),
        200
    );
    assert_ne!(get("/app", format!("Bearer {token}")).await.status(), 200);

    // Use is recorded, with last use.
    let d = last(&db, "hanako", "token_used").await.unwrap();
    assert_eq!(d["token"], id.as_str());
    assert_eq!(d["exemption"], "route_exempt", "{d}");
    let (_, list) = api.get("/tokens").await;
    assert!(list["tokens"][0]["last_used"].is_string(), "{list}");

    // taro (no 2-step) may use a token on the login route.
    let taro = Api::new(&gw);
    taro.login("taro").await;
    let (_, v) = taro.post("/tokens", json!({"name": "cli"})).await;
    let taro_token = v["token"].as_str().unwrap().to_owned();
    let r = get("/basic/x", format!("Bearer {taro_token}")).await;
    assert_eq!(r.status(), 200);

    // Revoked: 401, recorded.
    let r = api
        .http
        .delete(gw.url(&format!("/_nidan/api/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        get("/sync/inbox", format!("Bearer {token}")).await.status(),
        401
    );
    assert_eq!(
        get("/sync/inbox", basic("hanako", &token)).await.status(),
        401
    );
    let d = last(&db, "hanako", "token_rejected").await.unwrap();
    assert_eq!(d["reason"], "revoked", "{d}");
    let (_, list) = api.get("/tokens").await;
    assert_eq!(list["tokens"], json!([]));
    // Another user's token cannot be revoked by hanako.
    let taro_id = v["id"].as_str().unwrap();
    let r = api
        .http
        .delete(gw.url(&format!("/_nidan/api/tokens/{taro_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Never stored or logged in clear.
    let stored = std::fs::read(gw.path("nidan.db")).unwrap();
    let wal = std::fs::read(gw.path("nidan.db-wal")).unwrap_or_default();
    for t in [&token, &taro_token] {
        let needle = &t.as_bytes()[6..];
        assert!(!stored.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
        assert!(!gw.log().contains(t.as_str()));
    }
}

#[tokio::test]
async fn tokens_are_managed_on_the_settings_page() {
    let gw = Gateway::start();
    let api = Api::new(&gw);
    api.login("taro").await;
    let r = api
        .http
        .get(gw.url("/_nidan/settings"))
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("/_nidan/settings/tokens"),
        "the settings page links to it"
    );
    let r = api
        .http
        .get(gw.url("/_nidan/settings/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
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
        .post(gw.url("/_nidan/settings/tokens"))
        .form(&[("name", "Thunderbird <laptop>"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    // Post/Redirect/Get: the page the 303 names shows the new token (portal_ux has more).
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = api.http.get(gw.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Thunderbird &#60;laptop&#62;")
            || html.contains("Thunderbird &lt;laptop&gt;"),
        "{html}"
    );
    let token = html
        .split("<code class=\"token\" id=\"new-token\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    assert!(token.starts_with("nidan_"));
    // Shown once: the next page view lists the name, not the token.
    let html = api
        .http
        .get(gw.url("/_nidan/settings/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains(token));
    // A form without the CSRF token is refused.
    let r = api
        .http
        .post(gw.url("/_nidan/settings/tokens"))
        .form(&[("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
