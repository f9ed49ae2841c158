//! Fail fast, fail 503 (issue 22, items 3 and 5), against real `nidan serve` replicas whose
//! PostgreSQL or Redis is reached through a forwarder the test controls (`stores::Cut`):
//! with the link blackholed (nothing moves, nothing resets) or cut (every connection reset),
//! every request path that needs the store answers 503 with the one `Retry-After` within
//! about a second and a half — never 500, never the old 5–10 s — and everything works again
//! once the link is back. Audit events made during a PostgreSQL outage reach the trail
//! afterwards, in order; past the queue's bound one `audit_dropped` row counts the rest.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]
#![allow(clippy::too_many_lines)] // tests are exempt: a scenario reads top to bottom

use crate::common::{cluster, stores};

use std::time::{Duration, Instant};

use cluster::*;
use serde_json::{Value, json};
use stores::{Cut, TestRedis};

/// The longest a request may take to say "unavailable" (the default store timeout is 1 s).
const QUICK: Duration = Duration::from_millis(1500);

/// The `Retry-After` every store-unavailable 503 carries (docs/replicas.md, docs/api.md).
fn retry_after() -> String {
    nidan::outage::RETRY_AFTER_SECS.to_string()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Blackhole,
    Reset,
}

fn apply(cut: &Cut, fault: Fault) {
    match fault {
        Fault::Blackhole => cut.blackhole(),
        Fault::Reset => cut.cut(),
    }
}

/// One request's answer as the test judges it.
struct Answer {
    what: String,
    status: u16,
    retry_after: Option<String>,
    took: Duration,
    body: String,
}

async fn send(what: &str, req: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let r = req.send().await;
    let took = started.elapsed();
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = r.text().await.unwrap_or_default();
            // JSON bodies say which error; a page is named by its status.
            let body = if text.starts_with('{') {
                text.chars().take(160).collect()
            } else {
                String::new()
            };
            Answer {
                what: what.to_owned(),
                status,
                retry_after,
                took,
                body,
            }
        }
        Err(e) => Answer {
            what: what.to_owned(),
            status: 0,
            retry_after: None,
            took,
            body: e.to_string(),
        },
    }
}

/// What is wrong with an answer given while a store is unreachable: anything but a quick
/// 503 with the policy's `Retry-After` (`or_ok`: a 200 is fine too, for a path the cache
/// may answer).
fn wrong(a: &Answer, or_ok: bool) -> Option<String> {
    let fine_status = a.status == 503 || (or_ok && a.status == 200);
    let fine_retry = a.status != 503 || a.retry_after.as_deref() == Some(retry_after().as_str());
    (!fine_status || !fine_retry || a.took > QUICK).then(|| {
        format!(
            "{}: {} after {:?}, Retry-After {:?}: {}",
            a.what, a.status, a.took, a.retry_after, a.body
        )
    })
}

fn api(c: &Cluster, path: &str) -> String {
    c.url(0, &format!("/_nidan/api{path}"))
}

fn page(c: &Cluster, b: &Browser, path: &str) -> reqwest::RequestBuilder {
    http()
        .get(c.url(0, &format!("/_nidan{path}")))
        .header("cookie", b.cookies())
        .header("accept", "text/html")
}

fn admin_phone(c: &Cluster, user: &str, status: &str) -> reqwest::RequestBuilder {
    http()
        .post(format!(
            "http://{}/admin/users/{user}/phone",
            c.nodes[0].admin
        ))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .json(&json!({"status": status}))
}

/// A flow at its final step for `user` (whose login asks only the password), started now.
async fn flow_for(c: &Cluster, user: &str) -> String {
    let mut f = Browser::default();
    let (s, v) = f.post(c, 0, "/login", json!({"id": user})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step"], "password", "{v}");
    v["flow"].as_str().unwrap().to_owned()
}

/// Every request path that needs PostgreSQL, while it is unreachable. taro's session `b` is
/// cached on the replica (served through the outage grace); `flow` waits for its password.
/// `spaced`: each request waits until no earlier one just found the store unreachable, so
/// each pays the timeout itself rather than failing at once behind another.
async fn postgres_paths(c: &Cluster, b: &Browser, flow: &str, spaced: bool) -> Vec<String> {
    let cookie = b.cookies();
    // (what, request, whether the cache may answer it with a 200)
    let mut asked: Vec<(String, reqwest::RequestBuilder, bool)> = vec![
        (
            "ID step".into(),
            http().post(api(c, "/login")).json(&json!({"id": "hanako"})),
            false,
        ),
        (
            "settings PUT".into(),
            http()
                .put(api(c, "/settings"))
                .header("cookie", &cookie)
                .json(&json!({"enabled": true, "method": "email"})),
            false,
        ),
    ];
    for path in ["/sessions", "/devices", "/tokens", "/passkeys"] {
        let r = http().get(api(c, path)).header("cookie", &cookie);
        asked.push((format!("GET /api{path}"), r, false));
    }
    for path in [
        "/sessions",
        "/devices",
        "/settings/tokens",
        "/passkeys",
        "/app",
    ] {
        asked.push((format!("page {path}"), page(c, b, path), false));
    }
    // The cache may answer these; if it cannot, the answer is the same quick 503.
    let r = http().get(api(c, "/settings")).header("cookie", &cookie);
    asked.push(("GET /api/settings".into(), r, true));
    asked.push(("page /settings".into(), page(c, b, "/settings"), true));
    asked.push((
        "admin API phone change".into(),
        admin_phone(c, "taro", "kept"),
        false,
    ));
    let mut answers = Vec::new();
    for (what, req, or_ok) in asked {
        if spaced {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        answers.push((send(&what, req).await, or_ok));
    }
    // The final step, once the replica has seen the outage (its health probe runs every
    // second): what `login::complete` answers before that, when the session cannot be
    // stored, is the lead's part of the issue (the code is kept).
    let deadline = Instant::now() + Duration::from_secs(5);
    while readyz_blocking(c.nodes[0].admin).1["postgres"] != "down" {
        assert!(
            Instant::now() < deadline,
            "the replica never saw the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = http()
        .post(api(c, &format!("/login/{flow}/complete")))
        .json(&json!({"password": common_password()}));
    answers.push((send("final step", r).await, false));
    for (a, _) in &answers {
        eprintln!(
            "  {}: {} in {:?} (Retry-After {:?})",
            a.what, a.status, a.took, a.retry_after
        );
    }
    answers
        .iter()
        .filter_map(|(a, or_ok)| wrong(a, *or_ok))
        .collect()
}

fn common_password() -> &'static str {
    crate::common::PASSWORD
}

/// Waits until `f` holds (up to 10 s after the link is back).
async fn back(what: &str, c: &Cluster, f: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not work again after the restore\n{}",
            c.log(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After the restore: the same paths answer as they do on a good day.
async fn postgres_paths_work_again(c: &Cluster) {
    c.wait_ready(0);
    let mut b = Browser::default();
    b.login(c, 0, 0, "taro", false).await;
    back("the ID step", c, async || {
        let mut x = Browser::default();
        x.post(c, 0, "/login", json!({"id": "hanako"})).await.0 == 200
    })
    .await;
    for path in ["/sessions", "/devices", "/tokens", "/passkeys", "/settings"] {
        let (s, v) = b.get(c, 0, path).await;
        assert_eq!(s, 200, "GET /api{path} after the restore: {v}");
    }
    let r = admin_phone(c, "taro", "active").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the admin API after the restore");
    let r = http()
        .put(api(c, "/settings"))
        .header("cookie", b.cookies())
        .json(&json!({"enabled": true, "method": "email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "settings PUT after the restore");
}

async fn postgres_fault(fault: Fault) {
    let redis = TestRedis::start();
    let pg = Cut::start(pg_addr());
    let urls = [redis.url()];
    let c = Cluster::start_on(redis, &urls, "60s", "", Some(&pg));
    let mut b = Browser::default();
    b.login(&c, 0, 0, "taro", false).await;
    assert!(b.signed_in(&c, 0).await);
    let flow = flow_for(&c, "taro").await;

    apply(&pg, fault);
    // Let the replica's pool notice the reset links (the blackhole, by design, tells
    // nothing).
    tokio::time::sleep(Duration::from_millis(200)).await;
    eprintln!("PostgreSQL {fault:?}:");
    let wrong = postgres_paths(&c, &b, &flow, fault == Fault::Blackhole).await;
    pg.restore();
    assert!(
        wrong.is_empty(),
        "with PostgreSQL unreachable ({fault:?}), these were not a quick 503 + Retry-After {}:\n{}",
        retry_after(),
        wrong.join("\n")
    );
    postgres_paths_work_again(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_blackholed_every_path_is_a_quick_503_and_recovers() {
    postgres_fault(Fault::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reset_every_path_is_a_quick_503_and_recovers() {
    postgres_fault(Fault::Reset).await;
}

async fn redis_fault(fault: Fault) {
    let redis = TestRedis::start();
    let cut = Cut::start(format!("127.0.0.1:{}", redis.port).parse().unwrap());
    let urls = [format!("redis://127.0.0.1:{}/0", cut.port)];
    let c = Cluster::start_on(redis, &urls, "60s", "", None);
    let flow = flow_for(&c, "taro").await;

    apply(&cut, fault);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answers = [
        send(
            "ID step",
            http().post(api(&c, "/login")).json(&json!({"id": "taro"})),
        )
        .await,
        send(
            "final step",
            http()
                .post(api(&c, &format!("/login/{flow}/complete")))
                .json(&json!({"password": common_password()})),
        )
        .await,
        send(
            "ID step, again",
            http()
                .post(api(&c, "/login"))
                .json(&json!({"id": "hanako"})),
        )
        .await,
    ];
    cut.restore();
    eprintln!("Redis {fault:?}:");
    for a in &answers {
        eprintln!("  {}: {} in {:?}", a.what, a.status, a.took);
    }
    let wrong: Vec<String> = answers.iter().filter_map(|a| wrong(a, false)).collect();
    assert!(
        wrong.is_empty(),
        "with Redis unreachable ({fault:?}), these were not a quick 503 + Retry-After {}:\n{}",
        retry_after(),
        wrong.join("\n")
    );
    // Back: a whole login goes through again.
    c.wait_ready(0);
    back("a login", &c, async || {
        let mut x = Browser::default();
        let (s, v) = x.post(&c, 0, "/login", json!({"id": "taro"})).await;
        if s != 200 {
            return false;
        }
        let flow = v["flow"].as_str().unwrap();
        let (s, _) = x
            .post(
                &c,
                0,
                &format!("/login/{flow}/complete"),
                json!({"password": common_password()}),
            )
            .await;
        s == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_blackholed_logins_are_a_quick_503_and_recover() {
    redis_fault(Fault::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reset_logins_are_a_quick_503_and_recover() {
    redis_fault(Fault::Reset).await;
}

/// The audit trail as PostgreSQL holds it, oldest first, for `user` (`None`: everyone).
async fn trail(c: &Cluster, user: Option<&str>) -> Vec<(String, Value)> {
    let store = nidan::store::Store::open_postgres(&c._db.url, 1, true)
        .await
        .unwrap();
    let mut rows: Vec<(String, Value)> = store
        .audit_trail(user, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.event,
                serde_json::from_str(&r.detail).unwrap_or(Value::Null),
            )
        })
        .collect();
    rows.reverse();
    rows
}

/// `n` browsers signed in as `user` on replica 0 (each session cached there).
async fn signed_in(c: &Cluster, user: &str, n: usize) -> Vec<Browser> {
    let mut all = Vec::new();
    for _ in 0..n {
        let mut b = Browser::default();
        b.login(c, 0, 0, user, false).await;
        all.push(b);
    }
    all
}

/// A logout of each browser on replica 0 while PostgreSQL is unreachable: each is refused
/// (the session could not be ended), and each is an audit event (a logout was asked).
async fn logouts_during_an_outage(c: &Cluster, browsers: &mut [Browser]) {
    for (i, b) in browsers.iter_mut().enumerate() {
        let (s, v) = b.post(c, 0, "/logout", json!({})).await;
        assert_eq!(s, 503, "logout {i} during the outage: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_of_a_postgres_outage_reach_the_trail_afterwards() {
    let redis = TestRedis::start();
    let pg = Cut::start(pg_addr());
    let urls = [redis.url()];
    let c = Cluster::start_on(redis, &urls, "60s", "", Some(&pg));
    let made = 4;
    let mut browsers = signed_in(&c, "taro", made).await;
    let before = trail(&c, Some("taro")).await.len();

    pg.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Events this replica records during the outage: each refused logout.
    logouts_during_an_outage(&c, &mut browsers).await;
    pg.restore();
    c.wait_ready(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = trail(&c, Some("taro")).await;
        let logouts = rows[before..].iter().filter(|(e, _)| e == "logout").count();
        if logouts >= made {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{logouts} of the {made} audit events of the outage reached the trail: {rows:?}\n{}",
            c.log(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A logout works now, and its event comes after the outage's.
    let (s, v) = browsers[0].post(&c, 0, "/logout", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let rows = trail(&c, Some("taro")).await;
    let events: Vec<&str> = rows[before..].iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        events.iter().filter(|e| **e == "logout").count(),
        made + 1,
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_audit_queue_bound_one_row_counts_the_dropped_events() {
    let redis = TestRedis::start();
    let pg = Cut::start(pg_addr());
    let urls = [redis.url()];
    let c = Cluster::start_on(
        redis,
        &urls,
        "60s",
        "audit: { queue_events: 3 }\n",
        Some(&pg),
    );
    let mut browsers = signed_in(&c, "taro", 7).await;
    let before = trail(&c, None).await.len();

    pg.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    logouts_during_an_outage(&c, &mut browsers).await;
    pg.restore();
    c.wait_ready(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = trail(&c, None).await;
        let new = &rows[before..];
        if let Some((_, d)) = new.iter().find(|(e, _)| e == "audit_dropped") {
            let kept = new.iter().filter(|(e, _)| e == "logout").count();
            assert_eq!(kept, 3, "the queue's bound: {new:?}");
            assert_eq!(d["count"], 4, "{d}");
            // The dropped count comes after what was kept.
            let last = new.iter().rposition(|(e, _)| e == "logout").unwrap();
            let dropped = new.iter().position(|(e, _)| e == "audit_dropped").unwrap();
            assert!(last < dropped, "{new:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no audit_dropped row after the outage: {new:?}\n{}",
            c.log(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
