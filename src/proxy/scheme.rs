//! Whether a request is served over HTTPS: the one notion that cookie names and `Secure`,
//! HSTS, the backend's `X-Forwarded-Proto` and the portal's origins follow (SECURITY 19, 23,
//! 44). Decided once per request in `Gateway::decide` (for forward-auth, for the request
//! the proxy describes) and carried from there; nothing else looks at the socket or at
//! `X-Forwarded-Proto` for it.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// HTTPS when the configuration says every request is (`always`: an https
/// `portal.public_url` or `session.secure_cookies: always`), when the connection is TLS,
/// or when a trusted proxy reports `https` (`proxy_says`, `None` from anyone else).
pub fn https(always: bool, socket_tls: bool, proxy_says: Option<&str>) -> bool {
    always || socket_tls || proxy_says.is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The scheme a trusted proxy reports in `X-Forwarded-Proto`: its last element (the one the
/// nearest proxy wrote, as for `X-Forwarded-For`), only from a peer in `trusted_proxies`;
/// from anyone else the header changes nothing.
pub fn forwarded_proto<'a>(
    headers: &'a HeaderMap,
    peer: IpAddr,
    trusted: &[IpNet],
) -> Option<&'a str> {
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return None;
    }
    let last = headers
        .get_all(super::upstream::X_FORWARDED_PROTO)
        .iter()
        .next_back()?;
    last.to_str().ok()?.rsplit(',').next().map(str::trim)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-proto", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_trusted_peer_says_https() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let proxy = IpAddr::from([127, 0, 0, 1]);
        let stranger = IpAddr::from([127, 0, 0, 2]);
        let says =
            |h: &[&str], peer| https(false, false, forwarded_proto(&headers(h), peer, &trusted));
        assert!(says(&["https"], proxy));
        assert!(says(&["HTTPS"], proxy));
        assert!(says(&["http, https"], proxy));
        assert!(says(&["http", "https"], proxy));
        assert!(!says(&["https, http"], proxy));
        assert!(!says(&["http"], proxy));
        assert!(!says(&[], proxy));
        assert!(!says(&["https"], stranger));
        assert!(!says(&["httpsx"], proxy));
        // The configuration and the socket need nobody's word.
        assert!(https(true, false, None));
        assert!(https(false, true, Some("http")));
    }
}
