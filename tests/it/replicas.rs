//! Several real `nidan serve` processes on loopback in the replica mode: a fresh PostgreSQL
//! database per test on the machine's server and a `redis-server` of the test's own. The
//! replicas share one directory (users file, device key, outbox), as replicas share a
//! deployment's files; no sticky sessions: one cookie jar talks to every replica.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common::{self, cluster, stores, ws};

use std::time::{Duration, Instant};

use cluster::*;
use common::PASSWORD;
use serde_json::{Value, json};
use stores::Cut;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_and_a_trusted_device_work_on_every_replica() {
    let c = Cluster::start(3, "60s");
    let mut b = Browser::default();
    b.login(&c, 0, 0, "hanako", true).await;
    assert!(b.device.is_some());
    for i in 0..3 {
        assert!(b.signed_in(&c, i).await, "replica {i}");
        // The device skips the second step wherever the next login lands.
        let mut again = Browser {
            session: None,
            device: b.device.clone(),
        };
        assert_eq!(again.step(&c, i, "hanako").await, "password", "replica {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_device_removal_and_a_password_change_are_seen_by_every_replica_within_a_second() {
    let c = Cluster::start(2, "60s");
    let second = Duration::from_secs(1);

    // Logout on one replica: the session stops on the other within a second, though it was
    // in that replica's cache.
    let mut b = Browser::default();
    b.login(&c, 0, 0, "hanako", true).await;
    for i in 0..2 {
        assert!(b.signed_in(&c, i).await);
    }
    let stale = b.clone();
    let (s, v) = b.post(&c, 1, "/logout", json!({})).await;
    assert_eq!(s, 200, "{v}");
    everywhere(&c, "logout", second, async |i| {
        !stale.signed_in(&c, i).await
    })
    .await;

    // Device removal on one replica: the other asks for the code again within a second.
    let mut d = Browser {
        session: None,
        device: stale.device.clone(),
    };
    assert_eq!(d.step(&c, 1, "hanako").await, "password");
    let mut owner = Browser::default();
    owner.login(&c, 0, 0, "hanako", false).await;
    let (s, v) = owner.get(&c, 0, "/devices").await;
    assert_eq!(s, 200, "{v}");
    let id = v["devices"][0]["id"].as_str().unwrap().to_owned();
    let r = http()
        .delete(c.url(0, &format!("/_nidan/api/devices/{id}")))
        .header("cookie", owner.cookies())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    everywhere(&c, "device removal", second, async |i| {
        let mut d = d.clone();
        d.step(&c, i, "hanako").await == "password_and_code"
    })
    .await;

    // A password change in the users file: the lease holder revokes, everyone follows
    // within a second of the first replica that refuses.
    let mut t = Browser::default();
    t.login(&c, 0, 0, "taro", false).await;
    for i in 0..2 {
        assert!(t.signed_in(&c, i).await);
    }
    let other_hash = {
        let text = std::fs::read_to_string(c.dir.path().join("users.yaml")).unwrap();
        let at = text.find("id: hanako\n").unwrap();
        text[at..]
            .lines()
            .find(|l| l.trim_start().starts_with("password_hash:"))
            .unwrap()
            .to_owned()
    };
    let text = std::fs::read_to_string(c.dir.path().join("users.yaml")).unwrap();
    let at = text.find("id: taro\n").unwrap();
    let taro_hash = text[at..]
        .lines()
        .find(|l| l.trim_start().starts_with("password_hash:"))
        .unwrap()
        .to_owned();
    c.edit_users("taro", &taro_hash, &other_hash);
    let deadline = Instant::now() + Duration::from_secs(10);
    'first: loop {
        for i in 0..2 {
            if !t.signed_in(&c, i).await {
                break 'first;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the password change revoked nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    everywhere(&c, "password change", second, async |i| {
        !t.signed_in(&c, i).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_on_one_replica_keeps_the_session_alive_on_the_others() {
    let c = Cluster::start_with(2, "60s", "session: { idle_timeout: 4s }");
    let mut b = Browser::default();
    b.login(&c, 0, 0, "taro", false).await;
    // Replica 1 caches the session, then sees nothing for longer than the idle timeout
    // while replica 0 keeps seeing the user.
    assert!(b.signed_in(&c, 1).await);
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        assert!(b.signed_in(&c, 0).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(b.signed_in(&c, 1).await, "active elsewhere: not idle");
    // Idle everywhere: it ends everywhere.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..2 {
        assert!(!b.signed_in(&c, i).await, "replica {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_marked_gone_in_the_users_file_sends_exactly_one_mail() {
    let c = Cluster::start(2, "60s");
    let notices = |c: &Cluster| {
        c.outbox()
            .iter()
            .filter(|m| m["user"] == "yuki" && m["code"].is_null())
            .count()
    };
    c.edit_users("yuki", "phone_status: active", "phone_status: gone");
    let deadline = Instant::now() + Duration::from_secs(20);
    while notices(&c) == 0 {
        assert!(Instant::now() < deadline, "no notice\n{}", c.log(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every replica read the file (at most two reload intervals); none sends another.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(notices(&c), 1, "{:?}", c.outbox());
    for i in 0..2 {
        let mut b = Browser::default();
        assert_eq!(b.step(&c, i, "yuki").await, "password", "replica {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_under_traffic() {
    let mut c = Cluster::start(2, "4s");
    let mut b = Browser::default();
    b.login(&c, 0, 0, "taro", false).await;
    let mut v = Browser::default();
    v.login(&c, 0, 0, "emi", false).await;
    for i in 0..2 {
        assert!(b.signed_in(&c, i).await);
        assert!(v.signed_in(&c, i).await);
    }
    c.redis.stop();
    let down = Instant::now();
    // Readiness names the store that is down, within a couple of seconds.
    everywhere(&c, "readyz down", Duration::from_secs(4), async |i| {
        let (s, v) = readyz_blocking(c.nodes[i].admin);
        s == 503 && v["redis"] == "down" && v["postgres"] == "ok"
    })
    .await;
    // Existing sessions keep working within the grace.
    for i in 0..2 {
        assert!(b.signed_in(&c, i).await, "replica {i} within the grace");
    }
    assert!(down.elapsed() < Duration::from_secs(4));
    // A logout during the outage cannot be broadcast: the other replica's cache may answer
    // for it until the grace is over, never longer.
    let stale = v.clone();
    let (s, _) = v.post(&c, 0, "/logout", json!({})).await;
    assert_eq!(s, 200);
    assert!(!stale.signed_in(&c, 0).await);
    let deadline = down + Duration::from_secs(4) + Duration::from_millis(1_500);
    while stale.signed_in(&c, 1).await {
        assert!(
            Instant::now() < deadline,
            "a revoked session outlived the grace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the grace, the caches no longer decide: the durable store does.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..2 {
        assert!(b.signed_in(&c, i).await, "replica {i} past the grace");
        assert!(!stale.signed_in(&c, i).await);
    }
    // Recovery without a restart.
    c.redis.restart();
    for i in 0..2 {
        c.wait_ready(i);
    }
    for i in 0..2 {
        assert!(b.signed_in(&c, i).await, "replica {i} after recovery");
        assert!(!stale.signed_in(&c, i).await);
    }
    // And revocations flow again.
    let stale = b.clone();
    let (s, _) = b.post(&c, 0, "/logout", json!({})).await;
    assert_eq!(s, 200);
    everywhere(
        &c,
        "logout after recovery",
        Duration::from_secs(1),
        async |i| !stale.signed_in(&c, i).await,
    )
    .await;
}

/// Needs the short-lived state in Redis (the "state" work): a login in progress lives in
/// Redis, so with Redis down a new login is refused quickly with a clear 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_logins_get_a_quick_503_while_redis_is_down() {
    let mut c = Cluster::start(2, "60s");
    c.redis.stop();
    for i in 0..2 {
        let start = Instant::now();
        let r = http()
            .post(c.url(i, "/_nidan/api/login"))
            .json(&json!({"id": "taro"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503, "replica {i}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        let page = http().get(c.url(i, "/_nidan/login")).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 503, "replica {i}: login page");
    }
    c.redis.restart();
    for i in 0..2 {
        c.wait_ready(i);
        let mut b = Browser::default();
        b.login(&c, i, i, "taro", false).await;
    }
}

/// Needs the short-lived state in Redis (the "state" work): the flow survives its replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_replica_mid_login_loses_nothing() {
    let mut c = Cluster::start(2, "60s");
    let mut b = Browser::default();
    let (s, v) = b.post(&c, 0, "/login", json!({"id": "hanako"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step"], "password_and_code");
    let flow = v["flow"].as_str().unwrap().to_owned();
    let code = c.last_code("hanako");
    c.kill9(0);
    let (s, v) = b
        .post(
            &c,
            1,
            &format!("/login/{flow}/complete"),
            json!({"password": PASSWORD, "code": code}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(b.signed_in(&c, 1).await);
}

/// Needs the durable state on PostgreSQL (the "pg" work). PostgreSQL unreachable: new
/// logins are refused at once, sessions served from the cache for the grace and then
/// refused (fail closed), everything back without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_then_back_under_traffic() {
    let cut = Cut::start(pg_addr());
    let c = Cluster::start_full(2, "4s", "", Some(&cut));
    let mut b = Browser::default();
    b.login(&c, 0, 0, "taro", false).await;
    for i in 0..2 {
        assert!(b.signed_in(&c, i).await);
    }
    cut.cut();
    let down = Instant::now();
    for i in 0..2 {
        assert!(b.signed_in(&c, i).await, "replica {i} within the grace");
    }
    everywhere(&c, "readyz down", Duration::from_secs(4), async |i| {
        let (s, v) = readyz_blocking(c.nodes[i].admin);
        s == 503 && v["postgres"] == "down" && v["redis"] == "ok"
    })
    .await;
    for i in 0..2 {
        let start = Instant::now();
        let r = http()
            .post(c.url(i, "/_nidan/api/login"))
            .json(&json!({"id": "hanako"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503, "replica {i}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }
    // Past the grace: fail closed, quickly.
    let past = down + Duration::from_secs(5);
    tokio::time::sleep(past.saturating_duration_since(Instant::now())).await;
    for i in 0..2 {
        let start = Instant::now();
        let (s, _) = b.get(&c, i, "/me").await;
        assert_eq!(s, 503, "replica {i} past the grace");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }
    cut.restore();
    for i in 0..2 {
        c.wait_ready(i);
        assert!(b.signed_in(&c, i).await, "replica {i} after recovery");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chores_move_to_another_replica_when_the_holder_stops() {
    let mut c = Cluster::start(2, "60s");
    let holder = |c: &Cluster| {
        (0..c.nodes.len())
            .filter(|&i| c.log(i).contains("now runs the periodic chores"))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while holder(&c).is_empty() {
        assert!(Instant::now() < deadline, "nobody took the chores");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = holder(&c);
    assert_eq!(first.len(), 1, "exactly one holder");
    let (gone, other) = (first[0], 1 - first[0]);
    // A graceful stop releases the lease: the other takes over at its next renewal (5 s),
    // not after the expiry.
    signal(&c.nodes[gone], "TERM");
    let stopped = Instant::now();
    while !c.log(other).contains("now runs the periodic chores") {
        assert!(
            stopped.elapsed() < Duration::from_secs(8),
            "no takeover\n{}",
            c.log(other)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.kill9(gone);
    // The survivor does the chores: a phone marked gone sends its one notice.
    c.edit_users("yuki", "phone_status: active", "phone_status: gone");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .outbox()
        .iter()
        .any(|m| m["user"] == "yuki" && m["code"].is_null())
    {
        assert!(Instant::now() < deadline, "no notice\n{}", c.log(other));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Needs the short-lived state in Redis (the "state" work): no sticky sessions, so the
/// steps of one login may land on different replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_started_on_one_replica_completes_on_another() {
    let c = Cluster::start(3, "60s");
    let mut b = Browser::default();
    b.login(&c, 0, 1, "hanako", true).await;
    for i in 0..3 {
        assert!(b.signed_in(&c, i).await, "replica {i}");
    }
    let mut again = Browser {
        session: None,
        device: b.device.clone(),
    };
    again.login(&c, 2, 0, "hanako", false).await;
}

/// Needs the short-lived state in Redis (the "state" work): the failure limiter counts in
/// Redis, not per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_split_across_replicas_are_counted_together() {
    let c = Cluster::start_with(
        2,
        "60s",
        "login_limits: { free_failures: 2, base_delay: 60s }",
    );
    let mut b = Browser::default();
    for i in 0..2 {
        let (s, v) = b.post(&c, i, "/login", json!({"id": "taro"})).await;
        assert_eq!(s, 200, "{v}");
        let flow = v["flow"].as_str().unwrap().to_owned();
        let (s, v) = b
            .post(
                &c,
                i,
                &format!("/login/{flow}/complete"),
                json!({"password": "wrong"}),
            )
            .await;
        assert_eq!(s, 401, "replica {i}: {v}");
    }
    // Two failures in all, one on each replica: the third attempt waits on either.
    for i in 0..2 {
        let (s, v) = b.post(&c, i, "/login", json!({"id": "taro"})).await;
        assert_eq!(s, 200, "{v}");
        let flow = v["flow"].as_str().unwrap().to_owned();
        let (s, v) = b
            .post(
                &c,
                i,
                &format!("/login/{flow}/complete"),
                json!({"password": PASSWORD}),
            )
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (429, Some("too_many_attempts")),
            "replica {i}"
        );
    }
}

/// "Where you are signed in": a session ended from the list on one replica (one, then
/// "everywhere else") stops on every replica within a second, though each had it cached;
/// the browser that ended them keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_ended_from_the_list_stop_on_every_replica_within_a_second() {
    let c = Cluster::start(2, "60s");
    let second = Duration::from_secs(1);
    let mut owner = Browser::default();
    owner.login(&c, 0, 0, "hanako", false).await;
    let mut phone = Browser::default();
    phone.login(&c, 1, 1, "hanako", false).await;
    let mut tablet = Browser::default();
    tablet.login(&c, 0, 1, "hanako", false).await;
    for i in 0..2 {
        for b in [&owner, &phone, &tablet] {
            assert!(b.signed_in(&c, i).await, "replica {i}");
        }
    }
    let (s, v) = owner.get(&c, 1, "/sessions").await;
    assert_eq!(s, 200, "{v}");
    let list = v["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{v}");
    // The two other browsers' handles (never their tokens); the first is ended alone.
    let others: Vec<&str> = list
        .iter()
        .filter(|x| x["current"] == false)
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(others.len(), 2, "{v}");
    let ended = http()
        .delete(c.url(1, &format!("/_nidan/api/sessions/{}", others[0])))
        .header("cookie", owner.cookies())
        .header("origin", c.url(1, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    // Exactly one of the two other browsers is out, everywhere.
    everywhere(&c, "one session ended", second, async |i| {
        phone.signed_in(&c, i).await != tablet.signed_in(&c, i).await
    })
    .await;
    let r = http()
        .delete(c.url(0, "/_nidan/api/sessions"))
        .header("cookie", owner.cookies())
        .header("origin", c.url(0, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ended"], 1, "{v}");
    everywhere(&c, "everywhere else", second, async |i| {
        !phone.signed_in(&c, i).await && !tablet.signed_in(&c, i).await
    })
    .await;
    for i in 0..2 {
        assert!(
            owner.signed_in(&c, i).await,
            "the owner's own session, replica {i}"
        );
    }
}

/// A WebSocket tunnel held open on one replica ends within a second of a logout or a
/// password change made through another (SECURITY 46); the other user's tunnel stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_on_every_replica_end_with_their_session() {
    let c = Cluster::start(2, "30s");
    let mut taro = Browser::default();
    taro.login(&c, 0, 0, "taro", false).await;
    let cookie = format!("Cookie: {}\r\n", taro.cookies());
    let mut on_one = ws::open(c.nodes[1].addr, "/ws", &cookie).await.unwrap();
    let mut on_zero = ws::open(c.nodes[0].addr, "/ws", &cookie).await.unwrap();
    let mut jiro = Browser::default();
    jiro.login(&c, 1, 1, "jiro", false).await;
    let jiro_cookie = format!("Cookie: {}\r\n", jiro.cookies());
    let mut kept = ws::open(c.nodes[1].addr, "/ws", &jiro_cookie)
        .await
        .unwrap();
    let (s, v) = taro.post(&c, 0, "/logout", json!({})).await;
    assert!(s == 200 || s == 204, "{s} {v}");
    for (name, t) in [("replica 1", &mut on_one), ("replica 0", &mut on_zero)] {
        let took = t.closed_within(Duration::from_secs(3)).await;
        assert!(
            took.is_some_and(|t| t < Duration::from_millis(1200)),
            "{name}: {took:?}"
        );
    }
    assert!(kept.echoes().await, "another user's tunnel stays open");
}

/// A setting change on one replica gives the browser a new session ID that keeps the
/// login's times (SECURITY 43): alternating changes across the replicas do not outrun the
/// absolute timeout on either; every replica reads the same times from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_session_keeps_its_absolute_end_on_every_replica() {
    let c = Cluster::start_with(
        2,
        "60s",
        "session: { idle_timeout: 6s, absolute_timeout: 6s }",
    );
    let mut b = Browser::default();
    b.login(&c, 0, 0, "taro", false).await;
    let t = Instant::now();
    let (s, first) = b.get(&c, 1, "/me").await;
    assert_eq!(s, 200, "{first}");
    let times = |v: &Value| {
        (
            v["login_at"].clone(),
            v["auth_time"].clone(),
            v["expires_at"].clone(),
        )
    };
    let mut n = 0;
    while t.elapsed() < Duration::from_millis(9_000) {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let i = n % 2;
        let method = ["email", "sms"][i];
        let r = http()
            .put(c.url(i, "/_nidan/api/settings"))
            .header("cookie", b.cookies())
            .header("origin", c.url(i, ""))
            .json(&json!({"enabled": false, "method": method}))
            .send()
            .await
            .unwrap();
        b.keep(&r);
        let changed = r.status() == 200;
        n += 1;
        let at = t.elapsed();
        if at < Duration::from_millis(4_000) {
            assert!(changed, "change {n} on replica {i}");
            for j in 0..2 {
                let (s, v) = b.get(&c, j, "/me").await;
                assert_eq!(s, 200, "{v}");
                assert_eq!(times(&v), times(&first), "replica {j} after change {n}");
            }
        }
        if at > Duration::from_millis(7_100) {
            assert!(!changed, "a change at {at:?} outran the absolute timeout");
            for j in 0..2 {
                assert!(!b.signed_in(&c, j).await, "replica {j} at {at:?}");
            }
        }
    }
}

/// "Sign out everywhere" with "also forget trusted devices and app passwords", asked on
/// one replica: within a second no replica lets the device skip the second step or keeps
/// the other browser signed in; the app password is gone from the shared store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_devices_on_one_replica_holds_on_every_replica_within_a_second() {
    let c = Cluster::start(2, "60s");
    let mut owner = Browser::default();
    owner.login(&c, 0, 0, "hanako", true).await;
    let device = owner.device.clone().expect("a device cookie");
    let mut other = Browser::default();
    other.login(&c, 1, 1, "hanako", false).await;
    let probe = || Browser {
        session: None,
        device: Some(device.clone()),
    };
    // The device skips the second step on both replicas (each has it cached).
    for i in 0..2 {
        assert_eq!(
            probe().step(&c, i, "hanako").await,
            "password",
            "replica {i}"
        );
    }
    let (s, v) = owner
        .post(&c, 0, "/tokens", json!({"name": "mail app"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let r = http()
        .delete(c.url(0, "/_nidan/api/sessions?forget=devices_and_app_passwords"))
        .header("cookie", owner.cookies())
        .header("origin", c.url(0, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (&v["ended"], &v["devices"], &v["app_passwords"]),
        (&json!(1), &json!(1), &json!(1)),
        "{v}"
    );
    everywhere(&c, "forgotten", Duration::from_secs(1), async |i| {
        !other.signed_in(&c, i).await && probe().step(&c, i, "hanako").await == "password_and_code"
    })
    .await;
    for i in 0..2 {
        assert!(
            owner.signed_in(&c, i).await,
            "the owner's own session, replica {i}"
        );
        let (s, v) = owner.get(&c, i, "/tokens").await;
        assert_eq!((s, &v["tokens"]), (200, &json!([])), "replica {i}: {v}");
    }
}
