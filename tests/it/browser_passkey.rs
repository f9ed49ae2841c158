//! Passkeys in a real browser: headless Chromium (Selenium + chromedriver) with Chromium's
//! virtual authenticator (CTAP2, resident keys, user verification — a fingerprint reader
//! in software) logs in as hanako with password + code, registers a passkey on
//! `/_nidan/passkeys`, logs out, and logs back in by clicking "log in with a passkey" —
//! landing on the return address with the backend seeing the user, and no code sent.
#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common;

use std::process::Command;

use common::*;

#[test]
fn a_person_logs_in_with_a_passkey_in_a_real_browser() {
    for need in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(need).exists(),
            "{need} is missing: run `apt-get install chromium chromium-driver` (bash .ci/run does)"
        );
    }
    let gw = Gateway::start();
    let shots = gw.path("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    // WebAuthn wants a domain as the relying party ID and a secure context: `localhost`
    // is both (the gateway listens on 127.0.0.1, where localhost points).
    let base = format!("http://localhost:{}", gw.addr.port());
    let out = Command::new("python3")
        .arg(repo().join("tests/browser/passkey_flow.py"))
        .arg(&base)
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
    assert_eq!(seen["passkeys_page"], "Chromium fingerprint", "{seen}");
    assert_eq!(seen["credentials_in_authenticator"], 1, "{seen}");
    assert_eq!(seen["logged_out"], true, "{seen}");
    assert!(
        seen["login_url"]
            .as_str()
            .unwrap()
            .ends_with("/app/after?z=1"),
        "{seen}"
    );
    assert_eq!(seen["backend_sees_user"], true, "{seen}");
    assert_eq!(seen["codes_sent_by_passkey_login"], 0, "{seen}");
    assert!(
        seen["signed_in_page"]
            .as_str()
            .unwrap()
            .contains("Passkey (biometrics)"),
        "the signed-in page names the passkey as the way in: {seen}"
    );
    if let Ok(dir) = std::env::var("NIDAN_SCREENSHOTS") {
        for f in std::fs::read_dir(&shots).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), std::path::Path::new(&dir).join(f.file_name())).unwrap();
        }
    }
}
