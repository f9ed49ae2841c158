//! Writing the gateway's own answers (portal pages, redirects, JSON errors, 4xx/5xx pages)
//! to a pingora session.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::portal::http::Response;
use crate::request_id::RequestId;

/// `Strict-Transport-Security`, sent on everything served over HTTPS (SECURITY 23, 44).
pub const HSTS: &str = "strict-transport-security";
/// A year; no `includeSubDomains`: other hosts of the domain are not nidan's to decide.
pub const HSTS_VALUE: &str = "max-age=31536000";

/// The gateway's own answer with HSTS when the request was served over HTTPS (one it
/// already carries is kept).
pub fn hsts(resp: Response, https: bool) -> Response {
    if https && resp.header(HSTS).is_none() {
        resp.with(HSTS, HSTS_VALUE)
    } else {
        resp
    }
}

/// The gateway's own answer naming the request (`X-Request-Id`). The bodies stay as they
/// are: the gateway's error answers name it as `reference` themselves
/// (`portal::gateway_error`), and the portal's answers must stay identical for known and
/// unknown IDs (SECURITY 41), which a random id in the body would make harder to check.
pub fn with_request_id(resp: Response, id: &RequestId) -> Response {
    resp.with(crate::request_id::HEADER_NAME, id.as_str())
}

/// Writes a complete response. Requests we answer ourselves never leave a body unread
/// behind on a kept-alive connection (SECURITY 29): with a body pending, we close.
pub async fn write(session: &mut Session, resp: Response, head_only: bool) -> Result<()> {
    let mut header = ResponseHeader::build(resp.status, Some(resp.headers.len() + 3))?;
    // No 503 leaves without a Retry-After (the one policy, `crate::outage`): a path that
    // forgot it still tells the client when to come back.
    if resp.status == 503 && resp.header("retry-after").is_none() {
        header.insert_header("retry-after", crate::outage::retry_after())?;
    }
    for (name, value) in &resp.headers {
        match name {
            std::borrow::Cow::Borrowed(n) => header.append_header(*n, value.as_str())?,
            std::borrow::Cow::Owned(n) => header.append_header(n.clone(), value.as_str())?,
        };
    }
    header.insert_header("content-length", resp.body.len().to_string())?;
    if !session.is_body_empty() && !session.is_body_done() {
        session.set_keepalive(None);
    }
    let empty = head_only || resp.body.is_empty();
    session
        .write_response_header(Box::new(header), empty)
        .await?;
    if !empty {
        session.write_response_body(Some(resp.body), true).await?;
    }
    Ok(())
}

/// Reads the whole request body, up to `limit` bytes. `None` when it is larger.
pub async fn read_body(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_carry_the_request_id_header_and_keep_their_body() {
        let id = RequestId::parse(b"abc-123").unwrap();
        let r = with_request_id(Response::json_error(401, "login_failed", "wrong"), &id);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "login_failed", "message": "wrong"})
        );
        assert_eq!(r.header("x-request-id"), Some("abc-123"));
        let ok = with_request_id(Response::json(200, &serde_json::json!({"a": 1})), &id);
        assert_eq!(&ok.body[..], br#"{"a":1}"#);
        assert_eq!(ok.header("x-request-id"), Some("abc-123"));
        let page = with_request_id(Response::html(404, "<p>x</p>".into()), &id);
        assert_eq!(&page.body[..], b"<p>x</p>");
    }
}
