//! The one id of a request: made here (or taken from a trusted proxy's `X-Request-Id`),
//! carried in a task-local while the request is decided so that every audit row it causes
//! names it, and shown in the access line, to the backend and on error answers.
//!
//! A leaf: no rule about who may send an id lives here (the proxy decides, from
//! `trusted_proxies`); this module only makes and checks ids.

use std::sync::Arc;

use rand::RngCore;

/// The header the id travels in, both ways.
pub const HEADER_NAME: &str = "x-request-id";
/// [`HEADER_NAME`], parsed once.
pub const HEADER: http::HeaderName = http::HeaderName::from_static(HEADER_NAME);

/// Longest id taken from a trusted proxy (a UUID is 36, a W3C trace id 32).
pub const MAX_LEN: usize = 64;

/// A request id: short visible ASCII, cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A new id: 16 random bytes (a CSPRNG), 32 lower-case hex digits.
    pub fn generate() -> Self {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        Self(hex::encode(b).into())
    }

    /// An id as sent by a proxy, if it is one: 1 to [`MAX_LEN`] characters of
    /// `A-Z a-z 0-9 - _ . : + / =` (UUIDs, hex, base64 and most tracing ids), nothing that
    /// could break a log line, a header or a page.
    pub fn parse(text: &[u8]) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= MAX_LEN
            && text
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b));
        ok.then(|| std::str::from_utf8(text).ok().map(|s| Self(s.into())))
            .flatten()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As a header value (always valid: visible ASCII only).
    pub fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(&self.0).unwrap_or_else(|_| http::HeaderValue::from_static("-"))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

tokio::task_local! {
    static CURRENT: RequestId;
}

/// Runs `fut` with `id` as the current request's id ([`current`]).
pub async fn scope<F: std::future::Future>(id: RequestId, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// The id of the request being decided on this task, if any (audit rows name it).
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_ids_are_hex_and_differ() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(RequestId::parse(a.as_str().as_bytes()), Some(a));
    }

    #[test]
    fn only_plain_ids_are_taken() {
        for good in [
            "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            "abc",
            "Root=1-67891233-abcdef012345678912345678",
        ] {
            assert!(RequestId::parse(good.as_bytes()).is_some(), "{good}");
        }
        let long = "a".repeat(MAX_LEN + 1);
        for bad in [
            "",
            long.as_str(),
            "a b",
            "a\"b",
            "a\nb",
            "<script>",
            "a;b",
            "ü",
            "a\\b",
        ] {
            assert!(RequestId::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_current_id_is_the_scopes() {
        assert!(current().is_none());
        let id = RequestId::generate();
        let seen = scope(id.clone(), async { current() }).await;
        assert_eq!(seen, Some(id));
    }
}
