//! The LDAP directory against a real OpenLDAP `slapd` (common::ldap): look-ups, attribute and
//! group mapping, the attacks on the filter and on the bind, outages as errors, and the
//! password change as the user.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use nidan::config::Secret;
use nidan::users::ldap::{Attributes, GroupSource, LdapDirectory, LdapSettings, PasswordChange};

use crate::common::ldap::{BASE, READER, READER_PASSWORD, SelfWrite, Slapd};

fn settings(url: &str) -> LdapSettings {
    LdapSettings {
        url: url.to_owned(),
        bind_dn: Some(READER.to_owned()),
        bind_password: Some(Arc::new(Secret(READER_PASSWORD.as_bytes().to_vec()))),
        base_dn: format!("ou=people,{BASE}"),
        user_filter: "(&(objectClass=inetOrgPerson)(uid={id}))".to_owned(),
        attributes: Attributes::default(),
        groups: GroupSource::Attribute("memberOf".to_owned()),
        tls: None,
        starttls: false,
        timeout: Duration::from_secs(2),
        pool: 4,
        cache_ttl: Duration::from_secs(30),
    }
}

/// A server with alice (in staff and ops), bob (no group) and carol.
fn seeded(self_write: SelfWrite) -> Slapd {
    let s = Slapd::start(self_write);
    s.add_user("alice", "alice-pass-1");
    s.add_user("bob", "bob-pass-1");
    s.add_user("carol", "carol-pass-1");
    s.add_group("staff", &["alice"]);
    s.add_group("ops", &["alice", "carol"]);
    s
}

#[tokio::test]
async fn a_user_is_looked_up_with_attributes_and_member_of_groups() {
    let s = seeded(SelfWrite::Allowed);
    let dir = LdapDirectory::new(settings(&s.url()));
    let alice = dir.lookup("alice").await.unwrap().expect("alice exists");
    assert_eq!(alice.id, "alice");
    assert_eq!(alice.dn, Slapd::dn("alice"));
    assert_eq!(alice.name, "alice Example");
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(alice.phone.as_deref(), Some("+81 90 1234 5678"));
    let mut groups = alice.groups.clone();
    groups.sort();
    assert_eq!(groups, ["ops", "staff"]);
    let bob = dir.lookup("bob").await.unwrap().unwrap();
    assert!(bob.groups.is_empty());
    assert_eq!(dir.lookup("nobody").await.unwrap(), None);
}

#[tokio::test]
async fn groups_can_come_from_a_group_search() {
    let s = seeded(SelfWrite::Allowed);
    let mut cfg = settings(&s.url());
    cfg.groups = GroupSource::Search {
        base_dn: format!("ou=groups,{BASE}"),
        filter: "(&(objectClass=groupOfNames)(member={dn}))".to_owned(),
        name: "cn".to_owned(),
    };
    let dir = LdapDirectory::new(cfg);
    let carol = dir.lookup("carol").await.unwrap().unwrap();
    assert_eq!(carol.groups, ["ops"]);
}

/// RFC 4515 filter injection: an ID made of filter syntax matches nobody (unescaped,
/// `(uid=*)(uid=*)` would match the first user, `*` everyone).
#[tokio::test]
async fn an_id_made_of_filter_syntax_matches_nobody() {
    let s = seeded(SelfWrite::Allowed);
    let dir = LdapDirectory::new(settings(&s.url()));
    for id in [
        "*)(uid=*",
        "*",
        "a*",
        "alice)(|(uid=*",
        "*)(|(objectClass=*",
        "alice\\",
        "alice\0",
        "\\2a",
        "(uid=alice)",
    ] {
        assert_eq!(
            dir.lookup(id).await.unwrap(),
            None,
            "{id:?} matched someone"
        );
    }
    // LDAP matches uid case-insensitively: ALICE must not become a second account with
    // its own 2-step setting and devices.
    assert_eq!(dir.lookup("ALICE").await.unwrap(), None);
    assert!(dir.lookup("alice").await.unwrap().is_some());
}

/// A bind with a DN and an empty password is an unauthenticated bind that this server (like
/// many) answers with success: it must never count as the user's password.
#[tokio::test]
async fn an_empty_password_is_refused_before_any_bind() {
    let s = seeded(SelfWrite::Allowed);
    let dir = LdapDirectory::new(settings(&s.url()));
    let alice = dir.lookup("alice").await.unwrap().unwrap();
    // The server itself would let it through:
    assert!(
        s.binds("alice", ""),
        "the harness should accept an unauthenticated bind"
    );
    assert!(!dir.verify_password(&alice, "").await.unwrap());
    assert!(!dir.verify_password(&alice, "wrong").await.unwrap());
    assert!(!dir.verify_password(&alice, "bob-pass-1").await.unwrap());
    assert!(dir.verify_password(&alice, "alice-pass-1").await.unwrap());
    // And the empty password fails without the server: no bind is even tried.
    drop(s);
    assert!(!dir.verify_password(&alice, "").await.unwrap());
}

/// A server that is down is an error (the gateway answers 503), never "no such user" or
/// "wrong password" (which would be a different, weaker answer), and it comes back by itself.
#[tokio::test]
async fn an_outage_is_an_error_and_recovery_needs_no_restart() {
    let mut s = seeded(SelfWrite::Allowed);
    let mut cfg = settings(&s.url());
    cfg.cache_ttl = Duration::from_millis(1);
    let dir = LdapDirectory::new(cfg);
    let alice = dir.lookup("alice").await.unwrap().unwrap();
    s.stop();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = Instant::now();
    assert!(dir.lookup("bob").await.is_err());
    assert!(dir.verify_password(&alice, "alice-pass-1").await.is_err());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    s.resume();
    assert!(dir.lookup("bob").await.unwrap().is_some());
    assert!(dir.verify_password(&alice, "alice-pass-1").await.unwrap());
}

/// A server that accepts connections and never answers (a partition) costs one timeout.
#[tokio::test]
async fn a_silent_server_times_out_quickly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for c in listener.incoming().take(4) {
            open.push(c);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let mut cfg = settings(&format!("ldap://{addr}"));
    cfg.timeout = Duration::from_millis(500);
    let dir = LdapDirectory::new(cfg);
    let t = Instant::now();
    assert!(dir.lookup("alice").await.is_err());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    drop(held);
}

#[tokio::test]
async fn a_wrong_service_account_password_is_an_error_not_an_unknown_user() {
    let s = seeded(SelfWrite::Allowed);
    let mut cfg = settings(&s.url());
    cfg.bind_password = Some(Arc::new(Secret(b"not-the-password".to_vec())));
    let dir = LdapDirectory::new(cfg);
    let err = dir.lookup("alice").await.unwrap_err();
    assert!(!err.to_string().contains("not-the-password"));
}

#[tokio::test]
async fn users_change_their_own_password_where_the_server_allows_it() {
    let s = seeded(SelfWrite::Allowed);
    let dir = LdapDirectory::new(settings(&s.url()));
    let alice = dir.lookup("alice").await.unwrap().unwrap();
    assert_eq!(
        dir.change_password(&alice, "wrong", "brand-new-pass-9")
            .await
            .unwrap(),
        PasswordChange::WrongPassword
    );
    assert_eq!(
        dir.change_password(&alice, "", "brand-new-pass-9")
            .await
            .unwrap(),
        PasswordChange::WrongPassword
    );
    assert!(s.binds("alice", "alice-pass-1"));
    assert_eq!(
        dir.change_password(&alice, "alice-pass-1", "brand-new-pass-9")
            .await
            .unwrap(),
        PasswordChange::Changed
    );
    assert!(!s.binds("alice", "alice-pass-1"));
    assert!(s.binds("alice", "brand-new-pass-9"));
    assert!(
        dir.verify_password(&alice, "brand-new-pass-9")
            .await
            .unwrap()
    );
    assert!(!dir.verify_password(&alice, "alice-pass-1").await.unwrap());

    let refusing = seeded(SelfWrite::Refused);
    let dir = LdapDirectory::new(settings(&refusing.url()));
    let bob = dir.lookup("bob").await.unwrap().unwrap();
    assert_eq!(
        dir.change_password(&bob, "bob-pass-1", "brand-new-pass-9")
            .await
            .unwrap(),
        PasswordChange::NotAllowed
    );
    assert!(refusing.binds("bob", "bob-pass-1"));
}

async fn login_status(
    http: &reqwest::Client,
    gw: &crate::common::Gateway,
    id: &str,
    password: &str,
) -> u16 {
    let r = http
        .post(gw.url("/_nidan/api/login"))
        .json(&serde_json::json!({"id": id}))
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return r.status().as_u16();
    }
    let v: serde_json::Value = r.json().await.unwrap();
    let flow = v["flow"].as_str().unwrap();
    http.post(gw.url(&format!("/_nidan/api/login/{flow}/complete")))
        .json(&serde_json::json!({"password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn users_log_in_through_ldap_and_the_backend_sees_their_ldap_identity() {
    let s = Slapd::start(SelfWrite::Allowed);
    crate::common::ldap::gateway_users(&s);
    let gw = crate::common::ldap::gateway(&s, "30s");
    let http = crate::common::client();
    assert_eq!(login_status(&http, &gw, "alice", "alice-pass-1").await, 200);
    let r = http.get(gw.url("/app/who")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    let h = &echo["headers"];
    assert_eq!(h["remote-user"], "alice", "{echo}");
    assert_eq!(h["remote-name"], "alice Example", "{echo}");
    assert_eq!(h["remote-email"], "alice@example.org", "{echo}");
    let mut groups: Vec<&str> = h["remote-groups"].as_str().unwrap().split(',').collect();
    groups.sort_unstable();
    assert_eq!(groups, ["ops", "staff"], "{echo}");
    // The shared helpers work as with the users file.
    let (api, _) = crate::common::login(&gw, "hanako").await;
    assert_eq!(api.get("/me").await.0, 200);
}

/// The attacks on the directory, through the gateway: an empty password (which this
/// server would take as an unauthenticated bind), a wrong one, filter syntax as the ID, and
/// the ID in another letter case.
#[tokio::test]
async fn empty_passwords_filter_syntax_and_case_variants_do_not_log_in() {
    let s = Slapd::start(SelfWrite::Allowed);
    crate::common::ldap::gateway_users(&s);
    let gw = crate::common::ldap::gateway(&s, "30s");
    let fresh = || crate::common::client();
    assert!(
        s.binds("alice", ""),
        "the server accepts an unauthenticated bind"
    );
    assert_ne!(login_status(&fresh(), &gw, "alice", "").await, 200);
    assert_ne!(
        login_status(&fresh(), &gw, "alice", "wrong-password").await,
        200
    );
    for id in ["*", "*)(uid=*", "ALICE"] {
        for pw in ["alice-pass-1", ""] {
            assert_ne!(
                login_status(&fresh(), &gw, id, pw).await,
                200,
                "{id:?} {pw:?}"
            );
        }
    }
    // The ID step itself does not tell which IDs exist, nor that one was filter syntax.
    let http = fresh();
    let known = http
        .post(gw.url("/_nidan/api/login"))
        .json(&serde_json::json!({"id": "alice"}))
        .send()
        .await
        .unwrap();
    let star = http
        .post(gw.url("/_nidan/api/login"))
        .json(&serde_json::json!({"id": "*"}))
        .send()
        .await
        .unwrap();
    assert_eq!(known.status(), star.status());
}

/// An LDAP outage is a 503 for what needs the directory (a login, a session whose look-up
/// expired), never a pass and never "logged out"; it ends by itself when the server is back.
#[tokio::test]
async fn an_ldap_outage_is_a_503_never_a_weaker_answer() {
    let mut s = Slapd::start(SelfWrite::Allowed);
    crate::common::ldap::gateway_users(&s);
    let gw = crate::common::ldap::gateway(&s, "1s");
    let http = crate::common::client();
    assert_eq!(login_status(&http, &gw, "alice", "alice-pass-1").await, 200);
    assert_eq!(
        http.get(gw.url("/app/x")).send().await.unwrap().status(),
        200
    );
    s.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = Instant::now();
    let r = http.get(gw.url("/app/x")).send().await.unwrap();
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());
    assert!(t.elapsed() < Duration::from_secs(5));
    let other = crate::common::client();
    assert_eq!(
        login_status(&other, &gw, "hanako", crate::common::PASSWORD).await,
        503
    );
    s.resume();
    let r = http.get(gw.url("/app/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        login_status(&other, &gw, "hanako", crate::common::PASSWORD).await,
        200
    );
}
