//! "Where you are logged in" through the real binary: a user lists their sessions (browser,
//! address, times, how), ends one or all others, and the ended sessions stop working at once;
//! the handles open nothing and reach no one else's session; ending needs a recent login and
//! a same-site request; the page works without JavaScript.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common::{self, audit};

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

/// A cookie-jar client with its own User-Agent, logged in as `id`.
async fn browser(gw: &Gateway, id: &str, ua: &str) -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(ua)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    api_login(&http, &gw.url(""), gw, json!({"id": id}), json!({}), &[]).await;
    http
}

async fn status(http: &reqwest::Client, gw: &Gateway, path: &str) -> u16 {
    http.get(gw.url(path))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn sessions(http: &reqwest::Client, gw: &Gateway) -> Vec<Value> {
    let r = http
        .get(gw.url("/_nidan/api/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["sessions"].as_array().unwrap().clone()
}

async fn delete(http: &reqwest::Client, gw: &Gateway, path: &str) -> (u16, Value) {
    let r = http
        .delete(gw.url(&format!("/_nidan/api{path}")))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_user_sees_their_sessions_and_ends_them_at_once() {
    let gw = Gateway::start();
    let a = browser(&gw, "taro", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0").await;
    let b = browser(
        &gw,
        "taro",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1",
    )
    .await;
    let c = browser(&gw, "taro", "curl/8.0").await;
    let other_user = browser(&gw, "hanako", "Mozilla/5.0 Firefox/128.0").await;
    let list = sessions(&a, &gw).await;
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    for s in &list {
        assert_eq!(s["address"], "127.0.0.1");
        assert_eq!(s["methods"], "password");
        assert!(s["created"].is_string() && s["last_seen"].is_string());
        assert_eq!(s["id"].as_str().unwrap().len(), 32);
    }
    let agents: Vec<&str> = list
        .iter()
        .map(|s| s["user_agent"].as_str().unwrap())
        .collect();
    assert!(agents.iter().any(|u| u.contains("iPhone")), "{agents:?}");
    let b_id = list
        .iter()
        .find(|s| s["user_agent"].as_str().unwrap().contains("iPhone"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A handle is no session token: as a cookie it opens nothing.
    let forged = plain()
        .get(gw.url("/wiki"))
        .header("cookie", format!("nidan_session={b_id}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // Another user's handle ends nothing; neither does a made-up one.
    let hanako_id = sessions(&other_user, &gw).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        delete(&a, &gw, &format!("/sessions/{hanako_id}")).await.0,
        404
    );
    assert_eq!(
        delete(&a, &gw, "/sessions/00000000000000000000000000000000")
            .await
            .0,
        404
    );
    assert_eq!(status(&other_user, &gw, "/wiki").await, 200);
    // A cross-site request ends nothing.
    let r = a
        .delete(gw.url(&format!("/_nidan/api/sessions/{b_id}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(status(&b, &gw, "/wiki").await, 200);
    // Ending B: at once, B's next request is refused.
    assert_eq!(delete(&a, &gw, &format!("/sessions/{b_id}")).await.0, 204);
    assert_eq!(status(&b, &gw, "/wiki").await, 401);
    assert_eq!(status(&b, &gw, "/_nidan/api/me").await, 401);
    assert_eq!(sessions(&a, &gw).await.len(), 2);
    // "Log out everywhere else": C goes, A stays.
    let (s, v) = delete(&a, &gw, "/sessions").await;
    assert_eq!((s, v["ended"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(status(&c, &gw, "/wiki").await, 401);
    assert_eq!(status(&a, &gw, "/wiki").await, 200);
    let left = sessions(&a, &gw).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["current"], true);
    // The other user was never touched.
    assert_eq!(status(&other_user, &gw, "/wiki").await, 200);
    // Signed out: nothing to list.
    let anon = plain();
    let r = anon
        .get(gw.url("/_nidan/api/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn ending_sessions_needs_a_recent_login() {
    let gw = Gateway::builder().set("portal.recent_login", "2s").start();
    let a = browser(&gw, "taro", "A").await;
    let b = browser(&gw, "taro", "B").await;
    // Times are whole seconds and the window is inclusive: a login at 10.0 is recent
    // until 12.99, so only past 3 s is it surely stale.
    std::thread::sleep(std::time::Duration::from_millis(3_100));
    // Listing still works; ending does not.
    assert_eq!(sessions(&a, &gw).await.len(), 2);
    let (s, v) = delete(&a, &gw, "/sessions").await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"], "recent_login_required");
    assert_eq!(status(&b, &gw, "/wiki").await, 200);
}

#[tokio::test]
async fn the_page_lists_and_ends_sessions_without_javascript() {
    let gw = Gateway::start();
    let a = browser(&gw, "taro", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0").await;
    let b = browser(
        &gw,
        "taro",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1",
    )
    .await;
    let page = a
        .get(gw.url("/_nidan/sessions?lang=en"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Where you are logged in"), "{page}");
    assert!(page.contains("Log out everywhere else"), "{page}");
    // One "Sign out" form: for the other browser, not this one.
    let action = "/sessions/";
    let forms: Vec<&str> = page
        .match_indices(action)
        .map(|(i, _)| &page[i..i + action.len() + 32 + "/delete".len()])
        .filter(|f| f.ends_with("/delete"))
        .collect();
    assert_eq!(forms.len(), 1, "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    // Without the CSRF token: refused, nothing ends.
    let r = a
        .post(gw.url(&format!("/_nidan{}", forms[0])))
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(status(&b, &gw, "/wiki").await, 200);
    let r = a
        .post(gw.url(&format!("/_nidan{}", forms[0])))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    // Post/Redirect/Get: the list says what was done.
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(to, "/_nidan/sessions?m=ended");
    let done = a
        .get(gw.url(&to))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("That browser is logged out."), "{done}");
    assert_eq!(status(&b, &gw, "/wiki").await, 401);
    assert_eq!(status(&a, &gw, "/wiki").await, 200);
}

/// A session's User-Agent is whatever the browser sent: on the page it is text, never
/// markup; and neither the page nor the API gives out a session's token or its stored hash.
#[tokio::test]
async fn the_list_shows_no_markup_and_no_token() {
    let gw = Gateway::start();
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let _b = browser(&gw, "taro", hostile).await;
    // This browser's own token, read from the login's Set-Cookie.
    let http = plain();
    let (_, v) = post_api(&http, &gw, "/login", json!({"id": "taro"})).await;
    let flow = v["flow"].as_str().unwrap();
    let r = http
        .post(gw.url(&format!("/_nidan/api/login/{flow}/complete")))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let token = set_cookie(&r, "nidan_session").unwrap();
    let cookie = format!("nidan_session={token}");
    let get = |path: &str| {
        http.get(gw.url(path))
            .header("cookie", cookie.as_str())
            .send()
    };
    let page = get("/_nidan/sessions?lang=en")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Where you are logged in"), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
    let api = get("/_nidan/api/sessions")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2, "{api}");
    let hash = nidan::secret::token_hash(&token);
    for text in [&page, &api] {
        assert!(!text.contains(&token), "the token was shown");
        assert!(!text.contains(&hash), "the stored hash was shown");
        assert!(
            !text.contains(&hash[..32]),
            "part of the stored hash was shown"
        );
    }
}

// --- A replaced session keeps its times (SECURITY 43) -------------------------------------

/// `GET /_nidan/api/me`: (status, body).
async fn me(http: &reqwest::Client, gw: &Gateway) -> (u16, Value) {
    let r = http.get(gw.url("/_nidan/api/me")).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The times a login set: when, when last proved, when it ends for good.
fn times(me: &Value) -> (Value, Value, Value) {
    (
        me["login_at"].clone(),
        me["auth_time"].clone(),
        me["expires_at"].clone(),
    )
}

/// The CSRF token of a portal page's first form.
fn csrf_of(page: &str) -> Option<String> {
    Some(
        page.split("name=\"csrf\" value=\"")
            .nth(1)?
            .split('"')
            .next()?
            .to_owned(),
    )
}

/// Changes the 2-step method (2-step stays off) through the API (`PUT /_nidan/api/settings`)
/// or the page's form; whether the change was made. The jar takes the replacement session.
async fn change_method(http: &reqwest::Client, gw: &Gateway, method: &str, page: bool) -> bool {
    if !page {
        let r = http
            .put(gw.url("/_nidan/api/settings"))
            .json(&json!({"enabled": false, "method": method}))
            .send()
            .await
            .unwrap();
        return r.status() == 200;
    }
    let r = http
        .get(gw.url("/_nidan/settings?lang=en"))
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return false;
    }
    let Some(csrf) = csrf_of(&r.text().await.unwrap()) else {
        return false;
    };
    let r = http
        .post(gw.url("/_nidan/settings"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("enabled", "off"),
            ("method", method),
        ])
        .send()
        .await
        .unwrap();
    r.status() == 303
        && r.headers()
            .get("location")
            .is_some_and(|l| l.to_str().unwrap().contains("m=saved"))
}

/// The attack of the third review: with a short absolute timeout, alternating setting
/// changes kept a session alive past it (each change made a session with a fresh expiry).
async fn setting_changes_do_not_outrun_the_absolute_timeout(page: bool) {
    let gw = Gateway::builder()
        .set("session.idle_timeout", "6s")
        .set("session.absolute_timeout", "6s")
        .start();
    let http = browser(&gw, "taro", "Mozilla/5.0 Firefox/128.0").await;
    let t = std::time::Instant::now();
    let (s, first) = me(&http, &gw).await;
    assert_eq!(s, 200, "{first}");
    let methods = ["email", "sms"];
    let mut n = 0;
    let mut moved = Vec::new();
    while t.elapsed() < std::time::Duration::from_millis(9_000) {
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        let changed = change_method(&http, &gw, methods[n % 2], page).await;
        n += 1;
        let at = t.elapsed();
        if at < std::time::Duration::from_millis(4_000) {
            assert!(changed, "change {n} at {at:?}");
            let (s, now) = me(&http, &gw).await;
            assert_eq!(s, 200, "{now}");
            if times(&now) != times(&first) {
                moved.push(now);
            }
        }
        // Whole seconds: a login at 10.9 ends at 16, so past 7.1 s it is surely over.
        if at > std::time::Duration::from_millis(7_100) {
            assert!(!changed, "a change at {at:?} outran the absolute timeout");
            assert_eq!(status(&http, &gw, "/wiki").await, 401, "at {at:?}");
            assert_eq!(me(&http, &gw).await.0, 401, "at {at:?}");
        }
    }
    assert!(
        moved.is_empty(),
        "the changes moved the times of {first}: {moved:?}"
    );
}

#[tokio::test]
async fn setting_changes_through_the_api_do_not_outrun_the_absolute_timeout() {
    setting_changes_do_not_outrun_the_absolute_timeout(false).await;
}

#[tokio::test]
async fn setting_changes_on_the_page_do_not_outrun_the_absolute_timeout() {
    setting_changes_do_not_outrun_the_absolute_timeout(true).await;
}

/// A setting change is no login: it does not make the session "recent" again for account
/// management (today's change needs a recent login; a renewed one would allow the next
/// change, and every other account change, for ever).
#[tokio::test]
async fn a_setting_change_does_not_renew_the_recent_login_window() {
    let gw = Gateway::builder().set("portal.recent_login", "2s").start();
    let http = browser(&gw, "taro", "Mozilla/5.0 Firefox/128.0").await;
    let t = std::time::Instant::now();
    let methods = ["email", "sms"];
    let mut answers = Vec::new();
    for n in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let r = http
            .put(gw.url("/_nidan/api/settings"))
            .json(&json!({"enabled": false, "method": methods[n % 2]}))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        answers.push((t.elapsed(), s, v));
    }
    assert_eq!(answers[0].1, 200, "{answers:?}");
    // The window is inclusive and in whole seconds: past 3.1 s the login is surely stale.
    for (at, s, v) in &answers {
        if *at > std::time::Duration::from_millis(3_100) {
            assert_eq!(*s, 403, "a change at {at:?} was allowed: {answers:?}");
            assert_eq!(v["error"], "recent_login_required", "{v}");
        }
    }
    // The session itself still works; only account management asks for the login again.
    assert_eq!(status(&http, &gw, "/wiki").await, 200);
    let page = http
        .get(gw.url("/_nidan/sessions?lang=en"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("name=\"csrf\""), "{page}");
}

/// A step-up proves the missing second step, not the password again: the stepped-up
/// session keeps the login's times and its absolute end (SECURITY 43).
#[tokio::test]
async fn a_step_up_keeps_the_login_times_and_its_absolute_end() {
    let gw = Gateway::builder()
        .set("session.idle_timeout", "6s")
        .set("session.absolute_timeout", "6s")
        .start();
    let http = browser(&gw, "taro", "Mozilla/5.0 Firefox/128.0").await;
    let t = std::time::Instant::now();
    let (_, first) = me(&http, &gw).await;
    assert_eq!(status(&http, &gw, "/admin/x").await, 401);
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let (s, v) = post_api(
        &http,
        &gw,
        "/login",
        json!({"id": "taro", "return_to": "/admin/x"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step_up"], true, "{v}");
    let flow = v["flow"].as_str().unwrap();
    let (s, v) = post_api(
        &http,
        &gw,
        &format!("/login/{flow}/complete"),
        json!({"code": gw.last_code("taro")}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(status(&http, &gw, "/admin/x").await, 200);
    let (_, stepped) = me(&http, &gw).await;
    assert_eq!(stepped["two_step"], true, "{stepped}");
    assert_eq!(
        times(&stepped),
        times(&first),
        "the step-up moved the times"
    );
    let wait = std::time::Duration::from_millis(7_100).saturating_sub(t.elapsed());
    tokio::time::sleep(wait).await;
    assert_eq!(status(&http, &gw, "/admin/x").await, 401);
    assert_eq!(status(&http, &gw, "/wiki").await, 401);
}

// --- "Sign out everywhere": the user chooses whether devices and app passwords go too -----

/// The test routes with app passwords accepted on the exempt `/sync` route; several
/// logins of one user from new browsers: the send budgets are not what is tested.
fn with_app_passwords() -> Gateway {
    Gateway::builder()
        .set("routes[2].accept", "[basic, token]")
        .set(
            "security_code",
            "{ max_sends_per_account: 100, max_sends_per_ip: 200 }",
        )
        .start()
}

/// A login of `id` (2-step on) that trusts this browser: the client (its jar holds the
/// session and the device cookie) and the device cookie's value.
async fn trusting_browser(gw: &Gateway, id: &str) -> (reqwest::Client, String) {
    let http = client();
    let more = json!({"trust_device": true, "device_name": "laptop"});
    let (v, r) = api_login(&http, &gw.url(""), gw, json!({"id": id}), more, &[]).await;
    assert_eq!(v["step"], "password_and_code", "{v}");
    let device = set_cookie(&r, "nidan_device").expect("a device cookie");
    (http, device)
}

/// An app password made by `http`'s (recent) session.
async fn app_password(http: &reqwest::Client, gw: &Gateway) -> String {
    let (s, v) = post_api(http, gw, "/tokens", json!({"name": "mail app"})).await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// The `/sync` route with the app password as a Bearer token and as the Basic password.
async fn app_password_opens(gw: &Gateway, id: &str, token: &str) -> (u16, u16) {
    let get = |auth: String| {
        plain()
            .get(gw.url("/sync/inbox"))
            .header("authorization", auth)
            .send()
    };
    let bearer = get(format!("Bearer {token}"))
        .await
        .unwrap()
        .status()
        .as_u16();
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{token}"));
    let basic = get(format!("Basic {b64}")).await.unwrap().status().as_u16();
    (bearer, basic)
}

#[tokio::test]
async fn signing_out_everywhere_forgets_devices_and_app_passwords_only_when_asked() {
    let gw = with_app_passwords();
    let (owner, device) = trusting_browser(&gw, "hanako").await;
    let token = app_password(&owner, &gw).await;
    let other = browser(&gw, "hanako", "B").await;
    assert_eq!(step_with_device(&gw, "hanako", &device).await, "password");
    assert_eq!(app_password_opens(&gw, "hanako", &token).await, (200, 200));

    // The first choice: the other browsers only; the device and the app password stay.
    let (s, v) = delete(&owner, &gw, "/sessions").await;
    assert_eq!((s, v["ended"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(status(&other, &gw, "/wiki").await, 401);
    assert_eq!(step_with_device(&gw, "hanako", &device).await, "password");
    assert_eq!(app_password_opens(&gw, "hanako", &token).await, (200, 200));

    // A choice the API does not know is refused and changes nothing; so is a cross-site one.
    let third = browser(&gw, "hanako", "C").await;
    let (s, v) = delete(&owner, &gw, "/sessions?forget=devices").await;
    assert_eq!(s, 400, "{v}");
    let r = owner
        .delete(gw.url("/_nidan/api/sessions?forget=devices_and_app_passwords"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(status(&third, &gw, "/wiki").await, 200);
    assert_eq!(app_password_opens(&gw, "hanako", &token).await, (200, 200));

    // The second choice: the other browsers, every trusted device, every app password.
    let (s, v) = delete(&owner, &gw, "/sessions?forget=devices_and_app_passwords").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ended"], 1, "{v}");
    assert_eq!(v["devices"], 1, "{v}");
    assert_eq!(v["app_passwords"], 1, "{v}");
    assert_eq!(status(&third, &gw, "/wiki").await, 401);
    assert_eq!(
        status(&owner, &gw, "/wiki").await,
        200,
        "this browser stays"
    );
    assert_eq!(
        step_with_device(&gw, "hanako", &device).await,
        "password_and_code"
    );
    assert_eq!(app_password_opens(&gw, "hanako", &token).await, (401, 401));
    let devices = owner
        .get(gw.url("/_nidan/api/devices"))
        .send()
        .await
        .unwrap();
    let devices: Value = devices.json().await.unwrap();
    assert_eq!(devices["devices"], json!([]), "{devices}");
    let tokens = owner
        .get(gw.url("/_nidan/api/tokens"))
        .send()
        .await
        .unwrap();
    let tokens: Value = tokens.json().await.unwrap();
    assert_eq!(tokens["tokens"], json!([]), "{tokens}");
    let d = audit::last(&gw.path("nidan.db"), "hanako", "sessions_ended_by_user")
        .await
        .unwrap();
    assert_eq!(
        (&d["others"], &d["devices"], &d["app_passwords"]),
        (&json!(1), &json!(1), &json!(1)),
        "{d}"
    );
}

/// The page: both choices, each saying what it does (in both languages), each behind a
/// confirmation page that works without JavaScript and needs the CSRF token.
#[tokio::test]
async fn the_page_offers_both_choices_and_says_what_each_does() {
    let gw = with_app_passwords();
    let (owner, device) = trusting_browser(&gw, "hanako").await;
    let token = app_password(&owner, &gw).await;
    let other = browser(&gw, "hanako", "B").await;
    let get = |path: &str| {
        let r = owner.get(gw.url(path)).send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let page = get("/_nidan/sessions?lang=en").await;
    for text in [
        "Log out everywhere else",
        "Log out other browsers",
        "Trusted devices and app passwords keep working",
        "Also forget trusted devices and app passwords",
        "forgets every trusted device",
        "removes every app password",
    ] {
        assert!(page.contains(text), "{text:?} is not on the page: {page}");
    }
    let ja = get("/_nidan/sessions?lang=ja").await;
    for text in [
        "他のブラウザからログアウト",
        "信頼できる端末とアプリパスワードも削除",
    ] {
        assert!(ja.contains(text), "{text:?} is not on the page: {ja}");
    }
    // "Log out other browsers": a confirmation page, then the other browser only.
    let confirm = get("/_nidan/sessions/delete-others?lang=en").await;
    assert!(
        confirm.contains("Log out every other browser?"),
        "{confirm}"
    );
    assert!(
        confirm.contains("action=\"/_nidan/sessions/delete-others\""),
        "{confirm}"
    );
    let csrf = csrf_of(&confirm).unwrap();
    let post = |path: &str, csrf: &str| owner.post(gw.url(path)).form(&[("csrf", csrf)]).send();
    let r = post("/_nidan/sessions/delete-others", &csrf).await.unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    let done = get(&format!("{to}&lang=en")).await;
    assert!(
        done.contains("Every other browser is logged out."),
        "{done}"
    );
    assert_eq!(status(&other, &gw, "/wiki").await, 401);
    assert_eq!(step_with_device(&gw, "hanako", &device).await, "password");
    assert_eq!(app_password_opens(&gw, "hanako", &token).await, (200, 200));

    // "Also forget trusted devices and app passwords".
    let third = browser(&gw, "hanako", "C").await;
    let confirm = get("/_nidan/sessions/delete-others-and-forget?lang=en").await;
    assert!(
        confirm.contains("forget all trusted devices and app passwords?"),
        "{confirm}"
    );
    let action = "/_nidan/sessions/delete-others-and-forget";
    assert!(
        confirm.contains(&format!("action=\"{action}\"")),
        "{confirm}"
    );
    let csrf = csrf_of(&confirm).unwrap();
    // Without the CSRF token: refused, nothing changes.
    assert_eq!(post(action, "wrong").await.unwrap().status(), 403);
    assert_eq!(status(&third, &gw, "/wiki").await, 200);
    assert_eq!(step_with_device(&gw, "hanako", &device).await, "password");
    let r = post(action, &csrf).await.unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    let done = get(&format!("{to}&lang=en")).await;
    assert!(
        done.contains("every trusted device and app password is forgotten"),
        "{done}"
    );
    assert_eq!(status(&third, &gw, "/wiki").await, 401);
    assert_eq!(status(&owner, &gw, "/wiki").await, 200);
    assert_eq!(
        step_with_device(&gw, "hanako", &device).await,
        "password_and_code"
    );
    assert_eq!(app_password_opens(&gw, "hanako", &token).await, (401, 401));
}

/// Forgetting needs a recent full-strength login, like every account change.
#[tokio::test]
async fn forgetting_devices_and_app_passwords_needs_a_recent_login() {
    let gw = Gateway::builder()
        .set("routes[2].accept", "[basic, token]")
        .set("portal.recent_login", "2s")
        .start();
    let (owner, device) = trusting_browser(&gw, "hanako").await;
    let token = app_password(&owner, &gw).await;
    std::thread::sleep(std::time::Duration::from_millis(3_100));
    let (s, v) = delete(&owner, &gw, "/sessions?forget=devices_and_app_passwords").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("recent_login_required")),
        "{v}"
    );
    let r = owner
        .get(gw.url("/_nidan/sessions/delete-others-and-forget"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(step_with_device(&gw, "hanako", &device).await, "password");
    assert_eq!(app_password_opens(&gw, "hanako", &token).await, (200, 200));
}
