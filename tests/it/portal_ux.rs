//! The portal as a person meets it, through the real binary: a login started on the portal
//! comes back to it; waits are said in minutes with the other ways in; times are shown in
//! the browser's zone (else the configured one) with the zone next to them; one vocabulary
//! in pages, mails and SMS; the operator's name, logo, colour and footer; removals
//! confirmed on a page of their own; fields in error marked for assistive technology.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use serde_json::{Value, json};

/// The `value` of the hidden input `name` in an HTML page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// A browser with a cookie jar the test can add to (the time-zone cookie nidan.js sets).
fn browser_with<'a>(gw: &'a Gateway, cookies: &[&str]) -> Api<'a> {
    pingora::tls::install_default_crypto_provider();
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let url: reqwest::Url = gw.url("/").parse().unwrap();
    for c in cookies {
        jar.add_cookie_str(c, &url);
    }
    let http = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Api { gw, http }
}

async fn page(api: &Api<'_>, path: &str) -> (u16, String) {
    let r = api
        .http
        .get(api.gw.url(path))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post_form(api: &Api<'_>, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    api.http
        .post(api.gw.url(path))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_login_started_on_the_portal_returns_to_it() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    let r = api.http.get(gw.url("/_nidan/")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let login = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(login, "/_nidan/login?rd=%2F_nidan%2F%3Fm%3Dsigned_in");
    let (_, html) = page(&api, &login).await;
    // The login pages say where the user is: ID → verify → done.
    assert!(html.contains("aria-current=\"step\">ID</li>"), "{html}");
    let csrf = hidden(&html, "csrf").unwrap();
    let rd = hidden(&html, "rd").unwrap();
    assert_eq!(rd, "/_nidan/?m=signed_in");
    let r = post_form(
        &api,
        "/_nidan/login",
        &[("id", "taro"), ("rd", &rd), ("csrf", &csrf)],
    )
    .await;
    let flow = r.headers()["location"].to_str().unwrap().to_owned();
    let (_, html) = page(&api, &flow).await;
    assert!(html.contains("aria-current=\"step\">Verify</li>"), "{html}");
    let r = post_form(&api, &flow, &[("password", PASSWORD), ("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_nidan/?m=signed_in");
    let (s, html) = page(&api, "/_nidan/?m=signed_in").await;
    assert_eq!(s, 200);
    assert!(html.contains("aria-current=\"step\">Done</li>"), "{html}");
    assert!(html.contains("Taro Yamada"));
}

#[tokio::test]
async fn waits_are_said_in_minutes_with_the_other_ways_in() {
    let gw = Gateway::builder().set("passkeys.enabled", "true").start();
    let api = browser_with(&gw, &[]);
    let (_, html) = page(&api, "/_nidan/login").await;
    let csrf = hidden(&html, "csrf").unwrap();
    // hanako's ID step sends a code each time; the account's send budget runs out.
    let mut last = None;
    for _ in 0..8 {
        let r = post_form(
            &api,
            "/_nidan/login",
            &[("id", "hanako"), ("rd", "/"), ("csrf", &csrf)],
        )
        .await;
        if r.status() == 429 {
            last = Some(r);
            break;
        }
        assert_eq!(r.status(), 303);
    }
    let r = last.expect("the send budget answers 429");
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let html = r.text().await.unwrap();
    let minutes = secs.div_ceil(60);
    assert!(
        html.contains(&format!("Try again in about {minutes} minute")),
        "{secs}s: {html}"
    );
    assert!(!html.contains("seconds"), "{html}");
    assert!(html.contains("Other ways to log in"), "{html}");
    assert!(html.contains("Log in with a passkey"), "{html}");
    assert!(html.contains("trusted device"), "{html}");

    // In Japanese, 「約N分後」.
    let r = api
        .http
        .post(gw.url("/_nidan/login?lang=ja"))
        .form(&[("id", "hanako"), ("rd", "/"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let html = r.text().await.unwrap();
    assert!(html.contains("分後にもう一度お試しください"), "{html}");
    assert!(html.contains("ほかのログイン方法"), "{html}");
    assert!(!html.contains("秒後"), "{html}");
}

/// The signed-in page of `api`'s session, as HTML.
async fn home(api: &Api<'_>) -> String {
    let (s, html) = page(api, "/_nidan/").await;
    assert_eq!(s, 200, "{html}");
    html
}

#[tokio::test]
async fn times_are_shown_in_the_users_zone() {
    let gw = Gateway::start();
    // The browser's zone, as nidan.js reports it.
    let tokyo = browser_with(&gw, &["nidan_tz=Asia/Tokyo"]);
    tokyo.login("taro").await;
    let html = home(&tokyo).await;
    assert!(html.contains(" JST</dd>"), "{html}");
    // A name outside the time-zone database is ignored: the portal's default, UTC for English.
    let bogus = browser_with(&gw, &["nidan_tz=Mars/Olympus_Mons"]);
    bogus.login("taro").await;
    let html = home(&bogus).await;
    assert!(
        html.contains(" UTC</dd>") && !html.contains("JST"),
        "{html}"
    );
    // Japanese pages without a reported zone: Japan's time.
    let ja = browser_with(&gw, &["nidan_lang=ja"]);
    ja.login("taro").await;
    let html = home(&ja).await;
    assert!(html.contains(" JST</dd>"), "{html}");
    // The zone cookie stays with the gateway: the backend never sees it.
    let r = tokyo.http.get(gw.url("/echo")).send().await.unwrap();
    let echoed = r.text().await.unwrap();
    assert!(!echoed.contains("nidan_tz"), "{echoed}");

    // portal.time_zone sets the default.
    let berlin = Gateway::builder()
        .set("portal.time_zone", "Europe/Berlin")
        .start();
    let api = browser_with(&berlin, &[]);
    api.login("taro").await;
    let html = home(&api).await;
    assert!(
        html.contains(" CET</dd>") || html.contains(" CEST</dd>"),
        "{html}"
    );
}

#[tokio::test]
async fn pages_mails_and_sms_speak_one_vocabulary() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &["nidan_lang=ja"]);
    let (s, v) = api.start("hanako").await;
    assert_eq!(s, 200, "{v}");
    let sms = gw
        .outbox()
        .into_iter()
        .rev()
        .find(|m| m["user"] == "hanako" && m["channel"] == "sms")
        .unwrap();
    let body = sms["body"].as_str().unwrap();
    assert!(body.contains("セキュリティコード"), "{body}");
    assert!(!body.contains("確認コード"), "{body}");
    let (s, done) = api
        .complete(
            v["flow"].as_str().unwrap(),
            json!({"password": PASSWORD, "code": gw.last_code("hanako"), "trust_device": true, "device_name": "自宅のパソコン"}),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    // The mail about the new device says 「信頼できる端末」 like the pages do.
    let mail = wait_for(&gw, |m| {
        m["channel"] == "email" && m["subject"].as_str().unwrap().contains("信頼できる端末")
    });
    let body = mail["body"].as_str().unwrap();
    assert!(!body.contains("デバイス"), "{body}");
    assert!(body.contains("「信頼できる端末の確認・削除」"), "{body}");
    let (_, html) = page(&api, "/_nidan/devices").await;
    assert!(html.contains("信頼できる端末の確認・削除") || html.contains("削除する"));
    for drift in ["登録を解除", "デバイス", "確認コード", "(", ")"] {
        assert!(!html.contains(drift), "{drift}: {html}");
    }
}

fn wait_for(gw: &Gateway, f: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        if let Some(m) = gw.outbox().into_iter().find(|m| f(m)) {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no such message in the outbox: {:?}", gw.outbox());
}

#[tokio::test]
async fn removals_are_confirmed_first() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    let (_, v) = api.start("hanako").await;
    let (s, _) = api
        .complete(
            v["flow"].as_str().unwrap(),
            json!({"password": PASSWORD, "code": gw.last_code("hanako"), "trust_device": true, "device_name": "Work PC"}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, list) = api.get("/devices").await;
    let id = list["devices"][0]["id"].as_str().unwrap().to_owned();
    let (_, html) = page(&api, "/_nidan/devices").await;
    let confirm_url = format!("/_nidan/devices/{id}/delete");
    // The list links to the confirmation; it does not post the removal itself.
    assert!(html.contains(&format!("href=\"{confirm_url}\"")), "{html}");
    assert!(
        !html.contains(&format!("action=\"{confirm_url}\"")),
        "{html}"
    );
    let (s, html) = page(&api, &confirm_url).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("Remove the trusted device \"Work PC\"?")
            || html.contains("&#34;Work PC&#34;")
            || html.contains("&quot;Work PC&quot;"),
        "{html}"
    );
    assert!(
        html.contains(&format!("action=\"{confirm_url}\"")),
        "{html}"
    );
    assert!(
        html.contains("href=\"/_nidan/devices\""),
        "a way back: {html}"
    );
    // Looking at the question removed nothing.
    let (_, list) = api.get("/devices").await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
    let csrf = hidden(&html, "csrf").unwrap();
    let r = post_form(&api, &confirm_url, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 200);
    let (_, list) = api.get("/devices").await;
    assert!(list["devices"].as_array().unwrap().is_empty());
    // An unknown device: said so, nothing asked.
    let (s, html) = page(&api, "/_nidan/devices/nope/delete").await;
    assert_eq!(s, 400, "{html}");
    assert!(!html.contains("action=\"/_nidan/devices/nope/delete\""));
    // "Remove all" is asked too.
    let (s, html) = page(&api, "/_nidan/devices/delete-all").await;
    assert_eq!(s, 200);
    assert!(html.contains("Remove all trusted devices?"), "{html}");
    assert!(html.contains("action=\"/_nidan/devices/delete-all\""));
}

#[tokio::test]
async fn fields_in_error_are_marked() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    let (_, html) = page(&api, "/_nidan/login").await;
    let csrf = hidden(&html, "csrf").unwrap();
    assert!(!html.contains("aria-invalid"));
    let r = post_form(
        &api,
        "/_nidan/login",
        &[("id", " "), ("rd", "/"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("<p class=\"error\" id=\"form-error\" role=\"alert\">"));
    assert!(
        html.contains("id=\"id\" name=\"id\"")
            && html.contains("aria-invalid=\"true\" aria-describedby=\"form-error\""),
        "{html}"
    );
    // A wrong password: the password and code fields; an empty device name: that field,
    // with its own message (not the 64-character one).
    let r = post_form(
        &api,
        "/_nidan/login",
        &[("id", "hanako"), ("rd", "/"), ("csrf", &csrf)],
    )
    .await;
    let flow = r.headers()["location"].to_str().unwrap().to_owned();
    let code = gw.last_code("hanako");
    let r = post_form(
        &api,
        &flow,
        &[
            ("password", PASSWORD),
            ("code", &code),
            ("trust_device", "1"),
            ("device_name", "  "),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("Enter a device name to register"), "{html}");
    assert!(!html.contains("64 characters, without"), "{html}");
    assert_eq!(html.matches("aria-invalid=\"true\"").count(), 1, "{html}");
    assert!(html.contains("aria-describedby=\"form-error device-name-help\""));
    let r = post_form(
        &api,
        &flow,
        &[("password", "wrong"), ("code", &code), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 401);
    let html = r.text().await.unwrap();
    assert_eq!(html.matches("aria-invalid=\"true\"").count(), 2, "{html}");
}

#[tokio::test]
async fn an_empty_name_on_rename_gets_its_own_message() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    let (_, v) = api.start("hanako").await;
    api.complete(
        v["flow"].as_str().unwrap(),
        json!({"password": PASSWORD, "code": gw.last_code("hanako"), "trust_device": true, "device_name": "pc"}),
    )
    .await;
    let (_, list) = api.get("/devices").await;
    let id = list["devices"][0]["id"].as_str().unwrap().to_owned();
    let (_, html) = page(&api, "/_nidan/devices").await;
    let csrf = hidden(&html, "csrf").unwrap();
    let r = post_form(
        &api,
        &format!("/_nidan/devices/{id}/rename"),
        &[("name", ""), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("Enter a device name."), "{html}");
    assert!(html.contains("aria-invalid=\"true\""), "{html}");
    let (_, list) = api.get("/devices").await;
    assert_eq!(list["devices"][0]["name"], "pc", "nothing changed");
}

/// A configuration file next to the gateway's, with a brand.
fn write_logo(gw_dir: &std::path::Path) -> std::path::PathBuf {
    let logo = gw_dir.join("logo.svg");
    std::fs::write(
        &logo,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"32\" height=\"32\"><rect width=\"32\" height=\"32\" fill=\"#1a7f37\"/></svg>",
    )
    .unwrap();
    logo
}

#[tokio::test]
async fn the_operators_brand_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let logo = write_logo(dir.path());
    let gw = Gateway::builder()
        .set(
            "portal.brand",
            &format!(
                "{{name: Example ID, logo_file: \"{}\", primary_color: \"#1a7f37\", footer_links: [{{label: {{ja: ヘルプ, en: Help}}, url: \"https://help.example.com/\"}}, {{label: Terms, url: /terms}}]}}",
                logo.display()
            ),
        )
        .start();
    let api = browser_with(&gw, &[]);
    let (_, html) = page(&api, "/_nidan/login").await;
    assert!(
        html.contains("<title>Log in | Example ID</title>"),
        "{html}"
    );
    assert!(html.contains("src=\"/_nidan/static/logo\" alt=\"Example ID logo\""));
    assert!(html.contains("href=\"/_nidan/static/brand.css\""));
    assert!(html.contains("<a href=\"https://help.example.com/\">Help</a>"));
    assert!(html.contains("<a href=\"/terms\">Terms</a>"));
    let (_, ja) = page(&api, "/_nidan/login?lang=ja").await;
    assert!(ja.contains(">ヘルプ</a>"), "{ja}");
    let r = api
        .http
        .get(gw.url("/_nidan/static/logo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("<svg"));
    let r = api
        .http
        .get(gw.url("/_nidan/static/brand.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("#1a7f37"));
    // Mails carry the brand's name.
    api.start("hanako").await;
    let sms = wait_for(&gw, |m| m["channel"] == "sms");
    assert!(
        sms["body"].as_str().unwrap().starts_with("Example ID:"),
        "{sms}"
    );

    // Without a brand, neither is served.
    let plain = Gateway::start();
    let api = browser_with(&plain, &[]);
    let (s, _) = page(&api, "/_nidan/static/logo").await;
    assert_eq!(s, 404);
    let (s, _) = page(&api, "/_nidan/static/brand.css").await;
    assert_eq!(s, 404);
}

#[test]
fn a_pale_primary_colour_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nidan.yaml");
    std::fs::write(
        dir.path().join("device-key"),
        "a-device-signing-key-0123456789abcdef",
    )
    .unwrap();
    std::fs::write(
        &file,
        "version: 1\n\
         portal:\n  brand:\n    name: Example ID\n    primary_color: \"#f0a500\"\n    footer_links:\n      - { label: Help, url: \"javascript:alert(1)\" }\n  time_zone: Mars/Olympus\n\
         trusted_devices:\n  signing_keys: [{ id: k1, secret_file: device-key }]\n\
         routes:\n  - { name: app, path_prefix: /, upstream: [\"127.0.0.1:9\"], policy: login }\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("nidan.yaml:5:"), "{err}");
    assert!(err.contains("contrast of 2.0:1"), "{err}");
    assert!(err.contains("4.5:1"), "{err}");
    assert!(err.contains("nidan.yaml:7:"), "{err}");
    assert!(err.contains("footer_links[0].url"), "{err}");
    assert!(err.contains("nidan.yaml:8:"), "{err}");
    assert!(err.contains("portal.time_zone"), "{err}");
}
