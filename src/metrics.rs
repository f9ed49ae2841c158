//! Prometheus metrics: requests by route and status class, latency, logins, caches.

use std::sync::LazyLock;
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

/// Counts one finished request.
pub fn request(route: &str, status: u16, elapsed: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    };
    if let Some(c) = REQUESTS.as_ref() {
        c.with_label_values(&[route, class]).inc();
    }
    if let Some(h) = LATENCY.as_ref() {
        h.observe(elapsed.as_secs_f64());
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
