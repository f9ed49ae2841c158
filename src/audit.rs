//! The audit trail: every security event, durably in the store and as a JSON log line
//! (target `audit`). Details never hold a secret, only reason codes and masked addresses.

use serde_json::Value;

use crate::store::{AuditRecord, Store};

#[derive(Clone)]
pub struct Audit {
    store: Store,
}

impl Audit {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn record(&self, event: &str, user: &str, ip: &str, detail: Value) {
        let detail = detail.to_string();
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

    pub async fn trail(&self, user: Option<&str>, limit: i64) -> Vec<AuditRecord> {
        self.store
            .audit_trail(user, limit)
            .await
            .unwrap_or_default()
    }
}
