//! The revocation bus: Redis pub/sub on `{key_prefix}:revoke`, and this replica's
//! heartbeat on a channel of its own.
//!
//! Publishing a revocation ([`Bus::publish_logged`]) waits for Redis to take the message
//! (bounded by [`REDIS_TIMEOUT`]); when it does not, the revoker waits until
//! [`TRUST`](super::TRUST) has passed since its log write instead, and the message is
//! retried in the background. Other events ([`Bus::publish`]) go to a bounded queue that a
//! task sends in order, retrying through an outage; should the queue overflow, what was lost
//! is replaced by one `Flush` (every replica drops every cached entry), which is always safe.
//!
//! Heartbeat: every [`BEAT`](super::BEAT) the replica publishes the time on its own channel;
//! when it comes back through its subscription, everything Redis took before it has
//! arrived and been applied (one connection delivers in the order Redis processed), so the
//! caches may decide for [`TRUST`](super::TRUST) after the time it carries.
//!
//! Listening: a task subscribes, and every time it (re)subscribes it flushes the local
//! caches first, because pub/sub does not keep what was published while this replica was
//! not listening. It pings through the subscription every second; a silent connection is
//! given up after a missed ping and reconnected with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use super::health::{Health, Status};
use super::{BEAT, Event, TRUST};

/// Connect and answer timeouts for every Redis call of this module: an outage is noticed in
/// about a second, never waited out. The default of `storage.redis.timeout`, which sets
/// them at start ([`set_timeout`]; the short-lived state uses the same value).
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// `storage.redis.timeout` in milliseconds, once set (0: [`REDIS_TIMEOUT`]).
static CONFIGURED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets this module's Redis timeout (at start, from `storage.redis.timeout`).
pub fn set_timeout(timeout: Duration) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    CONFIGURED_MS.store(ms, Ordering::Relaxed);
}

/// This module's Redis timeout: `storage.redis.timeout`, else [`REDIS_TIMEOUT`].
pub fn timeout() -> Duration {
    match CONFIGURED_MS.load(Ordering::Relaxed) {
        0 => REDIS_TIMEOUT,
        ms => Duration::from_millis(ms),
    }
}
/// How long the listener waits before reconnecting, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Events waiting to be published, at most.
const QUEUE: usize = 10_000;

/// What receives the events: the caches of this replica.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    async fn apply(&self, event: Event);
}

#[derive(Debug, thiserror::Error)]
#[error("storage.redis: the URL is not a valid Redis URL")]
pub struct BadUrl;

/// Opens a Redis client without letting the URL (which may hold a password) reach an
/// error message.
pub fn client(url: &str) -> Result<redis::Client, BadUrl> {
    redis::Client::open(url).map_err(|_| BadUrl)
}

/// A multiplexed connection with this module's timeouts.
pub async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout()))
        .set_response_timeout(Some(timeout()));
    match tokio::time::timeout(
        timeout() * 2,
        client.get_multiplexed_async_connection_with_config(&cfg),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(timed_out()),
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    channel: String,
    /// This replica's heartbeat channel (`{key_prefix}:beat:{random}`).
    beat: String,
    /// The connection for revocations and heartbeats (a multiplexed connection: cloned per
    /// call, replaced after an error).
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    tx: mpsc::Sender<Event>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Event>>>,
    /// Set when an event could not be queued: a `Flush` goes out instead.
    overflow: AtomicBool,
    health: Arc<Health>,
}

impl Bus {
    pub fn new(client: redis::Client, key_prefix: &str, health: Arc<Health>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            inner: Arc::new(Inner {
                client,
                channel: format!("{key_prefix}:revoke"),
                beat: format!("{key_prefix}:beat:{}", crate::secret::random_token(12)),
                conn: tokio::sync::Mutex::new(None),
                tx,
                rx: std::sync::Mutex::new(Some(rx)),
                overflow: AtomicBool::new(false),
                health,
            }),
        }
    }

    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Publishes a revocation already in the log (see [`super::announce`]) and returns when
    /// every replica has either received it or stopped trusting its cache: as soon as Redis
    /// took the message; otherwise (Redis down, or no answer within `storage.redis.timeout`) once
    /// [`TRUST`] has passed since `logged` — by then a replica whose cache still decides has
    /// read the log after the revocation was in it. The message is then retried in the
    /// background (it may yet reach a replica that cannot read the log).
    pub async fn publish_logged(&self, event: Event, logged: Instant) {
        let payload = event.encode();
        // Known down (the subscription is lost): not worth a timeout.
        let taken = self.inner.health.redis() == Status::Ok
            && matches!(
                tokio::time::timeout(timeout(), self.inner.send(&self.inner.channel, &payload))
                    .await,
                Ok(Ok(()))
            );
        if !taken {
            tracing::warn!(
                "revocation not taken by Redis: answering once every replica has read the log"
            );
            self.publish(event);
            tokio::time::sleep_until((logged + TRUST).into()).await;
        }
    }

    /// Queues an event for every replica, without waiting (not for revocations: see
    /// [`Bus::publish_logged`]). Call after the durable write, and after the local caches
    /// dropped the entry.
    pub fn publish(&self, event: Event) {
        if self.inner.tx.try_send(event).is_err() {
            self.inner.overflow.store(true, Ordering::SeqCst);
        }
    }

    /// Starts the publishing and listening tasks (once; later calls do nothing).
    pub fn start(&self, sink: Arc<dyn Sink>) {
        let rx = match self.inner.rx.lock() {
            Ok(mut g) => g.take(),
            Err(_) => None,
        };
        let Some(rx) = rx else { return };
        tokio::spawn(publisher(self.inner.clone(), rx));
        tokio::spawn(listener(self.inner.clone(), sink));
        tokio::spawn(heartbeat(self.inner.clone()));
    }
}

impl Inner {
    /// One `PUBLISH` on the shared connection (connecting first if needed).
    async fn send(&self, channel: &str, payload: &[u8]) -> redis::RedisResult<()> {
        let mut conn = {
            let mut guard = self.conn.lock().await;
            match guard.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = connect(&self.client).await?;
                    *guard = Some(c.clone());
                    c
                }
            }
        };
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await;
        if sent.is_err() {
            *self.conn.lock().await = None;
        }
        sent.map(|_| ())
    }
}

/// Publishes the time on this replica's own channel every [`BEAT`]; the listener notes it
/// when it comes back. The stamp is taken before the message is sent, so Redis processed it
/// later than the stamp says.
async fn heartbeat(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let stamp = inner.health.stamp().to_string();
        let _ = tokio::time::timeout(timeout(), inner.send(&inner.beat, stamp.as_bytes())).await;
    }
}

async fn publisher(inner: Arc<Inner>, mut rx: mpsc::Receiver<Event>) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(50);
    while let Some(mut event) = rx.recv().await {
        if inner.overflow.swap(false, Ordering::SeqCst) {
            // Something was dropped: everyone flushes, which covers it.
            event = Event::Flush;
            while rx.try_recv().is_ok() {}
        }
        let payload = event.encode();
        loop {
            if conn.is_none() {
                conn = connect(&inner.client).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(&inner.channel)
                    .arg(&payload)
                    .query_async(c)
                    .await;
                if sent.is_ok() {
                    backoff = Duration::from_millis(50);
                    break;
                }
                conn = None;
            }
            tracing::warn!("revocation not published yet (Redis unreachable); retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

async fn listener(inner: Arc<Inner>, sink: Arc<dyn Sink>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match subscribe(&inner).await {
            Ok(sub) => {
                backoff = Duration::from_millis(50);
                // Whatever was published while we were not listening is lost: drop it all.
                sink.apply(Event::Flush).await;
                inner.health.set_redis(true);
                tracing::info!("revocation bus: listening");
                listen(sub, &*sink, &inner).await;
                inner.health.set_redis(false);
                tracing::warn!("revocation bus: connection to Redis lost, reconnecting");
            }
            Err(_) => inner.health.set_redis(false),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The subscription: a RESP3 connection of its own whose pushes arrive on `rx` (pub/sub
/// over RESP3 leaves the connection usable for PING).
struct Subscription {
    conn: MultiplexedConnection,
    rx: mpsc::UnboundedReceiver<redis::PushInfo>,
}

async fn subscribe(inner: &Inner) -> redis::RedisResult<Subscription> {
    let info = inner.client.get_connection_info().clone();
    let redis_info = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(redis_info))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout()))
        .set_response_timeout(Some(timeout()))
        .set_push_sender(tx);
    let fut = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        conn.subscribe(&[&inner.channel, &inner.beat]).await?;
        Ok(Subscription { conn, rx })
    };
    tokio::time::timeout(timeout() * 2, fut)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

/// Applies messages until the connection ends or stops answering pings; notes the
/// heartbeats once everything before them is applied.
async fn listen(mut sub: Subscription, sink: &dyn Sink, inner: &Inner) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = sub.rx.recv() => {
                let Some(push) = push else { return };
                match push.kind {
                    redis::PushKind::Message => match (push.data.first(), push.data.get(1)) {
                        (
                            Some(redis::Value::BulkString(channel)),
                            Some(redis::Value::BulkString(bytes)),
                        ) if *channel == inner.beat.as_bytes() => {
                            if let Some(sent) =
                                std::str::from_utf8(bytes).ok().and_then(|t| t.parse().ok())
                            {
                                inner.health.heard(sent);
                            }
                        }
                        (_, Some(redis::Value::BulkString(bytes))) => {
                            sink.apply(Event::decode(bytes)).await;
                        }
                        _ => sink.apply(Event::Flush).await,
                    },
                    redis::PushKind::Disconnection => return,
                    _ => {}
                }
            }
            _ = tick.tick() => {
                let pong: redis::RedisResult<redis::Value> =
                    redis::cmd("PING").query_async(&mut sub.conn).await;
                if pong.is_err() {
                    return;
                }
            }
        }
    }
}
