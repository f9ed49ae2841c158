//! The `notifiers` section: outbox, email (SMTP), SMS gateway and push webhook.

use std::time::Duration;

use crate::config::file;
use crate::config::{Notifiers, Outbox, PushWebhook, SmsGateway, Smtp, SmtpSecurity};

use super::{Checker, Zero, token_ok};

impl Checker<'_> {
    pub(super) fn notifiers(&mut self, n: file::NotifiersFile) -> Notifiers {
        Notifiers {
            email: n.email.map(|e| self.email(e)),
            sms: n.sms.map(|s| self.sms(s)),
            push: n.push.map(|p| self.push(p)),
            outbox: n.outbox.map(|o| Outbox {
                path: o.path.map(|p| self.path(&p)),
                console: o.console.unwrap_or(true),
            }),
        }
    }

    pub(super) fn required_text(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<String>,
        example: &str,
    ) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v.trim().to_string(),
            other => {
                let at = if other.is_some() {
                    format!("{parent}.{key}")
                } else {
                    parent.to_string()
                };
                self.err(
                    &at,
                    format!("`{parent}.{key}` is missing or empty"),
                    format!("add `{key}: {example}` under `{parent}`"),
                );
                String::new()
            }
        }
    }

    pub(super) fn email(&mut self, e: file::EmailFile) -> Smtp {
        const P: &str = "notifiers.email";
        let host = self.required_text(P, "host", e.host, "smtp.example.com");
        let security = match e.security {
            None | Some(file::SmtpSecurityFile::Starttls) => SmtpSecurity::StartTls,
            Some(file::SmtpSecurityFile::Tls) => SmtpSecurity::Tls,
            Some(file::SmtpSecurityFile::None) => SmtpSecurity::None,
        };
        let default_port = match security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        };
        let port = self.number("notifiers.email.port", e.port, default_port, 1..=65535);
        let password = self.secret(
            P,
            "password",
            e.password_file.as_ref(),
            e.password_env.as_ref(),
        );
        let has_password = e.password_file.is_some() || e.password_env.is_some();
        if e.username.is_some() && !has_password {
            self.err(
                "notifiers.email.username",
                "`notifiers.email` has a `username` but no password",
                "add `password_file: path` or `password_env: VARIABLE` under `notifiers.email`",
            );
        }
        if e.username.is_none() && has_password {
            self.err(
                P,
                "`notifiers.email` has a password but no `username`",
                "add `username:` under `notifiers.email`, or remove the password",
            );
        }
        let from = self.required_text(P, "from", e.from, "\"nidan <no-reply@example.com>\"");
        if !from.is_empty() && !from.contains('@') {
            self.err(
                "notifiers.email.from",
                "`notifiers.email.from` is not an email address",
                "write e.g. `nidan <no-reply@example.com>` or `no-reply@example.com`",
            );
        }
        Smtp {
            host,
            port: u16::try_from(port).unwrap_or(587),
            security,
            username: e.username,
            password,
            from,
            timeout: self.duration(
                "notifiers.email.timeout",
                e.timeout.as_ref(),
                Duration::from_secs(10),
                Zero::Refused,
            ),
        }
    }

    pub(super) fn sms(&mut self, s: file::SmsFile) -> SmsGateway {
        const P: &str = "notifiers.sms";
        let url = self.required_text(P, "url", s.url, "https://sms.example.com/send");
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !url.is_empty() && (!scheme_ok || url.chars().any(char::is_whitespace)) {
            self.err(
                "notifiers.sms.url",
                "`notifiers.sms.url` is not an http:// or https:// URL",
                "write the gateway's full URL, e.g. `https://sms.example.com/send`",
            );
        }
        let method = s
            .method
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            self.err(
                "notifiers.sms.method",
                "`notifiers.sms.method` is not an HTTP method",
                "use `POST`, `PUT` or `GET`",
            );
        }
        let secret = self.secret(P, "secret", s.secret_file.as_ref(), s.secret_env.as_ref());
        let has_secret = s.secret_file.is_some() || s.secret_env.is_some();
        let mut headers = Vec::new();
        for (name, value) in s.headers.unwrap_or_default().0 {
            let path = format!("notifiers.sms.headers.{name}");
            if !token_ok(&name) {
                self.err(
                    &path,
                    "a header name under `notifiers.sms.headers` is not a valid HTTP header name",
                    "use letters, digits and `-`, e.g. `Authorization`",
                );
            } else if value.contains(['\r', '\n', '\0']) {
                self.err(
                    &path,
                    format!("header `{name}` has a line break in its value"),
                    "write the value on one line",
                );
            } else if value.contains("{secret}") && !has_secret {
                self.err(
                    &path,
                    format!("header `{name}` uses `{{secret}}` but `notifiers.sms` has no secret"),
                    "add `secret_file: path` or `secret_env: VARIABLE` under `notifiers.sms`",
                );
            }
            headers.push((name, value));
        }
        let success_status = match s.success_status {
            None => (200..=299).collect(),
            Some(list) => {
                if list.is_empty() {
                    self.err(
                        "notifiers.sms.success_status",
                        "`notifiers.sms.success_status` is empty",
                        "list the statuses that mean sent, e.g. `[200, 201]`",
                    );
                }
                list.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let n = self.number(
                            &format!("notifiers.sms.success_status[{i}]"),
                            Some(*v),
                            200,
                            100..=599,
                        );
                        u16::try_from(n).unwrap_or(200)
                    })
                    .collect()
            }
        };
        SmsGateway {
            url,
            method,
            headers,
            body_template: s
                .body_template
                .unwrap_or_else(|| "To={to}&Body={body}".into()),
            content_type: s
                .content_type
                .unwrap_or_else(|| "application/x-www-form-urlencoded".into()),
            success_status,
            secret,
            timeout: self.duration(
                "notifiers.sms.timeout",
                s.timeout.as_ref(),
                Duration::from_secs(10),
                Zero::Refused,
            ),
        }
    }

    pub(super) fn push(&mut self, p: file::PushFile) -> PushWebhook {
        const P: &str = "notifiers.push";
        let url = self.required_text(P, "url", p.url, "https://push.example.com/nidan");
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !url.is_empty() && (!scheme_ok || url.chars().any(char::is_whitespace)) {
            self.err(
                "notifiers.push.url",
                "`notifiers.push.url` is not an http:// or https:// URL",
                "write the webhook's full URL, e.g. `https://push.example.com/nidan`",
            );
        }
        let secret = self.secret(P, "secret", p.secret_file.as_ref(), p.secret_env.as_ref());
        let mut headers = Vec::new();
        for (name, value) in p.headers.unwrap_or_default().0 {
            let path = format!("{P}.headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(&value).is_err()
            {
                self.err(
                    &path,
                    format!("`{path}` is not a valid HTTP header"),
                    "use a plain header name and a printable value",
                );
            } else if value.contains("{secret}") && secret.is_none() {
                self.err(
                    &path,
                    format!("header `{name}` uses `{{secret}}` but `{P}` has no secret"),
                    format!("add `secret_file: path` or `secret_env: VARIABLE` under `{P}`"),
                );
            } else {
                headers.push((name, value));
            }
        }
        PushWebhook {
            url,
            headers,
            secret,
            timeout: self.duration(
                "notifiers.push.timeout",
                p.timeout.as_ref(),
                Duration::from_secs(10),
                Zero::Refused,
            ),
        }
    }
}
