//! Validation of return addresses (`rd`, return-to after login/logout) so the portal
//! can never be used as an open redirect (SECURITY.md item 21).
//!
//! The rule is an allowlist of shapes, not a blocklist of tricks: either a plain
//! same-origin path, or an `http(s)` URL whose host the caller explicitly allows.
//! Anything a browser might resolve differently from how we parse it is refused.

use crate::path::{is_control, is_unreserved, percent_decode, push_escaped};

/// Longest return address we consider; a longer one is refused, not truncated.
pub const MAX_RETURN_LEN: usize = 2048;

/// Returns the value to put in a `Location` header, or `None` when `raw` is not a safe
/// return address (callers then fall back to `/`).
///
/// `raw` is the parameter value as received (already decoded once by the query-string
/// parser). `allowed_hosts` is asked about the lower-cased host of absolute URLs only;
/// hosts must come from configuration, never from the request's `Host` header.
pub fn safe_return_to(raw: &str, allowed_hosts: &dyn Fn(&str) -> bool) -> Option<String> {
    if raw.is_empty() || raw.len() > MAX_RETURN_LEN {
        return None;
    }
    // Visible ASCII only. Browsers strip leading/trailing spaces and C0 controls and
    // silently delete tabs/newlines anywhere, which turns `/\t/evil.com` into
    // `//evil.com`; non-ASCII invites IDNA and normalisation surprises.
    if !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return None;
    }
    // Browsers treat '\' as '/' in special schemes: `/\evil.com` is `//evil.com`.
    if raw.contains('\\') {
        return None;
    }
    // Judge the value as it would look after one more decoding, so encoded controls
    // and backslashes (`%09`, `%0a`, `%5c`) get the same treatment as raw ones.
    let decoded = percent_decode(raw.as_bytes())?;
    if decoded.iter().any(|&b| is_control(b) || b == b'\\') {
        return None;
    }
    // The fragment never reaches the server and is not needed to return; dropping it
    // also removes `#@good.com` style confusions from the output.
    let without_fragment = raw.split('#').next().unwrap_or_default();
    if without_fragment.starts_with('/') {
        safe_path(without_fragment)
    } else {
        safe_absolute(without_fragment, allowed_hosts)
    }
}

/// Percent-encodes `value` for use as a query parameter (`?rd=...`): everything except
/// RFC 3986 unreserved characters is escaped, so the value cannot break out of the
/// parameter or the URL.
pub fn encode_rd(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            push_escaped(&mut out, b);
        }
    }
    out
}

/// A same-origin path: `/` alone or `/` followed by something that cannot make it
/// protocol-relative, at any decoding depth.
fn safe_path(p: &str) -> Option<String> {
    if !starts_safely(p.as_bytes()) {
        return None;
    }
    // Look through layered encodings (`/%252f%252fevil.com`): some application along
    // the way may decode once more, so no depth may reveal `//` or `/\`.
    let mut layer = p.as_bytes().to_vec();
    for _ in 0..4 {
        if !layer.contains(&b'%') {
            break;
        }
        // A deeper layer that does not decode cleanly is just data (`?q=100%25`).
        let Some(next) = percent_decode(&layer) else {
            break;
        };
        if !starts_safely(&next) {
            return None;
        }
        layer = next;
    }
    // Dot segments have no business in a return address and `/..//evil.com`-style
    // paths are a classic way to rebuild `//` after normalisation.
    let path_part = p.split('?').next().unwrap_or_default();
    let decoded_path = percent_decode(path_part.as_bytes())?;
    if decoded_path
        .split(|&b| b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return None;
    }
    Some(escape_unsafe(p))
}

/// `/` alone, or `/` followed by anything but `/`, `\`, or a control/space character.
fn starts_safely(p: &[u8]) -> bool {
    match p {
        [b'/'] => true,
        [b'/', second, ..] => {
            !matches!(second, b'/' | b'\\') && !is_control(*second) && *second != b' '
        }
        _ => false,
    }
}

/// `http(s)://host[:port][/path][?query]` with an allowed host and no userinfo.
fn safe_absolute(u: &str, allowed_hosts: &dyn Fn(&str) -> bool) -> Option<String> {
    let (scheme, rest) = u.split_once(':')?;
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        "https"
    } else if scheme.eq_ignore_ascii_case("http") {
        "http"
    } else {
        return None;
    };
    // Exactly two slashes: `https:evil.com` and `https:/evil.com` are resolved
    // leniently by browsers and must not pass.
    let rest = rest.strip_prefix("//")?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // No userinfo (`good.com@evil.com`) and no escapes in the authority
    // (`%65vil.com`, `good.com%2f@evil.com`): the host must be literal.
    if authority.is_empty() || authority.contains(['@', '%']) {
        return None;
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (authority, None),
    };
    let host = host.to_ascii_lowercase();
    if !is_plain_hostname(&host) || !allowed_hosts(&host) {
        return None;
    }
    let mut out = format!("{scheme}://{host}");
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port.to_string());
    }
    if !tail.starts_with('/') {
        out.push('/');
    }
    out.push_str(&escape_unsafe(tail));
    Some(out)
}

/// Decimal port 1..=65535, digits only (no sign, no second colon).
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

/// Dotted labels of `[a-z0-9-]`, no empty label (so no trailing dot). IP literals in
/// brackets are refused; dotted IPv4 passes only if the allowlist names it.
fn is_plain_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Escapes the visible ASCII characters that are never valid raw in a URL, so the
/// result is safe in a header and harmless if it ends up in HTML or JSON.
fn escape_unsafe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'^') {
            push_escaped(&mut out, b);
        } else {
            out.push(char::from(b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    // Test helpers report failures by panicking with the offending input.
    #![allow(clippy::panic)]

    use super::*;

    fn allowed(h: &str) -> bool {
        h == "good.com" || h == "auth.good.com"
    }

    fn check(raw: &str) -> Option<String> {
        safe_return_to(raw, &allowed)
    }

    const REJECTS: &[&str] = &[
        // Empty, whitespace, controls.
        "",
        " ",
        " /app",
        "/app ",
        "\t/app",
        "/app\n",
        "/\t/evil.com",
        "/\n/evil.com",
        "/\r/evil.com",
        "/%09/evil.com",
        "/%0a/evil.com",
        "/%0d/evil.com",
        "/%0D%0A/evil.com",
        "/%20/evil.com",
        "/%00/evil.com",
        "/app%0d%0aSet-Cookie:%20x=1",
        "/app?x=%0d%0aLocation:%20https://evil.com",
        "/%7f/evil.com",
        // Protocol-relative and backslash forms.
        "//evil.com",
        "///evil.com",
        "////evil.com",
        "//good.com",
        "/\\evil.com",
        "\\/evil.com",
        "\\\\evil.com",
        "/\\/evil.com",
        "/app\\..\\evil",
        "/%5cevil.com",
        "/%5Cevil.com",
        "/app%5cx",
        "/%2f%2fevil.com",
        "/%2F%2Fevil.com",
        "/%2fevil.com",
        "%2f%2fevil.com",
        "%2F%2Fevil.com",
        "/%252f%252fevil.com",
        "/%25252f%25252fevil.com",
        "/%255cevil.com",
        "/.//evil.com",
        "/..//evil.com",
        "/a/../../evil.com",
        "/%2e%2e//evil.com",
        "/./",
        // Relative references and other schemes.
        "evil.com",
        "app/x",
        "?x=1",
        "#x",
        ".",
        "..",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "javascript://good.com/%0aalert(1)",
        "java%0ascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "ftp://good.com/x",
        "file:///etc/passwd",
        "httpx://good.com/",
        "https+x://good.com/",
        "ahttps://good.com/",
        // Malformed http(s) shapes.
        "https:evil.com",
        "https:/evil.com",
        "https:good.com",
        "https:/good.com",
        "https:///evil.com",
        "https:\\\\evil.com",
        "https:/\\evil.com",
        "http:/\\/evil.com",
        "https://",
        "https://:443/",
        // Userinfo and authority confusions.
        "https://evil.com\\@good.com",
        "https://good.com@evil.com",
        "https://good.com:443@evil.com",
        "https://user:pass@good.com/",
        "https://@good.com/",
        "https://good.com%40evil.com",
        "https://good.com%2f@evil.com",
        "https://good.com%2F.evil.com",
        "https://%65vil.com",
        "https://%67ood.com/",
        "https://evil.com#@good.com",
        "https://evil.com?@good.com",
        "https://evil.com/@good.com",
        "https://evil.com/good.com",
        "https://evil.com%00.good.com",
        "https://evil.com%23.good.com",
        // Host suffix/prefix tricks and odd hosts.
        "https://good.com.evil.com",
        "https://evilgood.com",
        "https://good.com.",
        "https://.good.com",
        "https://good..com",
        "https://good_com",
        "https://g\u{f6}od.com",
        "https://good\u{3002}com",
        "https://[::1]/",
        "https://evil.com",
        "http://evil.com/?good.com",
        // Ports.
        "https://good.com:99999",
        "https://good.com:0/",
        "https://good.com:/",
        "https://good.com:+443/",
        "https://good.com:-1/",
        "https://good.com:443:443/",
        "https://good.com:44a/",
        "https://good.com:000443/",
        // Malformed escapes.
        "/%zz",
        "/app%4",
        "/app%",
        "https://good.com/%g1",
        // Non-ASCII anywhere.
        "/caf\u{e9}",
    ];

    #[test]
    fn rejects_corpus() {
        assert!(REJECTS.len() >= 40);
        for raw in REJECTS {
            assert_eq!(check(raw), None, "{raw:?} must be refused");
        }
    }

    #[test]
    fn too_long_is_refused() {
        let long = format!("/{}", "a".repeat(MAX_RETURN_LEN));
        assert_eq!(check(&long), None);
        let fits = format!("/{}", "a".repeat(MAX_RETURN_LEN - 1));
        assert_eq!(check(&fits), Some(fits.clone()));
    }

    #[test]
    fn accepts() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/app/x?y=1", "/app/x?y=1"),
            ("/app/x?y=1#frag", "/app/x?y=1"),
            ("/#//evil.com", "/"),
            ("/app/", "/app/"),
            ("/a%20b", "/a%20b"),
            ("/search?q=100%25", "/search?q=100%25"),
            (
                "/search?next=https://evil.com",
                "/search?next=https://evil.com",
            ),
            ("/a/b//c", "/a/b//c"),
            ("/%2561dmin", "/%2561dmin"),
            ("/x?a=\"<>", "/x?a=%22%3C%3E"),
            ("https://good.com/x", "https://good.com/x"),
            ("https://good.com", "https://good.com/"),
            ("https://good.com?x=1", "https://good.com/?x=1"),
            ("https://good.com#@evil.com", "https://good.com/"),
            ("https://good.com/x#y", "https://good.com/x"),
            ("http://good.com:8080/x", "http://good.com:8080/x"),
            ("https://good.com:443/", "https://good.com:443/"),
            ("https://good.com:08080/", "https://good.com:8080/"),
            ("HTTPS://GOOD.COM/x", "https://good.com/x"),
            ("hTtP://Auth.Good.Com/X?Y=Z", "http://auth.good.com/X?Y=Z"),
            ("https://auth.good.com/", "https://auth.good.com/"),
            ("https://good.com//evil.com", "https://good.com//evil.com"),
            (
                "https://good.com/%2F%2Fevil.com",
                "https://good.com/%2F%2Fevil.com",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(check(raw).as_deref(), Some(*want), "{raw:?}");
        }
    }

    #[test]
    fn allowlist_sees_lowercased_host_only() {
        let seen = std::cell::RefCell::new(Vec::new());
        let recorder = |h: &str| {
            seen.borrow_mut().push(h.to_string());
            h == "good.com"
        };
        assert!(safe_return_to("HTTPS://GOOD.COM:8443/x?y", &recorder).is_some());
        assert!(safe_return_to("/relative", &recorder).is_some());
        assert_eq!(*seen.borrow(), vec!["good.com".to_string()]);
        // With an empty allowlist only paths pass.
        let none = |_: &str| false;
        assert_eq!(safe_return_to("https://good.com/", &none), None);
        assert_eq!(safe_return_to("/x", &none).as_deref(), Some("/x"));
    }

    #[test]
    fn accepted_values_are_fixed_points() {
        let mut inputs: Vec<&str> = REJECTS.to_vec();
        inputs.extend([
            "/",
            "/app/x?y=1",
            "https://good.com",
            "HTTPS://GOOD.COM/x#f",
            "/x?a=\"<>",
        ]);
        for raw in inputs {
            if let Some(out) = check(raw) {
                assert_eq!(check(&out).as_deref(), Some(out.as_str()), "{raw:?}");
            }
        }
    }

    use crate::path::tests::Rng;

    const PIECES: &[&str] = &[
        "/",
        "//",
        "\\",
        "%2f",
        "%2F",
        "%5c",
        "%09",
        "%0a",
        "%25",
        "%252f",
        "@",
        "#",
        "?",
        ":",
        ".",
        "..",
        "evil.com",
        "good.com",
        "https:",
        "http:",
        "HTTPS://",
        "https://",
        "javascript:",
        " ",
        "\t",
        "%20",
        "%",
        "x",
        ":443",
        ":99999",
        "auth.",
    ];

    /// Whatever is generated, an accepted value is a same-origin path or an http(s)
    /// URL on an allowed host, and the host a browser would extract is that host.
    #[test]
    fn generated_inputs_never_escape() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        for _ in 0..5000 {
            let mut raw = String::new();
            for _ in 0..(1 + rng.next() % 6) {
                raw.push_str(rng.pick(PIECES));
            }
            let Some(out) = check(&raw) else { continue };
            accepted += 1;
            assert!(out.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{raw:?}");
            assert!(
                !out.contains('\\') && !out.contains('#'),
                "{raw:?} -> {out}"
            );
            if out.starts_with('/') {
                let second = out.as_bytes().get(1).copied();
                assert!(second != Some(b'/'), "{raw:?} -> {out}");
            } else {
                let rest = out
                    .strip_prefix("https://")
                    .or_else(|| out.strip_prefix("http://"));
                let Some(rest) = rest else {
                    panic!("{raw:?} -> {out}")
                };
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                let host = authority.split(':').next().unwrap_or_default();
                assert!(allowed(host), "{raw:?} -> {out}");
                assert!(!authority.contains('@'), "{raw:?} -> {out}");
            }
            assert_eq!(check(&out).as_deref(), Some(out.as_str()), "{raw:?}");
        }
        assert!(accepted > 50, "only {accepted} accepted");
    }

    #[test]
    fn encode_rd_escapes_all_but_unreserved() {
        assert_eq!(encode_rd("/app/x?y=1&z=2"), "%2Fapp%2Fx%3Fy%3D1%26z%3D2");
        assert_eq!(encode_rd("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(encode_rd("a b#c%"), "a%20b%23c%25");
        assert_eq!(encode_rd("\u{e9}"), "%C3%A9");
        assert_eq!(encode_rd(""), "");
    }

    #[test]
    fn encode_rd_round_trips() {
        let samples = [
            "/",
            "/app/x?y=1#f",
            "https://good.com:8080/a b?c=d&e=%2F",
            "\u{3042}\u{e9}\t\r\n\\\"'<>",
            "%%%",
        ];
        for s in samples {
            let enc = encode_rd(s);
            assert!(enc.bytes().all(|b| is_unreserved(b) || b == b'%'), "{enc}");
            let back = percent_decode(enc.as_bytes()).and_then(|v| String::from_utf8(v).ok());
            assert_eq!(back.as_deref(), Some(s));
        }
        // Every byte value.
        let all: String = (0u32..=0x7f).filter_map(char::from_u32).collect();
        let back =
            percent_decode(encode_rd(&all).as_bytes()).and_then(|v| String::from_utf8(v).ok());
        assert_eq!(back.as_deref(), Some(all.as_str()));
    }

    #[test]
    fn decoder_is_strict() {
        assert_eq!(percent_decode(b"%41%4a%4A"), Some(b"AJJ".to_vec()));
        assert_eq!(percent_decode(b"%"), None);
        assert_eq!(percent_decode(b"%4"), None);
        assert_eq!(percent_decode(b"%zz"), None);
        assert_eq!(percent_decode(b"%2561"), Some(b"%61".to_vec()));
    }
}
