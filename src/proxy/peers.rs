//! A route's upstream peers, built once per configuration (with the route's timeouts), and
//! whether each is up: active checks (`health_check`, a task per peer that ends with the
//! route table) and passive ones (a peer that refused a connection is left out for
//! `fail_timeout`). Requests go round robin to the peers that are up; when none is, the
//! route answers 502 and the gateway keeps serving the others.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
};

use crate::config::{HealthCheck, Upstream, UpstreamSettings};

/// One upstream address of one route, with its health.
pub struct Peer {
    /// `host:port` as configured (`https://` in front for TLS), for logs, metrics, status.
    pub name: String,
    /// Built once, with the route's timeouts; cloned per request.
    http: HttpPeer,
    /// The last active checks say it is up (true until they say otherwise).
    checked_up: AtomicBool,
    /// Left out until this many milliseconds after [`EPOCH`] (0: not left out).
    out_until: AtomicU64,
    /// The route's `fail_timeout`.
    fail_timeout: Duration,
    /// `Host` of the health checks: the upstream's name, with the port unless it is the
    /// scheme's.
    host: String,
    metrics: PeerMetrics,
}

/// Where the passive check's clock starts (a monotonic clock, shared by every table).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Peer {
    fn new(route: &str, up: &Upstream, s: &UpstreamSettings) -> Self {
        let mut http = HttpPeer::new(up.addr, up.tls, up.sni.clone());
        http.options.connection_timeout = Some(s.connect_timeout);
        http.options.read_timeout = Some(s.read_timeout);
        http.options.write_timeout = Some(s.write_timeout);
        http.options.idle_timeout = Some(s.idle_timeout);
        let port = up.addr.port();
        let bare = if up.sni.contains(':') {
            format!("[{}]", up.sni)
        } else {
            up.sni.clone()
        };
        let host = if port == if up.tls { 443 } else { 80 } {
            bare
        } else {
            format!("{bare}:{port}")
        };
        let name = if up.tls {
            format!("https://{}:{}", up.sni, up.addr.port())
        } else {
            up.addr.to_string()
        };
        Self {
            metrics: PeerMetrics::new(route, &name),
            name,
            http,
            checked_up: AtomicBool::new(true),
            out_until: AtomicU64::new(0),
            fail_timeout: s.fail_timeout,
            host,
        }
    }

    /// Is the peer taking requests (the active checks say up, and no refused connection
    /// within `fail_timeout`)?
    pub fn up(&self) -> bool {
        self.checked_up.load(Ordering::Relaxed)
            && self.out_until.load(Ordering::Relaxed) <= now_ms()
    }

    /// Has the peer not refused a connection within `fail_timeout` (whatever the active
    /// checks say)?
    fn reachable(&self) -> bool {
        self.out_until.load(Ordering::Relaxed) <= now_ms()
    }

    /// The peer for one request; `tunnel`: an upgraded connection (WebSocket), which may
    /// stay quiet longer than the read timeout.
    pub fn http_peer(&self, tunnel: bool) -> Box<HttpPeer> {
        let mut p = Box::new(self.http.clone());
        if tunnel {
            p.options.read_timeout = None;
            p.options.write_timeout = None;
        }
        p
    }

    /// The peer refused a connection (or did not take one in time): left out for
    /// `fail_timeout` (the passive check).
    pub fn connect_failed(&self) {
        let now = now_ms();
        let out = u64::try_from(self.fail_timeout.as_millis()).unwrap_or(u64::MAX);
        if self
            .out_until
            .swap(now.saturating_add(out), Ordering::Relaxed)
            <= now
        {
            tracing::warn!(upstream = %self.name, for_ms = out, "upstream refused a connection: left out");
        }
        if let Some(m) = &self.metrics.0 {
            m.errors.inc();
        }
    }

    /// One request that went to this peer: `failed` when it ended in an upstream error.
    pub fn finished(&self, elapsed: Duration, failed: bool) {
        if let Some(m) = &self.metrics.0 {
            m.requests.inc();
            m.latency.observe(elapsed.as_secs_f64());
            if failed {
                m.errors.inc();
            }
        }
    }

    /// An active check's result; `thresholds`: (healthy, unhealthy) in a row.
    fn observe(&self, ok: bool, streak: &mut (u32, u32), thresholds: (u32, u32)) {
        let (good, bad) = streak;
        if ok {
            *good = good.saturating_add(1);
            *bad = 0;
            // A check that passes also ends a passive exclusion: the peer answers again.
            self.out_until.store(0, Ordering::Relaxed);
        } else {
            *bad = bad.saturating_add(1);
            *good = 0;
        }
        let was = self.checked_up.load(Ordering::Relaxed);
        if !was && *good >= thresholds.0 {
            self.checked_up.store(true, Ordering::Relaxed);
            tracing::info!(upstream = %self.name, "upstream is healthy again");
        } else if was && *bad >= thresholds.1 {
            self.checked_up.store(false, Ordering::Relaxed);
            tracing::warn!(upstream = %self.name, "upstream failed its health checks: taken out");
        }
    }

    /// Takes over what `old` (the same upstream of the same route in the configuration
    /// before a reload) knew: a peer found down stays down until checked again; `checked`:
    /// the route still has active checks (without them nothing would bring it back, so
    /// only the passive exclusion, which ends by the clock, is kept).
    fn keep_health_of(&self, old: &Peer, checked: bool) {
        if checked {
            self.checked_up
                .store(old.checked_up.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.out_until
            .store(old.out_until.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Publishes whether the peer is up (read when metrics are scraped).
    pub fn export(&self) {
        if let Some(m) = &self.metrics.0 {
            m.up.set(i64::from(self.up()));
        }
    }
}

/// A route's peers, chosen round robin among those that are up.
pub struct Pool {
    peers: Vec<Arc<Peer>>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(route: &str, upstreams: &[Upstream], s: &UpstreamSettings) -> Self {
        Self {
            peers: upstreams
                .iter()
                .map(|u| Arc::new(Peer::new(route, u, s)))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next peer that is up, round robin. When the active checks have every peer down,
    /// the next one that has not refused a connection lately (a check can be wrong — a
    /// slow answer on a busy machine — and a route is not given up on its word alone; a
    /// peer that is really gone refuses, and is then left out). `None` when every peer
    /// refused a connection within `fail_timeout` (or there are none): the route answers
    /// 502 without trying.
    pub fn pick(&self) -> Option<&Arc<Peer>> {
        let n = self.peers.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let turn = || (0..n).filter_map(|k| self.peers.get(start.wrapping_add(k) % n));
        turn()
            .find(|p| p.up())
            .or_else(|| turn().find(|p| p.reachable()))
    }

    /// Is a peer other than `tried` worth a retry (it has not refused a connection lately)?
    pub fn another_up(&self, tried: &Peer) -> bool {
        self.peers
            .iter()
            .any(|p| !std::ptr::eq(p.as_ref(), tried) && p.reachable())
    }

    pub fn peers(&self) -> &[Arc<Peer>] {
        &self.peers
    }

    /// Takes over the health of the peers `old` (the same route before a reload) has too;
    /// `checked`: the route still has active checks (else only passive exclusions are kept).
    pub fn keep_health_of(&self, old: &Pool, checked: bool) {
        for peer in &self.peers {
            if let Some(before) = old.peers.iter().find(|o| o.name == peer.name) {
                peer.keep_health_of(before, checked);
            }
        }
    }

    /// Starts the active checks of every peer (`check` set), on the current tokio runtime;
    /// each ends when its peer is dropped (the route table was replaced).
    pub fn start_checks(&self, check: &HealthCheck) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "no runtime to run the upstream health checks on: only the passive check works"
            );
            return;
        };
        for peer in &self.peers {
            rt.spawn(run_checks(Arc::downgrade(peer), check.clone()));
        }
    }
}

/// Checks `peer` every `interval` until it is dropped.
async fn run_checks(peer: Weak<Peer>, check: HealthCheck) {
    let connector: pingora::connectors::http::Connector =
        pingora::connectors::http::Connector::new(None);
    let mut streak = (0, 0);
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(p) = peer.upgrade() else {
            return;
        };
        let ok = tokio::time::timeout(check.timeout, probe(&connector, &p, &check.path))
            .await
            .unwrap_or(false);
        p.observe(ok, &mut streak, (check.healthy, check.unhealthy));
    }
}

/// One check: a fresh connection, `GET path`, a status from 200 to 399.
async fn probe(connector: &pingora::connectors::http::Connector, peer: &Peer, path: &str) -> bool {
    let mut target = peer.http.clone();
    target.options.read_timeout = None;
    let Ok((mut session, _)) = connector.get_http_session(&target).await else {
        return false;
    };
    let Ok(mut req) = RequestHeader::build("GET", path.as_bytes(), Some(3)) else {
        return false;
    };
    if req
        .insert_header(http::header::HOST, peer.host.as_str())
        .is_err()
        || req
            .insert_header(http::header::USER_AGENT, "nidan-health-check")
            .is_err()
        || req
            .insert_header(http::header::CONNECTION, "close")
            .is_err()
    {
        return false;
    }
    if session.write_request_header(Box::new(req)).await.is_err()
        || session.finish_request_body().await.is_err()
        || session.read_response_header().await.is_err()
    {
        return false;
    }
    let ok = session
        .response_header()
        .is_some_and(|r| (200..400).contains(&r.status.as_u16()));
    session.shutdown().await;
    ok
}

/// The per-upstream metrics, each looked up by its labels once (`None`: the families could
/// not be registered; counted nowhere, never a panic).
struct PeerMetrics(Option<Children>);

struct Children {
    up: IntGauge,
    requests: IntCounter,
    errors: IntCounter,
    latency: Histogram,
}

struct Families {
    up: IntGaugeVec,
    requests: IntCounterVec,
    errors: IntCounterVec,
    latency: HistogramVec,
}

static FAMILIES: LazyLock<Option<Families>> = LazyLock::new(|| {
    let labels = &["route", "upstream"];
    Some(Families {
        up: register_int_gauge_vec!(
            Opts::new("nidan_upstream_up", "1 while the upstream takes requests (health checks, refused connections), else 0"),
            labels
        )
        .ok()?,
        requests: register_int_counter_vec!(
            Opts::new("nidan_upstream_requests_total", "Requests proxied to the upstream"),
            labels
        )
        .ok()?,
        errors: register_int_counter_vec!(
            Opts::new(
                "nidan_upstream_errors_total",
                "Requests to the upstream that failed: refused or timed-out connections, broken or late responses"
            ),
            labels
        )
        .ok()?,
        latency: register_histogram_vec!(
            HistogramOpts::new(
                "nidan_upstream_duration_seconds",
                "Time from choosing the upstream to the end of the request"
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
            labels
        )
        .ok()?,
    })
});

impl PeerMetrics {
    fn new(route: &str, upstream: &str) -> Self {
        let values = [route, upstream];
        Self(FAMILIES.as_ref().map(|f| Children {
            up: f.up.with_label_values(&values),
            requests: f.requests.with_label_values(&values),
            errors: f.errors.with_label_values(&values),
            latency: f.latency.with_label_values(&values),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pool(n: u16, fail_timeout: Duration) -> Pool {
        let ups: Vec<Upstream> = (1..=n)
            .map(|p| Upstream {
                addr: format!("127.0.0.1:{p}").parse().unwrap(),
                tls: false,
                sni: "127.0.0.1".into(),
            })
            .collect();
        let s = UpstreamSettings {
            fail_timeout,
            ..UpstreamSettings::default()
        };
        Pool::new("unit", &ups, &s)
    }

    #[test]
    fn round_robin_skips_the_peers_that_are_out() {
        let p = pool(3, Duration::from_secs(60));
        let names =
            |k: usize| -> Vec<String> { (0..k).map(|_| p.pick().unwrap().name.clone()).collect() };
        assert_eq!(
            names(3),
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"].map(String::from)
        );
        let second = p.peers()[1].clone();
        second.connect_failed();
        assert!(!second.up());
        assert!(names(6).iter().all(|n| n != "127.0.0.1:2"));
        assert!(p.another_up(&second));
        // Active checks: `unhealthy` failures take a peer out, `healthy` successes back,
        // and a good check ends a passive exclusion.
        let first = p.peers()[0].clone();
        let mut streak = (0, 0);
        first.observe(false, &mut streak, (2, 2));
        assert!(first.up());
        first.observe(false, &mut streak, (2, 2));
        assert!(!first.up());
        assert_eq!(names(4), vec!["127.0.0.1:3".to_owned(); 4]);
        p.peers()[2].connect_failed();
        // Every peer down: the one the checks took out is still tried (it has refused
        // nothing), the ones that refused a connection are not.
        assert_eq!(names(3), vec!["127.0.0.1:1".to_owned(); 3]);
        assert!(p.another_up(&second));
        first.connect_failed();
        assert!(p.pick().is_none());
        assert!(!p.another_up(&second));
        first.out_until.store(0, Ordering::Relaxed);
        first.observe(true, &mut streak, (2, 2));
        assert!(!first.up());
        first.observe(true, &mut streak, (2, 2));
        assert!(first.up());
        let mut other = (0, 0);
        second.observe(true, &mut other, (1, 1));
        assert!(second.up(), "a good check ends the exclusion");
    }

    #[test]
    fn a_reload_keeps_what_was_known() {
        let old = pool(2, Duration::from_secs(60));
        old.peers()[1].connect_failed();
        let mut streak = (0, 0);
        old.peers()[0].observe(false, &mut streak, (1, 1));
        let new = pool(3, Duration::from_secs(60));
        new.keep_health_of(&old, true);
        let up: Vec<bool> = new.peers().iter().map(|p| p.up()).collect();
        assert_eq!(up, [false, false, true]);
        // Without active checks, nothing would bring the checked-down peer back.
        let unchecked = pool(3, Duration::from_secs(60));
        unchecked.keep_health_of(&old, false);
        let up: Vec<bool> = unchecked.peers().iter().map(|p| p.up()).collect();
        assert_eq!(up, [true, false, true]);
    }

    #[test]
    fn an_exclusion_ends_by_the_clock() {
        let p = pool(1, Duration::from_millis(30));
        p.peers()[0].connect_failed();
        assert!(p.pick().is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert!(p.pick().is_some());
    }

    #[test]
    fn tunnels_have_no_read_timeout() {
        let p = pool(1, Duration::from_secs(1));
        let peer = &p.peers()[0];
        assert_eq!(
            peer.http_peer(false).options.read_timeout,
            Some(Duration::from_secs(60))
        );
        assert_eq!(peer.http_peer(true).options.read_timeout, None);
        assert_eq!(peer.host, "127.0.0.1:1");
    }
}
