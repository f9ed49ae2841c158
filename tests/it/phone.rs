//! Phone contract changes through the real binary: the admin API (bearer token, constant
//! time, persisted across restart) and a users-file edit marking a phone gone turn 2-step
//! off for a user whose second step used the phone, revoke their devices, record it, and
//! mail the contact address through a real SMTP server; `switch_to_email` keeps 2-step by
//! email instead.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]
#![allow(clippy::too_many_lines)] // tests are exempt: a scenario reads top to bottom

use crate::common::{self, audit, smtp};

use std::time::{Duration, Instant};

use audit::last;
use common::*;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-token-for-the-phone-tests-0123456789";

/// A gateway with the admin listener and its token (in a file outside the gateway's dir).
fn with_admin(b: GatewayBuilder, secrets: &tempfile::TempDir) -> GatewayBuilder {
    let file = secrets.path().join("admin-token");
    std::fs::write(&file, format!("{ADMIN_TOKEN}\n")).unwrap();
    b.set("server.admin_listen", "\"127.0.0.1:1\"").set(
        "server.admin_token_file",
        &format!("\"{}\"", file.display()),
    )
}

async fn admin(gw: &Gateway, user: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = client()
        .post(format!(
            "http://{}/admin/users/{user}/phone",
            gw.admin.unwrap()
        ))
        .json(&body);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_marks_a_phone_gone_and_two_step_goes_off() {
    let sink = smtp::SmtpSink::start();
    let secrets = tempfile::tempdir().unwrap();
    let mut gw = with_admin(Gateway::builder(), &secrets)
        .set(
            "notifiers.email",
            &format!(
                "{{host: 127.0.0.1, port: {}, security: none, from: \"nidan <no-reply@example.com>\", timeout: 5s}}",
                sink.port
            ),
        )
        .start();
    let db = gw.path("nidan.db");
    // hanako logs in with a code and registers a trusted device.
    let api = Api::new(&gw);
    let (_, v) = api.start("hanako").await;
    assert_eq!(v["step"], "password_and_code");
    let (s, _) = api
        .complete(
            v["flow"].as_str().unwrap(),
            json!({"password": PASSWORD, "code": gw.last_code("hanako"), "trust_device": true, "device_name": "pc"}),
        )
        .await;
    assert_eq!(s, 200);

    // The API needs the bearer token.
    let gone = json!({"status": "gone"});
    assert_eq!(admin(&gw, "hanako", None, gone.clone()).await.0, 401);
    assert_eq!(
        admin(&gw, "hanako", Some("wrong-token"), gone.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        admin(&gw, "hanako", Some(&ADMIN_TOKEN[..20]), gone.clone())
            .await
            .0,
        401
    );
    let (s, e) = admin(&gw, "hanako", Some(ADMIN_TOKEN), json!({"status": "lost"})).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("bad_status")), "{e}");
    let (s, _) = admin(
        &gw,
        "hanako",
        Some(ADMIN_TOKEN),
        json!({"status": "active", "phone": "call me"}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        admin(&gw, "nobody", Some(ADMIN_TOKEN), gone.clone())
            .await
            .0,
        404
    );
    let r = client()
        .post(format!(
            "http://{}/admin/users/hanako/phone",
            gw.admin.unwrap()
        ))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body("status=gone")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let (s, v) = admin(&gw, "hanako", Some(ADMIN_TOKEN), gone).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["action"], "two_step_disabled", "{v}");
    assert_eq!(v["phone_status"], "gone");
    assert_eq!(v["two_step"]["enabled"], false);

    // The notice arrives through the real SMTP server.
    // (The first mail told hanako about the device added above.)
    let mail = sink
        .wait_messages(2)
        .iter()
        .map(|raw| smtp::parse_with_python(raw))
        .find(|m| m["subject"].as_str().unwrap().contains("turned off"))
        .expect("the phone-gone notice");
    assert_eq!(mail["to"], "hanako@example.com", "{mail}");
    assert!(
        mail["subject"].as_str().unwrap().contains("turned off"),
        "{mail}"
    );
    assert!(
        mail["body"].as_str().unwrap().contains("no longer in use"),
        "{mail}"
    );

    // Recorded; devices and sessions revoked.
    let d = last(&db, "hanako", "phone_gone").await.unwrap();
    assert_eq!(
        (d["source"].as_str(), d["action"].as_str()),
        (Some("admin_api"), Some("two_step_disabled")),
        "{d}"
    );
    assert_eq!(d["was_method"], "sms");
    let d = last(&db, "hanako", "credentials_revoked").await.unwrap();
    assert_eq!(
        (d["reason"].as_str(), d["devices"].as_u64()),
        (Some("phone_gone"), Some(1)),
        "{d}"
    );
    assert_eq!(api.get("/me").await.0, 401);

    // The next login: the password alone.
    let fresh = Api::new(&gw);
    let (_, v) = fresh.start("hanako").await;
    assert_eq!(v["step"], "password", "{v}");
    // Marking it gone again changes nothing.
    let (_, v) = admin(&gw, "hanako", Some(ADMIN_TOKEN), json!({"status": "gone"})).await;
    assert_eq!(v["action"], "none");

    // The change survives a restart.
    gw.restart();
    let (_, v) = Api::new(&gw).start("hanako").await;
    assert_eq!(v["step"], "password", "{v}");
    let (s, v) = admin(
        &gw,
        "hanako",
        Some(ADMIN_TOKEN),
        json!({"status": "active", "phone": "+81 90-0000-1111"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (v["phone_status"].as_str(), v["action"].as_str()),
        (Some("active"), Some("none"))
    );
    assert_eq!(
        v["two_step"]["enabled"], false,
        "turning it back on is the user's choice"
    );
    assert!(v["phone"].as_str().unwrap().ends_with("1111"), "{v}");
}

#[tokio::test]
async fn switch_to_email_keeps_two_step_by_mail() {
    let secrets = tempfile::tempdir().unwrap();
    let gw = with_admin(Gateway::builder(), &secrets)
        .set("users.on_phone_loss", "switch_to_email")
        .start();
    let (s, v) = admin(&gw, "mika", Some(ADMIN_TOKEN), json!({"status": "gone"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["action"], "switched_to_email");
    assert_eq!(v["two_step"], json!({"enabled": true, "method": "email"}));
    let (_, v) = Api::new(&gw).start("mika").await;
    assert_eq!(v["step"], "password_and_code");
    assert_eq!(v["code_channel"], "email", "{v}");
    let notice = gw
        .outbox()
        .into_iter()
        .find(|m| m["user"] == "mika" && m["subject"].as_str().unwrap().contains("by email"));
    assert!(notice.is_some(), "{:?}", gw.outbox());
}

#[tokio::test]
async fn without_a_token_the_admin_api_does_not_exist() {
    let gw = Gateway::builder()
        .set("server.admin_listen", "\"127.0.0.1:1\"")
        .start();
    let (s, _) = admin(&gw, "hanako", Some("anything"), json!({"status": "gone"})).await;
    assert_eq!(s, 404);
    let (_, v) = Api::new(&gw).start("hanako").await;
    assert_eq!(v["step"], "password_and_code", "nothing changed");
}

#[tokio::test]
async fn a_users_file_edit_marking_the_phone_gone_turns_two_step_off() {
    let gw = Gateway::start();
    let (_, v) = Api::new(&gw).start("yuki").await;
    assert_eq!(v["step"], "password_and_code");
    let users = gw.path("users.yaml");
    let text = std::fs::read_to_string(&users).unwrap();
    let at = text.find("id: yuki").unwrap();
    let (head, tail) = text.split_at(at);
    let tail = tail.replacen("phone_status: active", "phone_status: gone", 1);
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&users, format!("{head}{tail}")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, v) = Api::new(&gw).start("yuki").await;
        if v["step"] == "password" {
            break;
        }
        assert!(Instant::now() < deadline, "2-step still on: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = last(&gw.path("nidan.db"), "yuki", "phone_gone")
        .await
        .unwrap();
    assert_eq!(
        (d["source"].as_str(), d["action"].as_str()),
        (Some("users_file"), Some("two_step_disabled")),
        "{d}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.outbox().iter().any(|m| {
        m["user"] == "yuki"
            && m["to"] == "yuki@example.com"
            && m["subject"].as_str().unwrap().contains("turned off")
    }) {
        assert!(Instant::now() < deadline, "no notice: {:?}", gw.outbox());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The other users are untouched.
    let (_, v) = Api::new(&gw).start("mika").await;
    assert_eq!(v["step"], "password_and_code");
}
