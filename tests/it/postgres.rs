//! The real `nidan serve` keeping its durable state in PostgreSQL (the replica mode's
//! store): a login, a session that survives kill -9 and a restart, a trusted device, a
//! 2-step setting change, `nidan explain` reading the same database, and a start against
//! an unreachable database that fails fast without showing the URL's password.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common::{self, stores};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use stores::{TestDb, TestRedis};

/// A browser: cookie jar, no redirects, no kept-alive connections (the gateway behind it
/// is killed and restarted).
fn browser() -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .cookie_store(true)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
        .build()
        .unwrap()
}

/// Writes the store URLs into `dir` and points `storage` at them (the replica mode).
fn on_postgres(b: GatewayBuilder, dir: &Path, pg_url: &str, redis_url: &str) -> GatewayBuilder {
    let pg = dir.join("pg-url");
    let redis = dir.join("redis-url");
    std::fs::write(&pg, pg_url).unwrap();
    std::fs::write(&redis, redis_url).unwrap();
    b.set(
        "storage",
        &format!(
            "{{postgres: {{url_file: \"{}\", max_connections: 4}}, redis: {{url_file: \"{}\"}}}}",
            pg.display(),
            redis.display()
        ),
    )
}

fn device_cookie(r: &reqwest::Response) -> String {
    set_cookie(r, "nidan_device").expect("a device cookie")
}

#[tokio::test]
async fn durable_state_lives_in_postgres_across_kill_9() {
    let db = TestDb::create();
    let redis = TestRedis::start();
    let urls = tempfile::tempdir().unwrap();
    let mut gw = on_postgres(Gateway::builder(), urls.path(), &db.url, &redis.url()).start();
    let http = browser();
    let api = Api {
        gw: &gw,
        http: http.clone(),
    };

    // A login with the code that trusts this browser.
    let (s, v) = api.start("hanako").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step"], "password_and_code", "{v}");
    let flow = v["flow"].as_str().unwrap().to_owned();
    let r = api
        .http
        .post(gw.url(&format!("/_nidan/api/login/{flow}/complete")))
        .json(
            &json!({"password": PASSWORD, "code": gw.last_code("hanako"),
                      "trust_device": true, "device_name": "My laptop"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = device_cookie(&r);
    assert!(
        !gw.path("nidan.db").exists(),
        "nothing is written to SQLite in this mode"
    );

    // Crash and restart: the session and the device are still there (PostgreSQL).
    gw.restart();
    let api = Api {
        gw: &gw,
        http: http.clone(),
    };
    let (s, me) = api.get("/me").await;
    assert_eq!(s, 200, "the session survived kill -9: {me}");
    assert_eq!(me["user"], "hanako", "{me}");
    assert_eq!(step_with_device(&gw, "hanako", &token).await, "password");
    let (s, v) = api.get("/devices").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["devices"].as_array().unwrap().len(), 1, "{v}");

    // A setting change is kept (and, as on SQLite, revokes the trusted devices).
    let r = api
        .http
        .put(gw.url("/_nidan/api/settings"))
        .json(&json!({"enabled": true, "method": "email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.restart();
    assert_eq!(
        step_with_device(&gw, "hanako", &token).await,
        "password_and_code"
    );

    // What the gateway wrote, read through the store's own code.
    let store = nidan::store::Store::open_postgres(&db.url, 1, true)
        .await
        .unwrap();
    let setting = store.setting("hanako").await.unwrap().unwrap();
    assert!(setting.enabled);
    assert_eq!(setting.method, "email");
    assert!(store.live_devices("hanako", 0).await.unwrap().is_empty());
    assert!(
        store
            .audit_trail(Some("hanako"), 50)
            .await
            .unwrap()
            .iter()
            .any(|a| a.event == "login_succeeded"),
        "the audit trail is in PostgreSQL"
    );

    // `nidan explain` reads the same database (read-only).
    let out = Command::new(bin())
        .args(["explain", "--config"])
        .arg(&gw.config)
        .args(["--url", "http://app.example.com/", "--user", "hanako"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stored setting  2-step on (email)"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(gw);
}

#[test]
fn an_unreachable_postgres_fails_the_start_fast_without_the_password() {
    let redis = TestRedis::start();
    let dir = deployment_dir();
    let port = free_port();
    let password = "Pg-Pa55word-never-shown";
    let mut b = on_postgres(
        Gateway::builder(),
        dir.path(),
        &format!("postgres://nidan:{password}@127.0.0.1:{port}/nidan"),
        &redis.url(),
    );
    let config = dir.path().join("nidan.yaml");
    std::fs::write(&config, serde_yaml::to_string(b.doc()).unwrap()).unwrap();
    let started = Instant::now();
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(started.elapsed() < Duration::from_secs(20), "{text}");
    assert!(!text.contains(password), "{text}");
    assert!(
        text.contains(&format!("PostgreSQL at 127.0.0.1:{port}")),
        "{text}"
    );
}
