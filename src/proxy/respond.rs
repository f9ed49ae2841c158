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

/// The gateway's own answer naming the request (`X-Request-Id`); a JSON error body (4xx,
/// 5xx) also names it as `reference`, the id a user or client quotes to support.
pub fn with_request_id(mut resp: Response, id: &RequestId) -> Response {
    let json = resp
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json"));
    if resp.status >= 400 && json {
        let body = serde_json::from_slice::<serde_json::Value>(&resp.body);
        if let Ok(serde_json::Value::Object(mut map)) = body
            && !map.contains_key("reference")
        {
            map.insert("reference".into(), id.as_str().into());
            resp.body = serde_json::Value::Object(map).to_string().into();
        }
    }
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
    fn json_errors_name_the_request_and_other_answers_carry_its_header() {
        let id = RequestId::parse(b"abc-123").unwrap();
        let r = with_request_id(Response::json_error(502, "bad_gateway", "down"), &id);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["reference"], "abc-123");
        assert_eq!(body["error"], "bad_gateway");
        assert_eq!(r.header("x-request-id"), Some("abc-123"));
        let ok = with_request_id(Response::json(200, &serde_json::json!({"a": 1})), &id);
        assert_eq!(&ok.body[..], br#"{"a":1}"#);
        assert_eq!(ok.header("x-request-id"), Some("abc-123"));
        let page = with_request_id(Response::html(404, "<p>x</p>".into()), &id);
        assert_eq!(&page.body[..], b"<p>x</p>");
    }
}
