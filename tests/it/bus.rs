//! The replica machinery against a real `redis-server` of the test's own, without
//! PostgreSQL: two buses in one process stand for two replicas (revocations dropped
//! everywhere within a second, a reconnect flushes), the chores lease (one holder, takeover
//! after expiry, release), and the outage grace on the caches.
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
        cache: SafeCache::new(Cache::builder().max_capacity(1_000).build()),
        bus: Bus::new(client, prefix, health.clone()),
        health,
        flushes: Default::default(),
    });
    r.cache.gate(r.health.clone());
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
}

fn healthy(r: &Replica) {
    r.health.set_durable(true);
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
