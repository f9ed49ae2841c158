//! The portal in a real browser: headless Chromium (driven by Selenium through
//! chromedriver) logs in as hanako on a phone-sized screen without any help from us — the
//! ID page, password + security code, "trust this browser" with a name — then sees the
//! device listed, logs out and back in with the password only. Then every page state of the
//! portal, in Japanese and English, with JavaScript on and off, is checked with axe-core at
//! a desktop and a 375 px phone width. `.ci/run` installs Debian's chromium and
//! chromium-driver, Selenium from PyPI and axe-core from npm (`tests/browser/node_modules`).
#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common;

use std::process::Command;

use common::*;

fn need_browser() {
    for need in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(need).exists(),
            "{need} is missing: run `apt-get install chromium chromium-driver` (bash .ci/run does)"
        );
    }
}

#[test]
fn a_person_logs_in_with_a_real_browser() {
    need_browser();
    let gw = Gateway::start();
    let shots = gw.path("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("python3")
        .arg(repo().join("tests/browser/login_flow.py"))
        .arg(gw.url(""))
        .arg(&gw.outbox)
        .arg(&shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser run failed:\n{}\n{}\ngateway log:\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["lang"], "ja", "Accept-Language picks Japanese: {seen}");
    assert_eq!(seen["label_for_id"], "ID");
    assert!(
        seen["scroll_width"].as_i64().unwrap() <= 360,
        "no sideways scrolling on a phone: {seen}"
    );
    assert_eq!(seen["destination"], "***-****-5678");
    assert_eq!(seen["trust_ticked"], true, "ticked by default: {seen}");
    assert_eq!(seen["name_suggested"], "Chrome on Linux", "{seen}");
    assert_eq!(seen["backend_sees_user"], true, "{seen}");
    assert!(
        seen["devices_page"]
            .as_str()
            .unwrap()
            .contains("Chromium のテスト"),
        "{seen}"
    );
    assert_eq!(
        seen["second_login_has_code_field"], false,
        "the trusted browser skips the code"
    );
    assert!(
        seen["second_login_url"]
            .as_str()
            .unwrap()
            .ends_with("/app/page"),
        "{seen}"
    );
    assert_eq!(seen["codes_sent"], 1, "only the first login sent a code");
    if let Ok(dir) = std::env::var("NIDAN_SCREENSHOTS") {
        for f in std::fs::read_dir(&shots).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), std::path::Path::new(&dir).join(f.file_name())).unwrap();
        }
    }
}

/// Every page state the accessibility walk (`tests/browser/a11y.py`) must reach and check;
/// a walk that skipped one fails here rather than passing with less checked.
const STATES: &[&str] = &[
    "id",
    "password-code",
    "password-code-email",
    "resend-cooldown",
    "wrong-code",
    "trust-without-name",
    "trust-device",
    "landing",
    "signed-in",
    "devices",
    "confirm-remove-device",
    "sessions",
    "settings",
    "settings-saved",
    "passkeys",
    "tokens",
    "token-created",
    "logged-out",
    "password-only",
    "not-found",
    "flow-expired",
    "step-up-code",
    "throttled",
    "password-code-phone-kept",
    "password-code-no-app",
    "app",
    "app-enrollment",
    "app-enrolled",
    "app-waiting",
    "password-code-instead-of-app",
    "app-wrong-number",
    "app-approved",
    "password-code-app-limit",
];

/// The gateway of one walk. Passkeys are offered only on a domain name: `localhost` points
/// at 127.0.0.1. It is named in the configuration, so the app enrollment can hand out this
/// address. The walks with JavaScript (the gallery's) have the demo's own look and links
/// (config/demo.yaml: help, account and recovery pages, Japan's time); the walks without it
/// have an operator's look: a logo, footer links and a primary colour of their own
/// (brand.css).
fn walk_gateway(js: &str) -> Gateway {
    let mut builder = Gateway::builder().set(
        "portal.allowed_return_hosts",
        "[app.example.com, localhost]",
    );
    if js == "on" {
        builder = builder
            .set("portal.title", "nidan demo")
            .set("portal.time_zone", "Asia/Tokyo")
            .set("portal.help_url", "/public/help")
            .set("portal.account_url", "/_nidan/")
            .set("portal.recovery_url", "/public/help#forgot");
    } else {
        builder = builder.set("portal.title", "nidan").set(
            "portal.brand",
            &format!(
                "{{name: nidan, logo_file: {:?}, primary_color: \"#8a3b12\", footer_links: [{{label: {{ja: ヘルプ, en: Help}}, url: /help}}, {{label: {{ja: 利用規約, en: Terms}}, url: /terms}}, {{label: {{ja: プライバシー, en: Privacy}}, url: /privacy}}]}}",
                repo().join("tests/browser/logo.svg")
            ),
        );
    }
    builder.start()
}

/// axe-core (WCAG 2.0–2.2 A/AA and best practices) finds nothing on any page state, in
/// Japanese and English, with JavaScript on and off, at 1280 and 375 px and in the dark
/// colour scheme; the focus ring has 3:1 against what surrounds it, every control is at
/// least 24 x 24 px and no page scrolls sideways. Each walk has a gateway
/// of its own (the throttling step uses up an account's codes).
///
/// With `NIDAN_GALLERY=DIR` the JavaScript walks also save every state as PNG there
/// (`docs/screenshots.sh` does this and writes the gallery's index).
#[test]
fn every_page_passes_axe_in_both_languages_with_and_without_javascript() {
    need_browser();
    let gallery = std::env::var("NIDAN_GALLERY").ok();
    // One line per fault (rule, impact, element, what is wrong), then where it was seen.
    let mut report: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut total = 0;
    for (lang, js) in [("ja", "on"), ("en", "on"), ("ja", "off"), ("en", "off")] {
        let gw = walk_gateway(js);
        let base = format!("http://localhost:{}", gw.addr.port());
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/browser/a11y.py"))
            .arg(&base)
            .arg(&gw.outbox)
            .arg(bin())
            .arg(gw.dir.path())
            .arg(lang)
            .arg(js);
        if let (Some(dir), "on") = (&gallery, js) {
            cmd.arg(dir);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the {lang} walk with JavaScript {js} failed:\n{}\n{}\ngateway log:\n{}",
            stdout,
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        );
        let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let states: Vec<&str> = seen["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(states, STATES, "the {lang} walk with JavaScript {js}");
        assert_eq!(
            seen["checked"],
            STATES.len() * 3,
            "three views per state: desktop, phone, dark"
        );
        total += seen["checked"].as_u64().unwrap();
        for v in seen["violations"].as_array().unwrap() {
            let s = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
            let targets: Vec<String> = v["targets"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .map(|x| x.as_str().unwrap_or("?").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            report
                .entry(format!(
                    "{} ({}) {} — {}",
                    s("rule"),
                    s("impact"),
                    targets.join(", "),
                    s("help")
                ))
                .or_default()
                .push(format!("{lang} js-{js} {}: {}", s("view"), s("state")));
        }
    }
    assert_eq!(total, 4 * 3 * STATES.len() as u64);
    let text: Vec<String> = report
        .iter()
        .map(|(fault, at)| {
            let more = at.len().saturating_sub(6);
            let mut line = format!("{fault}\n    at {}", at[..at.len().min(6)].join("; "));
            if more > 0 {
                line.push_str(&format!(" and {more} more"));
            }
            line
        })
        .collect();
    assert!(
        report.is_empty(),
        "accessibility violations ({} distinct):\n{}",
        report.len(),
        text.join("\n")
    );
}
