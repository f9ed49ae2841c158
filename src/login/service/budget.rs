//! The login's budgets as `Login` methods: the ID step and passkey starts per network, and
//! whether a browser is one the user logged in from before.

use std::net::IpAddr;

use crate::login::budget::Browser;
use crate::login::client::Client;
use crate::login::error::LoginError;
use crate::login::service::Login;
use crate::store::SeenKind;

impl Login {
    /// Counts an ID step against the client's network: 429 beyond the limit (SECURITY 39, 40).
    pub async fn id_step(&self, client: &Client, now: i64) -> Result<(), LoginError> {
        match self.budgets.id_step(client.ip, now).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(wait)) => {
                self.limited(crate::audit::Event::IdStepLimited, client.ip, wait);
                Err(LoginError::Throttled(wait))
            }
            Err(e) => {
                tracing::error!(error = %e, "the ID-step limit could not be counted");
                Err(LoginError::Busy)
            }
        }
    }

    /// Counts a passkey login start against the client's network; the seconds to wait if over
    /// (`Err(None)`: the count could not be read, 503).
    pub async fn passkey_start(&self, ip: IpAddr, now: i64) -> Result<(), Option<u64>> {
        match self.budgets.passkey_start(ip, now).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(wait)) => {
                self.limited(crate::audit::Event::PasskeyStartLimited, ip, wait);
                Err(Some(wait))
            }
            Err(e) => {
                tracing::error!(error = %e, "the passkey-start limit could not be counted");
                Err(None)
            }
        }
    }

    /// Records a refusal in the background (the audit trail bounds these per network).
    fn limited(&self, event: crate::audit::Event, ip: IpAddr, wait: u64) {
        let audit = self.audit.clone();
        tokio::spawn(async move {
            audit
                .record(
                    event,
                    "",
                    &ip.to_string(),
                    serde_json::json!({"retry_after": wait}),
                )
                .await;
        });
    }

    /// Is the browser behind `client` one that `user_id` logged in from before? Unknown IDs go
    /// through the same look-ups (same work), and are never known.
    pub async fn browser_of(&self, user_id: &str, client: &Client, now: i64) -> Browser {
        if let Some(token) = &client.device_cookie
            && self.devices.check(token, user_id, now).await.is_some()
        {
            return Browser::Known;
        }
        let seen = match client
            .seen_cookie
            .as_deref()
            .filter(|v| crate::login::risk::seen_cookie_ok(v))
        {
            Some(v) => self
                .store
                .seen_since(user_id, SeenKind::Browser, &crate::secret::token_hash(v), 0)
                .await
                .unwrap_or(false),
            None => false,
        };
        if seen {
            Browser::Known
        } else {
            Browser::Stranger
        }
    }
}
