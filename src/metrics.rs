//! Prometheus metrics: requests by route and status class, latency, logins, caches.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, register_histogram,
    register_int_counter, register_int_counter_vec,
};

static REQUESTS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new("nidan_requests_total", "Requests by route and status class"),
        &["route", "status"]
    )
    .ok()
});

static LATENCY: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    register_histogram!(
        HistogramOpts::new(
            "nidan_request_duration_seconds",
            "Time from request to response, gateway answers and proxied alike"
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
        ])
    )
    .ok()
});

static PASSWORD_CHECKS: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    register_int_counter!(
        "nidan_password_checks_total",
        "argon2id password verifications run (the login load; a cached Basic credential runs none)"
    )
    .ok()
});

static ACCESS_LOG_DROPPED: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    register_int_counter!(
        "nidan_access_log_dropped_total",
        "Access log lines not written: the queue to the log writer was full, or writing failed"
    )
    .ok()
});

static CONNECTIONS_REFUSED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "nidan_connections_refused_total",
            "Client connections ended by the connection guard, by reason (too_many, head_size, request_line, head_timeout, session_ended)"
        ),
        &["reason"]
    )
    .ok()
});

static CONFIG_INFO: LazyLock<Option<prometheus::IntGaugeVec>> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        Opts::new(
            "nidan_config_info",
            "The configuration in force: 1 for the SHA-256 of the file's bytes last loaded"
        ),
        &["hash"]
    )
    .ok()
});

static CONFIG_LOADED: LazyLock<Option<prometheus::IntGauge>> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "nidan_config_loaded_timestamp_seconds",
        "When the configuration in force was loaded (start or last successful reload), Unix time"
    )
    .ok()
});

static CONFIG_RELOADS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "nidan_config_reloads_total",
            "Configuration reloads by result (ok: applied; error: refused, the running configuration stays)"
        ),
        &["result"]
    )
    .ok()
});

/// The configuration with this hash is in force since `loaded` (Unix time).
pub fn config_loaded(hash: &str, loaded: i64) {
    if let Some(g) = CONFIG_INFO.as_ref() {
        g.reset();
        g.with_label_values(&[hash]).set(1);
    }
    if let Some(g) = CONFIG_LOADED.as_ref() {
        g.set(loaded);
    }
}

/// Counts a reload, applied (`true`) or refused.
pub fn config_reload(ok: bool) {
    if let Some(c) = CONFIG_RELOADS.as_ref() {
        c.with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }
}

/// Counts a connection the guard refused or ended (`proxy::conn`).
pub fn connection_refused(reason: &str) {
    if let Some(c) = CONNECTIONS_REFUSED.as_ref() {
        c.with_label_values(&[reason]).inc();
    }
}

/// Counts access log lines that were dropped (see `proxy::access`).
pub fn access_log_dropped(lines: u64) {
    if let Some(c) = ACCESS_LOG_DROPPED.as_ref() {
        c.inc_by(lines);
    }
}

/// Counts one password verification (an argon2id hash).
pub fn password_checked() {
    if let Some(c) = PASSWORD_CHECKS.as_ref() {
        c.inc();
    }
}

/// The status class label of `status`, and its place among [`CLASSES`].
fn class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// Counts one finished request.
pub fn request(route: &str, status: u16, elapsed: Duration) {
    if let (Some(c), Some(class)) = (REQUESTS.as_ref(), CLASSES.get(class(status))) {
        c.with_label_values(&[route, class]).inc();
    }
    latency(elapsed);
}

fn latency(elapsed: Duration) {
    if let Some(h) = LATENCY.as_ref() {
        h.observe(elapsed.as_secs_f64());
    }
}

/// One route's request counters by status class, each looked up by its labels once, on the
/// route's first request of that class (a lookup hashes the label values: hot path).
#[derive(Debug, Default)]
pub struct RouteRequests {
    route: String,
    counters: [OnceLock<Option<IntCounter>>; 6],
}

impl RouteRequests {
    pub fn new(route: &str) -> Self {
        Self {
            route: route.to_owned(),
            counters: Default::default(),
        }
    }

    /// Counts one finished request on this route, as [`request`] does.
    pub fn count(&self, status: u16, elapsed: Duration) {
        let i = class(status);
        let counter = self.counters.get(i).and_then(|c| {
            c.get_or_init(|| {
                let class = CLASSES.get(i)?;
                Some(REQUESTS.as_ref()?.with_label_values(&[&self.route, class]))
            })
            .as_ref()
        });
        if let Some(c) = counter {
            c.inc();
        }
        latency(elapsed);
    }
}

/// The text exposition of every registered metric.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if encoder.encode(&prometheus::gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
