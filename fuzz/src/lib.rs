//! What the fuzz targets share: the request head read as pingora reads it, and the
//! properties every accepted request target must have, checked against reference readers
//! (`http::Uri`, which is what the gateway forwards, and the WHATWG `url` parser, which is
//! what many backends and browsers read).

use std::sync::LazyLock;

use nidan::fuzzing::{Authority, Canonical, EdgeRead, RequestHeader};
use percent_encoding::{AsciiSet, CONTROLS};

/// pingora 0.9's rescue of request lines httparse refuses: the target's controls, spaces,
/// `<`, `>`, `"` and non-ASCII bytes are percent-encoded and the head is parsed again
/// (pingora-core `protocols/http/v1/server.rs`, `escape_illegal_request_line`).
static REQUEST_LINE: LazyLock<Option<regex::bytes::Regex>> =
    LazyLock::new(|| regex::bytes::Regex::new(r"^\w+ (?P<uri>.+) HTTP/\d(?:\.\d)?").ok());
const URI_ESC: &AsciiSet = &CONTROLS.add(b' ').add(b'<').add(b'>').add(b'"');

fn escape_request_line(buf: &[u8]) -> Option<Vec<u8>> {
    let caps = REQUEST_LINE.as_ref()?.captures(buf)?;
    let uri = caps.name("uri")?;
    let mut out = buf[..uri.start()].to_vec();
    for s in percent_encoding::percent_encode(uri.as_bytes(), URI_ESC) {
        out.extend_from_slice(s.as_bytes());
    }
    if out.len() == uri.end() {
        return None;
    }
    out.extend_from_slice(&buf[uri.end()..]);
    Some(out)
}

/// The head as pingora holds it after reading `buf`: its raw bytes and the parsed header.
/// `None` where pingora refuses the head before nidan sees it.
pub fn pingora_head(buf: &[u8]) -> Option<(Vec<u8>, RequestHeader)> {
    let mut owned = buf.to_vec();
    for _ in 0..2 {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&owned) {
            Ok(httparse::Status::Complete(n)) => {
                let mut header = RequestHeader::build(
                    req.method.unwrap_or(""),
                    req.path.unwrap_or("").as_bytes(),
                    Some(req.headers.len()),
                )
                .ok()?;
                header.set_version(match req.version {
                    Some(1) => http::Version::HTTP_11,
                    Some(0) => http::Version::HTTP_10,
                    _ => http::Version::HTTP_09,
                });
                for h in req.headers.iter() {
                    let value = http::HeaderValue::from_bytes(h.value).ok()?;
                    header.append_header(h.name.to_owned(), value).ok()?;
                }
                if header.headers.contains_key(http::header::TRANSFER_ENCODING) {
                    header.remove_header(&http::header::CONTENT_LENGTH);
                }
                return Some((owned[..n].to_vec(), header));
            }
            Ok(httparse::Status::Partial) => return None,
            Err(httparse::Error::Token | httparse::Error::Version) => {
                owned = escape_request_line(&owned)?;
            }
            Err(_) => return None,
        }
    }
    None
}

/// The proxy edge on a raw head: `None` when pingora refuses it first.
pub fn edge(buf: &[u8]) -> Option<Result<EdgeRead, u16>> {
    let (raw, req) = pingora_head(buf)?;
    Some(nidan::fuzzing::read_edge(&raw, &req))
}

/// The properties of every accepted canonical target (SECURITY 25, 26, 38, 45).
pub fn check_canonical(c: &Canonical) {
    let p = &c.path;
    assert!(p.starts_with('/'), "not origin-form: {p:?}");
    assert!(p.is_ascii(), "not ASCII: {p:?}");
    assert!(
        !p.bytes().any(|b| b < 0x20 || b == 0x7f),
        "control in {p:?}"
    );
    for bad in ['#', '?', '\\', ';'] {
        assert!(!p.contains(bad), "{bad:?} in {p:?}");
    }
    let upper = p.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%00", "%2E", "%3B"] {
        assert!(!upper.contains(bad), "{bad} in {p:?}");
    }
    // Never encoded twice: `%25` and two hex digits is `%XX` to a backend that decodes again.
    assert!(
        !upper
            .as_bytes()
            .windows(5)
            .any(|w| w.starts_with(b"%25") && w[3].is_ascii_hexdigit() && w[4].is_ascii_hexdigit()),
        "double encoding in {p:?}"
    );
    let segments: Vec<&str> = p.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        assert!(*seg != "." && *seg != "..", "dot segment in {p:?}");
        assert!(
            !seg.is_empty() || i + 1 == segments.len(),
            "empty segment in {p:?}"
        );
    }
    assert!(
        !c.query.as_deref().is_some_and(|q| q.contains('#')),
        "# in the query of {c:?}"
    );
    // Idempotent: canonicalising what is forwarded changes nothing.
    let again = nidan::path::canonicalize(&c.to_target());
    assert_eq!(again.as_ref(), Ok(c), "not idempotent");
    // What the gateway forwards is `to_target()` parsed as an `http::Uri`: the backend gets
    // exactly the path decided on.
    if let Ok(uri) = c.to_target().parse::<http::Uri>() {
        assert_eq!(uri.path(), c.path, "http::Uri reads another path");
        assert_eq!(
            uri.query(),
            c.query.as_deref(),
            "http::Uri reads another query"
        );
    }
}

/// The host and path a WHATWG reader (the `url` crate: browsers, many backends) finds in the
/// request nidan decided on are the ones nidan routed on.
pub fn check_against_url(a: &Authority, c: &Canonical) {
    let text = format!("http://{}{}", a.to_header(), c.path);
    let url = match url::Url::parse(&text) {
        Ok(u) => u,
        // An `xn--` label that is not valid punycode: WHATWG readers refuse the whole host,
        // so no backend routes it elsewhere (nidan routes it as spelled).
        Err(url::ParseError::IdnaError) if a.host.contains("xn--") => return,
        Err(e) => panic!("url refuses what nidan accepted: {text:?}: {e}"),
    };
    match url.host() {
        // The same address, whichever RFC 5952 spelling (`::ffff:127.0.0.1`, `::ffff:7f00:1`).
        Some(url::Host::Ipv6(ip)) => {
            let ours: Option<std::net::Ipv6Addr> = a
                .host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok());
            assert_eq!(ours, Some(ip), "url reads another address");
        }
        _ => assert_eq!(
            url.host_str(),
            Some(a.host.as_str()),
            "url reads another host"
        ),
    }
    assert_eq!(url.path(), c.path, "url reads another path");
    if a.port != Some(80) {
        assert_eq!(url.port(), a.port, "url reads another port");
    }
}

/// A request head for `method target` with `Host: host` (HTTP/1.1).
pub fn head(method: &str, target: &str, host: Option<&str>) -> Vec<u8> {
    let mut h = format!("{method} {target} HTTP/1.1\r\n");
    if let Some(host) = host {
        h.push_str("Host: ");
        h.push_str(host);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Splits fuzz input into `\n`-separated `name: value` header lines (as a proxy in front
/// would send them), keeping those `http` accepts.
pub fn header_map(data: &[u8]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value[1..].trim_ascii();
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.trim_ascii()),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(n, v);
        }
    }
    map
}
