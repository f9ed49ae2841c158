//! The login as a service, without a network: a temporary SQLite store, the in-process
//! short-lived state and the outbox notifier, driven through `start` and `complete` as the
//! portal and the API drive them.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::sync::Arc;

use nidan::assurance::SecondFactor;
use nidan::config::{Language, Policy};
use nidan::login::flow::Step;
use nidan::login::{Client, Completion, LoginError};

use crate::common::PASSWORD;

/// A login service over a fresh deployment directory (`common::deployment_dir`: the test
/// users and a device key).
async fn service() -> (Arc<nidan::app::App>, tempfile::TempDir) {
    let dir = crate::common::deployment_dir();
    let yaml = r#"
version: 1
server: { listen: ["127.0.0.1:0"] }
portal: { default_language: en }
trusted_devices:
  signing_keys: [{ id: k1, secret_file: device-key }]
notifiers: { outbox: { path: outbox.jsonl, console: false } }
users: { file: users.yaml }
# The delays after failures are the limiter's tests' business, not these.
login_limits: { free_failures: 20 }
storage: { sqlite: { path: nidan.db } }
routes:
  - { name: app, hosts: ["*"], path_prefix: /, upstream: ["127.0.0.1:9"], policy: login }
"#;
    let cfg = nidan::config::load_str(yaml, &dir.path().join("nidan.yaml")).unwrap();
    (nidan::app::App::build(cfg).await.unwrap(), dir)
}

fn client() -> Client {
    Client {
        ip: "192.0.2.10".parse().unwrap(),
        user_agent: "unit-test/1".into(),
        device_cookie: None,
        seen_cookie: None,
        session_cookie: None,
        lang: Language::En,
    }
}

/// The newest code the outbox holds for `user`.
fn last_code(dir: &tempfile::TempDir, user: &str) -> String {
    let text = std::fs::read_to_string(dir.path().join("outbox.jsonl")).unwrap();
    text.lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|m| m["user"] == user && m["code"].is_string())
        .and_then(|m| m["code"].as_str().map(str::to_owned))
        .expect("a code was sent")
}

fn with(password: &str, code: Option<&str>) -> Completion<'static> {
    Completion {
        password: Box::leak(password.to_owned().into_boxed_str()),
        code: code.map(|c| &*Box::leak(c.to_owned().into_boxed_str())),
        trust_device: false,
        device_name: None,
    }
}

/// hanako (2-step by SMS): the ID step plans password + code and sends one.
async fn started(app: &nidan::app::App) -> String {
    let s = app
        .login
        .start(&client(), "hanako", "/", None)
        .await
        .unwrap();
    assert_eq!(s.flow.step, Step::PasswordAndCode);
    assert!(s.send.is_ok());
    s.flow.id
}

#[tokio::test]
async fn the_right_password_and_code_finish_the_login_once() {
    let (app, dir) = service().await;
    let flow = started(&app).await;
    let code = last_code(&dir, "hanako");
    let done = app
        .login
        .complete(&client(), &flow, &with(PASSWORD, Some(&code)))
        .await
        .unwrap();
    assert_eq!(done.user_id, "hanako");
    let live = app
        .sessions
        .check(&done.session_token, nidan::time::now())
        .await;
    let proof = live.unwrap().expect("the session is stored").record.proof;
    assert_eq!(proof.second, Some(SecondFactor::Sms));
    // A finished flow cannot be used again, not even with the same factors.
    let again = app
        .login
        .complete(&client(), &flow, &with(PASSWORD, Some(&code)))
        .await;
    assert!(matches!(again, Err(LoginError::FlowNotFound)));
}

#[tokio::test]
async fn a_wrong_password_does_not_spend_the_code_and_a_wrong_code_uses_a_try() {
    let (app, dir) = service().await;
    let flow = started(&app).await;
    let code = last_code(&dir, "hanako");
    let r = app
        .login
        .complete(&client(), &flow, &with("wrong", Some(&code)))
        .await;
    assert!(matches!(r, Err(LoginError::Failed)));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = app
        .login
        .complete(&client(), &flow, &with(PASSWORD, Some(wrong)))
        .await;
    assert!(matches!(r, Err(LoginError::Failed)));
    let f = app.login.flows.load(&flow).await.unwrap().flow;
    assert!(f.code.is_some() && !f.finished());
    // No code at all is a failure, not a pass.
    let r = app
        .login
        .complete(&client(), &flow, &with(PASSWORD, None))
        .await;
    assert!(matches!(r, Err(LoginError::Failed)));
    app.login
        .complete(&client(), &flow, &with(PASSWORD, Some(&code)))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_last_wrong_try_voids_the_code() {
    let (app, dir) = service().await;
    let flow = started(&app).await;
    let code = last_code(&dir, "hanako");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut last = None;
    for _ in 0..app.cfg.security_code.max_attempts {
        last = Some(
            app.login
                .complete(&client(), &flow, &with(PASSWORD, Some(wrong)))
                .await,
        );
    }
    assert!(
        matches!(last, Some(Err(LoginError::CodeExhausted))),
        "{:?}",
        last.and_then(Result::err)
    );
    let r = app
        .login
        .complete(&client(), &flow, &with(PASSWORD, Some(&code)))
        .await;
    assert!(matches!(r, Err(LoginError::NoCode)), "{:?}", r.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_tries_with_the_right_code_finish_the_login_once() {
    let (app, dir) = service().await;
    let flow = started(&app).await;
    let code = last_code(&dir, "hanako");
    let tries: Vec<_> = (0..6)
        .map(|_| {
            let (app, flow, code) = (app.clone(), flow.clone(), code.clone());
            tokio::spawn(async move {
                app.login
                    .complete(&client(), &flow, &with(PASSWORD, Some(&code)))
                    .await
            })
        })
        .collect();
    let mut finished = 0;
    for t in tries {
        match t.await.unwrap() {
            Ok(_) => finished += 1,
            Err(LoginError::FlowNotFound | LoginError::Busy) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(finished, 1, "exactly one session per code");
}

#[tokio::test]
async fn a_step_up_flow_needs_the_session_that_started_it() {
    let (app, dir) = service().await;
    // taro has 2-step off: a password alone signs him in.
    let s = app.login.start(&client(), "taro", "/", None).await.unwrap();
    assert_eq!(s.flow.step, Step::Password);
    let done = app
        .login
        .complete(&client(), &s.flow.id, &with(PASSWORD, None))
        .await
        .unwrap();
    // A two_factor route asks that session for a second step: the password is proved.
    let route: nidan::config::Route = app.cfg.routes[0].clone();
    let route = nidan::config::Route {
        policy: Policy::TwoFactor,
        second_step: nidan::config::SecondStep::Required,
        ..route
    };
    let mut browser = client();
    browser.session_cookie = Some(done.session_token.clone());
    let up = app
        .login
        .start(&browser, "taro", "/", Some(&route))
        .await
        .unwrap();
    assert!(up.flow.step_up && up.flow.password_ok);
    let code = last_code(&dir, "taro");
    // Without the session that started it, the step-up is no login at all.
    let r = app
        .login
        .complete(&client(), &up.flow.id, &with("", Some(&code)))
        .await;
    assert!(matches!(r, Err(LoginError::FlowNotFound)), "{:?}", r.err());
    let stepped = app
        .login
        .complete(&browser, &up.flow.id, &with("", Some(&code)))
        .await
        .unwrap();
    assert_ne!(
        stepped.session_token, done.session_token,
        "a new session ID"
    );
    let now = nidan::time::now();
    assert!(
        app.sessions
            .check(&done.session_token, now)
            .await
            .unwrap()
            .is_none()
    );
    let live = app
        .sessions
        .check(&stepped.session_token, now)
        .await
        .unwrap()
        .unwrap();
    assert!(live.record.proof.second.is_some());
}
