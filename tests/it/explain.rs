//! `nidan explain` through the real binary: route after canonicalisation, policy,
//! second-step rule, accepted credentials, exemptions, a user's 2-step setting and the
//! risk signals known offline; exit 0, or 2 for a bad URL; no database is written.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;

fn explain(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(["explain", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn config_dir() -> tempfile::TempDir {
    let dir = deployment_dir();
    std::fs::write(
        dir.path().join("nidan.yaml"),
        r#"version: 1
trusted_devices: { signing_keys: [{ id: k1, secret_file: device-key }] }
users: { file: users.yaml }
storage: { sqlite: { path: nidan.db } }
trusted_proxies: ["192.0.2.1"]
exemptions: { networks: ["10.0.0.0/8"] }
risk: { watch_networks: ["198.51.100.0/24"] }
routes:
  - { name: sync, hosts: [mail.example.com], path_prefix: /sync, upstream: ["127.0.0.1:9"], policy: login, second_step: exempt, accept: [basic, token] }
  - { name: admin, path_prefix: /admin, upstream: ["127.0.0.1:9"], policy: two_factor }
  - { name: public, path_prefix: /public, upstream: ["127.0.0.1:9"], policy: bypass }
  - { name: app, path_prefix: /, upstream: ["127.0.0.1:9"], policy: login }
"#,
    )
    .unwrap();
    dir
}

#[test]
fn routes_policies_and_exemptions_are_explained() {
    let dir = config_dir();
    let cfg = dir.path().join("nidan.yaml");
    let (code, out, err) = explain(
        &cfg,
        &[
            "--url",
            "https://MAIL.example.com:443/x/../sync//inbox?q=1#f",
            "--user",
            "hanako",
            "--ip",
            "10.1.2.3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("path       /sync/inbox (canonical"), "{out}");
    assert!(out.contains("route      sync (routes[0]"), "{out}");
    assert!(out.contains("second step  exempt"), "{out}");
    assert!(out.contains("basic (ID and password), token"), "{out}");
    assert!(out.contains("route    applies"), "{out}");
    assert!(
        out.contains("network  applies: 10.1.2.3 is in trusted network 10.0.0.0/8"),
        "{out}"
    );
    assert!(out.contains("users file  2-step on (sms)"), "{out}");
    // The portal login asks what the user and the request need, whatever the route: here
    // the trusted network stands in for hanako's second step, not the route's exemption.
    assert!(
        out.contains("login      password only: the trusted network skips the second step asked by the user's 2-step setting"),
        "{out}"
    );
    assert!(
        !out.contains("+81 90-1234-5678"),
        "phone numbers are masked: {out}"
    );

    // A two_factor route: the network never skips the second step there.
    let (code, out, _) = explain(
        &cfg,
        &[
            "--url",
            "http://wiki.example.com/admin",
            "--user",
            "hanako",
            "--ip",
            "10.1.2.3",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("policy     two_factor"), "{out}");
    assert!(out.contains("two_factor routes never skip"), "{out}");
    assert!(out.contains("security code by SMS"), "{out}");

    // A login route from a trusted network: the user's 2-step is skipped.
    let (_, out, _) = explain(
        &cfg,
        &[
            "--url",
            "http://wiki.example.com/page",
            "--user",
            "hanako",
            "--ip",
            "10.9.9.9",
        ],
    );
    assert!(
        out.contains("trusted network skips the second step asked by the user's 2-step setting"),
        "{out}"
    );

    // Risk for a user without 2-step, from a watched address.
    let (_, out, _) = explain(
        &cfg,
        &[
            "--url",
            "http://wiki.example.com/page",
            "--user",
            "taro",
            "--ip",
            "198.51.100.7",
        ],
    );
    assert!(out.contains("watchlist (+60)"), "{out}");
    assert!(out.contains("asked by the risk score"), "{out}");

    // Bypass, a refused path, the portal, no route.
    let (_, out, _) = explain(&cfg, &["--url", "http://x/public/a"]);
    assert!(out.contains("policy     bypass"), "{out}");
    let (code, out, _) = explain(&cfg, &["--url", "http://x/public/..%2fadmin"]);
    assert_eq!(code, 0);
    assert!(out.contains("400 Bad Request"), "{out}");
    let (_, out, _) = explain(&cfg, &["--url", "http://x/_nidan/login"]);
    assert!(out.contains("login portal"), "{out}");
    let (_, out, _) = explain(&cfg, &["--url", "http://x/y", "--user", "nobody"]);
    assert!(out.contains("not in the users file"), "{out}");

    // Nothing was written: no database appeared.
    assert!(!dir.path().join("nidan.db").exists());
}

#[test]
fn bad_urls_exit_2_with_a_reason() {
    let dir = config_dir();
    let cfg = dir.path().join("nidan.yaml");
    for bad in [
        "wiki.example.com/page",
        "ftp://h/x",
        "http:///x",
        "http://h/a b",
    ] {
        let (code, out, err) = explain(&cfg, &["--url", bad]);
        assert_eq!(code, 2, "{bad}: {out}");
        assert!(err.starts_with("bad URL: "), "{bad}: {err}");
    }
    let (code, _, _) = explain(&cfg, &["--url", "http://h/", "--ip", "not-an-ip"]);
    assert_eq!(code, 2);
}

#[tokio::test]
async fn what_the_database_knows_is_read_without_writing() {
    let gw = Gateway::start();
    Api::new(&gw).login("taro").await;
    Api::new(&gw).login("taro").await;
    let db = gw.path("nidan.db");
    let size = std::fs::metadata(&db).unwrap().len();
    let (code, out, err) = explain(
        &gw.config,
        &[
            "--url",
            "http://app/x",
            "--user",
            "taro",
            "--ip",
            "127.0.1.9",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("new_network (+30): 127.0.1.0/24 not seen for taro"),
        "{out}"
    );
    assert!(
        out.contains("score      30 known offline, up to 60"),
        "{out}"
    );
    assert!(
        out.contains("from an unknown browser: password and a security code"),
        "{out}"
    );
    let (_, out, _) = explain(
        &gw.config,
        &[
            "--url",
            "http://app/x",
            "--user",
            "taro",
            "--ip",
            "127.0.0.1",
        ],
    );
    assert!(out.contains("127.0.0.0/24 was seen for taro"), "{out}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), size);
}
