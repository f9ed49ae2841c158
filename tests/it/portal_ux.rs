//! The portal as a person meets it, through the real binary: a login started on the portal
//! comes back to it; waits are said in minutes with the other ways in; times are shown in
//! the browser's zone (else the configured one) with the zone next to them; one vocabulary
//! in pages, mails and SMS; the operator's name, logo, colour and footer; removals
//! confirmed on a page of their own; fields in error marked for assistive technology.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common;

use std::process::Command;
use std::sync::Arc;

use common::audit::{FIREFOX, client_from, jar};
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
    assert!(html.contains("trusted device"), "{html}");
    // Only ways that work now: hanako has no passkey, and email spends the same budget.
    assert!(!html.contains("Log in with a passkey"), "{html}");
    assert!(!html.contains("registered email address"), "{html}");

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
    assert_eq!(r.status(), 303);
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

/// An HTML login as far as the password page: the flow's URL and the CSRF token.
async fn to_password_page(api: &Api<'_>, id: &str, rd: &str) -> (String, String) {
    let (_, html) = page(api, "/_nidan/login").await;
    let csrf = hidden(&html, "csrf").unwrap();
    let r = post_form(
        api,
        "/_nidan/login",
        &[("id", id), ("rd", rd), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    (r.headers()["location"].to_str().unwrap().to_owned(), csrf)
}

/// The `<input …>` tag whose `id` is `id`.
fn input<'h>(html: &'h str, id: &str) -> &'h str {
    let at = html
        .find(&format!(" id=\"{id}\""))
        .unwrap_or_else(|| panic!("no input {id}: {html}"));
    let start = html[..at].rfind("<input").unwrap();
    let end = html[start..].find('>').unwrap() + start;
    &html[start..end]
}

#[tokio::test]
async fn the_trust_choice_survives_every_error() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    let (flow, csrf) = to_password_page(&api, "hanako", "/wiki").await;
    // As the seed has it: ticked, with a name to keep or change; focus on the password.
    let (_, html) = page(&api, &flow).await;
    assert!(input(&html, "trust_device").contains(" checked"), "{html}");
    assert!(input(&html, "device_name").contains("value=\"Unknown browser\""));
    assert!(input(&html, "password").contains(" autofocus"));
    assert_eq!(html.matches(" autofocus").count(), 1, "{html}");
    // The code's validity is on the page.
    assert!(html.contains("valid for 5 minutes"), "{html}");
    // "Send the code again" at once: a notice after a redirect, not a red error.
    let r = post_form(&api, &format!("{flow}/resend"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.contains("m=cooldown&s="), "{to}");
    let (_, cooled) = page(&api, &to).await;
    assert!(
        cooled.contains("<p class=\"notice\" role=\"status\">You can"),
        "{cooled}"
    );
    assert!(!cooled.contains("class=\"error\""), "{cooled}");
    let code = gw.last_code("hanako");
    // A wrong code: the tick and the name stay, the password and code are cleared.
    let r = post_form(
        &api,
        &flow,
        &[
            ("password", PASSWORD),
            ("code", "000000"),
            ("trust_device", "1"),
            ("device_name", "Work PC"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    let html = r.text().await.unwrap();
    assert!(input(&html, "trust_device").contains(" checked"), "{html}");
    assert!(input(&html, "device_name").contains("value=\"Work PC\""));
    assert!(!input(&html, "password").contains("value="));
    assert!(!input(&html, "code").contains("value="));
    // The "enter a device name" error: still ticked, the focus on the name.
    let r = post_form(
        &api,
        &flow,
        &[
            ("password", PASSWORD),
            ("code", &code),
            ("trust_device", "1"),
            ("device_name", " "),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(input(&html, "trust_device").contains(" checked"), "{html}");
    let name = input(&html, "device_name");
    assert!(
        name.contains(" autofocus") && name.contains("aria-invalid"),
        "{name}"
    );
    assert_eq!(html.matches(" autofocus").count(), 1, "{html}");
    // Unticked by the user: stays unticked after an error.
    let r = post_form(
        &api,
        &flow,
        &[
            ("password", "wrong"),
            ("code", &code),
            ("device_name", "Work PC"),
            ("csrf", &csrf),
        ],
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(!input(&html, "trust_device").contains(" checked"), "{html}");
    // Fixing only the name registers the browser.
    let r = post_form(
        &api,
        &flow,
        &[
            ("password", PASSWORD),
            ("code", &gw.last_code("hanako")),
            ("trust_device", "1"),
            ("device_name", "Work PC"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let (_, list) = api.get("/devices").await;
    assert_eq!(list["devices"][0]["name"], "Work PC", "{list}");
}

#[tokio::test]
async fn a_code_asked_by_the_risk_engine_says_why() {
    let gw = Gateway::builder()
        .set("risk", "{ watch_networks: [\"127.0.0.7/32\"] }")
        .start();
    let why = "To keep your account safe";
    let j = jar();
    let watched = Api {
        gw: &gw,
        http: client_from("127.0.0.7", &j, FIREFOX),
    };
    // taro has 2-step off: the code comes from the risk engine, and the page says so.
    let (flow, _) = to_password_page(&watched, "taro", "/").await;
    let (_, html) = page(&watched, &flow).await;
    assert!(html.contains("name=\"code\""), "{html}");
    assert!(html.contains(why), "{html}");
    // hanako's code comes from her own setting: no risk reason.
    let (flow, _) = to_password_page(&watched, "hanako", "/").await;
    let (_, html) = page(&watched, &flow).await;
    assert!(!html.contains(why), "{html}");
    // An unknown ID answers like a typical user (most have 2-step on): no reason either.
    let (flow, _) = to_password_page(&watched, "nobody-here", "/").await;
    let (_, html) = page(&watched, &flow).await;
    assert!(
        html.contains("name=\"code\"") && !html.contains(why),
        "{html}"
    );
    // In Japanese too.
    let (flow, _) = to_password_page(&watched, "taro", "/").await;
    let (_, html) = page(&watched, &format!("{flow}?lang=ja")).await;
    assert!(html.contains("安全にご利用いただくため"), "{html}");
}

#[tokio::test]
async fn a_step_up_asks_only_for_the_code_and_sends_it_at_once() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    api.login("taro").await;
    let sent = gw.codes_sent("taro");
    let r = api
        .http
        .get(gw.url("/admin/report"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let login = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(login.contains("step_up=1"), "{login}");
    // No "Next" on a page showing the user's own ID: the code is sent at once.
    let r = api.http.get(gw.url(&login)).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let flow = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(gw.codes_sent("taro"), sent + 1);
    let (_, html) = page(&api, &flow).await;
    assert!(html.contains("<h1>Enter your security code</h1>"), "{html}");
    assert!(!html.contains("name=\"password\""), "{html}");
    assert!(!html.contains("password and"), "{html}");
    assert!(input(&html, "code").contains(" autofocus"), "{html}");
    let csrf = hidden(&html, "csrf").unwrap();
    let r = post_form(
        &api,
        &flow,
        &[
            ("code", &gw.last_code("taro")),
            ("device_name", "Office"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin/report");
    // Sent here by another site: the page asks first (nothing is sent by a link elsewhere).
    let other = browser_with(&gw, &[]);
    other.login("taro").await;
    let sent = gw.codes_sent("taro");
    let r = other
        .http
        .get(gw.url(&login))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Nor by a prefetch or a HEAD.
    let r = other
        .http
        .get(gw.url(&login))
        .header("sec-purpose", "prefetch")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = other.http.head(gw.url(&login)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.codes_sent("taro"), sent);
}

#[tokio::test]
async fn methods_have_human_names_and_lists_one_column_name() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    api.login("hanako").await;
    let (_, html) = page(&api, "/_nidan/sessions").await;
    assert!(
        html.contains("Confirmed with a security code by SMS"),
        "{html}"
    );
    assert!(!html.contains("password+"), "{html}");
    let (_, html) = page(&api, "/_nidan/sessions?lang=ja").await;
    assert!(html.contains("SMSのセキュリティコードで確認済み"), "{html}");
    assert!(html.contains("<dt>最終利用日時</dt>"), "{html}");
    assert!(!html.contains("<dt>最終利用</dt>"), "{html}");
    // The signed-in page: the absolute deadline, the idle timeout said as one.
    let (_, html) = page(&api, "/_nidan/?lang=en").await;
    assert!(
        html.contains("logged out automatically after 30 minutes"),
        "{html}"
    );
}

#[tokio::test]
async fn help_and_ways_out_on_every_page() {
    let gw = Gateway::builder()
        .set("portal.help_url", "/public/help")
        .set("portal.account_url", "https://id.example.com/account")
        .set("portal.recovery_url", "/public/help#forgot")
        .start();
    let api = browser_with(&gw, &[]);
    let (_, html) = page(&api, "/_nidan/login").await;
    let csrf = hidden(&html, "csrf").unwrap();
    assert!(
        html.contains("<a href=\"/public/help#forgot\">Forgot your ID or password?</a>"),
        "{html}"
    );
    for (href, label) in [
        ("/public/help", "Help"),
        ("https://id.example.com/account", "Your account"),
    ] {
        assert!(
            html.contains(&format!("<li><a href=\"{href}\">{label}</a></li>")),
            "{html}"
        );
    }
    // The code page's help box links to the help page.
    let (flow, _) = to_password_page(&api, "hanako", "/").await;
    let (_, html) = page(&api, &flow).await;
    assert!(
        html.contains("<p><a href=\"/public/help\">Help</a></p>"),
        "{html}"
    );
    // The not-found page has a way out.
    let (s, html) = page(&api, "/_nidan/nowhere").await;
    assert_eq!(s, 404);
    assert!(html.contains("href=\"/_nidan/\""), "{html}");
    // A login that expired starts again towards where it was going.
    let r = post_form(
        &api,
        "/_nidan/login/no-such-flow",
        &[("password", "x"), ("rd", "/wiki/page?a=1"), ("csrf", &csrf)],
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("href=\"/_nidan/login?rd=%2Fwiki%2Fpage%3Fa%3D1\""),
        "{html}"
    );
    // The login page seen by someone logged in says who.
    api.login("taro").await;
    let (_, html) = page(&api, "/_nidan/login").await;
    assert!(
        html.contains("logged in with the ID &#34;taro&#34;")
            || html.contains("logged in with the ID &quot;taro&quot;"),
        "{html}"
    );
    // Without the settings: no footer, no forgot link.
    let bare = Gateway::start();
    let api = browser_with(&bare, &[]);
    let (_, html) = page(&api, "/_nidan/login").await;
    assert!(
        !html.contains("<footer") && !html.contains("Forgot"),
        "{html}"
    );
}

#[tokio::test]
async fn changes_redirect_so_a_reload_never_posts_again() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    let (_, v) = api.start("hanako").await;
    api.complete(
        v["flow"].as_str().unwrap(),
        json!({"password": PASSWORD, "code": gw.last_code("hanako"), "trust_device": true, "device_name": "Home"}),
    )
    .await;
    let (_, list) = api.get("/devices").await;
    let id = list["devices"][0]["id"].as_str().unwrap().to_owned();
    let (_, html) = page(&api, "/_nidan/devices").await;
    let csrf = hidden(&html, "csrf").unwrap();
    let r = post_form(
        &api,
        &format!("/_nidan/devices/{id}/rename"),
        &[("name", "Office"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_nidan/devices?m=renamed");
    let (_, html) = page(&api, "/_nidan/devices?m=renamed").await;
    assert!(html.contains("The device was renamed."), "{html}");
    // Each device says until when it is registered.
    assert!(html.contains("<dt>Registered until</dt><dd>20"), "{html}");
    let r = post_form(
        &api,
        &format!("/_nidan/devices/{id}/delete"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_nidan/devices?m=removed");
    // Another browser, logged out from here.
    let other = browser_with(&gw, &[]);
    other.login("hanako").await;
    let (_, sessions) = api.get("/sessions").await;
    let handle = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = post_form(
        &api,
        &format!("/_nidan/sessions/{handle}/delete"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_nidan/sessions?m=ended");
    let (_, html) = page(&api, "/_nidan/sessions?m=ended").await;
    assert!(html.contains("That browser is logged out."), "{html}");
}

#[tokio::test]
async fn notice_mails_say_when() {
    let gw = Gateway::builder()
        .set("portal.time_zone", "Asia/Tokyo")
        .start();
    let api = browser_with(&gw, &[]);
    let (_, v) = api.start("hanako").await;
    api.complete(
        v["flow"].as_str().unwrap(),
        json!({"password": PASSWORD, "code": gw.last_code("hanako"), "trust_device": true, "device_name": "Home"}),
    )
    .await;
    let mail = wait_for(&gw, |m| {
        m["channel"] == "email" && m["subject"].as_str().unwrap().contains("trusted device")
    });
    let body = mail["body"].as_str().unwrap();
    let first = body.lines().next().unwrap();
    assert!(
        first.starts_with("Date and time: 20") && first.ends_with(" JST"),
        "{body}"
    );
}

#[tokio::test]
async fn the_first_page_after_the_login_is_readable() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    api.login("taro").await;
    let (s, html) = page(&api, "/wiki").await;
    assert_eq!(s, 200);
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    assert!(
        html.contains("<main>") && html.contains("name=\"viewport\""),
        "{html}"
    );
    assert!(html.contains("(Taro Yamada)"), "{html}");
    assert!(html.contains("href=\"/_nidan/\""), "{html}");
}

/// The `<code class="token">` of a tokens page, if it shows one.
fn shown_token(html: &str) -> Option<String> {
    let start = html.find("<code class=\"token\" id=\"new-token\">")?;
    let rest = &html[start..];
    let open = rest.find('>')? + 1;
    let close = rest.find("</code>")?;
    Some(rest[open..close].to_owned())
}

#[tokio::test]
async fn a_new_app_password_is_shown_once_after_a_redirect() {
    let gw = Gateway::start();
    let api = browser_with(&gw, &[]);
    api.login("taro").await;
    let (_, html) = page(&api, "/_nidan/settings/tokens").await;
    let csrf = hidden(&html, "csrf").unwrap();
    let r = post_form(
        &api,
        "/_nidan/settings/tokens",
        &[("name", "Mail"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let handle = location
        .strip_prefix("/_nidan/settings/tokens?new=")
        .unwrap()
        .to_owned();
    assert_eq!(handle.len(), 43, "{location}");

    // Another session of the same user, holding the handle, reads nothing (and takes
    // nothing away from the right one).
    let other = browser_with(&gw, &[]);
    other.login("taro").await;
    let (status, html) = page(&other, &location).await;
    assert_eq!(status, 200);
    assert!(shown_token(&html).is_none(), "{html}");
    assert!(html.contains("is shown only once"), "{html}");

    // The GET after the POST shows it, once: letters without look-alikes, grouped, and a
    // copy button hidden until the script shows it.
    let (status, html) = page(&api, &location).await;
    assert_eq!(status, 200);
    let token = shown_token(&html).expect("the new password is shown");
    let body = token.strip_prefix("nidan_").unwrap();
    assert!(body.split('-').all(|g| g.len() == 4), "{token}");
    assert!(!body.contains(['0', 'O', 'o', '1', 'l', 'I']), "{token}");
    assert!(html.contains("The app password was created."), "{html}");
    assert!(
        html.contains("data-copy=\"new-token\"") && html.contains(" hidden>Copy</button>"),
        "{html}"
    );
    // A reload shows it no more, says so, and creates nothing.
    let (status, html) = page(&api, &location).await;
    assert_eq!(status, 200);
    assert!(shown_token(&html).is_none(), "{html}");
    assert!(!html.contains(&token));
    assert!(html.contains("is shown only once"), "{html}");
    let (_, list) = api.get("/tokens").await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1, "{list}");

    // Never in a URL, a log or the state's records in clear.
    assert!(!location.contains(body));
    assert!(!gw.log().contains(&token));
    assert!(!gw.log().contains(&handle));
}
