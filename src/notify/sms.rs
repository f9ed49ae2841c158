//! SMS through an HTTP gateway: one request per message, body from a template.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{Message, NotifyError};
use crate::config::SmsGateway;

#[derive(Clone, Copy)]
enum Encoding {
    Form,
    Json,
    Raw,
}

pub(super) struct SmsSender {
    client: reqwest::Client,
    url: reqwest::Url,
    method: reqwest::Method,
    /// Configured headers with `{secret}` already substituted (marked sensitive).
    headers: HeaderMap,
    body_template: String,
    content_type: HeaderValue,
    encoding: Encoding,
    success_status: Vec<u16>,
}

impl SmsSender {
    /// Builds the client once. reqwest is compiled with `rustls-no-provider`: the process
    /// must have installed a rustls crypto provider before this runs.
    pub(super) fn new(cfg: &SmsGateway) -> Result<Self, NotifyError> {
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| NotifyError::Sms(format!("invalid gateway URL: {e}")))?;
        let method = reqwest::Method::from_bytes(cfg.method.as_bytes())
            .map_err(|_| NotifyError::Sms("invalid gateway method".into()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| NotifyError::Sms(format!("invalid header name {name:?}")))?;
            let value = if value.contains("{secret}") {
                let secret = cfg
                    .secret
                    .as_ref()
                    .and_then(|s| s.expose_str())
                    .ok_or_else(|| {
                        NotifyError::Sms(format!(
                            "header {name} uses {{secret}} but no UTF-8 secret is configured"
                        ))
                    })?;
                value.replace("{secret}", secret)
            } else {
                value.clone()
            };
            // Never echo the value: it may hold the secret.
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| NotifyError::Sms(format!("invalid value for header {name}")))?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        let content_type = HeaderValue::from_str(&cfg.content_type)
            .map_err(|_| NotifyError::Sms("invalid content type".into()))?;
        let ct = cfg.content_type.to_ascii_lowercase();
        let encoding = if ct.contains("x-www-form-urlencoded") {
            Encoding::Form
        } else if ct.contains("json") {
            Encoding::Json
        } else {
            Encoding::Raw
        };
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| NotifyError::Sms(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            client,
            url,
            method,
            headers,
            body_template: cfg.body_template.clone(),
            content_type,
            encoding,
            success_status: cfg.success_status.clone(),
        })
    }

    pub(super) async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        let body = render(
            &self.body_template,
            self.encoding,
            &msg.to,
            &msg.body,
            msg.code.as_deref().unwrap_or(""),
        );
        let resp = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, self.content_type.clone())
            .body(body)
            .send()
            .await
            // Only the kind of failure: reqwest's text would carry the URL.
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "gateway timed out"
                } else if e.is_connect() {
                    "cannot connect to the gateway"
                } else {
                    "gateway request failed"
                };
                NotifyError::Sms(what.into())
            })?;
        let status = resp.status().as_u16();
        if self.success_status.contains(&status) {
            Ok(())
        } else {
            Err(NotifyError::Sms(format!("gateway answered {status}")))
        }
    }
}

/// Substitutes `{to}`, `{body}` and `{code}` in one pass (a value containing `{code}` is
/// not expanded again), encoding each value for the body's content type.
fn render(template: &str, encoding: Encoding, to: &str, body: &str, code: &str) -> String {
    let mut out = String::with_capacity(template.len() + body.len() * 3);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let hit = [("{to}", to), ("{body}", body), ("{code}", code)]
            .into_iter()
            .find(|(p, _)| after.starts_with(p));
        match hit {
            Some((p, value)) => {
                out.push_str(&encode(encoding, value));
                rest = &after[p.len()..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn encode(encoding: Encoding, value: &str) -> String {
    match encoding {
        Encoding::Form => form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        Encoding::Json => {
            // A JSON string literal without its quotes: the template supplies them.
            let quoted = serde_json::Value::String(value.to_owned()).to_string();
            quoted[1..quoted.len() - 1].to_owned()
        }
        Encoding::Raw => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::config::{Notifiers, Secret};
    use crate::notify::{Channel, Notifier};

    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        headers: http::HeaderMap,
        body: String,
    }

    /// A gateway on 127.0.0.1:0 that records requests and answers `status`.
    async fn gateway(status: u16) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            log.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.to_string(),
                                headers: parts.headers,
                                body: String::from_utf8(body.to_vec()).unwrap(),
                            });
                            let mut r = http::Response::new(Full::new(Bytes::from_static(
                                b"secret-ish gateway text",
                            )));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}/send"), seen)
    }

    fn cfg(url: String, template: &str, content_type: &str) -> SmsGateway {
        SmsGateway {
            url,
            method: "POST".into(),
            headers: vec![
                ("Authorization".into(), "Bearer {secret}".into()),
                ("X-Tenant".into(), "acme".into()),
            ],
            body_template: template.into(),
            content_type: content_type.into(),
            success_status: (200..=299).collect(),
            secret: Some(Secret(b"s3cr3t-token".to_vec())),
            timeout: Duration::from_secs(5),
        }
    }

    fn sms(code: &str) -> Message {
        Message {
            channel: Channel::Sms,
            user: "hanako".into(),
            to: "+81 90-1234-5678".into(),
            code: Some(code.into()),
            subject: "code".into(),
            body: format!("nidan: 確認コード {code}（5分間有効）。\"他人\"に & 教えないで"),
        }
    }

    fn notifier(gw: SmsGateway) -> Notifier {
        pingora::tls::install_default_crypto_provider();
        Notifier::new(&Notifiers {
            sms: Some(gw),
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn form_body_and_secret_header() {
        let (url, seen) = gateway(200).await;
        let n = notifier(cfg(
            url,
            "to={to}&text={body}&code={code}",
            "application/x-www-form-urlencoded",
        ));
        assert!(n.can_send(Channel::Sms) && !n.can_send(Channel::Email));
        n.send(&sms("123456")).await.unwrap();
        let s = seen.lock().unwrap()[0].clone();
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/send");
        assert_eq!(s.headers["authorization"], "Bearer s3cr3t-token");
        assert_eq!(s.headers["x-tenant"], "acme");
        assert_eq!(
            s.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        let form: Vec<(String, String)> = form_urlencoded::parse(s.body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            form,
            vec![
                ("to".into(), "+81 90-1234-5678".into()),
                ("text".into(), sms("123456").body),
                ("code".into(), "123456".into()),
            ]
        );
    }

    #[tokio::test]
    async fn json_body() {
        let (url, seen) = gateway(202).await;
        let n = notifier(cfg(
            url,
            r#"{"to":"{to}","message":"{body}","otp":"{code}"}"#,
            "application/json; charset=utf-8",
        ));
        let mut m = sms("654321");
        m.body.push_str("\n{code} \\ end");
        n.send(&m).await.unwrap();
        let s = seen.lock().unwrap()[0].clone();
        let v: serde_json::Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(v["to"], "+81 90-1234-5678");
        assert_eq!(v["message"], m.body.as_str());
        assert_eq!(v["otp"], "654321");
    }

    #[tokio::test]
    async fn error_status_is_an_error_without_secrets() {
        let (url, _seen) = gateway(500).await;
        let n = notifier(cfg(
            url.clone(),
            "to={to}&text={body}",
            "application/x-www-form-urlencoded",
        ));
        let err = n.send(&sms("777888")).await.unwrap_err();
        assert!(matches!(err, NotifyError::Sms(_)));
        assert_eq!(err.to_string(), "SMS delivery failed: gateway answered 500");

        // Nobody listening: no URL, code or secret in the error either.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut gw = cfg(
            format!("http://127.0.0.1:{port}/send?key=s3cr3t"),
            "{body}",
            "text/plain",
        );
        gw.success_status = vec![200];
        let err = notifier(gw).send(&sms("777888")).await.unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("s3cr3t") && !text.contains("777888"),
            "{text}"
        );
    }

    #[test]
    fn secret_placeholder_needs_a_secret() {
        pingora::tls::install_default_crypto_provider();
        let mut gw = cfg("http://127.0.0.1:1/".into(), "{body}", "text/plain");
        gw.secret = None;
        let err = SmsSender::new(&gw).err().unwrap();
        assert!(err.to_string().contains("{secret}"));
    }

    #[test]
    fn render_is_single_pass() {
        assert_eq!(
            render(
                "{to}|{body}|{code}|{other}",
                Encoding::Raw,
                "a",
                "{code}",
                "9"
            ),
            "a|{code}|9|{other}"
        );
        assert_eq!(
            render("t={body}", Encoding::Form, "", "a b&c=日", ""),
            "t=a+b%26c%3D%E6%97%A5"
        );
        assert_eq!(
            render("\"{body}\"", Encoding::Json, "", "q\"\n", ""),
            "\"q\\\"\\n\""
        );
    }
}
