//! The portal's own request and response types, free of pingora, so the portal can be
//! driven and tested as plain functions.

use std::borrow::Cow;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, Method};

/// A request under the portal prefix, after path canonicalisation.
pub struct Request {
    pub method: Method,
    /// Canonical path with the prefix removed (`/login`, `/api/me`, ...; `/` for the root).
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The client's address (the TCP peer, or `X-Forwarded-For` from a trusted proxy).
    pub peer: IpAddr,
    /// Served over HTTPS: the gateway's one notion ([`crate::proxy::scheme::https`]), which
    /// cookie names, `Secure`, HSTS and origins follow (SECURITY 44).
    pub https: bool,
    /// Lower-case host from the `Host` header, without port.
    pub host: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The body as form fields (first value of each name wins).
    pub fn form(&self) -> Option<Vec<(String, String)>> {
        let ct = self.header("content-type").unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return None;
        }
        Some(
            form_urlencoded::parse(&self.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"))
    }

    pub fn user_agent(&self) -> String {
        self.header("user-agent")
            .unwrap_or("")
            .chars()
            .take(512)
            .collect()
    }
}

/// First value of a form field.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A complete response from the portal.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names are mostly fixed; configured ones (identity headers) are owned.
    pub headers: Vec<(Cow<'static, str>, String)>,
    pub body: Bytes,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.to_owned())],
            body: body.into(),
        }
    }

    pub fn html(status: u16, body: String) -> Self {
        Self::new(status, "text/html; charset=utf-8", body)
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    /// `{"error": code, "message": text}`.
    pub fn json_error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({"error": code, "message": message}),
        )
    }

    /// 303 See Other (a form POST becomes a GET) or 302 for plain redirects.
    pub fn redirect(status: u16, location: &str) -> Self {
        let mut r = Self::new(status, "text/plain; charset=utf-8", "");
        r.headers.push(("location".into(), location.to_owned()));
        r
    }

    pub fn no_content() -> Self {
        Self {
            status: 204,
            headers: vec![],
            body: Bytes::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A header whose name comes from the configuration.
    pub fn with_named(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned().into(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
