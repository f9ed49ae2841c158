//! The audit trail: every security event, durably in the store and as a JSON log line
//! (target `audit`). Details never hold a secret, only reason codes and masked addresses.
//!
//! The trail is bounded: rows older than `audit.retention` and beyond `audit.max_rows` are
//! purged in the background, and events any anonymous client can cause (unknown IDs,
//! decoys, throttles) are written at most `audit.unauthenticated_per_address` times a
//! minute per network and event and `audit.unauthenticated_total` overall; the rest are
//! counted and written as one `audit_suppressed` row per chore round.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::config::AuditSettings;
use crate::store::{AuditRecord, Store};
use crate::window::Window;

/// Events a client that proved nothing can cause as often as it likes.
const UNAUTHENTICATED: &[&str] = &[
    "login_failed",
    "login_throttled",
    "code_send_limited",
    "second_step_required",
    "second_step_skipped",
    "second_step_unavailable",
    "risk_scored",
    "token_rejected",
    "approval_refused",
    "approval_fallback_to_code",
    "id_step_limited",
    "passkey_start_limited",
    // Anyone may ask again and again for a record that failed its MAC (SECURITY 48).
    crate::state::sealed::REJECTED_EVENT,
    "audit_suppressed",
];

/// Longest user ID kept in a row (IDs of unknown users are attacker-chosen).
const MAX_USER_BYTES: usize = 64;

#[derive(Clone)]
pub struct Audit {
    store: Store,
    bounds: Arc<Bounds>,
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
        }
    }

    pub async fn record(&self, event: &str, user: &str, ip: &str, detail: Value) {
        if !self.admit(event, ip) {
            return;
        }
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
        if let Err(e) = self.store.audit(&rec).await {
            tracing::error!(error = %e, event, "could not write the audit trail");
        }
    }

    /// Whether this event is written now, or only counted (SECURITY 39).
    fn admit(&self, event: &str, ip: &str) -> bool {
        if !UNAUTHENTICATED.contains(&event) {
            return true;
        }
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
            event: "audit_suppressed".to_owned(),
            user_id: String::new(),
            ip: String::new(),
            detail: detail.to_string(),
        };
        if let Err(e) = self.store.audit(&rec).await {
            tracing::error!(error = %e, "could not write the audit trail");
        }
    }

    /// Deletes rows older than `retention` and beyond `max_rows` (events anyone can cause
    /// go first).
    pub async fn purge(&self, cfg: &AuditSettings, now: i64) {
        let keep = i64::try_from(cfg.retention.as_secs()).unwrap_or(i64::MAX / 2);
        match self
            .store
            .purge_audit(now - keep, cfg.max_rows, UNAUTHENTICATED)
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
        self.record(crate::state::sealed::REJECTED_EVENT, "", "", detail)
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

    #[tokio::test]
    async fn unauthenticated_events_are_bounded_per_network() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).await.unwrap();
        let cfg = AuditSettings {
            retention: Duration::from_secs(3_600),
            max_rows: 1_000,
            unauthenticated_per_address: 3,
            unauthenticated_total: 5,
        };
        let audit = Audit::with_bounds(store.clone(), &cfg, (32, 64));
        for i in 0..10 {
            audit
                .record("login_failed", &format!("x{i}"), "2001:db8::1", Value::Null)
                .await;
            audit
                .record(
                    "login_failed",
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
            .record("login_succeeded", "u", "2001:db8::1", Value::Null)
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
