//! Push: a JSON webhook told about each login approval, so operators can wire FCM, APNs or
//! ntfy behind it. The webhook never receives the approval number: the user must read it
//! from the browser (number matching).

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{Message, NotifyError};
use crate::config::PushWebhook;

pub(super) struct PushSender {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
}

impl PushSender {
    /// Needs a rustls crypto provider installed first, as the SMS sender does.
    pub(super) fn new(cfg: &PushWebhook) -> Result<Self, NotifyError> {
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| NotifyError::Push(format!("invalid webhook URL: {e}")))?;
        let secret = cfg.secret.as_ref().and_then(|s| s.expose_str());
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| NotifyError::Push(format!("invalid header name {name:?}")))?;
            let value = match (value.contains("{secret}"), secret) {
                (true, Some(s)) => value.replace("{secret}", s),
                (true, None) => {
                    return Err(NotifyError::Push(format!("header {name} needs a secret")));
                }
                (false, _) => value.clone(),
            };
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| NotifyError::Push(format!("invalid value for header {name}")))?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|_| NotifyError::Push("the HTTP client could not be built".into()))?;
        Ok(Self {
            client,
            url,
            headers,
        })
    }

    pub(super) async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        let body = serde_json::json!({
            "user": msg.user,
            "approval": msg.to,
            "title": msg.subject,
            "body": msg.body,
        });
        let resp = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                NotifyError::Push(if e.is_timeout() {
                    "timed out".into()
                } else {
                    "request failed".into()
                })
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(NotifyError::Push(format!(
                "webhook answered {}",
                resp.status().as_u16()
            )))
        }
    }
}
