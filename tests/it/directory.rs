//! The database directory (issue 24) through the real binary: users provisioned by the
//! admin API and `nidan users import` into SQLite (one gateway) and PostgreSQL (replicas),
//! logins through it, a password change or a disabled account ending the sessions on every
//! replica, a store cut during a look-up answered 503 (never "no such user"), bad input
//! refused with the field named and nothing written, and a users file refusing writes.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]
#![allow(clippy::too_many_lines)] // tests are exempt: a scenario reads top to bottom

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::common::cluster::{self, ADMIN_TOKEN, Browser, Cluster, everywhere};
use crate::common::stores::Cut;
use crate::common::{self, *};
use serde_json::{Value, json};

/// One request to an admin listener: (status, body or null).
async fn admin(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("http://{addr}{path}"),
        )
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A single gateway on SQLite with `users: { database: {} }` and the admin API.
fn sqlite_gateway(secrets: &tempfile::TempDir) -> Gateway {
    let file = secrets.path().join("admin-token");
    std::fs::write(&file, format!("{ADMIN_TOKEN}\n")).unwrap();
    Gateway::builder()
        .set("users", "{ database: {}, reload_interval: 1s }")
        .set("server.admin_listen", "\"127.0.0.1:1\"")
        .set(
            "server.admin_token_file",
            &format!("\"{}\"", file.display()),
        )
        .start()
}

fn alice() -> Value {
    json!({
        "password": PASSWORD,
        "name": "Alice Example",
        "email": "alice@example.com",
        "phone": "+81 90-5555-0000",
        "groups": ["staff"],
        "two_step": {"enabled": false},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_provisioned_by_the_admin_api_and_log_in() {
    let secrets = tempfile::tempdir().unwrap();
    let gw = sqlite_gateway(&secrets);
    let a = gw.admin.unwrap();

    // Nobody yet: an unknown ID looks like any (decoy) login, and is not found by the API.
    assert_eq!(admin(a, "GET", "/admin/users/alice", None).await.0, 404);
    let (s, v) = admin(a, "PUT", "/admin/users/alice", Some(alice())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["created"], true);
    assert!(v.get("password_hash").is_none(), "{v}");

    // The hash never leaves; the fields are as sent.
    let (s, v) = admin(a, "GET", "/admin/users/alice", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "Alice Example");
    assert_eq!(v["groups"], json!(["staff"]));
    assert!(!v.to_string().contains("argon2"), "{v}");

    // She logs in with that password.
    let api = Api::new(&gw);
    let done = api.login("alice").await;
    assert_eq!(done["redirect"], "/", "{done}");
    let (s, me) = api.get("/me").await;
    assert_eq!(s, 200);
    assert_eq!(me["user"], "alice", "{me}");

    // Replacing her with the same password keeps her session; PATCH changes the name only.
    let (s, v) = admin(
        a,
        "PATCH",
        "/admin/users/alice",
        Some(json!({"name": "Alice B. Example", "email": null})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "Alice B. Example");
    assert_eq!(v["email"], Value::Null);
    assert_eq!(api.get("/me").await.0, 200);

    // A new password ends the session made with the old one; the old one no longer works.
    let (s, v) = admin(
        a,
        "PATCH",
        "/admin/users/alice",
        Some(json!({"password": "another-password-2"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(api.get("/me").await.0, 401);
    let api = Api::new(&gw);
    let (_, started) = api.start("alice").await;
    let flow = started["flow"].as_str().unwrap();
    assert_eq!(
        api.complete(flow, json!({"password": PASSWORD})).await.0,
        401
    );

    // Pages in ID order, and DELETE.
    for id in ["bob", "carol"] {
        let mut body = alice();
        body["email"] = json!(format!("{id}@example.com"));
        assert_eq!(
            admin(a, "PUT", &format!("/admin/users/{id}"), Some(body))
                .await
                .0,
            201
        );
    }
    let (s, v) = admin(a, "GET", "/admin/users?limit=2", None).await;
    assert_eq!(s, 200, "{v}");
    let ids: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "bob"]);
    assert_eq!(v["next"], "bob");
    let (_, v) = admin(a, "GET", "/admin/users?after=bob&limit=2", None).await;
    assert_eq!(v["users"][0]["id"], "carol");
    assert_eq!(v["next"], Value::Null);
    assert_eq!(admin(a, "DELETE", "/admin/users/bob", None).await.0, 200);
    assert_eq!(admin(a, "GET", "/admin/users/bob", None).await.0, 404);
    assert_eq!(admin(a, "DELETE", "/admin/users/bob", None).await.0, 404);

    // Audited.
    let db = gw.path("nidan.db");
    assert!(
        crate::common::audit::last(&db, "alice", "user_written")
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_field_named_and_nothing_written() {
    let secrets = tempfile::tempdir().unwrap();
    let gw = sqlite_gateway(&secrets);
    let a = gw.admin.unwrap();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("carol", json!({"password_hash": "plain"}), "password_hash"),
        (
            "carol",
            json!({"password": PASSWORD, "email": "nope"}),
            "email",
        ),
        (
            "carol",
            json!({"password": PASSWORD, "phone": "call me"}),
            "phone",
        ),
        (
            "carol",
            json!({"password": PASSWORD, "groups": ["ok", " "]}),
            "groups[1]",
        ),
        (
            "carol",
            json!({"password": PASSWORD, "two_step": {"enabled": true, "method": "sms"}}),
            "two_step",
        ),
        (
            "carol",
            json!({"password": PASSWORD, "mail": "x@example.com"}),
            "mail",
        ),
        ("carol", json!({"name": "no password"}), "password"),
        (
            "carol",
            json!({"password": PASSWORD, "password_hash": "$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA"}),
            "password",
        ),
        ("bad%20id", json!({"password": PASSWORD}), "id"),
    ];
    for (id, body, field) in cases {
        let (s, v) = admin(a, "PUT", &format!("/admin/users/{id}"), Some(body.clone())).await;
        assert_eq!(s, 400, "{body} → {v}");
        assert_eq!(v["field"], field, "{body} → {v}");
        assert!(
            !v.to_string().contains("plain"),
            "the hash is not echoed: {v}"
        );
    }
    let (s, v) = admin(a, "GET", "/admin/users", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["users"], json!([]), "nothing was written");
    assert_eq!(admin(a, "GET", "/admin/users?limit=0", None).await.0, 400);
    // A PATCH that breaks a valid user changes nothing.
    assert_eq!(
        admin(a, "PUT", "/admin/users/carol", Some(alice())).await.0,
        201
    );
    let (s, v) = admin(
        a,
        "PATCH",
        "/admin/users/carol",
        Some(json!({"two_step": {"enabled": true, "method": "email"}, "email": null})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["field"], "two_step");
    let (_, v) = admin(a, "GET", "/admin/users/carol", None).await;
    assert_eq!(v["email"], "alice@example.com");
    // No token: 401.
    let r = client()
        .get(format!("http://{a}/admin/users/carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_file_refuses_writes_with_409() {
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("admin-token");
    std::fs::write(&file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let gw = Gateway::builder()
        .set("server.admin_listen", "\"127.0.0.1:1\"")
        .set(
            "server.admin_token_file",
            &format!("\"{}\"", file.display()),
        )
        .start();
    let a = gw.admin.unwrap();
    for (m, body) in [
        ("PUT", Some(alice())),
        ("PATCH", Some(json!({}))),
        ("DELETE", None),
    ] {
        let (s, v) = admin(a, m, "/admin/users/taro", body).await;
        assert_eq!(s, 409, "{m} {v}");
        assert!(v["message"].as_str().unwrap().contains("users file"), "{v}");
    }
    // Reads work: the file's users, never a hash.
    let (s, v) = admin(a, "GET", "/admin/users/taro", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "Taro Yamada");
    assert!(!v.to_string().contains("argon2"));
}

/// A users file of `n` generated users sharing one hash of [`PASSWORD`].
fn users_file(path: &std::path::Path, ids: impl Iterator<Item = String>, hash: &str) {
    use std::fmt::Write as _;
    let mut text = String::from("version: 1\nusers:\n");
    for id in ids {
        writeln!(
            text,
            "  - {{ id: {id}, password_hash: \"{hash}\", email: {id}@example.com }}"
        )
        .unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn import(config: &std::path::Path, users: &std::path::Path) -> (bool, String) {
    let out = Command::new(bin())
        .args(["users", "import", "--config"])
        .arg(config)
        .arg(users)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_is_idempotent_and_counts() {
    let secrets = tempfile::tempdir().unwrap();
    let gw = sqlite_gateway(&secrets);
    let a = gw.admin.unwrap();
    let hash = hash_password(PASSWORD);
    let file = gw.path("bulk.yaml");
    users_file(&file, (0..2_500).map(|i| format!("u{i:05}")), &hash);
    let (ok, out) = import(&gw.config, &file);
    assert!(ok, "{out}");
    assert!(
        out.contains("2500 created, 0 updated, 0 unchanged"),
        "{out}"
    );
    let (ok, out) = import(&gw.config, &file);
    assert!(ok, "{out}");
    assert!(
        out.contains("0 created, 0 updated, 2500 unchanged"),
        "{out}"
    );
    // One changed, one added.
    users_file(&file, (0..2_501).map(|i| format!("u{i:05}")), &hash);
    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "email: u00007@example.com",
        "email: seven@example.com",
        1,
    );
    std::fs::write(&file, text).unwrap();
    let (ok, out) = import(&gw.config, &file);
    assert!(ok, "{out}");
    assert!(
        out.contains("1 created, 1 updated, 2499 unchanged"),
        "{out}"
    );
    let (_, v) = admin(a, "GET", "/admin/users/u00007", None).await;
    assert_eq!(v["email"], "seven@example.com");
    // An imported user logs in.
    let api = Api::new(&gw);
    api.login("u02500").await;
    assert_eq!(api.get("/me").await.1["user"], "u02500");
    // A bad file: the line named, nothing written.
    std::fs::write(
        &file,
        format!("version: 1\nusers:\n  - {{ id: new1, password_hash: \"{hash}\" }}\n  - {{ id: new2, password_hash: plain }}\n"),
    )
    .unwrap();
    let (ok, out) = import(&gw.config, &file);
    assert!(!ok);
    assert!(out.contains("bulk.yaml:4:32:"), "{out}");
    assert!(!out.contains("plain"), "{out}");
    assert_eq!(admin(a, "GET", "/admin/users/new1", None).await.0, 404);
}

/// Replicas on PostgreSQL + Redis with the database directory.
fn replicas(n: usize, cut: Option<&Cut>) -> Cluster {
    Cluster::start_full(
        n,
        "60s",
        "users: { database: {}, reload_interval: 1s }",
        cut,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_ends_the_sessions_on_the_other() {
    let c = replicas(2, None);
    let (a, b) = (c.nodes[0].admin, c.nodes[1].admin);
    let (s, v) = admin(a, "PUT", "/admin/users/alice", Some(alice())).await;
    assert_eq!(s, 201, "{v}");
    // Seen by the other replica at once.
    let (s, v) = admin(b, "GET", "/admin/users/alice", None).await;
    assert_eq!(s, 200, "{v}");

    let mut session = Browser::default();
    session.login(&c, 1, 1, "alice", false).await;
    assert!(session.signed_in(&c, 1).await);
    assert!(session.signed_in(&c, 0).await);

    // A new password on replica A: the session ends on B within the 1 s rule.
    let (s, v) = admin(
        a,
        "PATCH",
        "/admin/users/alice",
        Some(json!({"password": "another-password-2"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    everywhere(
        &c,
        "the old password's session refused",
        Duration::from_secs(1),
        async |i| !session.signed_in(&c, i).await,
    )
    .await;

    // Log in again (the test password back), then disable on B: the session ends on A.
    let (s, _) = admin(
        b,
        "PATCH",
        "/admin/users/alice",
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 200);
    let mut again = Browser::default();
    again.login(&c, 0, 0, "alice", false).await;
    assert!(again.signed_in(&c, 1).await);
    let (s, v) = admin(
        b,
        "PATCH",
        "/admin/users/alice",
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    everywhere(
        &c,
        "the disabled user's session refused",
        Duration::from_secs(1),
        async |i| !again.signed_in(&c, i).await,
    )
    .await;
    assert!(c.audited("alice", "credentials_revoked").await >= 2);

    // A tightened rule is not decided from a cache: 2-step turned on through replica A is
    // asked at once by replica B, which had just looked the user up with 2-step off.
    let body = json!({"password": PASSWORD, "name": "Bob", "email": "bob@example.com"});
    assert_eq!(admin(a, "PUT", "/admin/users/bob", Some(body)).await.0, 201);
    assert_eq!(Browser::default().step(&c, 1, "bob").await, "password");
    let (s, v) = admin(
        a,
        "PATCH",
        "/admin/users/bob",
        Some(json!({"two_step": {"enabled": true, "method": "email"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        Browser::default().step(&c, 1, "bob").await,
        "password_and_code"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_cut_during_a_look_up_is_503_not_no_such_user() {
    let cut = Cut::start(cluster::pg_addr());
    let c = replicas(1, Some(&cut));
    let a = c.nodes[0].admin;
    assert_eq!(
        admin(a, "PUT", "/admin/users/alice", Some(alice())).await.0,
        201
    );
    cut.cut();
    let mut b = Browser::default();
    let (s, v) = b
        .post(&c, 0, "/login", json!({"id": "nobody-cached"}))
        .await;
    assert_eq!(s, 503, "{v}");
    let (s, v) = admin(a, "GET", "/admin/users/alice", None).await;
    assert_eq!(s, 503, "{v}");
    let (s, v) = admin(a, "PUT", "/admin/users/bob", Some(alice())).await;
    assert_eq!(s, 503, "{v}");
    cut.restore();
    let mut ok = false;
    for _ in 0..100 {
        if b.post(&c, 0, "/login", json!({"id": "alice"})).await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "{}", c.log(0));
    let _ = common::PASSWORD;
}
