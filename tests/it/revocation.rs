//! The revocation rule, against three real replicas: "once a revocation is acknowledged, no
//! replica accepts the credential more than 1 s later, through Redis and PostgreSQL faults;
//! in calm operation within milliseconds" — and what a replica does with a session it has
//! not cached while PostgreSQL is down (503 at once).
//!
//! Every test caches the session on every replica before revoking it (so a replica that
//! refuses it has dropped it, not merely never seen it), then measures from the moment the
//! revoking request was answered.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common::{cluster, stores};

use std::time::{Duration, Instant};

use cluster::*;
use serde_json::json;
use stores::{Cut, TestRedis};

/// What the rule allows.
const RULE: Duration = Duration::from_secs(1);

/// `/me` with `b`'s cookies on replica `i`: the status.
async fn me(c: &Cluster, i: usize, b: &Browser) -> u16 {
    b.get(c, i, "/me").await.0
}

/// Signs `user` in on replica 0 and caches the session on every replica.
async fn signed_in_everywhere(c: &Cluster, user: &str) -> Browser {
    let mut b = Browser::default();
    b.login(c, 0, 0, user, false).await;
    for i in 0..c.nodes.len() {
        assert_eq!(me(c, i, &b).await, 200, "replica {i}");
    }
    b
}

/// Logs `b` out on replica `on`; returns when the answer came (the acknowledgement) and
/// how long it took.
async fn logout(c: &Cluster, on: usize, b: &Browser) -> (Instant, Duration) {
    let mut b = b.clone();
    let start = Instant::now();
    let (s, v) = b.post(c, on, "/logout", json!({})).await;
    assert_eq!(s, 200, "{v}");
    (Instant::now(), start.elapsed())
}

/// When replicas `on` (two of them, asked at the same time, every 10 ms) refused `stale`,
/// counted from `acked` to the start of the request they refused; a 5xx other than 503 or
/// an acceptance later than `limit` fails the test. The refusals must then hold.
async fn refused_after(
    c: &Cluster,
    on: [usize; 2],
    stale: &Browser,
    acked: Instant,
    limit: Duration,
) -> [Duration; 2] {
    let (a, b) = tokio::join!(
        first_refusal(c, on[0], stale, acked, limit),
        first_refusal(c, on[1], stale, acked, limit)
    );
    for _ in 0..5 {
        for i in on {
            assert_ne!(me(c, i, stale).await, 200, "replica {i} accepts it again");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    [a.1, b.1]
}

/// Whether the first look after `acked` already refused, and when the request that was
/// refused started.
async fn first_refusal(
    c: &Cluster,
    i: usize,
    stale: &Browser,
    acked: Instant,
    limit: Duration,
) -> (bool, Duration) {
    let mut first = true;
    loop {
        let asked = acked.elapsed();
        let s = me(c, i, stale).await;
        assert!(s < 500 || s == 503, "replica {i}: {s}");
        if s != 200 {
            return (first, asked);
        }
        first = false;
        assert!(
            acked.elapsed() <= limit,
            "replica {i} still accepts a session revoked {:?} ago\n{}",
            acked.elapsed(),
            c.log(i)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn forwarder(redis: &TestRedis) -> Cut {
    Cut::start(format!("127.0.0.1:{}", redis.port).parse().unwrap())
}

fn via(cut: &Cut) -> String {
    format!("redis://127.0.0.1:{}/0", cut.port)
}

/// Asks `/me` on replica `i` with `b`'s cookies over one kept-alive connection, as fast as
/// it answers, until `stop`; returns when each request started and what it got.
async fn hammer(
    c: &Cluster,
    i: usize,
    b: &Browser,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<(Instant, u16)> {
    let client = http();
    let url = c.url(i, "/_nidan/api/me");
    let mut seen = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let asked = Instant::now();
        let r = client
            .get(&url)
            .header("cookie", b.cookies())
            .send()
            .await
            .unwrap();
        seen.push((asked, r.status().as_u16()));
    }
    seen
}

/// Calm: the other replicas are asked continuously while the logout happens; no request
/// that started after the acknowledgement may be accepted. (Before the acknowledgement
/// waited for Redis, the message could still be on its way: a request made a fraction of
/// a millisecond after the answer was served from the cache.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calm_a_logout_is_refused_everywhere_within_milliseconds_of_its_ack() {
    let c = Cluster::start(3, "60s");
    let mut late = Vec::new();
    let mut asked = 0;
    for _ in 0..8 {
        let b = signed_in_everywhere(&c, "taro").await;
        let stop = std::sync::atomic::AtomicBool::new(false);
        let revoke = async {
            // Both loops are running and their connections open.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let acked = logout(&c, 0, &b).await.0;
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            acked
        };
        let (acked, one, two) =
            tokio::join!(revoke, hammer(&c, 1, &b, &stop), hammer(&c, 2, &b, &stop));
        for (at, status) in one.into_iter().chain(two) {
            assert!(status == 200 || status == 401, "{status}");
            if at >= acked {
                asked += 1;
                if status == 200 {
                    late.push(at - acked);
                }
            }
        }
    }
    eprintln!("calm: {asked} requests after the acks, accepted: {late:?}");
    assert!(asked > 50, "{asked}");
    // The ack means Redis took the broadcast; the other replicas apply it as they read it.
    // On a quiet machine nothing is accepted after the ack at all; on one busy with other
    // work the subscribers' reads lag by tens of milliseconds. Either way it is milliseconds,
    // far inside the 1 s rule (and inside the 250 ms log poll that backs the broadcast up).
    assert!(
        late.iter().all(|d| *d < Duration::from_millis(250)),
        "accepted too long after the ack: {late:?}"
    );
}

/// Redis reset for every replica, then a logout: nobody can publish or hear it; the
/// replicas read it from the revocation log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_for_every_replica_a_logout_is_refused_everywhere_within_a_second() {
    redis_gone_for_everyone(false).await;
}

/// The same through a Redis that stops answering without resetting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_blackholed_for_every_replica_a_logout_is_refused_everywhere_within_a_second() {
    redis_gone_for_everyone(true).await;
}

async fn redis_gone_for_everyone(blackhole: bool) {
    let redis = TestRedis::start();
    let cut = forwarder(&redis);
    let c = Cluster::start_on(redis, &vec![via(&cut); 3], "60s", "", None);
    let kept = signed_in_everywhere(&c, "taro").await;
    let b = signed_in_everywhere(&c, "taro").await;
    // No login while Redis is gone: the second one to revoke is made now.
    let later = signed_in_everywhere(&c, "taro").await;
    if blackhole {
        cut.blackhole();
    } else {
        cut.cut();
    }
    // At once: the replicas have not noticed yet.
    let (acked, took) = logout(&c, 0, &b).await;
    let delays = refused_after(&c, [1, 2], &b, acked, RULE).await;
    eprintln!("Redis gone (blackhole: {blackhole}): ack took {took:?}, refused after {delays:?}");
    // The revoker waited for the replicas to have read the log, not much longer.
    assert!(took < Duration::from_millis(2_500), "{took:?}");
    // A session nobody revoked is served all along (from the caches or PostgreSQL).
    for i in 0..3 {
        assert_eq!(me(&c, i, &kept).await, 200, "replica {i}");
    }
    // A second revocation once the outage is known.
    let (acked, _) = logout(&c, 1, &later).await;
    let again = refused_after(&c, [0, 2], &later, acked, RULE).await;
    eprintln!("Redis gone (blackhole: {blackhole}), known: refused after {again:?}");
    cut.restore();
    for i in 0..3 {
        c.wait_ready(i);
        assert_eq!(me(&c, i, &kept).await, 200, "replica {i} after recovery");
    }
}

/// Redis reset for one replica only: it neither hears the others' logouts nor can publish
/// its own; both ways, the rule holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_for_one_replica_revocations_still_reach_it_and_leave_it_within_a_second() {
    let redis = TestRedis::start();
    let cut = forwarder(&redis);
    let urls = [redis.url(), redis.url(), via(&cut)];
    let c = Cluster::start_on(redis, &urls, "60s", "", None);
    let first = signed_in_everywhere(&c, "taro").await;
    let second = signed_in_everywhere(&c, "taro").await;
    cut.cut();
    // A logout elsewhere reaches the cut-off replica (and the other).
    let (acked, _) = logout(&c, 0, &first).await;
    let reached = refused_after(&c, [1, 2], &first, acked, RULE).await;
    // A logout on the cut-off replica reaches the others.
    let (acked, took) = logout(&c, 2, &second).await;
    let left = refused_after(&c, [0, 1], &second, acked, RULE).await;
    eprintln!("Redis cut for replica 2: in {reached:?}; out (ack {took:?}) {left:?}");
    cut.restore();
    c.wait_ready(2);
}

/// PostgreSQL blackholed for one replica while Redis works: it keeps serving what it has
/// cached, drops what is revoked elsewhere within the rule, and answers a session it has
/// not cached with a quick 503 (not a wait for the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_blackholed_for_one_replica_cached_sessions_serve_revocations_hold_misses_503_fast()
 {
    let redis = TestRedis::start();
    let pg = Cut::start(pg_addr());
    let urls = vec![redis.url(); 3];
    let c = Cluster::start_links(redis, &urls, &[None, Some(&pg), None], "60s", "");
    let kept = signed_in_everywhere(&c, "taro").await;
    let revoked = signed_in_everywhere(&c, "taro").await;
    // Signed in on replica 0 and never seen by replica 1.
    let mut unseen = Browser::default();
    unseen.login(&c, 0, 0, "noah", false).await;
    pg.blackhole();
    let down = Instant::now();
    let deadline = down + Duration::from_secs(5);
    while readyz_blocking(c.nodes[1].admin).1["postgres"] != "down" {
        assert!(Instant::now() < deadline, "replica 1 never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "PostgreSQL blackholed for replica 1: noticed after {:?}",
        down.elapsed()
    );
    assert_eq!(me(&c, 1, &kept).await, 200, "cached session on replica 1");
    let (acked, _) = logout(&c, 0, &revoked).await;
    let took = refused_after(&c, [1, 2], &revoked, acked, RULE).await;
    let start = Instant::now();
    let s = me(&c, 1, &unseen).await;
    let answered = start.elapsed();
    eprintln!("revoked elsewhere: refused after {took:?}; uncached: {s} in {answered:?}");
    assert_eq!(s, 503);
    assert!(answered < Duration::from_millis(1_500), "{answered:?}");
    let r = http()
        .get(c.url(1, "/_nidan/api/me"))
        .header("cookie", unseen.cookies())
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("retry-after").is_some());
    // Still served from the cache, and the other replicas are untouched.
    assert_eq!(me(&c, 1, &kept).await, 200);
    assert_eq!(me(&c, 2, &unseen).await, 200);
    pg.restore();
    c.wait_ready(1);
    assert_eq!(me(&c, 1, &unseen).await, 200, "after recovery");
    assert_ne!(me(&c, 1, &revoked).await, 200);
}
