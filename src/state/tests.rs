//! One contract for both implementations: every test runs against the in-process state
//! and against a real `redis-server` of its own.
#![allow(clippy::unwrap_used, clippy::panic)]
#![allow(clippy::too_many_lines)] // tests are exempt: a scenario reads top to bottom

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// A `redis-server` on a free loopback port, killed on drop.
pub struct LocalRedis {
    child: Child,
    port: u16,
}

impl LocalRedis {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see README: the test command)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both implementations, each with what keeps it alive; and each behind the seal the
/// gateway runs them with (which must keep the contract).
fn both() -> Vec<(&'static str, Arc<dyn Ephemeral>, Option<LocalRedis>)> {
    let redis = LocalRedis::start();
    let r = redis::RedisState::new(&redis.url(), "t").unwrap();
    let rs = redis::RedisState::new(&redis.url(), "s").unwrap();
    vec![
        ("memory", Arc::new(memory::MemoryState::new()), None),
        (
            "sealed memory",
            Arc::new(sealed::Sealed::new(
                Arc::new(memory::MemoryState::new()),
                test_keys(""),
                None,
            )),
            None,
        ),
        ("redis", Arc::new(r), None),
        (
            "sealed redis",
            Arc::new(sealed::Sealed::new(Arc::new(rs), test_keys("s"), None)),
            Some(redis),
        ),
    ]
}

fn test_keys(scope: &str) -> sealed::RecordKeys {
    sealed::RecordKeys::new(
        &[crate::config::SigningKey {
            id: "k1".into(),
            secret: crate::config::Secret(b"0123456789abcdef0123456789abcdef".to_vec()),
        }],
        scope,
    )
}

fn policy() -> FailurePolicy {
    FailurePolicy {
        max: 4,
        reserve_known: 1,
        free: 2,
        base_delay: 1,
        max_delay: 60,
    }
}

#[tokio::test]
async fn flows_compare_and_set() {
    for (name, s, _r) in both() {
        let ttl = Duration::from_secs(60);
        assert!(s.flow_create("f1", b"one", ttl).await.unwrap(), "{name}");
        assert!(!s.flow_create("f1", b"other", ttl).await.unwrap(), "{name}");
        let v = s.flow_load("f1").await.unwrap().unwrap();
        assert_eq!((v.version, v.data.as_slice()), (1, &b"one"[..]), "{name}");
        assert!(s.flow_cas("f1", 1, b"two").await.unwrap(), "{name}");
        assert!(
            !s.flow_cas("f1", 1, b"three").await.unwrap(),
            "{name}: stale"
        );
        let v = s.flow_load("f1").await.unwrap().unwrap();
        assert_eq!((v.version, v.data.as_slice()), (2, &b"two"[..]), "{name}");
        assert!(s.flow_load("nope").await.unwrap().is_none(), "{name}");
        assert!(!s.flow_cas("nope", 1, b"x").await.unwrap(), "{name}");
        // Flows expire with their TTL, whatever changed them.
        assert!(
            s.flow_create("short", b"x", Duration::from_secs(1))
                .await
                .unwrap()
        );
        assert!(s.flow_cas("short", 1, b"y").await.unwrap());
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert!(s.flow_load("short").await.unwrap().is_none(), "{name}");
    }
}

#[tokio::test]
async fn parallel_compare_and_set_has_one_winner() {
    for (name, s, _r) in both() {
        s.flow_create("race", b"0", Duration::from_secs(60))
            .await
            .unwrap();
        let v = s.flow_load("race").await.unwrap().unwrap().version;
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.flow_cas("race", v, format!("{i}").as_bytes()).await })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "{name}");
        assert_eq!(s.flow_load("race").await.unwrap().unwrap().version, v + 1);
    }
}

#[tokio::test]
async fn windows_count_all_or_nothing() {
    for (name, s, _r) in both() {
        let a = WindowRule::new("a", 3, Duration::from_secs(60));
        let b = WindowRule::new("b", 1, Duration::from_secs(60));
        for _ in 0..3 {
            s.window_hit(&[Hit::count(&a, "k")], 100)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            s.window_hit(&[Hit::count(&a, "k")], 110).await.unwrap(),
            Err(50),
            "{name}"
        );
        s.window_hit(&[Hit::count(&a, "other")], 110)
            .await
            .unwrap()
            .unwrap();
        s.window_hit(&[Hit::count(&a, "k")], 160)
            .await
            .unwrap()
            .unwrap();
        // All or nothing: `b` refuses, so `a` counts nothing.
        s.window_hit(&[Hit::count(&b, "x")], 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.window_hit(&[Hit::count(&a, "x"), Hit::count(&b, "x")], 20)
                .await
                .unwrap(),
            Err(50),
            "{name}"
        );
        for _ in 0..3 {
            s.window_hit(&[Hit::count(&a, "x")], 20)
                .await
                .unwrap()
                .unwrap();
        }
        // A look counts nothing.
        let c = WindowRule::new("c", 1, Duration::from_secs(60));
        for _ in 0..3 {
            s.window_hit(&[Hit::look(&c, "k")], 0)
                .await
                .unwrap()
                .unwrap();
        }
        s.window_hit(&[Hit::count(&c, "k")], 0)
            .await
            .unwrap()
            .unwrap();
        assert!(
            s.window_hit(&[Hit::look(&c, "k")], 0)
                .await
                .unwrap()
                .is_err()
        );
    }
}

#[tokio::test]
async fn parallel_window_hits_are_counted_exactly() {
    for (name, s, _r) in both() {
        let w = WindowRule::new("par", 10, Duration::from_secs(60));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let s = s.clone();
                let w = w.clone();
                tokio::spawn(async move { s.window_hit(&[Hit::count(&w, "k")], 5).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap().unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 10, "{name}");
    }
}

async fn reserve(s: &dyn Ephemeral, user: &str, known: bool, now: i64) -> Reserve {
    match s
        .failure_reserve(user, known, &policy(), now)
        .await
        .unwrap()
    {
        Reserve::Unseeded => {
            s.failure_seed(user, &[], &[], now).await.unwrap();
            s.failure_reserve(user, known, &policy(), now)
                .await
                .unwrap()
        }
        r => r,
    }
}

#[tokio::test]
async fn failures_delay_then_cap_per_pool() {
    for (name, s, _r) in both() {
        let s = s.as_ref();
        // Cap 4, one kept for the known browser: strangers get 3, then wait an hour.
        for t in [0, 1, 3] {
            let Reserve::Granted(tk) = reserve(s, "u", false, t).await else {
                panic!("{name}: refused at {t}");
            };
            s.failure_settle(&tk, Outcome::Failed, t).await.unwrap();
        }
        assert_eq!(
            reserve(s, "u", false, 10).await,
            Reserve::Wait(3_590),
            "{name}"
        );
        let Reserve::Granted(tk) = reserve(s, "u", true, 10).await else {
            panic!("{name}: the known browser was refused");
        };
        s.failure_settle(&tk, Outcome::Failed, 10).await.unwrap();
        assert_eq!(
            reserve(s, "u", true, 11).await,
            Reserve::Wait(3_589),
            "{name}"
        );
        assert!(matches!(
            reserve(s, "u", true, 3_601).await,
            Reserve::Granted(_)
        ));

        // Delays: two free, then 1 s, 2 s...
        for t in [0, 0] {
            let Reserve::Granted(tk) = reserve(s, "d", false, t).await else {
                panic!("{name}");
            };
            s.failure_settle(&tk, Outcome::Failed, t).await.unwrap();
        }
        assert_eq!(reserve(s, "d", false, 0).await, Reserve::Wait(1), "{name}");
        let Reserve::Granted(tk) = reserve(s, "d", false, 1).await else {
            panic!("{name}");
        };
        s.failure_settle(&tk, Outcome::Abandoned, 1).await.unwrap();
        // Abandoned counts nothing; success clears the pool.
        let Reserve::Granted(tk) = reserve(s, "d", false, 1).await else {
            panic!("{name}");
        };
        s.failure_settle(&tk, Outcome::Succeeded, 1).await.unwrap();
        assert!(matches!(
            reserve(s, "d", false, 1).await,
            Reserve::Granted(_)
        ));
    }
}

#[tokio::test]
async fn failures_are_seeded_once() {
    for (name, s, _r) in both() {
        assert_eq!(
            s.failure_reserve("z", false, &policy(), 10).await.unwrap(),
            Reserve::Unseeded,
            "{name}"
        );
        s.failure_seed("z", &[1, 2, 3], &[], 10).await.unwrap();
        // A second seed (another replica that also saw "unseeded") changes nothing.
        s.failure_seed("z", &[], &[], 10).await.unwrap();
        assert_eq!(
            s.failure_reserve("z", false, &policy(), 10).await.unwrap(),
            Reserve::Wait(3_591),
            "{name}"
        );
    }
}

#[tokio::test]
async fn parallel_attempts_are_counted_exactly() {
    for (name, s, _r) in both() {
        let p = FailurePolicy {
            max: 100,
            reserve_known: 0,
            free: 7,
            base_delay: 60,
            max_delay: 60,
        };
        s.failure_seed("p", &[], &[], 0).await.unwrap();
        let tasks: Vec<_> = (0..30)
            .map(|_| {
                let s = s.clone();
                let p = p.clone();
                tokio::spawn(async move {
                    match s.failure_reserve("p", false, &p, 50).await.unwrap() {
                        Reserve::Granted(tk) => {
                            s.failure_settle(&tk, Outcome::Failed, 50).await.unwrap();
                            true
                        }
                        _ => false,
                    }
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            if t.await.unwrap() {
                granted += 1;
            }
        }
        // Seven free attempts, then the delay holds however many arrive at once.
        assert_eq!(granted, 7, "{name}");
    }
}

#[tokio::test]
async fn approvals_one_pending_and_answered_once() {
    for (name, s, _r) in both() {
        let w = WindowRule::new("ap", 2, Duration::from_secs(600));
        let keep = Duration::from_secs(60);
        let new = |id: &'static str, user: &'static str| NewApproval {
            id,
            user,
            data: b"d",
            expires: 120,
            keep,
            tag: &[],
            expired_tag: &[],
        };
        s.approval_create(&new("a1", "jiro"), &w, 0)
            .await
            .unwrap()
            .unwrap();
        s.approval_create(&new("a2", "jiro"), &w, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.approval_get("a1").await.unwrap().unwrap().status,
            ApprovalStatus::Expired,
            "{name}: superseded"
        );
        assert_eq!(
            s.approval_current("jiro").await.unwrap().as_deref(),
            Some("a2")
        );
        assert!(matches!(
            s.approval_create(&new("a3", "jiro"), &w, 2).await.unwrap(),
            Err(ApprovalRefusal::TooMany(_))
        ));
        let settle = |id, user, to, now| Settle {
            id,
            user,
            to,
            answered_by: Some("app"),
            suspend: None,
            now,
            tag: &[],
        };
        assert_eq!(
            s.approval_settle(&settle("a2", Some("taro"), ApprovalStatus::Approved, 3))
                .await
                .unwrap(),
            Settled::NotFound
        );
        // Parallel answers: exactly one moves it.
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.approval_settle(&Settle {
                        id: "a2",
                        user: Some("jiro"),
                        to: ApprovalStatus::Approved,
                        answered_by: Some("app"),
                        suspend: None,
                        now: 3,
                        tag: &[],
                    })
                    .await
                    .unwrap()
                })
            })
            .collect();
        let mut done = 0;
        for t in tasks {
            if t.await.unwrap() == Settled::Done {
                done += 1;
            }
        }
        assert_eq!(done, 1, "{name}");
        let a = s.approval_get("a2").await.unwrap().unwrap();
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert_eq!(a.answered_by.as_deref(), Some("app"));
        assert_eq!(a.data, b"d");
        // Expired approvals cannot be answered; "not me" pauses the user's prompts.
        s.approval_create(&new("b1", "emi"), &w, 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.approval_settle(&settle("b1", Some("emi"), ApprovalStatus::Approved, 120))
                .await
                .unwrap(),
            Settled::NotPending
        );
        s.approval_create(&new("c1", "hana"), &w, 0)
            .await
            .unwrap()
            .unwrap();
        s.approval_settle(&Settle {
            suspend: Some((900, Duration::from_secs(900))),
            ..settle("c1", Some("hana"), ApprovalStatus::Denied, 0)
        })
        .await
        .unwrap();
        assert_eq!(
            s.approval_create(&new("c2", "hana"), &w, 1).await.unwrap(),
            Err(ApprovalRefusal::Suspended(899)),
            "{name}"
        );
        assert!(s.approval_get("nope").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn nonces_are_claimed_once() {
    for (name, s, _r) in both() {
        let ttl = Duration::from_secs(60);
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.claim_once("nonce", "app:n1", ttl).await })
            })
            .collect();
        let mut fresh = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1, "{name}");
        assert!(s.claim_once("nonce", "app:n2", ttl).await.unwrap());
        assert!(s.claim_once("other", "app:n1", ttl).await.unwrap());
    }
}

#[tokio::test]
async fn single_use_values_are_taken_once() {
    for (name, s, _r) in both() {
        let ttl = Duration::from_secs(60);
        s.put("challenge", "c1", b"pending", ttl).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.take("challenge", "c1").await })
            })
            .collect();
        let mut got = 0;
        for t in tasks {
            if let Some(v) = t.await.unwrap().unwrap() {
                assert_eq!(v, b"pending");
                got += 1;
            }
        }
        assert_eq!(got, 1, "{name}: taken {got} times");
        assert!(s.take("ticket", "c1").await.unwrap().is_none());
        s.put("ticket", "t", b"x", Duration::from_secs(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert!(s.take("ticket", "t").await.unwrap().is_none(), "{name}");
    }
}

#[tokio::test]
async fn a_stopped_redis_is_an_error_not_an_answer() {
    let redis = LocalRedis::start();
    let s = redis::RedisState::new(&redis.url(), "t").unwrap();
    let w = WindowRule::new("w", 5, Duration::from_secs(60));
    s.window_hit(&[Hit::count(&w, "k")], 0)
        .await
        .unwrap()
        .unwrap();
    drop(redis);
    let started = Instant::now();
    assert!(s.window_hit(&[Hit::count(&w, "k")], 0).await.is_err());
    assert!(s.failure_reserve("u", false, &policy(), 0).await.is_err());
    assert!(s.flow_load("f").await.is_err());
    assert!(
        s.claim_once("n", "k", Duration::from_secs(5))
            .await
            .is_err()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "errors come quickly"
    );
}

#[tokio::test]
async fn the_in_process_values_stay_within_their_byte_budget() {
    let budget = 256 * 1024;
    let s = memory::MemoryState::with_budgets(memory::Budgets {
        values: budget,
        ..memory::Budgets::default()
    });
    let big = vec![b'a'; 2_500];
    for i in 0..2_000 {
        s.put(
            "challenge",
            &format!("{i:043}"),
            &big,
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    }
    let used = s.weights().values;
    assert!(used <= budget, "{used} > {budget}");
    assert!(
        used > budget / 2,
        "{used}: the budget is used, not the count"
    );
}

#[tokio::test]
async fn every_redis_key_has_a_ttl_and_the_prefix() {
    let redis = LocalRedis::start();
    let s = redis::RedisState::new(&redis.url(), "t").unwrap();
    let ttl = Duration::from_secs(60);
    s.flow_create("f", b"x", ttl).await.unwrap();
    s.flow_cas("f", 1, b"y").await.unwrap();
    let w = WindowRule::new("w", 5, ttl);
    s.window_hit(&[Hit::count(&w, "k")], 0)
        .await
        .unwrap()
        .unwrap();
    s.failure_seed("u", &[1], &[2], 10).await.unwrap();
    if let Reserve::Granted(t) = s.failure_reserve("u", false, &policy(), 10).await.unwrap() {
        s.failure_settle(&t, Outcome::Failed, 10).await.unwrap();
    }
    let new = NewApproval {
        id: "a",
        user: "u",
        data: b"d",
        expires: 100,
        keep: ttl,
        tag: b"t",
        expired_tag: b"x",
    };
    s.approval_create(&new, &w, 0).await.unwrap().unwrap();
    s.approval_settle(&Settle {
        id: "a",
        user: Some("u"),
        to: ApprovalStatus::Denied,
        answered_by: Some("app"),
        suspend: Some((900, ttl)),
        now: 1,
        tag: b"t2",
    })
    .await
    .unwrap();
    s.claim_once("nonce", "n", ttl).await.unwrap();
    s.put("ticket", "t", b"v", ttl).await.unwrap();
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(keys.len() >= 9, "{keys:?}");
    for k in keys {
        assert!(k.starts_with("t:"), "{k}");
        let ttl: i64 = ::redis::cmd("TTL")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} has no TTL");
    }
}

#[tokio::test]
async fn the_in_process_state_stays_within_its_byte_budgets_with_large_records() {
    let budget = 256 * 1024;
    let s = memory::MemoryState::with_budgets(memory::Budgets {
        flows: budget,
        values: budget,
        windows: budget,
        accounts: budget,
        approvals: budget,
    });
    let ttl = Duration::from_secs(600);
    // Windows under the longest keys anyone can choose (an unknown ID of 64 four-byte
    // characters), each full: ~1 KB apiece, 2.5 MB offered.
    let w = WindowRule::new("send_decoy", 30, Duration::from_secs(900));
    for i in 0..2_500 {
        let key = format!("{i:0>64}").replace('0', "\u{1F600}");
        for t in 0..30 {
            s.window_hit(&[Hit::count(&w, &key)], t)
                .await
                .unwrap()
                .unwrap();
        }
    }
    // Accounts (unknown IDs count failures too) with an hour of failures each.
    let failures: Vec<i64> = (0..100).collect();
    for i in 0..1_000 {
        s.failure_seed(&format!("nobody-{i:0>58}"), &failures, &failures, 100)
            .await
            .unwrap();
    }
    // Flows and approvals of 4 KB.
    let big = vec![b'x'; 4_096];
    let once = WindowRule::new("ap", 1, ttl);
    for i in 0..1_000 {
        let id = format!("{i:043}");
        s.flow_create(&id, &big, ttl).await.unwrap();
        let new = NewApproval {
            id: &id,
            user: &id,
            data: &big,
            expires: 600,
            keep: ttl,
            tag: &[],
            expired_tag: &[],
        };
        s.approval_create(&new, &once, 0).await.unwrap().unwrap();
    }
    let used = s.weights();
    for (what, n) in [
        ("windows", used.windows),
        ("accounts", used.accounts),
        ("flows", used.flows),
        ("approvals", used.approvals),
    ] {
        assert!(n <= budget, "{what}: {n} > {budget}");
        assert!(
            n > budget / 2,
            "{what}: {n}: the bytes bound it, not the count"
        );
    }
}

/// Rolling upgrades (issue 25): an approval a newer version answered with a status this
/// version does not know reads as `Unknown` (a refusal), sealed or not — not as a corrupt
/// record (which answered 503 to the user's browser).
#[tokio::test]
async fn an_approval_status_from_a_newer_version_reads_as_a_refusal() {
    let redis = LocalRedis::start();
    let plain = redis::RedisState::new(&redis.url(), "t").unwrap();
    let sealed = sealed::Sealed::new(
        Arc::new(redis::RedisState::new(&redis.url(), "s").unwrap()),
        test_keys("s"),
        None,
    );
    let stores: [(&str, &dyn Ephemeral); 2] = [("t", &plain), ("s", &sealed)];
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    for (prefix, s) in stores {
        let w = WindowRule::new("ap", 5, Duration::from_secs(600));
        let new = NewApproval {
            id: "n1",
            user: "jiro",
            data: b"d",
            expires: 120,
            keep: Duration::from_secs(300),
            tag: &[],
            expired_tag: &[],
        };
        s.approval_create(&new, &w, 0).await.unwrap().unwrap();
        let _: () = ::redis::cmd("HSET")
            .arg(format!("{prefix}:ap:n1"))
            .arg("s")
            .arg("escalated_to_helpdesk")
            .query_async(&mut c)
            .await
            .unwrap();
        let a = s.approval_get("n1").await.unwrap().unwrap();
        assert_eq!(a.status, ApprovalStatus::Unknown, "{prefix}");
        assert_eq!(a.data, b"d");
        // Still not pending: nobody can answer it again.
        let settled = s
            .approval_settle(&Settle {
                id: "n1",
                user: Some("jiro"),
                to: ApprovalStatus::Approved,
                answered_by: Some("app"),
                suspend: None,
                now: 3,
                tag: &[],
            })
            .await
            .unwrap();
        assert_eq!(settled, Settled::NotPending, "{prefix}");
    }
    // What is no status name at all is still a corrupt record.
    assert_eq!(ApprovalStatus::parse("Approved!"), None);
    assert_eq!(ApprovalStatus::parse(""), None);
    assert_eq!(
        ApprovalStatus::parse("wrong_number"),
        Some(ApprovalStatus::WrongNumber)
    );
}
