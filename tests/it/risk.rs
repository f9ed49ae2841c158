//! Risk-based step-up through the real binary: each signal moves the score (seen in the
//! audit trail), the default threshold is reached by a new browser on a new network
//! together, a code is then asked (by SMS), a trusted device skips it, and a successful
//! risky login mails the contact address. A user's first login only learns.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common::{self, audit};

use std::sync::Arc;

use audit::{CHROME_MAC, FIREFOX, client_from, jar, last};
use common::post_api as post;
use common::*;
use serde_json::{Value, json};

/// Starts a login and returns (the ID step's answer, the `risk_scored` detail it recorded).
async fn start(http: &reqwest::Client, gw: &Gateway, id: &str) -> (Value, Value) {
    let before = audit::audit(&gw.path("nidan.db"), id).await.len();
    let (s, v) = post(http, gw, "/login", json!({"id": id})).await;
    assert_eq!(s, 200, "{v}");
    let all = audit::audit(&gw.path("nidan.db"), id).await;
    assert!(all.len() > before);
    let scored = all
        .iter()
        .take(all.len() - before)
        .find(|(e, _)| e == "risk_scored")
        .map(|(_, d)| d.clone())
        .expect("a risk_scored record");
    (v, scored)
}

async fn complete(
    http: &reqwest::Client,
    gw: &Gateway,
    id: &str,
    v: &Value,
    extra: Value,
) -> Value {
    let flow = v["flow"].as_str().unwrap();
    let mut body = json!({"password": PASSWORD});
    if v["step"] == "password_and_code" {
        body["code"] = json!(gw.last_code(id));
    }
    for (k, val) in extra.as_object().unwrap() {
        body[k] = val.clone();
    }
    let (s, done) = post(http, gw, &format!("/login/{flow}/complete"), body).await;
    assert_eq!(s, 200, "{done}");
    done
}

fn reasons(d: &Value) -> Vec<String> {
    d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn first_login_learns_then_new_browser_and_network_need_a_code() {
    let gw = Gateway::start();
    let db = gw.path("nidan.db");
    // The first login ever: nothing to compare with, so it only learns.
    let home = client_from("127.0.0.1", &jar(), FIREFOX);
    let (v, d) = start(&home, &gw, "taro").await;
    assert_eq!(v["step"], "password", "{v}");
    assert_eq!(d["first_login"], true, "{d}");
    assert_eq!(d["learning"], true);
    assert_eq!(d["score"], 0);
    complete(&home, &gw, "taro", &v, json!({})).await;

    // A new browser on the same network: 20, below 50.
    let other = client_from("127.0.0.1", &jar(), FIREFOX);
    let (v, d) = start(&other, &gw, "taro").await;
    assert_eq!(reasons(&d), vec!["new_browser"], "{d}");
    assert_eq!(v["step"], "password");

    // A new browser on a new network (127.0.1.0/24): 20 + 30 = 50 reaches the threshold.
    let away = client_from("127.0.1.1", &jar(), FIREFOX);
    let (v, d) = start(&away, &gw, "taro").await;
    assert_eq!(reasons(&d), vec!["new_browser", "new_network"], "{d}");
    assert_eq!(
        (d["score"].as_u64(), d["step_up"].as_bool()),
        (Some(50), Some(true))
    );
    assert_eq!(v["step"], "password_and_code", "{v}");
    assert_eq!(v["code_channel"], "sms", "a risk code goes by SMS: {v}");
    let required = last(&db, "taro", "second_step_required").await.unwrap();
    assert_eq!(required["reason"], "risk");
    // The password alone does not log in.
    let (s, _) = post(
        &away,
        &gw,
        &format!("/login/{}/complete", v["flow"].as_str().unwrap()),
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 401);
    complete(&away, &gw, "taro", &v, json!({})).await;
    // The contact address hears about the new browser.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mail = gw.outbox().into_iter().find(|m| {
            m["user"] == "taro"
                && m["channel"] == "email"
                && m["subject"].as_str().unwrap().contains("New login")
        });
        if let Some(m) = mail {
            assert_eq!(m["to"], "taro@example.com");
            assert!(m["body"].as_str().unwrap().contains("127.0.1.1"), "{m}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no new-browser mail");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // That browser and network are now known (only the wrong password above still counts).
    let (v, d) = start(&away, &gw, "taro").await;
    assert_eq!(reasons(&d), vec!["recent_failures"], "{d}");
    assert_eq!(v["step"], "password");
}

#[tokio::test]
async fn each_signal_moves_the_score() {
    let gw = Gateway::builder()
        .set("risk", "{ watch_networks: [\"127.0.0.5/32\"] }")
        .start();
    let j = jar();
    let a = client_from("127.0.0.1", &j, FIREFOX);
    let (v, _) = start(&a, &gw, "taro").await;
    complete(&a, &gw, "taro", &v, json!({})).await;

    // The same browser, network and user agent: nothing.
    let (_, d) = start(&a, &gw, "taro").await;
    assert_eq!((reasons(&d), d["score"].as_u64()), (vec![], Some(0)), "{d}");
    // new_browser: a browser without our nidan_seen cookie.
    let (_, d) = start(&client_from("127.0.0.1", &jar(), FIREFOX), &gw, "taro").await;
    assert_eq!(
        (reasons(&d), d["score"].as_u64()),
        (vec!["new_browser".to_owned()], Some(20))
    );
    // new_user_agent: the same browser cookie, another browser family.
    let (_, d) = start(&client_from("127.0.0.1", &j, CHROME_MAC), &gw, "taro").await;
    assert_eq!(
        (reasons(&d), d["score"].as_u64()),
        (vec!["new_user_agent".to_owned()], Some(10))
    );
    // new_network: the same browser from 127.0.1.0/24.
    let (_, d) = start(&client_from("127.0.1.1", &j, FIREFOX), &gw, "taro").await;
    assert_eq!(
        (reasons(&d), d["score"].as_u64()),
        (vec!["new_network".to_owned()], Some(30))
    );
    // watchlist: 127.0.0.5 is watched (same /24, so only this signal): 60 → a code.
    let (v, d) = start(&client_from("127.0.0.5", &j, FIREFOX), &gw, "taro").await;
    assert_eq!(
        (reasons(&d), d["score"].as_u64()),
        (vec!["watchlist".to_owned()], Some(60))
    );
    assert_eq!(d["watch_network"], "127.0.0.5/32");
    assert_eq!(v["step"], "password_and_code");
    // recent_failures: a wrong password on the account.
    let (v, _) = start(&a, &gw, "taro").await;
    let (s, _) = post(
        &a,
        &gw,
        &format!("/login/{}/complete", v["flow"].as_str().unwrap()),
        json!({"password": "wrong"}),
    )
    .await;
    assert_eq!(s, 401);
    let (_, d) = start(&a, &gw, "taro").await;
    assert_eq!(
        (reasons(&d), d["score"].as_u64()),
        (vec!["recent_failures".to_owned()], Some(20))
    );
    assert_eq!(d["failures"]["account"], 1, "{d}");
    // Failures from the address count for other accounts too.
    let (_, d) = start(&a, &gw, "noah").await;
    assert_eq!(d["failures"]["address"], 1, "{d}");

    // Users with 2-step are never scored (they do the second step anyway).
    let (s, _) = post(&a, &gw, "/login", json!({"id": "hanako"})).await;
    assert_eq!(s, 200);
    assert!(
        last(&gw.path("nidan.db"), "hanako", "risk_scored")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_trusted_device_skips_the_risk_code() {
    let gw = Gateway::builder().set("risk", "{ threshold: 20 }").start();
    let db = gw.path("nidan.db");
    let home = client_from("127.0.0.1", &jar(), FIREFOX);
    let (v, _) = start(&home, &gw, "taro").await;
    complete(&home, &gw, "taro", &v, json!({})).await;
    // A new browser: 20 ≥ 20, a code; the user registers the browser as trusted.
    let j = jar();
    let laptop = client_from("127.0.0.1", &j, FIREFOX);
    let (v, _) = start(&laptop, &gw, "taro").await;
    assert_eq!(v["step"], "password_and_code", "{v}");
    complete(
        &laptop,
        &gw,
        "taro",
        &v,
        json!({"trust_device": true, "device_name": "laptop"}),
    )
    .await;
    // Keep only the device cookie (as if nidan_seen were lost) and go to a new network:
    // 20 + 30 = 50 ≥ 20, but the trusted device skips the code.
    let url: reqwest::Url = gw.url("/").parse().unwrap();
    let cookies = reqwest::cookie::CookieStore::cookies(&*j, &url).unwrap();
    let device = cookies
        .to_str()
        .unwrap()
        .split("; ")
        .find(|c| c.starts_with("nidan_device="))
        .unwrap()
        .to_owned();
    let only_device = Arc::new(reqwest::cookie::Jar::default());
    only_device.add_cookie_str(&format!("{device}; Path=/"), &url);
    let away = client_from("127.0.2.1", &only_device, FIREFOX);
    let (v, d) = start(&away, &gw, "taro").await;
    assert_eq!(d["step_up"], true, "{d}");
    assert_eq!(v["step"], "password", "{v}");
    let skipped = last(&db, "taro", "second_step_skipped").await.unwrap();
    assert_eq!(skipped["reason"], "trusted_device");
    assert_eq!(skipped["asked_by"], "risk");
}

/// From a watched address a user's first login is asked for a code; an unknown ID gets the
/// same code step (a decoy that sends nothing), so the answer does not tell them apart
/// (SECURITY 4).
#[tokio::test]
async fn unknown_ids_from_a_watched_address_look_like_real_users() {
    let gw = Gateway::builder()
        .set("risk", "{ watch_networks: [\"127.0.0.6/32\"] }")
        .start();
    let watched = client_from("127.0.0.6", &jar(), FIREFOX);
    let (known, _) = start(&watched, &gw, "taro").await;
    // Unknown IDs leave no risk record: ask the API directly.
    let (s, unknown) = post(&watched, &gw, "/login", json!({"id": "nobody-watched"})).await;
    assert_eq!(s, 200, "{unknown}");
    assert_eq!(known["step"], "password_and_code", "{known}");
    assert_eq!(unknown["step"], known["step"], "{unknown}");
    let mut k: Vec<&String> = known.as_object().unwrap().keys().collect();
    let mut u: Vec<&String> = unknown.as_object().unwrap().keys().collect();
    k.sort();
    u.sort();
    assert_eq!(k, u);
    assert!(
        unknown["code_destination"]
            .as_str()
            .unwrap()
            .starts_with("***-****-")
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        gw.outbox().iter().all(|m| m["user"] != "nobody-watched"),
        "nothing is sent"
    );
}
