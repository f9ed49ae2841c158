//! The replica machinery against a real `redis-server` of the test's own, without
//! PostgreSQL: two buses in one process stand for two replicas (revocations dropped
//! everywhere within a second, a reconnect flushes), the heartbeat that lets the caches
//! decide, a revocation answered once Redis took it (or after the trust period), the chores
//! lease (one holder, takeover after expiry, release), and the outage grace on the caches.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common::stores;

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use nidan::cache::SafeCache;
use nidan::replica::{Bus, Event, Health, Lease, Sink, Status};
use stores::TestRedis;

/// A replica's cache as the bus sees it.
struct Replica {
    cache: SafeCache<String, u32>,
    health: Arc<Health>,
    bus: Bus,
    flushes: std::sync::atomic::AtomicU32,
}

struct Receiver(Arc<Replica>);

#[async_trait::async_trait]
impl Sink for Receiver {
    async fn apply(&self, event: Event) {
        match event {
            Event::Devices { ids } => self.0.cache.revoke(&ids).await,
            Event::Flush => {
                self.0
                    .flushes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.0.cache.revoke_all();
            }
            _ => {}
        }
    }
}

fn replica(redis: &TestRedis, prefix: &str, grace: Duration) -> Arc<Replica> {
    let health = Arc::new(Health::new(grace));
    let client = nidan::replica::bus::client(&redis.url()).unwrap();
    let r = Arc::new(Replica {
        cache: SafeCache::new(Cache::builder().max_capacity(1_000).build())
            .gated_by(health.clone()),
        bus: Bus::new(client, prefix, health.clone()),
        health,
        flushes: Default::default(),
    });
    r.bus.start(Arc::new(Receiver(r.clone())));
    r
}

async fn until(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

async fn connected(r: &Replica) {
    until("bus connected", Duration::from_secs(5), async || {
        r.health.redis() == Status::Ok
    })
    .await;
    // The first subscription flushes; let it pass before filling.
    until("first flush", Duration::from_secs(5), async || {
        r.flushes.load(std::sync::atomic::Ordering::SeqCst) >= 1
    })
    .await;
    // Its first heartbeat back: the cache decides from now on.
    until("trusted", Duration::from_secs(2), async || {
        r.health.cache_trusted()
    })
    .await;
}

fn healthy(r: &Replica) {
    r.health.set_durable(true);
}

/// Stands in for a replica whose reads of the revocation log succeed (PostgreSQL answers):
/// its caches may decide whatever Redis does.
fn log_read_all_along(r: &Arc<Replica>) {
    let r = r.clone();
    tokio::spawn(async move {
        loop {
            r.health.polled(Instant::now());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_published_on_one_replica_is_dropped_by_every_replica_within_a_second() {
    let redis = TestRedis::start();
    let grace = Duration::from_secs(60);
    let (a, b) = (replica(&redis, "t1", grace), replica(&redis, "t1", grace));
    // Another prefix is another deployment: it hears nothing.
    let other = replica(&redis, "t1-other", grace);
    for r in [&a, &b, &other] {
        healthy(r);
        connected(r).await;
    }
    for r in [&a, &b, &other] {
        r.cache.insert_fresh("dev1".into(), 1).await;
        r.cache.insert_fresh("dev2".into(), 2).await;
    }
    a.bus.publish(Event::Devices {
        ids: vec!["dev1".into()],
    });
    for r in [&a, &b] {
        let took = until("revocation seen", Duration::from_secs(1), async || {
            r.cache.get(&"dev1".to_owned()).await.is_none()
        })
        .await;
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert_eq!(
            r.cache.get(&"dev2".to_owned()).await,
            Some(2),
            "others kept"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(other.cache.get(&"dev1".to_owned()).await, Some(1));
    assert_eq!(a.bus.channel(), "t1:revoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_reconnects_flushes_and_the_grace_bounds_the_cache_meanwhile() {
    let mut redis = TestRedis::start();
    let grace = Duration::from_millis(1_500);
    let (a, b) = (replica(&redis, "t2", grace), replica(&redis, "t2", grace));
    for r in [&a, &b] {
        healthy(r);
        log_read_all_along(r);
        connected(r).await;
        r.cache.insert_fresh("s".into(), 7).await;
    }
    redis.stop();
    until("outage noticed", Duration::from_secs(3), async || {
        b.health.redis() == Status::Down
    })
    .await;
    // Within the grace the cache still answers…
    assert_eq!(b.cache.get(&"s".to_owned()).await, Some(7));
    assert!(b.health.cache_trusted());
    // …a revocation published now cannot reach the other replica…
    a.bus.publish(Event::Devices {
        ids: vec!["s".into()],
    });
    // …and past the grace the cache no longer decides (callers read the store, or 503).
    until("grace over", Duration::from_secs(4), async || {
        b.cache.get(&"s".to_owned()).await.is_none()
    })
    .await;
    assert!(!b.health.cache_trusted());
    let flushes = b.flushes.load(std::sync::atomic::Ordering::SeqCst);
    redis.restart();
    until("reconnected", Duration::from_secs(5), async || {
        b.health.redis() == Status::Ok
    })
    .await;
    assert!(b.flushes.load(std::sync::atomic::Ordering::SeqCst) > flushes);
    assert!(b.health.cache_trusted());
    // The entry missed its revocation while disconnected: the flush on reconnect dropped it.
    b.cache.run_pending_tasks().await;
    assert_eq!(b.cache.get(&"s".to_owned()).await, None);
    // And the bus works again.
    b.cache.insert_fresh("t".into(), 8).await;
    a.bus.publish(Event::Devices {
        ids: vec!["t".into()],
    });
    until(
        "revocation after recovery",
        Duration::from_secs(2),
        async || b.cache.get(&"t".to_owned()).await.is_none(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_holder_takeover_after_expiry_and_release_on_shutdown() {
    let redis = TestRedis::start();
    let ttl = Duration::from_millis(900);
    let client = || nidan::replica::bus::client(&redis.url()).unwrap();
    let a = Lease::new(client(), "t3", "a", ttl);
    let b = Lease::new(client(), "t3", "b", ttl);
    assert!(a.tick().await);
    assert!(!b.tick().await);
    assert!(a.held() && !b.held());
    // The holder renews: the other never gets it.
    for _ in 0..4 {
        tokio::time::sleep(a.period()).await;
        assert!(a.tick().await);
        assert!(!b.tick().await);
    }
    // The holder stops renewing (hangs or dies): it stops believing it holds the lease
    // before Redis lets it go, and the other takes over after the expiry.
    let stopped = Instant::now();
    until("a gives up", ttl, async || !a.held()).await;
    let took = until("b takes over", Duration::from_secs(3), async || {
        b.tick().await
    })
    .await;
    assert!(stopped.elapsed() >= ttl * 2 / 3, "{took:?}");
    assert!(b.held() && !a.held());
    assert!(!a.tick().await, "a lost it");
    // Release on shutdown: the other takes it at once.
    b.release().await;
    assert!(!b.held());
    assert!(a.tick().await);
    // Two contenders at once: exactly one wins.
    a.release().await;
    let (x, y) = tokio::join!(a.tick(), b.tick());
    assert!(x ^ y, "exactly one holder: {x} {y}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_is_noticed_quickly_and_never_hangs() {
    // A port where nothing listens, and an address that drops packets (TEST-NET-1).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("redis://127.0.0.1:{port}/0"),
        "redis://192.0.2.1:6379/0".to_owned(),
    ] {
        let client = nidan::replica::bus::client(&url).unwrap();
        let lease = Lease::new(client, "t4", "a", Duration::from_secs(3));
        let start = Instant::now();
        assert!(!lease.tick().await);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{url}: {:?}",
            start.elapsed()
        );
    }
    // A URL with a password never reaches an error message.
    let e = nidan::replica::bus::client("redis://:hunter2@[bad")
        .err()
        .unwrap();
    assert!(!e.to_string().contains("hunter2"));
}

/// Without reads of the log, the caches decide only while this replica's heartbeat comes
/// back through Redis: within the trust period of Redis going away they stop, and they
/// decide again once the bus is back (after the flush of the reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_log_the_caches_decide_only_while_the_heartbeat_comes_back() {
    let mut redis = TestRedis::start();
    let r = replica(&redis, "t5", Duration::from_secs(60));
    healthy(&r);
    connected(&r).await;
    until(
        "trusted by the heartbeat",
        Duration::from_secs(2),
        async || r.health.cache_trusted(),
    )
    .await;
    r.cache.insert_fresh("s".into(), 1).await;
    assert_eq!(r.cache.get(&"s".to_owned()).await, Some(1));
    redis.stop();
    let stopped = Instant::now();
    until("untrusted", Duration::from_secs(2), async || {
        !r.health.cache_trusted()
    })
    .await;
    let took = stopped.elapsed();
    assert!(
        took <= nidan::replica::TRUST + Duration::from_millis(200),
        "{took:?}"
    );
    assert_eq!(r.cache.get(&"s".to_owned()).await, None);
    redis.restart();
    until("trusted again", Duration::from_secs(5), async || {
        r.health.cache_trusted()
    })
    .await;
    // What was cached before may have missed a revocation: the reconnect flushed it.
    r.cache.run_pending_tasks().await;
    assert_eq!(r.cache.get(&"s".to_owned()).await, None);
}

/// A revocation is answered as soon as Redis took it (and the other replica has it a
/// moment later); with Redis gone, after the trust period, by which time every replica
/// whose cache still decides has read the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_answered_when_redis_took_it_or_after_the_trust_period() {
    let mut redis = TestRedis::start();
    let grace = Duration::from_secs(60);
    let (a, b) = (replica(&redis, "t6", grace), replica(&redis, "t6", grace));
    for r in [&a, &b] {
        healthy(r);
        connected(r).await;
    }
    b.cache.insert_fresh("d".into(), 1).await;
    let start = Instant::now();
    a.bus
        .publish_logged(
            Event::Devices {
                ids: vec!["d".into()],
            },
            Instant::now(),
        )
        .await;
    let took = start.elapsed();
    assert!(took < Duration::from_millis(200), "{took:?}");
    until("received", Duration::from_millis(100), async || {
        b.cache.get(&"d".to_owned()).await.is_none()
    })
    .await;
    redis.stop();
    for known in [false, true] {
        if known {
            until("outage noticed", Duration::from_secs(3), async || {
                a.health.redis() == Status::Down
            })
            .await;
        }
        let logged = Instant::now();
        a.bus.publish_logged(Event::Basic, logged).await;
        let took = logged.elapsed();
        assert!(
            took >= nidan::replica::TRUST && took < Duration::from_millis(1_500),
            "known down: {known}: {took:?}"
        );
    }
}
