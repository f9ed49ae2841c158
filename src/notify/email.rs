//! Email over SMTP (lettre, rustls): plain-text UTF-8 messages.

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

use super::{Message, NotifyError, mask_email};
use crate::config::{Smtp, SmtpSecurity};

pub(super) struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl EmailSender {
    pub(super) fn new(cfg: &Smtp) -> Result<Self, NotifyError> {
        let builder = match cfg.security {
            // `starttls_relay` refuses to continue without STARTTLS.
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                    .map_err(|e| NotifyError::Smtp(format!("TLS setup for {}: {e}", cfg.host)))?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)
                .map_err(|e| NotifyError::Smtp(format!("TLS setup for {}: {e}", cfg.host)))?,
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            }
        };
        let mut builder = builder.port(cfg.port).timeout(Some(cfg.timeout));
        if let Some(user) = &cfg.username {
            let password = match &cfg.password {
                Some(p) => p
                    .expose_str()
                    .ok_or_else(|| NotifyError::Smtp("the SMTP password is not UTF-8".into()))?
                    .to_owned(),
                None => String::new(),
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| NotifyError::Smtp(format!("invalid from address: {e}")))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    pub(super) async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        let to: Mailbox = msg.to.parse().map_err(|_| {
            NotifyError::Smtp(format!("invalid recipient address {}", mask_email(&msg.to)))
        })?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(msg.body.clone())
            .map_err(|e| NotifyError::Smtp(format!("cannot build message: {e}")))?;
        // lettre's errors describe the SMTP exchange (status and server text), never the
        // message or the credentials.
        self.transport
            .send(email)
            .await
            .map_err(|e| NotifyError::Smtp(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::time::Duration;

    use super::*;
    use crate::config::{Notifiers, Outbox};
    use crate::notify::testing::{SmtpSink, parse_with_python};
    use crate::notify::{Channel, Notifier};

    fn smtp_cfg(port: u16) -> Smtp {
        Smtp {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "nidan <no-reply@example.com>".into(),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn delivers_to_real_smtp_server() {
        let sink = SmtpSink::start();
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox.jsonl");
        let n = Notifier::new(&Notifiers {
            email: Some(smtp_cfg(sink.port)),
            outbox: Some(Outbox {
                path: Some(outbox.clone()),
                console: false,
            }),
            ..Default::default()
        })
        .unwrap();
        let (subject, body) = crate::notify::messages::security_code(
            crate::config::Language::Ja,
            "493817",
            5,
            "nidan",
        );
        n.send(&Message {
            channel: Channel::Email,
            user: "hanako".into(),
            to: "hanako@example.com".into(),
            code: Some("493817".into()),
            subject: subject.clone(),
            body: body.clone(),
        })
        .await
        .unwrap();

        let msgs = sink.wait_messages(1);
        assert_eq!(msgs.len(), 1);
        let raw = &msgs[0];
        // aiosmtpd records the envelope recipient.
        assert!(raw.contains("X-RcptTo: hanako@example.com"), "{raw}");
        let parsed = parse_with_python(raw);
        assert_eq!(parsed["to"], "hanako@example.com");
        assert_eq!(parsed["from"], "nidan <no-reply@example.com>");
        assert_eq!(parsed["subject"], subject);
        // SMTP carries CRLF line ends.
        assert_eq!(
            parsed["body"]
                .as_str()
                .unwrap()
                .replace("\r\n", "\n")
                .trim_end(),
            body.trim_end()
        );
        // Delivered: the outbox copy has no "delivered" field.
        let line: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&outbox).unwrap().trim()).unwrap();
        assert!(line.get("delivered").is_none());
        assert_eq!(line["code"], "493817");
    }

    #[tokio::test]
    async fn failure_is_reported_and_recorded() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox.jsonl");
        let mut cfg = smtp_cfg(port);
        cfg.username = Some("nidan".into());
        cfg.password = Some(crate::config::Secret(b"hunter2-smtp".to_vec()));
        let n = Notifier::new(&Notifiers {
            email: Some(cfg),
            outbox: Some(Outbox {
                path: Some(outbox.clone()),
                console: false,
            }),
            ..Default::default()
        })
        .unwrap();
        let err = n
            .send(&Message {
                channel: Channel::Email,
                user: "hanako".into(),
                to: "hanako@example.com".into(),
                code: Some("555111".into()),
                subject: "s".into(),
                body: "b 555111".into(),
            })
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NotifyError::Smtp(_)), "{text}");
        assert!(
            !text.contains("555111") && !text.contains("hunter2"),
            "{text}"
        );
        let line: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&outbox).unwrap().trim()).unwrap();
        assert_eq!(line["delivered"], false);
    }
}
