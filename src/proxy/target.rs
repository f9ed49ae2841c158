//! The request target and Host, read once the way backends read them (SECURITY 38, DESIGN
//! "The request edge"): which form the target has, which host the request is for, and the
//! origin-form target the path is canonicalised from. Plain Rust on bytes, no pingora
//! types, so every case is a unit test.
//!
//! - origin-form (`/path?q`) for every method but CONNECT and OPTIONS `*`;
//! - absolute-form (`http://host/path`): its authority *is* the host (RFC 9112 §3.2.2) and
//!   the request goes upstream in origin-form with that host;
//! - `*` only for OPTIONS; CONNECT is refused (405); any other form is refused (400);
//! - a `#` anywhere is refused (400): clients never send a fragment, and a proxy in front
//!   passes the whole target on, so deciding on the part before it decides on less than
//!   the backend gets (SECURITY 45);
//! - Host: RFC 3986 syntax (reg-name, IPv4, `[IPv6]`, optional numeric port), lower-cased,
//!   one trailing dot dropped. Required on HTTP/1.1.

use std::fmt;
use std::net::Ipv6Addr;

/// Longest host name (DNS: 253 bytes without the trailing dot). Also bounds every value
/// derived from the host (passkey rp_id and origin, return-address checks).
pub const MAX_HOST_LEN: usize = 253;

/// A normalised `Host`: lower-case name (IPv6 in brackets, canonical form), optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// What routes match: lower-case, no port, no trailing dot.
    pub host: String,
    pub port: Option<u16>,
}

impl Authority {
    /// The value sent upstream as `Host` and `X-Forwarded-Host`.
    pub fn to_header(&self) -> String {
        match self.port {
            Some(p) => {
                // Without `format!`: this runs on every request with a port in Host.
                let mut digits = [0u8; 5];
                let mut n = p;
                let mut at = digits.len();
                loop {
                    at -= 1;
                    digits[at] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 || at == 0 {
                        break;
                    }
                }
                let mut out = String::with_capacity(self.host.len() + 6);
                out.push_str(&self.host);
                out.push(':');
                out.extend(digits[at..].iter().map(|d| char::from(*d)));
                out
            }
            None => self.host.clone(),
        }
    }
}

/// What the request names, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// An origin-form target (`/path?query`), still to be canonicalised: from the request
    /// line as sent, or the path and query of an absolute-form target.
    Path {
        path: &'a str,
        query: Option<&'a str>,
    },
    /// `OPTIONS *`: about the server, not a resource; no route decides it.
    Asterisk,
}

/// The request as the gateway reads it: the host it is for (`None` only for an HTTP/1.0
/// request without one) and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading<'a> {
    pub authority: Option<Authority>,
    pub target: Target<'a>,
}

/// The method, as far as the target's form depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    Connect,
    Options,
    Other,
}

/// Why a request was refused before routing. [`EdgeError::status`] gives the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeError {
    Connect,
    /// Neither origin-form nor an `http(s)://` absolute-form (`admin/x`, `x:/admin`).
    TargetForm,
    /// `*` with a method other than OPTIONS.
    Asterisk,
    /// An absolute-form target with userinfo, no host or a malformed authority.
    AbsoluteAuthority,
    MissingHost,
    RepeatedHost,
    BadHost,
    /// A `#` in the target.
    Fragment,
}

impl EdgeError {
    pub fn status(self) -> u16 {
        match self {
            EdgeError::Connect => 405,
            _ => 400,
        }
    }
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EdgeError::Connect => "CONNECT is not supported",
            EdgeError::TargetForm => {
                "the request target must be a path starting with / (or an http:// URL)"
            }
            EdgeError::Asterisk => "the target * is only for OPTIONS",
            EdgeError::AbsoluteAuthority => "the URL in the request line has no usable host",
            EdgeError::MissingHost => "the Host header is missing",
            EdgeError::RepeatedHost => "the Host header is sent more than once",
            EdgeError::BadHost => "the Host header is not a host name or address",
            EdgeError::Fragment => "the request target contains # (a fragment)",
        })
    }
}

impl std::error::Error for EdgeError {}

/// Reads target and Host. `raw_target` is the request-target exactly as sent;
/// `hosts` every `Host` field value sent; `h2_authority` the `:authority` of an HTTP/2
/// request; `http11` whether Host is mandatory (HTTP/1.1).
pub fn read<'a>(
    method: MethodKind,
    raw_target: &'a [u8],
    hosts: &[&[u8]],
    h2_authority: Option<&str>,
    http11: bool,
) -> Result<Reading<'a>, EdgeError> {
    if method == MethodKind::Connect {
        return Err(EdgeError::Connect);
    }
    // Non-ASCII UTF-8 in a path is percent-encoded by canonicalisation; other bytes are
    // not a target anyone can read the same way.
    let raw = std::str::from_utf8(raw_target).map_err(|_| EdgeError::TargetForm)?;
    if raw.as_bytes().contains(&b'#') {
        return Err(EdgeError::Fragment);
    }
    if raw == "*" {
        if method != MethodKind::Options {
            return Err(EdgeError::Asterisk);
        }
        let authority = header_host(hosts, h2_authority, http11)?;
        return Ok(Reading {
            authority,
            target: Target::Asterisk,
        });
    }
    if raw.starts_with('/') {
        let authority = header_host(hosts, h2_authority, http11)?;
        return Ok(Reading {
            authority,
            target: origin(raw),
        });
    }
    let (authority, target) = absolute(raw)?;
    // A Host header, if any, is ignored: the target's authority is the host.
    Ok(Reading {
        authority: Some(authority),
        target,
    })
}

/// Does the request line at the start of `head` (the raw request head) contain a `#`?
/// Method and version never do, so one is in the target.
pub fn line_has_fragment(head: &[u8]) -> bool {
    let end = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
    head.get(..end).is_some_and(|line| line.contains(&b'#'))
}

/// The host from the `Host` header (or HTTP/2 `:authority`).
fn header_host(
    hosts: &[&[u8]],
    h2_authority: Option<&str>,
    http11: bool,
) -> Result<Option<Authority>, EdgeError> {
    match hosts {
        [] => match h2_authority {
            Some(a) => parse_host(a.as_bytes()).map(Some),
            None if http11 => Err(EdgeError::MissingHost),
            None => Ok(None),
        },
        [one] => parse_host(one).map(Some),
        _ => Err(EdgeError::RepeatedHost),
    }
}

/// `http://authority/path?query` → (host, `/path?query`). Only `http` and `https`
/// (any case) with `//` and a non-empty authority; anything else is not a target form a
/// gateway may guess at (`mailto:/admin`, `foo:bar://h/admin`).
fn absolute(raw: &str) -> Result<(Authority, Target<'_>), EdgeError> {
    let (scheme, rest) = raw.split_once(':').ok_or(EdgeError::TargetForm)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(EdgeError::TargetForm);
    }
    let rest = rest.strip_prefix("//").ok_or(EdgeError::TargetForm)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(EdgeError::AbsoluteAuthority);
    }
    let authority = parse_host(authority.as_bytes()).map_err(|_| EdgeError::AbsoluteAuthority)?;
    let mut target = origin(tail);
    // `http://host` and `http://host?q` name the root (RFC 9112 §3.2.1: at least `/`).
    if let Target::Path { path, .. } = &mut target
        && path.is_empty()
    {
        *path = "/";
    }
    Ok((authority, target))
}

/// Splits an origin-form target (without `#`, refused before) into path and query.
fn origin(target: &str) -> Target<'_> {
    // Byte positions of ASCII delimiters are character boundaries.
    let cut = |s: &str, b: u8| s.bytes().position(|c| c == b);
    match cut(target, b'?') {
        Some(i) => Target::Path {
            path: target.get(..i).unwrap_or_default(),
            query: target.get(i + 1..),
        },
        None => Target::Path {
            path: target,
            query: None,
        },
    }
}

/// Parses a `Host` value (or absolute-form authority): reg-name (letters, digits, `-`,
/// `.`, `_`, `~`; at most 253 bytes, labels not empty), IPv4, or `[IPv6]`; then an
/// optional port of 1 to 5 digits (at most 65535). Lower-cased, one trailing dot removed.
/// Percent-escapes and RFC 3986 sub-delimiters are refused: no backend reads them the
/// same way, and no real host name needs them.
pub fn parse_host(value: &[u8]) -> Result<Authority, EdgeError> {
    let (host, port) = if let Some(v6) = value.strip_prefix(b"[") {
        let text = std::str::from_utf8(v6).map_err(|_| EdgeError::BadHost)?;
        let (inner, after) = text.split_once(']').ok_or(EdgeError::BadHost)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| EdgeError::BadHost)?;
        (format!("[{ip}]"), after.as_bytes())
    } else {
        let end = value.iter().position(|b| *b == b':').unwrap_or(value.len());
        let (name, after) = value.split_at(end);
        let name = name.strip_suffix(b".").unwrap_or(name);
        if !reg_name_ok(name) || (ends_in_number(name) && !dotted_quad(name)) {
            return Err(EdgeError::BadHost);
        }
        // ASCII only (checked above).
        let name = std::str::from_utf8(name).map_err(|_| EdgeError::BadHost)?;
        (name.to_ascii_lowercase(), after)
    };
    let port = match port.strip_prefix(b":") {
        None if port.is_empty() => None,
        None => return Err(EdgeError::BadHost),
        Some(p) => Some(port_of(p).ok_or(EdgeError::BadHost)?),
    };
    Ok(Authority { host, port })
}

fn reg_name_ok(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOST_LEN
        && name.split(|b| *b == b'.').all(|label| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~'))
        })
}

/// Does the name end in a number (the WHATWG URL standard's "ends in a number": its last
/// label is all digits, or `0x` and hex digits)? Browsers and WHATWG parsers then read the
/// whole name as an IPv4 address in one of its legacy spellings: `127.1`, `0x7f.1`,
/// `010.0.0.1` (octal: 8.0.0.1) and `2130706433` are all 127.0.0.1 or another address to
/// them, while nidan would route on the spelling.
fn ends_in_number(name: &[u8]) -> bool {
    let last = name.rsplit(|b| *b == b'.').next().unwrap_or_default();
    let hex = last
        .strip_prefix(b"0x")
        .or_else(|| last.strip_prefix(b"0X"))
        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
    hex || (!last.is_empty() && last.iter().all(u8::is_ascii_digit))
}

/// Exactly four decimal labels of 0 to 255 without leading zeros: the one IPv4 spelling
/// every reader reads the same way.
fn dotted_quad(name: &[u8]) -> bool {
    let labels: Vec<&[u8]> = name.split(|b| *b == b'.').collect();
    labels.len() == 4
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 3
                && l.iter().all(u8::is_ascii_digit)
                && (l.len() == 1 || !l.starts_with(b"0"))
                && l.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 255
        })
}

/// 1 to 5 ASCII digits, at most 65535 (`80`, `08080` is refused as ambiguous).
fn port_of(p: &[u8]) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if p.len() > 1 && p.starts_with(b"0") {
        return None;
    }
    let n = p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(v: &str) -> Result<String, EdgeError> {
        parse_host(v.as_bytes()).map(|a| a.to_header())
    }

    fn read_get<'a>(target: &'a str, hosts: &[&'a str]) -> Result<Reading<'a>, EdgeError> {
        let hosts: Vec<&[u8]> = hosts.iter().map(|h| h.as_bytes()).collect();
        read(MethodKind::Other, target.as_bytes(), &hosts, None, true)
    }

    fn path<'a>(path: &'a str, query: Option<&'a str>) -> Target<'a> {
        Target::Path { path, query }
    }

    fn auth(host: &str, port: Option<u16>) -> Option<Authority> {
        Some(Authority {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn host_table() {
        let valid = [
            ("wiki.test", "wiki.test"),
            ("Wiki.Test", "wiki.test"),
            ("wiki.test.", "wiki.test"),
            ("WIKI.test.:8080", "wiki.test:8080"),
            ("wiki.test:80", "wiki.test:80"),
            ("localhost", "localhost"),
            ("a_b.test", "a_b.test"),
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:65535", "127.0.0.1:65535"),
            ("[::1]", "[::1]"),
            ("[::1]:8443", "[::1]:8443"),
            ("[2001:DB8:0:0::1]", "[2001:db8::1]"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ];
        for (input, want) in valid {
            assert_eq!(host(input), Ok(want.to_owned()), "{input}");
        }
        let long_ok = format!("{}.test", "a".repeat(MAX_HOST_LEN - 5));
        assert!(host(&long_ok).is_ok());
        let invalid = [
            "",
            ":80",
            ".",
            "wiki.test..",
            "wiki..test",
            ".wiki.test",
            "wiki.test:80:80",
            "wiki.test:1:2:3",
            "wiki.test:",
            "wiki.test:x",
            "wiki.test:65536",
            "wiki.test:080",
            "wiki.test:+80",
            "wiki.test:123456",
            "wiki test",
            "wiki.test/admin",
            "wiki.test?x",
            "wiki.test#x",
            "user@wiki.test",
            "wiki%2etest",
            "wiki.test;x",
            "wiki.test,evil.test",
            "wiki.test\\x",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[v1.x]",
            "[wiki.test]",
            "::1",
            "w\u{e9}ki.test",
            "wiki.test\t",
        ];
        for input in invalid {
            assert_eq!(host(input), Err(EdgeError::BadHost), "{input:?}");
        }
        let too_long = format!("{}.test", "a".repeat(MAX_HOST_LEN));
        assert_eq!(host(&too_long), Err(EdgeError::BadHost));
        assert_eq!(parse_host(b"wiki\xff.test"), Err(EdgeError::BadHost));
    }

    /// The differential targets (`fuzz/`: host, edge, forward_auth, against the WHATWG `url`
    /// reader): a name that ends in a number is an IPv4 address to browsers and WHATWG
    /// parsers (`127.1` is 127.0.0.1, `010.0.0.1` is 8.0.0.1), while nidan routed on the
    /// spelling. Only the dotted quad, read the same way by every reader, is accepted.
    #[test]
    fn hosts_that_end_in_a_number_are_dotted_quads() {
        for ok in [
            "127.0.0.1",
            "10.0.0.255",
            "0.0.0.0",
            "1.2.3.4:8080",
            "a.1b",
            "v1.example",
            "example.0x1g",
            "1e.example",
        ] {
            assert!(host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "127.1",
            "1.2.3",
            "2130706433",
            "0x7f.0.0.1",
            "127.0.0.0x1",
            "010.0.0.1",
            "1.2.3.04",
            "256.0.0.1",
            "1.2.3.4.5",
            "a.0x",
            "wiki.123",
            "a.b.0X1F:80",
        ] {
            assert_eq!(host(bad), Err(EdgeError::BadHost), "{bad}");
        }
        // The same rule for an absolute-form target's authority.
        assert_eq!(
            read_get("http://127.1/admin", &[]),
            Err(EdgeError::AbsoluteAuthority)
        );
    }

    #[test]
    fn origin_form_uses_the_host_header() {
        assert_eq!(
            read_get("/a?b", &["Wiki.Test."]),
            Ok(Reading {
                authority: auth("wiki.test", None),
                target: path("/a", Some("b")),
            })
        );
        assert_eq!(read_get("/a", &[]), Err(EdgeError::MissingHost));
        assert_eq!(read_get("/a", &["a", "b"]), Err(EdgeError::RepeatedHost));
        assert_eq!(
            read_get("/a", &["wiki.test:80:80"]),
            Err(EdgeError::BadHost)
        );
        // HTTP/1.0 may leave Host out.
        assert_eq!(
            read(MethodKind::Other, b"/a", &[], None, false),
            Ok(Reading {
                authority: None,
                target: path("/a", None),
            })
        );
        // HTTP/2 brings the authority as a pseudo-header.
        assert_eq!(
            read(MethodKind::Other, b"/a", &[], Some("Wiki.Test:8443"), true),
            Ok(Reading {
                authority: auth("wiki.test", Some(8443)),
                target: path("/a", None),
            })
        );
    }

    #[test]
    fn absolute_form_authority_is_the_host() {
        let cases = [
            (
                "http://wiki.test/secret",
                "wiki.test",
                None,
                path("/secret", None),
            ),
            (
                "HTTP://Wiki.Test./secret?x=1",
                "wiki.test",
                None,
                path("/secret", Some("x=1")),
            ),
            (
                "https://wiki.test:8443/a/b",
                "wiki.test",
                Some(8443),
                path("/a/b", None),
            ),
            ("http://wiki.test", "wiki.test", None, path("/", None)),
            (
                "http://wiki.test?x",
                "wiki.test",
                None,
                path("/", Some("x")),
            ),
            ("http://[::1]:80/x", "[::1]", Some(80), path("/x", None)),
        ];
        for (target, h, port, want) in cases {
            for hosts in [&[][..], &["other.test"][..]] {
                assert_eq!(
                    read_get(target, hosts),
                    Ok(Reading {
                        authority: auth(h, port),
                        target: want.clone(),
                    }),
                    "{target} {hosts:?}"
                );
            }
        }
        for bad in [
            "http://",
            "http:///x",
            "http://user@wiki.test/x",
            "http://wiki.test:80:80/x",
            "http://wiki.test:x/x",
            "http://%77iki.test/x",
        ] {
            assert_eq!(
                read_get(bad, &[]),
                Err(EdgeError::AbsoluteAuthority),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_forms_are_refused() {
        for bad in [
            "admin/x",
            "x:/admin/x",
            "mailto:/admin/x",
            "foo:bar://h/admin/x",
            "http:/admin/x",
            "http:admin/x",
            "ftp://wiki.test/admin",
            "wiki.test:80",
            "",
            "\\admin",
            "?x",
            "%2fadmin",
            "caf\u{e9}",
        ] {
            assert_eq!(
                read_get(bad, &["wiki.test"]),
                Err(EdgeError::TargetForm),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_fragment_is_refused_wherever_it_is() {
        for t in [
            "/public#/../admin",
            "/a?x#y",
            "/#",
            "/a#",
            "http://wiki.test/public#/../admin",
            "http://wiki.test#/admin",
            "http://wiki.test?x#y",
            "http://wiki.test#",
            "*#",
        ] {
            assert_eq!(read_get(t, &["wiki.test"]), Err(EdgeError::Fragment), "{t}");
        }
        assert_eq!(
            read(MethodKind::Options, b"*#", &[b"wiki.test"], None, true),
            Err(EdgeError::Fragment)
        );
        assert_eq!(EdgeError::Fragment.status(), 400);
        // In a raw head (pingora strips the fragment from the target it hands over).
        assert!(line_has_fragment(
            b"GET /public#/../admin HTTP/1.1\r\nHost: a\r\n\r\n"
        ));
        assert!(line_has_fragment(b"GET /a#"));
        assert!(!line_has_fragment(
            b"GET /a?b=%23 HTTP/1.1\r\nX-Tag: #1\r\n\r\n"
        ));
        assert!(!line_has_fragment(b""));
        // Escaped, it is an ordinary character (for the path canonicaliser to judge).
        assert_eq!(
            read_get("/a%23b?q=%23", &["wiki.test"]).map(|r| r.target),
            Ok(path("/a%23b", Some("q=%23")))
        );
    }

    #[test]
    fn asterisk_and_connect() {
        assert_eq!(
            read(MethodKind::Options, b"*", &[b"wiki.test"], None, true),
            Ok(Reading {
                authority: auth("wiki.test", None),
                target: Target::Asterisk,
            })
        );
        assert_eq!(read_get("*", &["wiki.test"]), Err(EdgeError::Asterisk));
        assert_eq!(
            read(MethodKind::Other, b"/a\xff", &[b"wiki.test"], None, true),
            Err(EdgeError::TargetForm)
        );
        assert_eq!(
            read(
                MethodKind::Connect,
                b"wiki.test:443",
                &[b"wiki.test"],
                None,
                true
            ),
            Err(EdgeError::Connect)
        );
        assert_eq!(EdgeError::Connect.status(), 405);
        assert_eq!(EdgeError::TargetForm.status(), 400);
        assert_eq!(
            read(MethodKind::Options, b"/x", &[b"wiki.test"], None, true).map(|r| r.target),
            Ok(path("/x", None))
        );
    }
}
