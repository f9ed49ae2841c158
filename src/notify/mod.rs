//! Notifiers: deliver security codes and account notices by email (SMTP), SMS (an HTTP
//! gateway) and the outbox (JSON lines and/or the console, for development and tests).
//!
//! Secrets (codes, the SMTP password, the SMS gateway secret) never reach a log line or an
//! error message; logs name destinations only masked (`mask_phone`, `mask_email`).

mod email;
/// The texts of mails and SMS live in the leaf `i18n` (re-exported by `portal::i18n`).
pub use crate::i18n::messages;
mod outbox;
mod push;
mod sms;
/// The SMTP server for tests (Python's aiosmtpd), one copy shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/it/common/smtp.rs"]
pub(crate) mod testing;

use crate::config::Notifiers;

/// How a message reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Email,
    Push,
}

/// One message to one user. `code` is set for security-code messages (the outbox records it
/// in its own field so tests can read it without parsing the body).
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: Channel,
    /// The user's id.
    pub user: String,
    /// Phone number, email address or push device, depending on `channel`.
    pub to: String,
    pub code: Option<String>,
    pub subject: String,
    pub body: String,
}

/// Errors never contain the code, the SMTP password or the SMS gateway secret.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("no {0:?} notifier is configured")]
    NotConfigured(Channel),
    #[error("email delivery failed: {0}")]
    Smtp(String),
    #[error("SMS delivery failed: {0}")]
    Sms(String),
    #[error("outbox write failed: {0}")]
    Outbox(String),
    #[error("push delivery failed: {0}")]
    Push(String),
}

/// All configured transports; cheap to share behind an `Arc`. A configuration reload
/// replaces them whole ([`Notifier::replace`]); a message being sent keeps the ones it
/// started with.
pub struct Notifier {
    now: arc_swap::ArcSwap<Transports>,
}

/// The transports of one configuration, built and checked before they are put in force.
pub struct Transports {
    email: Option<email::EmailSender>,
    sms: Option<sms::SmsSender>,
    push: Option<push::PushSender>,
    outbox: Option<outbox::OutboxWriter>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.now.load();
        f.debug_struct("Notifier")
            .field("email", &t.email.is_some())
            .field("sms", &t.sms.is_some())
            .field("outbox", &t.outbox.is_some())
            .finish()
    }
}

impl Notifier {
    /// Builds the transports (see [`Transports::new`]).
    pub fn new(cfg: &Notifiers) -> Result<Self, NotifyError> {
        Ok(Self {
            now: arc_swap::ArcSwap::from_pointee(Transports::new(cfg)?),
        })
    }

    /// From now on messages go through `next` (a configuration reload).
    pub fn replace(&self, next: Transports) {
        self.now.store(std::sync::Arc::new(next));
    }

    /// Whether `send` has somewhere to put a message for `channel`.
    pub fn can_send(&self, channel: Channel) -> bool {
        self.now.load().can_send(channel)
    }

    /// See [`Transports::send`]; with the transports in force when it is called.
    pub async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        let transports = self.now.load_full();
        transports.send(msg).await
    }
}

impl Transports {
    /// Builds the transports. The SMS client uses rustls without a built-in provider: the
    /// process must have installed one first (`main` calls
    /// `pingora::tls::install_default_crypto_provider()` at start; tests do the same).
    pub fn new(cfg: &Notifiers) -> Result<Self, NotifyError> {
        Ok(Self {
            email: cfg
                .email
                .as_ref()
                .map(email::EmailSender::new)
                .transpose()?,
            sms: cfg.sms.as_ref().map(sms::SmsSender::new).transpose()?,
            push: cfg.push.as_ref().map(push::PushSender::new).transpose()?,
            outbox: cfg
                .outbox
                .as_ref()
                .map(outbox::OutboxWriter::new)
                .transpose()?,
        })
    }

    /// Whether `send` has somewhere to put a message for `channel`.
    pub fn can_send(&self, channel: Channel) -> bool {
        self.outbox.is_some()
            || match channel {
                Channel::Email => self.email.is_some(),
                Channel::Sms => self.sms.is_some(),
                Channel::Push => self.push.is_some(),
            }
    }

    /// Delivers through the channel's real transport when configured (SMTP for Email, the
    /// SMS gateway for Sms), and also appends to the outbox when one is configured. With
    /// neither for that channel: `NotConfigured`. If the real transport fails, returns the
    /// error (the outbox line is still written, with an extra field `"delivered": false`).
    pub async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        if !self.can_send(msg.channel) {
            return Err(NotifyError::NotConfigured(msg.channel));
        }
        let to = mask_destination(msg.channel, &msg.to);
        let transport = match msg.channel {
            Channel::Email => match &self.email {
                Some(e) => Some(e.send(msg).await),
                None => None,
            },
            Channel::Sms => match &self.sms {
                Some(s) => Some(s.send(msg).await),
                None => None,
            },
            Channel::Push => match &self.push {
                Some(p) => Some(p.send(msg).await),
                None => None,
            },
        };
        let delivered = transport.as_ref().map(Result::is_ok);
        let outbox_result = match &self.outbox {
            Some(o) => Some(o.append(msg, delivered).await),
            None => None,
        };

        match (transport, outbox_result) {
            (Some(Err(e)), _) => {
                tracing::warn!(channel = ?msg.channel, user = %msg.user, %to, error = %e, "notification not delivered");
                Err(e)
            }
            (Some(Ok(())), Some(Err(e))) => {
                // Delivered to the user: the outbox copy is only a record, so do not fail.
                tracing::warn!(channel = ?msg.channel, user = %msg.user, %to, error = %e, "notification delivered, outbox write failed");
                Ok(())
            }
            (None, Some(Err(e))) => {
                tracing::warn!(channel = ?msg.channel, user = %msg.user, %to, error = %e, "outbox write failed");
                Err(e)
            }
            _ => {
                tracing::info!(channel = ?msg.channel, user = %msg.user, %to, "notification sent");
                Ok(())
            }
        }
    }
}

fn mask_destination(channel: Channel, to: &str) -> String {
    match channel {
        Channel::Sms => mask_phone(to),
        Channel::Email => mask_email(to),
        Channel::Push => "<device>".to_owned(),
    }
}

/// Keeps only the last 4 digits: `"+81 90-1234-5678"` → `"***-****-5678"`.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 4 {
        return "***".to_owned();
    }
    let last: String = digits[digits.len() - 4..].iter().collect();
    format!("***-****-{last}")
}

/// Keeps the first character of the local part and the domain:
/// `"hanako@example.com"` → `"h***@example.com"`.
pub fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => match local.chars().next() {
            Some(first) => format!("{first}***@{domain}"),
            None => format!("***@{domain}"),
        },
        None => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::config::Outbox;

    #[test]
    fn masks() {
        assert_eq!(mask_phone("+81 90-1234-5678"), "***-****-5678");
        assert_eq!(mask_phone("09012345678"), "***-****-5678");
        assert_eq!(mask_phone("12"), "***");
        assert_eq!(mask_email("hanako@example.com"), "h***@example.com");
        assert_eq!(mask_email("花子@example.jp"), "花***@example.jp");
        assert_eq!(mask_email("@example.com"), "***@example.com");
        assert_eq!(mask_email("nobody"), "***");
    }

    #[tokio::test]
    async fn not_configured() {
        let n = Notifier::new(&Notifiers::default()).unwrap();
        assert!(!n.can_send(Channel::Sms));
        let msg = Message {
            channel: Channel::Sms,
            user: "hanako".into(),
            to: "+81 90-1234-5678".into(),
            code: Some("123456".into()),
            subject: "s".into(),
            body: "b".into(),
        };
        let err = n.send(&msg).await.unwrap_err();
        assert!(matches!(err, NotifyError::NotConfigured(Channel::Sms)));
        assert_eq!(err.to_string(), "no Sms notifier is configured");
    }

    #[tokio::test]
    async fn outbox_only_serves_every_channel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let n = Notifier::new(&Notifiers {
            outbox: Some(Outbox {
                path: Some(path.clone()),
                console: false,
            }),
            ..Default::default()
        })
        .unwrap();
        for ch in [Channel::Sms, Channel::Email, Channel::Push] {
            assert!(n.can_send(ch));
        }
        n.send(&Message {
            channel: Channel::Push,
            user: "taro".into(),
            to: "dev-1".into(),
            code: None,
            subject: "approve?".into(),
            body: "42".into(),
        })
        .await
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["channel"], "push");
        assert!(v.get("code").is_none());
        assert!(v.get("delivered").is_none());
    }
}
