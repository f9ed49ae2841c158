//! The audit trail: every security event, durably in the store and as a JSON log line
//! (target `audit`). Details never hold a secret, only reason codes and masked addresses.
//!
//! The trail is bounded: rows older than `audit.retention` and beyond `audit.max_rows` are
//! purged in the background, and events any anonymous client can cause (unknown IDs,
//! decoys, throttles) are written at most `audit.unauthenticated_per_address` times a
//! minute per network and event and `audit.unauthenticated_total` overall; the rest are
//! counted and written as one `audit_suppressed` row per chore round.
//!
//! A store outage loses nothing it need not: an event the store cannot take waits in memory
//! (with the events after it, so the trail keeps their order) and a task of this replica
//! writes them when the store is back. The wait is bounded (`audit.queue_events`, 10,000,
//! and `audit.queue_bytes`, 8 MiB); past it events are only counted, and one
//! `audit_dropped` row (`{"count": n}`) follows the kept ones. The JSON log line of every
//! event is written at once either way.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::config::AuditSettings;
use crate::store::{AuditRecord, Store};
use crate::window::Window;

/// Every kind of event the audit trail records, by the name its rows and log lines carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    AppEnrolled,
    AppEnrollmentFailed,
    AppEnrollmentOpened,
    AppRemoved,
    ApprovalAnswerRefused,
    ApprovalApproved,
    ApprovalDenied,
    ApprovalFallbackToCode,
    ApprovalNotMe,
    ApprovalRefused,
    ApprovalRequested,
    ApprovalWrongNumber,
    AuditDropped,
    AuditSuppressed,
    BasicAuthSucceeded,
    CodeSendFailed,
    CodeSendLimited,
    CodeSent,
    CredentialsRevoked,
    DeviceRefused,
    DeviceRegistered,
    DeviceRenamed,
    DeviceRevoked,
    DevicesRevoked,
    IdStepLimited,
    LoginFailed,
    LoginSucceeded,
    LoginThrottled,
    Logout,
    PasskeyDeleted,
    PasskeyRefused,
    PasskeyRegistered,
    PasskeyRenamed,
    PasskeyStartLimited,
    PhoneChanged,
    PhoneGone,
    RiskScored,
    SecondStepRequired,
    SecondStepSkipped,
    SecondStepUnavailable,
    SessionsEndedByUser,
    SettingChanged,
    ShortLivedRecordRejected,
    TokenCreated,
    TokenRejected,
    TokenRevoked,
    TokenUsed,
    /// A user created or replaced in the database directory (admin API, import).
    UserWritten,
    /// A user removed from the database directory.
    UserDeleted,
}

impl Event {
    pub const fn as_str(self) -> &'static str {
        match self {
            Event::AppEnrolled => "app_enrolled",
            Event::AppEnrollmentFailed => "app_enrollment_failed",
            Event::AppEnrollmentOpened => "app_enrollment_opened",
            Event::AppRemoved => "app_removed",
            Event::ApprovalAnswerRefused => "approval_answer_refused",
            Event::ApprovalApproved => "approval_approved",
            Event::ApprovalDenied => "approval_denied",
            Event::ApprovalFallbackToCode => "approval_fallback_to_code",
            Event::ApprovalNotMe => "approval_not_me",
            Event::ApprovalRefused => "approval_refused",
            Event::ApprovalRequested => "approval_requested",
            Event::ApprovalWrongNumber => "approval_wrong_number",
            Event::AuditDropped => "audit_dropped",
            Event::AuditSuppressed => "audit_suppressed",
            Event::BasicAuthSucceeded => "basic_auth_succeeded",
            Event::CodeSendFailed => "code_send_failed",
            Event::CodeSendLimited => "code_send_limited",
            Event::CodeSent => "code_sent",
            Event::CredentialsRevoked => "credentials_revoked",
            Event::DeviceRefused => "device_refused",
            Event::DeviceRegistered => "device_registered",
            Event::DeviceRenamed => "device_renamed",
            Event::DeviceRevoked => "device_revoked",
            Event::DevicesRevoked => "devices_revoked",
            Event::IdStepLimited => "id_step_limited",
            Event::LoginFailed => "login_failed",
            Event::LoginSucceeded => "login_succeeded",
            Event::LoginThrottled => "login_throttled",
            Event::Logout => "logout",
            Event::PasskeyDeleted => "passkey_deleted",
            Event::PasskeyRefused => "passkey_refused",
            Event::PasskeyRegistered => "passkey_registered",
            Event::PasskeyRenamed => "passkey_renamed",
            Event::PasskeyStartLimited => "passkey_start_limited",
            Event::PhoneChanged => "phone_changed",
            Event::PhoneGone => "phone_gone",
            Event::RiskScored => "risk_scored",
            Event::SecondStepRequired => "second_step_required",
            Event::SecondStepSkipped => "second_step_skipped",
            Event::SecondStepUnavailable => "second_step_unavailable",
            Event::SessionsEndedByUser => "sessions_ended_by_user",
            Event::SettingChanged => "setting_changed",
            Event::ShortLivedRecordRejected => crate::state::sealed::REJECTED_EVENT,
            Event::TokenCreated => "token_created",
            Event::TokenRejected => "token_rejected",
            Event::TokenRevoked => "token_revoked",
            Event::TokenUsed => "token_used",
            Event::UserWritten => "user_written",
            Event::UserDeleted => "user_deleted",
        }
    }

    /// Events a client that proved nothing can cause as often as it likes: bounded per
    /// network and overall (the rest are counted in `audit_suppressed`).
    pub fn unauthenticated(self) -> bool {
        UNAUTHENTICATED_EVENTS.contains(&self)
    }
}

/// The events [`Event::unauthenticated`] names, purged first when the trail is full.
const UNAUTHENTICATED_EVENTS: &[Event] = &[
    Event::LoginFailed,
    Event::LoginThrottled,
    Event::CodeSendLimited,
    Event::SecondStepRequired,
    Event::SecondStepSkipped,
    Event::SecondStepUnavailable,
    Event::RiskScored,
    Event::TokenRejected,
    Event::ApprovalRefused,
    Event::ApprovalFallbackToCode,
    Event::IdStepLimited,
    Event::PasskeyStartLimited,
    Event::ShortLivedRecordRejected,
    Event::AuditSuppressed,
];

fn unauthenticated_names() -> Vec<&'static str> {
    UNAUTHENTICATED_EVENTS.iter().map(|e| e.as_str()).collect()
}

/// Longest user ID kept in a row (IDs of unknown users are attacker-chosen).
const MAX_USER_BYTES: usize = 64;

/// How often the waiting events are tried again while the store cannot take them.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// What an event weighs in the waiting queue besides its text (bookkeeping).
const EVENT_OVERHEAD: usize = 96;

#[derive(Clone)]
pub struct Audit {
    store: Store,
    bounds: Arc<Bounds>,
    waiting: Arc<Mutex<Waiting>>,
}

/// Events the store could not take yet, oldest first.
struct Waiting {
    events: VecDeque<AuditRecord>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    /// Events not kept (the queue was full) since the last `audit_dropped` row.
    dropped: u64,
    /// A task is writing the queue out; until it is done, new events queue behind it.
    draining: bool,
}

impl Waiting {
    fn weight(r: &AuditRecord) -> usize {
        r.event.len() + r.user_id.len() + r.ip.len() + r.detail.len() + EVENT_OVERHEAD
    }

    /// Keeps `r` at the end of the queue, or counts it when the queue is full.
    fn push(&mut self, r: AuditRecord) {
        let w = Self::weight(&r);
        if self.events.len() >= self.max_events || self.bytes + w > self.max_bytes {
            if self.dropped == 0 {
                tracing::error!(
                    target: "audit",
                    "the audit queue is full while the store is unreachable: further events are only counted (audit_dropped)"
                );
            }
            self.dropped += 1;
            return;
        }
        self.bytes += w;
        self.events.push_back(r);
    }
}

struct Bounds {
    per_address: Window,
    total: Window,
    v4: u8,
    v6: u8,
    /// Events not written since the last summary, by name.
    suppressed: Mutex<BTreeMap<String, u64>>,
}

impl Audit {
    /// An audit trail with the default bounds.
    pub fn new(store: Store) -> Self {
        Self::with_bounds(
            store,
            &AuditSettings {
                retention: Duration::from_secs(180 * 86_400),
                max_rows: 1_000_000,
                unauthenticated_per_address: 30,
                unauthenticated_total: 600,
                queue_events: 10_000,
                queue_bytes: 8 << 20,
            },
            (32, 64),
        )
    }

    /// An audit trail bounded as configured; `prefixes` are the IPv4/IPv6 prefix lengths
    /// that make one network (login_limits).
    pub fn with_bounds(store: Store, cfg: &AuditSettings, prefixes: (u8, u8)) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            store,
            bounds: Arc::new(Bounds {
                per_address: Window::new(cfg.unauthenticated_per_address, minute),
                total: Window::new(cfg.unauthenticated_total, minute),
                v4: prefixes.0,
                v6: prefixes.1,
                suppressed: Mutex::new(BTreeMap::new()),
            }),
            waiting: Arc::new(Mutex::new(Waiting {
                events: VecDeque::new(),
                bytes: 0,
                max_events: cfg.queue_events,
                max_bytes: cfg.queue_bytes,
                dropped: 0,
                draining: false,
            })),
        }
    }

    pub async fn record(&self, event: Event, user: &str, ip: &str, detail: Value) {
        if !self.admit(event, ip) {
            return;
        }
        let event = event.as_str();
        let detail = detail.to_string();
        let user = bounded(user);
        tracing::info!(target: "audit", event, user, ip, detail = %detail);
        let rec = AuditRecord {
            ts: crate::time::now(),
            event: event.to_owned(),
            user_id: user.to_owned(),
            ip: ip.to_owned(),
            detail,
        };
        self.write(rec).await;
    }

    /// Writes one row, or keeps it waiting while the store cannot take it (and behind rows
    /// already waiting, so the trail keeps their order).
    async fn write(&self, rec: AuditRecord) {
        let Some(rec) = self.queue_if_waiting(rec) else {
            return;
        };
        if let Err(e) = self.store.audit(&rec).await {
            tracing::warn!(error = %e, event = %rec.event, "the audit trail cannot be written now; the event waits in memory");
            self.queue(rec);
        }
    }

    /// Queues `rec` when rows are waiting already; else gives it back to be written.
    fn queue_if_waiting(&self, rec: AuditRecord) -> Option<AuditRecord> {
        let Ok(mut w) = self.waiting.lock() else {
            return Some(rec);
        };
        if !w.draining {
            return Some(rec);
        }
        w.push(rec);
        None
    }

    /// Queues `rec` and makes sure a task writes the queue out.
    fn queue(&self, rec: AuditRecord) {
        let Ok(mut w) = self.waiting.lock() else {
            return;
        };
        w.push(rec);
        if !w.draining {
            w.draining = true;
            tokio::spawn(self.clone().drain());
        }
    }

    /// Writes the waiting rows in order once the store takes them, then the `audit_dropped`
    /// row for what did not fit; tries again every [`RETRY_EVERY`] meanwhile.
    async fn drain(self) {
        loop {
            tokio::time::sleep(RETRY_EVERY).await;
            loop {
                let Some((next, dropped)) = self.next_waiting() else {
                    return;
                };
                if let Err(e) = self.store.audit(&next).await {
                    tracing::debug!(error = %e, "the audit trail still cannot be written");
                    break;
                }
                self.written(dropped);
            }
        }
    }

    /// The next row to write (and, for the `audit_dropped` row, the count it carries); `None`
    /// when nothing waits any more (the queue is done: new rows are written directly).
    fn next_waiting(&self) -> Option<(AuditRecord, u64)> {
        let mut w = self.waiting.lock().ok()?;
        if let Some(r) = w.events.front() {
            return Some((r.clone(), 0));
        }
        if w.dropped > 0 {
            let count = w.dropped;
            let rec = AuditRecord {
                ts: crate::time::now(),
                event: Event::AuditDropped.as_str().to_owned(),
                user_id: String::new(),
                ip: String::new(),
                detail: serde_json::json!({"count": count}).to_string(),
            };
            return Some((rec, count));
        }
        w.draining = false;
        None
    }

    /// The row [`Audit::next_waiting`] gave is in the trail: the queue moves on.
    fn written(&self, dropped: u64) {
        let Ok(mut w) = self.waiting.lock() else {
            return;
        };
        if dropped > 0 {
            tracing::warn!(target: "audit", count = dropped, "audit events the queue could not keep were counted in the trail");
            w.dropped = w.dropped.saturating_sub(dropped);
        } else if let Some(r) = w.events.pop_front() {
            w.bytes = w.bytes.saturating_sub(Waiting::weight(&r));
        }
    }

    /// Whether this event is written now, or only counted (SECURITY 39).
    fn admit(&self, event: Event, ip: &str) -> bool {
        if !event.unauthenticated() {
            return true;
        }
        let event = event.as_str();
        let b = &self.bounds;
        let net = ip.parse::<IpAddr>().map_or_else(
            |_| ip.chars().take(64).collect(),
            |a| crate::net::network_key(a, b.v4, b.v6),
        );
        let now = crate::time::now();
        let key = format!("{event} {net}");
        if Window::hit_all(&[(&b.per_address, &key), (&b.total, "all")], now).is_ok() {
            return true;
        }
        if let Ok(mut s) = b.suppressed.lock() {
            *s.entry(event.to_owned()).or_default() += 1;
        }
        false
    }

    /// Writes one `audit_suppressed` row summing the events only counted since the last
    /// call (run by the background chores).
    pub async fn flush_suppressed(&self) {
        let counts = match self.bounds.suppressed.lock() {
            Ok(mut s) if !s.is_empty() => std::mem::take(&mut *s),
            _ => return,
        };
        let total: u64 = counts.values().sum();
        tracing::warn!(
            target: "audit",
            total,
            "unauthenticated audit events over their rate were only counted"
        );
        let detail = serde_json::json!({"events": counts, "total": total});
        let rec = AuditRecord {
            ts: crate::time::now(),
            event: Event::AuditSuppressed.as_str().to_owned(),
            user_id: String::new(),
            ip: String::new(),
            detail: detail.to_string(),
        };
        self.write(rec).await;
    }

    /// Deletes rows older than `retention` and beyond `max_rows` (events anyone can cause
    /// go first).
    pub async fn purge(&self, cfg: &AuditSettings, now: i64) {
        let keep = i64::try_from(cfg.retention.as_secs()).unwrap_or(i64::MAX / 2);
        match self
            .store
            .purge_audit(now - keep, cfg.max_rows, &unauthenticated_names())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "audit trail purged"),
            Err(e) => tracing::error!(error = %e, "could not purge the audit trail"),
        }
    }

    pub async fn trail(&self, user: Option<&str>, limit: i64) -> Vec<AuditRecord> {
        self.store
            .audit_trail(user, limit)
            .await
            .unwrap_or_default()
    }
}

/// The ID cut to at most `MAX_USER_BYTES` bytes, on a character boundary.
fn bounded(user: &str) -> &str {
    if user.len() <= MAX_USER_BYTES {
        return user;
    }
    let mut end = MAX_USER_BYTES;
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    &user[..end]
}

#[async_trait::async_trait]
impl crate::state::sealed::RejectLog for Audit {
    async fn rejected(&self, detail: Value) {
        self.record(Event::ShortLivedRecordRejected, "", "", detail)
            .await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_cut_on_a_character_boundary() {
        assert_eq!(bounded("hanako"), "hanako");
        let long = "花".repeat(30);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_USER_BYTES && cut.len() >= MAX_USER_BYTES - 3);
        assert!(long.starts_with(cut));
    }

    /// Renames the audit table of the SQLite file at `path` (the store then fails its writes).
    async fn rename_audit(path: &std::path::Path, from: &str, to: &str) {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {from} RENAME TO {to}"
        )))
        .execute(&mut c)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn events_wait_for_the_store_in_order_and_past_the_bound_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = Store::open(&path).await.unwrap();
        let cfg = AuditSettings {
            retention: Duration::from_secs(3_600),
            max_rows: 1_000,
            unauthenticated_per_address: 30,
            unauthenticated_total: 600,
            queue_events: 3,
            queue_bytes: 1 << 20,
        };
        let audit = Audit::with_bounds(store.clone(), &cfg, (32, 64));
        rename_audit(&path, "audit", "audit_away").await;
        for i in 0..5 {
            let detail = serde_json::json!({ "i": i });
            audit
                .record(
                    crate::audit::Event::Logout,
                    &format!("u{i}"),
                    "127.0.0.1",
                    detail,
                )
                .await;
        }
        rename_audit(&path, "audit_away", "audit").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.audit_rows().await.unwrap() < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "the queue was not written"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut rows = audit.trail(None, 10).await;
        rows.reverse();
        let seen: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.event.as_str(), r.user_id.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("logout", "u0"),
                ("logout", "u1"),
                ("logout", "u2"),
                ("audit_dropped", "")
            ]
        );
        assert_eq!(rows[3].detail, r#"{"count":2}"#);
        // Once the queue is out, rows go straight in again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        audit
            .record(crate::audit::Event::Logout, "u9", "127.0.0.1", Value::Null)
            .await;
        assert_eq!(store.audit_rows().await.unwrap(), 5);
    }

    #[tokio::test]
    async fn unauthenticated_events_are_bounded_per_network() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).await.unwrap();
        let cfg = AuditSettings {
            retention: Duration::from_secs(3_600),
            max_rows: 1_000,
            unauthenticated_per_address: 3,
            unauthenticated_total: 5,
            queue_events: 100,
            queue_bytes: 1 << 20,
        };
        let audit = Audit::with_bounds(store.clone(), &cfg, (32, 64));
        for i in 0..10 {
            audit
                .record(
                    crate::audit::Event::LoginFailed,
                    &format!("x{i}"),
                    "2001:db8::1",
                    Value::Null,
                )
                .await;
            audit
                .record(
                    crate::audit::Event::LoginFailed,
                    "y",
                    &format!("2001:db8:0:{i}::1"),
                    Value::Null,
                )
                .await;
        }
        // 3 from the first /64, then the total of 5 is reached.
        assert_eq!(store.audit_rows().await.unwrap(), 5);
        // Authenticated events are always written.
        audit
            .record(
                crate::audit::Event::LoginSucceeded,
                "u",
                "2001:db8::1",
                Value::Null,
            )
            .await;
        audit.flush_suppressed().await;
        let rows = audit.trail(None, 10).await;
        assert_eq!(rows[0].event, "audit_suppressed");
        assert!(
            rows[0].detail.contains("\"total\":15"),
            "{}",
            rows[0].detail
        );
        assert_eq!(store.audit_rows().await.unwrap(), 7);
        audit.purge(&cfg, 0).await;
        assert_eq!(store.audit_rows().await.unwrap(), 7);
        audit.purge(&AuditSettings { max_rows: 2, ..cfg }, 0).await;
        assert_eq!(store.audit_rows().await.unwrap(), 2);
        let rows = audit.trail(None, 10).await;
        assert_eq!(rows[0].event, "audit_suppressed");
        assert_eq!(
            rows[1].event, "login_succeeded",
            "floods go before real logins"
        );
        let later = crate::time::now() + 2 * 3_600;
        audit.purge(&cfg, later).await;
        assert_eq!(store.audit_rows().await.unwrap(), 0);
    }
}
