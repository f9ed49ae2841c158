//! Header hygiene between client and backend: identity headers only from us, gateway
//! cookies hidden, hop-by-hop headers gone both ways, forwarding headers from the real peer
//! (SECURITY 20, 24, 26, 27).

use std::net::IpAddr;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use pingora::http::RequestHeader;

/// Headers a client must never get to a backend, besides the configured identity headers:
/// forwarding information is ours to set, and rewrite hints must not steer backends.
const CLIENT_FORBIDDEN: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-uri",
    "x-forwarded-prefix",
    "x-forwarded-method",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-real-ip",
    "forwarded",
];

/// Hop-by-hop headers (RFC 9110 7.6.1) other than the framing ones pingora manages.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// `X-Forwarded-For`, parsed once (lookups by a `&str` name parse it on every request).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`, parsed once.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`, parsed once.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// An address as a header value, without the formatting machinery (hot path).
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    let mut text = Vec::with_capacity(15);
    push_ip(&mut text, ip);
    // Digits, dots and colons only: always a valid value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Appends `ip` as text: IPv4 by hand, IPv6 through `Display`.
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Forgets the spelling of header names pingora keeps beside a request's headers (its
/// case map), so the request goes upstream with names as HTTP/2 and most proxies send them:
/// lower case, pingora's titled forms for the common ones (`Host`, `Content-Type`, ...).
/// Field names are case-insensitive (RFC 9110 5.1), so no backend reads the request
/// differently; what it saves is a second map that pingora copies for the upstream request
/// and that every header added or removed would otherwise be parsed again for, copied and
/// inserted into (hot path, issue 14). Call it after the request edge was read: the raw
/// target goes with the case map, and the URI's path and query is the target from then on.
pub fn forget_case(req: &mut RequestHeader) {
    if req.has_case() {
        edit(req, |_| ());
    }
}

/// Runs `f` on the request as plain `http` parts (whose header map can be edited directly
/// with names parsed once) and puts it back without a case map. The target on the wire is
/// then the URI's path and query.
pub fn edit<T>(req: &mut RequestHeader, f: impl FnOnce(&mut Parts) -> T) -> T {
    let end_stream = req.send_end_stream();
    let empty = http::Request::new(()).into_parts().0;
    let mut parts: Parts = std::mem::replace(req, empty.into()).into();
    let out = f(&mut parts);
    *req = parts.into();
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
    out
}

/// A header name compared the way backends may read it: lower-case, `_` as `-`.
pub fn normal(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Names to remove from a request before it goes upstream. `identity` holds the normalised
/// identity header names. Upgrade requests keep `Connection: upgrade` and `Upgrade`.
/// Names come back parsed, sorted, each once (removing one by name parses nothing more).
pub fn request_removals(
    headers: &HeaderMap,
    identity: &[String],
    upgrade: bool,
) -> Vec<HeaderName> {
    let listed = connection_listed(headers);
    let mut out = Vec::new();
    for name in headers.keys() {
        // Header names arrive lower-case; only an `_` needs a new string (hot path).
        let n: std::borrow::Cow<'_, str> = if name.as_str().as_bytes().contains(&b'_') {
            normal(name.as_str()).into()
        } else {
            name.as_str().into()
        };
        let hop = HOP_BY_HOP.contains(&name.as_str()) || listed.iter().any(|l| *l == name.as_str());
        let keep_for_upgrade = upgrade && matches!(name.as_str(), "connection" | "upgrade");
        if identity.iter().any(|i| *i == n)
            || CLIENT_FORBIDDEN.contains(&n.as_ref())
            || (hop && !keep_for_upgrade)
        {
            out.push(name.clone());
        }
    }
    // `keys()` gives each name once.
    out.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    out
}

/// Names to remove from a backend's response on its way to the client.
pub fn response_removals(headers: &HeaderMap, upgrade: bool) -> Vec<HeaderName> {
    let listed = connection_listed(headers);
    let mut out: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            let hop = HOP_BY_HOP.contains(&n) || listed.iter().any(|l| l == n);
            hop && !(upgrade && matches!(n, "connection" | "upgrade"))
        })
        .cloned()
        .collect();
    out.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    out
}

/// Header names a `Connection` header lists (lower-case). The usual `keep-alive`, `close`
/// and `upgrade` are never copied, so the common `Connection: keep-alive` allocates nothing.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    let mut out = Vec::new();
    for value in headers.get_all(http::header::CONNECTION) {
        // Visible ASCII only (a line that is not is skipped).
        if value.to_str().is_err() {
            continue;
        }
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            if token.is_empty()
                || [&b"upgrade"[..], b"close", b"keep-alive"]
                    .iter()
                    .any(|k| token.eq_ignore_ascii_case(k))
            {
                continue;
            }
            out.push(String::from_utf8_lossy(token).to_ascii_lowercase());
        }
    }
    out
}

/// Is this `Set-Cookie` value for one of the gateway's cookies?
pub fn sets_gateway_cookie(set_cookie: &str, gateway: &[&str]) -> bool {
    let name = set_cookie.split(['=', ';']).next().unwrap_or("").trim();
    let bare = name
        .strip_prefix("__Host-")
        .or_else(|| name.strip_prefix("__Secure-"))
        .unwrap_or(name);
    gateway.iter().any(|g| g.eq_ignore_ascii_case(bare))
}

/// The client address decisions key on (SECURITY 8): the TCP peer, or — when the peer is a
/// trusted proxy — the rightmost `X-Forwarded-For` hop that is not a trusted proxy.
/// `xff` holds every `X-Forwarded-For` field line in the order received: a proxy that adds a
/// line of its own (rather than appending to the client's) must not leave the client's
/// line to be read as the truth (RFC 9110 5.3: the lines form one list).
pub fn client_ip<'a>(
    peer: IpAddr,
    xff: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let mut client = peer;
    for hop in xff.rev().flat_map(|line| line.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted.iter().any(|n| n.contains(&ip)) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn names(v: Vec<HeaderName>) -> Vec<String> {
        v.iter().map(|n| n.as_str().to_owned()).collect()
    }

    #[test]
    fn identity_spoofs_are_removed_in_every_spelling() {
        let identity = vec![normal("Remote-User"), normal("Remote-Groups")];
        let h = headers(&[
            ("Remote-User", "admin"),
            ("remote_user", "admin"),
            ("REMOTE-GROUPS", "admins"),
            ("x-forwarded-for", "1.2.3.4"),
            ("X-Original-URL", "/admin"),
            ("accept", "*/*"),
        ]);
        let r = names(request_removals(&h, &identity, false));
        assert_eq!(
            r,
            vec![
                "remote-groups",
                "remote-user",
                "remote_user",
                "x-forwarded-for",
                "x-original-url"
            ]
        );
    }

    #[test]
    fn connection_cannot_remove_our_headers_but_its_list_goes() {
        let h = headers(&[
            ("connection", "keep-alive, x-secret, remote-user"),
            ("x-secret", "1"),
            ("te", "trailers"),
        ]);
        let r = names(request_removals(&h, &[normal("Remote-User")], false));
        assert!(
            r.contains(&"connection".to_owned())
                && r.contains(&"x-secret".to_owned())
                && r.contains(&"te".to_owned())
        );
        let up = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(request_removals(&up, &[], true).is_empty());
        assert_eq!(
            names(request_removals(&up, &[], false)),
            vec!["connection", "upgrade"]
        );
        // The usual tokens name no header; others are removed in any case.
        let h = headers(&[("connection", "Keep-Alive, X-Trace"), ("x-trace", "1")]);
        assert_eq!(
            names(response_removals(&h, false)),
            vec!["connection", "x-trace"]
        );
    }

    #[test]
    fn gateway_cookies_cannot_be_set_by_backends() {
        let gw = ["nidan_session", "nidan_device"];
        assert!(sets_gateway_cookie("nidan_session=x; Path=/", &gw));
        assert!(sets_gateway_cookie("__Host-nidan_device=x", &gw));
        assert!(!sets_gateway_cookie("app=1", &gw));
    }

    #[test]
    fn addresses_as_text() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.9.255",
            "203.0.113.7",
            "::1",
            "2001:db8::42",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
            assert_eq!(ip_value(ip).to_str().unwrap(), ip.to_string());
        }
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, ["1.2.3.4"].into_iter(), &trusted), peer);
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(
            client_ip(proxy, ["6.6.6.6, 1.2.3.4, 10.0.0.9"].into_iter(), &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, ["garbage"].into_iter(), &trusted), proxy);
        // A second field line (a proxy that adds its own) is read after the first: the
        // client's own line cannot name the address.
        assert_eq!(
            client_ip(proxy, ["10.9.0.5", "203.0.113.7"].into_iter(), &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, std::iter::empty(), &trusted), proxy);
    }
}
