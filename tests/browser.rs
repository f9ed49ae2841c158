//! The portal in a real browser: headless Chromium (driven by Selenium through
//! chromedriver) logs in as hanako on a phone-sized screen without any help from us — the
//! ID page, password + security code, "trust this browser" with a name — then sees the
//! device listed, logs out and back in with the password only. `.ci/run` installs Debian's
//! chromium and chromium-driver and Selenium from PyPI.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_person_logs_in_with_a_real_browser() {
    for need in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(need).exists(),
            "{need} is missing: run `apt-get install chromium chromium-driver` (bash .ci/run does)"
        );
    }
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
