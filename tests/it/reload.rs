//! Configuration reload: a valid edit of the file changes the routes without a restart; an
//! invalid edit is reported and the running configuration stays (SECURITY 31).
#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common;

use std::time::{Duration, Instant};

use common::*;

async fn status_until(gw: &Gateway, path: &str, want: u16) -> u16 {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = http
            .get(gw.url(path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if s == want || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn valid_edits_apply_and_invalid_ones_keep_the_running_config() {
    let gw = Gateway::start();
    assert_eq!(status_until(&gw, "/public/x", 200).await, 200);

    // A valid edit: the public route is closed.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let closed = text.replacen("policy: bypass", "policy: deny", 1);
    assert_ne!(closed, text);
    std::fs::write(&gw.config, &closed).unwrap();
    assert_eq!(status_until(&gw, "/public/x", 403).await, 403);

    // An invalid edit (unknown key): reported, and the running routes stay.
    std::fs::write(&gw.config, format!("{closed}\nnot_a_key: 1\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("configuration not reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.log().contains("not_a_key"),
        "the error names the key:\n{}",
        gw.log()
    );
    assert_eq!(
        client()
            .get(gw.url("/public/x"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        client().get(gw.url("/app")).send().await.unwrap().status(),
        401
    );
}

/// Waits until the gateway's log contains `what` `times` times.
async fn logged(gw: &Gateway, what: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.log().matches(what).count() < times {
        assert!(
            Instant::now() < deadline,
            "{what:?} not logged {times}×:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(gw: &Gateway) -> String {
    client()
        .get(format!("http://{}/metrics", gw.admin.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn sha256_hex(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// SIGHUP alone reloads (the file watch is slowed to an hour here); the metric names the
/// hash of the file in force; a bad file changes nothing and is reported with its place;
/// a change a reload cannot apply is named and keeps its running value.
#[tokio::test]
async fn sighup_reloads_and_the_metric_names_the_live_configuration() {
    let gw = Gateway::builder()
        .set("users.reload_interval", "1h")
        .set("server.admin_listen", "\"127.0.0.1:1\"")
        .start();
    assert_eq!(status_until(&gw, "/public/x", 200).await, 200);
    let first = sha256_hex(&gw.config);
    let m = metrics(&gw).await;
    assert!(
        m.contains(&format!("nidan_config_info{{hash=\"{first}\"}} 1")),
        "{m}"
    );
    assert!(m.contains("nidan_config_loaded_timestamp_seconds "), "{m}");

    // A valid edit, also of a setting only a restart applies: routes change, threads stay.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let closed =
        text.replacen("policy: bypass", "policy: deny", 1)
            .replacen("threads: 2", "threads: 3", 1);
    assert_ne!(closed, text);
    std::fs::write(&gw.config, &closed).unwrap();
    gw.signal("HUP");
    logged(&gw, "configuration reloaded", 1).await;
    assert_eq!(status_until(&gw, "/public/x", 403).await, 403);
    let log = gw.log();
    assert!(
        log.contains("a reload cannot apply them") && log.contains("server.threads"),
        "{log}"
    );
    let second = sha256_hex(&gw.config);
    let m = metrics(&gw).await;
    assert!(
        m.contains(&format!("nidan_config_info{{hash=\"{second}\"}} 1")),
        "{m}"
    );
    assert!(!m.contains(&first), "the old hash is gone: {m}");

    // A bad edit: named with file, line and column; nothing changes, the hash stays.
    std::fs::write(&gw.config, format!("{closed}not_a_key: 1\n")).unwrap();
    gw.signal("HUP");
    logged(&gw, "configuration not reloaded", 1).await;
    let log = gw.log();
    let place = format!("{}:", gw.config.display());
    assert!(log.contains(&place) && log.contains("not_a_key"), "{log}");
    let m = metrics(&gw).await;
    assert!(
        m.contains(&format!("nidan_config_info{{hash=\"{second}\"}} 1")),
        "{m}"
    );
    assert!(
        m.contains("nidan_config_reloads_total{result=\"error\"} 1"),
        "{m}"
    );
    assert_eq!(status_until(&gw, "/public/x", 403).await, 403);
}

/// The TLS certificate is swapped by a reload: a new handshake gets the new one, a
/// connection opened before keeps the one it was made with; an unreadable key is refused
/// and the certificate in force stays.
#[tokio::test]
async fn a_new_certificate_is_served_to_new_handshakes_without_a_restart() {
    use crate::common::nginx::throwaway_cert;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (cert_a, key_a) = throwaway_cert(&a, "first.example");
    let (cert_b, key_b) = throwaway_cert(&b, "second.example");
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    std::fs::copy(&cert_a, &cert).unwrap();
    std::fs::copy(&key_a, &key).unwrap();
    let tls_port = free_port();
    let gw = Gateway::builder()
        .set("users.reload_interval", "1h")
        .set(
            "server.tls",
            &format!(
                "{{ listen: [\"127.0.0.1:{tls_port}\"], cert: \"{}\", key: \"{}\" }}",
                cert.display(),
                key.display()
            ),
        )
        .start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(Instant::now() < deadline, "no TLS listener:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pingora::tls::install_default_crypto_provider();
    let tls_client = || {
        reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .tls_info(true)
            .build()
            .unwrap()
    };
    let url = format!("https://127.0.0.1:{tls_port}/public/x");
    async fn served(http: &reqwest::Client, url: &str) -> Vec<u8> {
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
            .expect("the peer certificate")
    }
    let der = |pem: &std::path::Path| {
        let text = std::fs::read_to_string(pem).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    let before = tls_client();
    assert_eq!(served(&before, &url).await, der(&cert_a));

    // Swap the files, then reload.
    std::fs::copy(&cert_b, &cert).unwrap();
    std::fs::copy(&key_b, &key).unwrap();
    gw.signal("HUP");
    logged(&gw, "configuration reloaded", 1).await;
    assert!(gw.log().contains("server.tls certificate"), "{}", gw.log());
    assert_eq!(served(&tls_client(), &url).await, der(&cert_b));
    // The connection made before the swap is still open and keeps its certificate.
    assert_eq!(served(&before, &url).await, der(&cert_a));

    // A key that does not belong to the certificate: refused, the new one stays in force.
    std::fs::copy(&key_a, &key).unwrap();
    gw.signal("HUP");
    logged(&gw, "configuration not reloaded", 1).await;
    assert!(gw.log().contains("server.tls"), "{}", gw.log());
    assert_eq!(served(&tls_client(), &url).await, der(&cert_b));
}

/// Logs hanako in with "trust this device"; her device cookie.
async fn trust(gw: &Gateway) -> String {
    let http = plain();
    let (v, r) = api_login(
        &http,
        &gw.url(""),
        gw,
        serde_json::json!({"id": "hanako"}),
        serde_json::json!({"trust_device": true, "device_name": "laptop"}),
        &[],
    )
    .await;
    assert_eq!(v["step"], "password_and_code", "{v}");
    set_cookie(&r, "nidan_device").expect("a device cookie")
}

/// Rotating the trusted-device signing key by a reload: a new key signs, the old one still
/// verifies devices registered before; once removed, those devices no longer count.
#[tokio::test]
async fn a_rotated_device_key_signs_new_devices_and_old_ones_work_until_it_is_removed() {
    let gw = Gateway::builder()
        .set("users.reload_interval", "1h")
        .start();
    let kid = |cookie: &str| {
        use base64::Engine;
        let head = cookie.split('.').next().unwrap();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["kid"].as_str().unwrap().to_owned()
    };
    let old = trust(&gw).await;
    assert_eq!(kid(&old), "k1");
    assert_eq!(step_with_device(&gw, "hanako", &old).await, "password");

    // k2 first (it signs), k1 kept (it verifies).
    std::fs::write(
        gw.path("device-key-2"),
        "second-device-signing-key-0123456789abcdef",
    )
    .unwrap();
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let rotated = text.replacen(
        "- id: k1",
        "- id: k2\n    secret_file: device-key-2\n  - id: k1",
        1,
    );
    assert_ne!(rotated, text, "{text}");
    std::fs::write(&gw.config, &rotated).unwrap();
    gw.signal("HUP");
    logged(&gw, "configuration reloaded", 1).await;
    let new = trust(&gw).await;
    assert_eq!(kid(&new), "k2");
    assert_eq!(step_with_device(&gw, "hanako", &old).await, "password");
    assert_eq!(step_with_device(&gw, "hanako", &new).await, "password");

    // k1 removed: the devices it signed are asked for the second step again.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let start = text.find("  - id: k1").unwrap();
    let end = start
        + text[start..].find("secret_file: device-key\n").unwrap()
        + "secret_file: device-key\n".len();
    std::fs::write(&gw.config, format!("{}{}", &text[..start], &text[end..])).unwrap();
    gw.signal("HUP");
    logged(&gw, "configuration reloaded", 2).await;
    assert_eq!(
        step_with_device(&gw, "hanako", &old).await,
        "password_and_code"
    );
    assert_eq!(step_with_device(&gw, "hanako", &new).await, "password");
}

/// `check-config --diff OLD NEW` names what changed and what needs a restart (exit 3).
#[test]
fn check_config_diff_names_what_needs_a_restart() {
    let gw = Gateway::start();
    let old = gw.config.clone();
    let text = std::fs::read_to_string(&old).unwrap();
    let routes_only = gw.path("routes.yaml");
    std::fs::write(
        &routes_only,
        text.replacen("policy: bypass", "policy: deny", 1),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check-config", "--diff"])
        .arg(&old)
        .arg(&routes_only)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("routes: applied by a reload"), "{said}");

    let moved = gw.path("moved.yaml");
    let port = gw.addr.port();
    std::fs::write(
        &moved,
        text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:1"),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check-config", "--diff"])
        .arg(&old)
        .arg(&moved)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("server.listen: needs a restart"), "{said}");
    assert!(!said.contains("routes"), "{said}");
}

/// The notifiers are rebuilt by a reload: codes go to the new outbox from then on.
#[tokio::test]
async fn a_reload_rebuilds_the_notifiers() {
    let gw = Gateway::builder()
        .set("users.reload_interval", "1h")
        .start();
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let moved = text.replacen("path: outbox.jsonl", "path: outbox-2.jsonl", 1);
    assert_ne!(moved, text, "{text}");
    std::fs::write(&gw.config, &moved).unwrap();
    gw.signal("HUP");
    logged(&gw, "configuration reloaded", 1).await;
    assert!(gw.log().contains("notifiers"), "{}", gw.log());
    let r = plain()
        .post(gw.url("/_nidan/api/login"))
        .json(&serde_json::json!({"id": "hanako"}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["step"], "password_and_code", "{v}");
    let code = last_code_in(&gw.path("outbox-2.jsonl"), "hanako");
    assert_eq!(code.len(), 6, "{code}");
    assert!(gw.outbox().is_empty(), "{:?}", gw.outbox());
}

/// The risk settings are swapped by a reload: a threshold of 0 asks every login of a user
/// without 2-step for a code from then on.
#[tokio::test]
async fn a_reload_changes_the_risk_threshold_for_the_next_login() {
    let gw = Gateway::builder()
        .set("users.reload_interval", "1h")
        .set("risk", "{ threshold: 1000, score_first_login: true }")
        .start();
    let step = || async {
        let r = plain()
            .post(gw.url("/_nidan/api/login"))
            .json(&serde_json::json!({"id": "taro"}))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        v["step"].as_str().unwrap().to_owned()
    };
    assert_eq!(step().await, "password");
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let strict = text.replacen("threshold: 1000", "threshold: 1", 1);
    assert_ne!(strict, text, "{text}");
    std::fs::write(&gw.config, &strict).unwrap();
    gw.signal("HUP");
    logged(&gw, "configuration reloaded", 1).await;
    assert_eq!(step().await, "password_and_code");
}

/// The file watch covers the certificate and key too: replaced on disk (as a renewal tool
/// does), the new certificate is served without a signal.
#[tokio::test]
async fn a_certificate_renewed_on_disk_is_served_without_a_signal() {
    use crate::common::nginx::throwaway_cert;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (cert_a, key_a) = throwaway_cert(&a, "old.example");
    let (cert_b, key_b) = throwaway_cert(&b, "renewed.example");
    let tls_port = free_port();
    let gw = Gateway::builder()
        .set(
            "server.tls",
            &format!(
                "{{ listen: [\"127.0.0.1:{tls_port}\"], cert: \"{}\", key: \"{}\" }}",
                cert_a.display(),
                key_a.display()
            ),
        )
        .start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(Instant::now() < deadline, "no TLS listener:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pingora::tls::install_default_crypto_provider();
    let url = format!("https://127.0.0.1:{tls_port}/public/x");
    let served = || async {
        let http = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .tls_info(true)
            .build()
            .unwrap();
        let r = http.get(&url).send().await.unwrap();
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
            .unwrap()
    };
    let first = served().await;
    // The key first, then the certificate: in between the pair does not match and is
    // refused; once both are there, the renewed one is served.
    std::fs::copy(&key_b, &key_a).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::copy(&cert_b, &cert_a).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served().await == first {
        assert!(
            Instant::now() < deadline,
            "still the old certificate:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gw.log().contains("server.tls certificate"), "{}", gw.log());
}
