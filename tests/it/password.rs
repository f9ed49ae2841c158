//! Users changing their password (`{prefix}/password`, `PUT /api/password`) against the real
//! binary: on LDAP (a real slapd) every other session ends and this one stays; the attacks
//! (a wrong current password counted like a login, weak new passwords, no recent login, a
//! cross-site form); the users file points to the operator's page.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use serde_json::{Value, json};

use crate::common::ldap::{SelfWrite, Slapd};
use crate::common::{Api, Gateway, PASSWORD, login};

const NEW: &str = "violet-harbor-lamp-42";

async fn put_password(api: &Api<'_>, current: &str, new: &str) -> (u16, Value) {
    let r = api
        .http
        .put(api.gw.url("/_nidan/api/password"))
        .json(&json!({"current_password": current, "new_password": new}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A login of `id` with `password` on a fresh client; its API handle when it succeeded.
async fn try_login<'a>(gw: &'a Gateway, id: &str, password: &str) -> Option<Api<'a>> {
    let api = Api::new(gw);
    let (s, v) = api.start(id).await;
    assert_eq!(s, 200, "{v}");
    let flow = v["flow"].as_str().unwrap();
    let (s, _) = api.complete(flow, json!({"password": password})).await;
    (s == 200).then_some(api)
}

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_keeps_this_one() {
    let s = Slapd::start(SelfWrite::Allowed);
    crate::common::ldap::gateway_users(&s);
    let gw = crate::common::ldap::gateway(&s, "30s");
    let (me, _) = login(&gw, "hanako").await;
    let (other, _) = login(&gw, "hanako").await;
    let bystander = try_login(&gw, "alice", "alice-pass-1").await.unwrap();
    assert_eq!(other.get("/me").await.0, 200);
    assert_eq!(put_password(&me, PASSWORD, NEW).await.0, 204);
    // This session stays; the other one of hanako's ends; alice's is untouched.
    assert_eq!(me.get("/me").await.0, 200);
    assert_eq!(other.get("/me").await.0, 401);
    assert_eq!(bystander.get("/me").await.0, 200);
    assert!(!s.binds("hanako", PASSWORD));
    assert!(s.binds("hanako", NEW));
    assert!(try_login(&gw, "hanako", PASSWORD).await.is_none());
    let again = try_login(&gw, "hanako", NEW)
        .await
        .expect("the new password logs in");
    assert_eq!(again.get("/me").await.0, 200);
    // The session kept still works after the new login, and a notice went out.
    assert_eq!(me.get("/me").await.0, 200);
    let notices: Vec<Value> = gw
        .outbox()
        .into_iter()
        .filter(|m| m["user"] == "hanako" && m.to_string().contains("password"))
        .collect();
    assert_eq!(notices.len(), 1, "{:?}", gw.outbox());
}

#[tokio::test]
async fn weak_new_passwords_are_refused_and_change_nothing() {
    let s = Slapd::start(SelfWrite::Allowed);
    crate::common::ldap::gateway_users(&s);
    let gw = crate::common::ldap::gateway(&s, "30s");
    let (me, _) = login(&gw, "hanako").await;
    for (new, code) in [
        ("short1", "password_too_short"),
        ("hanako-2024", "password_like_id"),
        ("password1", "password_too_common"),
        ("qwertyuiop", "password_too_common"),
        (PASSWORD, "password_unchanged"),
    ] {
        let (st, v) = put_password(&me, PASSWORD, new).await;
        assert_eq!((st, v["error"].as_str()), (400, Some(code)), "{new}: {v}");
    }
    assert!(s.binds("hanako", PASSWORD));
}

/// The current password is a password check like a login's: wrong ones are counted (the
/// account's failure limit answers 429 after a few) and tell nothing about the new one.
#[tokio::test]
async fn a_wrong_current_password_is_counted_like_a_failed_login() {
    let s = Slapd::start(SelfWrite::Allowed);
    crate::common::ldap::gateway_users(&s);
    let gw = crate::common::ldap::builder(&s, "30s")
        .set("login_limits", "{ free_failures: 3 }")
        .start();
    let (me, _) = login(&gw, "hanako").await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(put_password(&me, &format!("wrong-{i}"), NEW).await.0);
    }
    assert_eq!(&statuses[..3], &[403, 403, 403], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    // The right password is held back too while the account waits (no oracle).
    assert_eq!(put_password(&me, PASSWORD, NEW).await.0, 429);
    assert!(s.binds("hanako", PASSWORD));
    // An empty current password never reaches the server as an unauthenticated bind.
    let other = try_login(&gw, "alice", "alice-pass-1").await.unwrap();
    let (st, _) = put_password(&other, "", NEW).await;
    assert_ne!(st, 204);
    assert!(s.binds("alice", "alice-pass-1"));
}

#[tokio::test]
async fn a_change_needs_a_recent_login_and_a_same_site_form() {
    let s = Slapd::start(SelfWrite::Allowed);
    crate::common::ldap::gateway_users(&s);
    let gw = crate::common::ldap::builder(&s, "30s")
        .set("portal.recent_login", "1s")
        .start();
    let (me, _) = login(&gw, "hanako").await;
    // The page works without JavaScript: a form with a CSRF token.
    let page = me
        .http
        .get(gw.url("/_nidan/password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"current_password\""), "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    // A cross-site post is refused.
    let r = me
        .http
        .post(gw.url("/_nidan/password"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&[
            ("csrf", csrf.as_str()),
            ("current_password", PASSWORD),
            ("new_password", NEW),
            ("confirm_password", NEW),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Past the recent-login window: log in again first.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (st, v) = put_password(&me, PASSWORD, NEW).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (403, Some("recent_login_required"))
    );
    assert!(s.binds("hanako", PASSWORD));
}

#[tokio::test]
async fn the_form_changes_the_password_without_javascript() {
    let s = Slapd::start(SelfWrite::Allowed);
    crate::common::ldap::gateway_users(&s);
    let gw = crate::common::ldap::gateway(&s, "30s");
    let (me, _) = login(&gw, "hanako").await;
    let page = me
        .http
        .get(gw.url("/_nidan/password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let form = |confirm: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("current_password", PASSWORD.to_owned()),
            ("new_password", NEW.to_owned()),
            ("confirm_password", confirm.to_owned()),
        ]
    };
    let r = me
        .http
        .post(gw.url("/_nidan/password"))
        .form(&form("something-else-99"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(s.binds("hanako", PASSWORD));
    let r = me
        .http
        .post(gw.url("/_nidan/password"))
        .form(&form(NEW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}\n{}", r.headers(), gw.log());
    assert!(s.binds("hanako", NEW));
    assert_eq!(me.get("/me").await.0, 200);
}

#[tokio::test]
async fn where_the_server_refuses_or_the_users_file_holds_passwords_the_page_points_elsewhere() {
    let s = Slapd::start(SelfWrite::Refused);
    crate::common::ldap::gateway_users(&s);
    let gw = crate::common::ldap::builder(&s, "30s")
        .set("portal.account_url", "\"https://id.example.com/me\"")
        .start();
    let (me, _) = login(&gw, "hanako").await;
    let (st, v) = put_password(&me, PASSWORD, NEW).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (409, Some("password_managed_elsewhere")),
        "{v}"
    );
    assert!(s.binds("hanako", PASSWORD));
    assert_eq!(me.get("/me").await.0, 200);

    let file = Gateway::builder()
        .set("portal.account_url", "\"https://id.example.com/me\"")
        .start();
    let (me, _) = login(&file, "taro").await;
    let page = me
        .http
        .get(file.url("/_nidan/password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("https://id.example.com/me"), "{page}");
    assert!(!page.contains("name=\"current_password\""), "{page}");
    let (st, _) = put_password(&me, PASSWORD, NEW).await;
    assert_eq!(st, 409);
}

/// Two replicas on PostgreSQL + Redis with the users on LDAP: a change made on one replica
/// ends the old password's sessions on every replica within a second; the session it was
/// made from stays on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_replicas_the_old_passwords_sessions_end_everywhere_and_this_one_stays() {
    use crate::common::cluster::{Browser, Cluster, everywhere, http};
    let s = Slapd::start(SelfWrite::Allowed);
    crate::common::ldap::gateway_users(&s);
    let users = crate::common::ldap::users_yaml(&s, "30s");
    let c = Cluster::start_full(2, "60s", &format!("users: {users}"), None);
    let mut me = Browser::default();
    me.login(&c, 0, 0, "hanako", false).await;
    let mut other = Browser::default();
    other.login(&c, 1, 1, "hanako", false).await;
    for i in 0..2 {
        assert!(me.signed_in(&c, i).await && other.signed_in(&c, i).await);
    }
    let r = http()
        .put(c.url(1, "/_nidan/api/password"))
        .header("cookie", me.cookies())
        .json(&json!({"current_password": PASSWORD, "new_password": NEW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    everywhere(
        &c,
        "the old password's other session refused",
        std::time::Duration::from_secs(1),
        async |i| !other.signed_in(&c, i).await,
    )
    .await;
    for i in 0..2 {
        assert!(me.signed_in(&c, i).await, "replica {i}: {}", c.log(i));
    }
    assert!(s.binds("hanako", NEW));
}

/// The database directory: the new password is hashed and written with the credential
/// compare-and-set; the same rules hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_database_directory_the_change_keeps_this_session_only() {
    let secrets = tempfile::tempdir().unwrap();
    let token = "admin-token-for-the-password-tests-0123456789";
    let file = secrets.path().join("admin-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let gw = Gateway::builder()
        .set("users", "{ database: {} }")
        .set("server.admin_listen", "\"127.0.0.1:1\"")
        .set(
            "server.admin_token_file",
            &format!("\"{}\"", file.display()),
        )
        .start();
    let r = crate::common::client()
        .put(format!("http://{}/admin/users/hanako", gw.admin.unwrap()))
        .header("authorization", format!("Bearer {token}"))
        .json(&json!({"password": PASSWORD, "email": "hanako@example.com", "two_step": {"enabled": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (me, _) = login(&gw, "hanako").await;
    let (other, _) = login(&gw, "hanako").await;
    assert_eq!(put_password(&me, "wrong-password-1", NEW).await.0, 403);
    assert_eq!(put_password(&me, PASSWORD, "password1").await.0, 400);
    assert_eq!(other.get("/me").await.0, 200);
    assert_eq!(put_password(&me, PASSWORD, NEW).await.0, 204);
    assert_eq!(me.get("/me").await.0, 200);
    assert_eq!(other.get("/me").await.0, 401);
    assert!(try_login(&gw, "hanako", PASSWORD).await.is_none());
    assert!(try_login(&gw, "hanako", NEW).await.is_some());
    assert_eq!(me.get("/me").await.0, 200);
}
