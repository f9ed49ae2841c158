//! The risk engine's store-backed parts as `Login` methods: reading the signals, scoring
//! a login, and what a successful login teaches.

use serde_json::json;

use crate::login::client::Client;
use crate::login::risk::{
    Assessment, Signals, agent_family, network_prefix, score, seen_cookie_ok, watchlisted,
};
use crate::login::service::Login;
use crate::store::SeenKind;

impl Login {
    /// Reads the signals for a login of `user_id` by `client` from the store. A store error is
    /// an error: the login is not scored as if nothing were known (SECURITY 36).
    pub async fn risk_signals(
        &self,
        user_id: &str,
        client: &Client,
        now: i64,
    ) -> Result<Signals, crate::store::StoreError> {
        let risk = self.risk();
        let cfg = &*risk;
        let store = &self.store;
        let memory = i64::try_from(cfg.network_memory.as_secs()).unwrap_or(i64::MAX);
        let window = i64::try_from(cfg.failure_window.as_secs()).unwrap_or(3_600);
        let first_login = !store.has_history(user_id).await?;
        let new_browser = match client.seen_cookie.as_deref().filter(|v| seen_cookie_ok(v)) {
            Some(v) => {
                !store
                    .seen_since(user_id, SeenKind::Browser, &crate::secret::token_hash(v), 0)
                    .await?
            }
            None => true,
        };
        let new_network = !store
            .seen_since(
                user_id,
                SeenKind::Network,
                &network_prefix(client.ip),
                now.saturating_sub(memory),
            )
            .await?;
        let new_user_agent = !store
            .seen_since(
                user_id,
                SeenKind::Agent,
                &agent_family(&client.user_agent),
                0,
            )
            .await?;
        let (failures_account, failures_address) = store
            .recent_failures(user_id, &client.ip.to_string(), now - window)
            .await?;
        Ok(Signals {
            first_login,
            new_browser,
            new_network,
            failures_account,
            failures_address,
            new_user_agent,
            watchlisted: watchlisted(cfg, client.ip),
        })
    }

    /// Scores the ID step of a login when the risk engine applies; records `risk_scored` for
    /// known users. Unknown IDs are read the same way (same work, same timing) but not recorded.
    pub async fn assess_risk(
        &self,
        id: &str,
        known: bool,
        client: &Client,
        now: i64,
    ) -> Result<Assessment, crate::store::StoreError> {
        let s = self.risk_signals(id, client, now).await?;
        let risk = self.risk();
        let a = score(&s, &risk);
        if known {
            let mut points = serde_json::Map::new();
            for (name, w) in &a.reasons {
                points.insert((*name).to_owned(), json!(w));
            }
            self.audit
                .record(
                    crate::audit::Event::RiskScored,
                    id,
                    &client.ip.to_string(),
                    json!({
                        "score": a.score,
                        "threshold": risk.threshold,
                        "step_up": a.step_up,
                        "reasons": a.reasons.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                        "points": points,
                        "first_login": s.first_login,
                        "learning": a.learning,
                        "failures": {"account": s.failures_account, "address": s.failures_address},
                        "watch_network": s.watchlisted.map(|n| n.to_string()),
                    }),
                )
                .await;
        }
        Ok(a)
    }

    /// After a successful login: remembers the browser, network and user-agent family for the
    /// user, and returns the `nidan_seen` value to set (the browser's own one if it had one).
    pub async fn remember_seen(&self, user_id: &str, client: &Client, now: i64) -> String {
        let seen = client
            .seen_cookie
            .clone()
            .filter(|v| seen_cookie_ok(v))
            .unwrap_or_else(|| crate::secret::random_token(32));
        let store = &self.store;
        let entries = [
            (SeenKind::Browser, crate::secret::token_hash(&seen)),
            (SeenKind::Network, network_prefix(client.ip)),
            (SeenKind::Agent, agent_family(&client.user_agent)),
        ];
        for (kind, value) in entries {
            if let Err(e) = store.remember_seen(user_id, kind, &value, now).await {
                tracing::warn!(error = %e, "could not remember a login for the risk engine");
            }
        }
        seen
    }
}
