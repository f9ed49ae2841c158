//! Request-target canonicalisation: the single place where the path used for route
//! matching (and forwarded to the backend) is derived from what the client sent
//! (SECURITY.md items 25 and 26).
//!
//! Ambiguous encodings are refused instead of guessed at, because a gateway and a
//! backend that disagree about what a path means is exactly how auth bypasses happen
//! (Authelia CVE-2021-32637, Pomerium CVE-2023-33189, Envoy CVE-2019-9901). So is a `#`
//! anywhere in a target (SECURITY 45): no client sends a fragment, and a proxy in front
//! passes the whole target on while a reader that stops at `#` decides on less of it.

use std::fmt;

/// Longest canonical target (path plus query), in bytes: a hard cap above the configurable
/// request-line limit (`server.limits.max_request_line`, 414), which is what normally bounds
/// a target; this one also bounds what escaping non-ASCII bytes can grow a path to.
pub const MAX_TARGET_LEN: usize = 64 * 1024;

/// A canonical request target: `path` is what routes match on and what is forwarded;
/// `query` is passed through byte-for-byte and never used for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    pub path: String,
    pub query: Option<String>,
}

impl Canonical {
    /// Path plus `?query` when there is one, ready to forward upstream.
    pub fn to_target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }
}

/// Why a request target was refused. Every variant should be answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotOriginForm,
    BadEncoding,
    DoubleEncoding,
    EncodedSlash,
    NulOrControl,
    Backslash,
    Semicolon,
    EscapesRoot,
    TooLong,
    /// A `#` in the path or query.
    Fragment,
    /// Escapes whose bytes are not UTF-8 (`%C0%AE`, `%80`, `%ED%A0%80`).
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "the request target is not a path starting with /",
            PathError::BadEncoding => "the path contains a malformed percent-escape",
            PathError::DoubleEncoding => {
                "the path is percent-encoded twice (%25 and two hex digits)"
            }
            PathError::EncodedSlash => {
                "the path contains an encoded slash or backslash (%2F or %5C)"
            }
            PathError::NulOrControl => "the path contains a NUL or control character",
            PathError::Backslash => "the path contains a backslash",
            PathError::Semicolon => "the path contains a semicolon (path parameter)",
            PathError::EscapesRoot => "the path climbs above the root with ..",
            PathError::TooLong => "the request target is too long",
            PathError::Fragment => "the request target contains # (a fragment)",
            PathError::NotUtf8 => "the path contains percent-escapes that are not UTF-8",
        })
    }
}

impl std::error::Error for PathError {}

/// Canonicalises a full origin-form request target (`/a/b?x=1`): the query is kept
/// untouched and the path is canonicalised. A `#` anywhere is refused.
pub fn canonicalize(target: &str) -> Result<Canonical, PathError> {
    if target.len() > MAX_TARGET_LEN {
        return Err(PathError::TooLong);
    }
    match target.split_once('?') {
        Some((path, query)) => canonicalize_parts(path, Some(query)),
        None => canonicalize_parts(target, None),
    }
}

/// Canonicalises a path and query that were already split apart (as pingora's
/// `uri.path()` / `uri.query()` give them).
pub fn canonicalize_parts(path: &str, query: Option<&str>) -> Result<Canonical, PathError> {
    let total = path.len() + query.map_or(0, |q| q.len() + 1);
    if total > MAX_TARGET_LEN {
        return Err(PathError::TooLong);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    // The query is the backend's (legacy encodings included), but not a `#` in it: the
    // target that goes on would not be the one decided on.
    if query.is_some_and(|q| q.as_bytes().contains(&b'#')) {
        return Err(PathError::Fragment);
    }
    let path = if already_canonical(path.as_bytes()) {
        path.to_owned()
    } else {
        let decoded = normalise_bytes(path.as_bytes())?;
        if double_encoded(decoded.as_bytes()) {
            return Err(PathError::DoubleEncoding);
        }
        if !spells_utf8(decoded.as_bytes()) {
            return Err(PathError::NotUtf8);
        }
        remove_dot_segments(&decoded)?
    };
    // Encoding non-ASCII bytes can triple the length; keep the bound on the output too.
    if path.len() + query.map_or(0, |q| q.len() + 1) > MAX_TARGET_LEN {
        return Err(PathError::TooLong);
    }
    Ok(Canonical {
        path,
        query: query.map(escape_query),
    })
}

/// The query as pingora passes a request line's on: controls, space, `"`, `<`, `>` and
/// non-ASCII percent-encoded, everything else byte for byte. A query read from a header
/// (forward-auth's `X-Forwarded-Uri`) then decides and forwards what the proxy would, and
/// never puts a raw space into the target a proxy in front sends on.
fn escape_query(q: &str) -> String {
    let raw = |b: u8| b > 0x20 && b < 0x7f && !matches!(b, b'"' | b'<' | b'>');
    if q.bytes().all(raw) {
        return q.to_owned();
    }
    let mut out = String::with_capacity(q.len() + 8);
    for b in q.bytes() {
        if raw(b) {
            out.push(char::from(b));
        } else {
            push_escaped(&mut out, b);
        }
    }
    out
}

/// Is `path` its own canonical form (most paths are)? Raw path characters only (no `%`,
/// nothing to escape or refuse), and no empty, `.` or `..` segment except an empty last one
/// (a trailing slash): then decoding and dot-segment removal would give it back unchanged,
/// so the copies they make are skipped (hot path).
fn already_canonical(path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/") else {
        return false;
    };
    let mut segments = rest.split(|b| *b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last)
            || seg == b"."
            || seg == b".."
            || !seg.iter().all(|b| is_raw_path_char(*b))
        {
            return false;
        }
    }
    true
}

/// `%25` followed by two hex digits: `%2561` is `%61` after one decoding and `a` after
/// two, so a backend that decodes twice sees another path than the one decided on
/// (SECURITY 25). Checked on the normalised path, which is what is forwarded (so
/// `%25%34%31` is caught too).
fn double_encoded(path: &[u8]) -> bool {
    path.windows(5)
        .any(|w| w.starts_with(b"%25") && w.iter().skip(3).all(|b| hex_val(*b).is_some()))
}

/// Do the path's bytes, escapes decoded, spell UTF-8 (`normalised` is [`normalise_bytes`]'s
/// output: ASCII, every other byte escaped)? Overlong forms (`%C0%AE` is `.`, `%C0%AF` is
/// `/`), lone continuation bytes, cut sequences, surrogates and code points past U+10FFFF
/// are not: lenient decoders (old IIS, some Java and PHP ones) read `%C0%AE%C0%AE` as `..`,
/// strict ones refuse it, and nidan would have decided on neither.
fn spells_utf8(normalised: &[u8]) -> bool {
    // Only an escape of a byte >= 0x80 (`%8`..`%F`) can be part of a multi-byte sequence.
    let high = |w: &[u8]| matches!(w, [b'%', b'8'..=b'9' | b'A'..=b'F']);
    if !normalised.windows(2).any(high) {
        return true;
    }
    let mut bytes = Vec::with_capacity(normalised.len());
    let mut i = 0;
    while let Some(&b) = normalised.get(i) {
        let hi = normalised.get(i + 1).copied().and_then(hex_val);
        let lo = normalised.get(i + 2).copied().and_then(hex_val);
        match (b, hi, lo) {
            (b'%', Some(hi), Some(lo)) => {
                bytes.push((hi << 4) | lo);
                i += 3;
            }
            _ => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&bytes).is_ok()
}

/// RFC 3986 `unreserved`.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// An ASCII control character (C0 or DEL).
pub fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Characters that may appear raw in a canonical path segment (RFC 3986 `pchar` minus
/// `;`, which we refuse, and minus `%`, which is handled separately). Everything else
/// is percent-encoded on output.
fn is_raw_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

/// The value of one hex digit.
pub fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict single-pass percent-decoding; a `%` not followed by two hex digits is an
/// error rather than being passed through, so nothing ambiguous survives.
pub fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            let hi = hex_val(*input.get(i + 1)?)?;
            let lo = hex_val(*input.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `%XX` (upper-case hex) for `b`.
pub fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
}

/// One decoding pass: `%XX` of an unreserved char is decoded, other escapes are kept
/// with upper-case hex, dangerous bytes are refused, anything else outside the raw set
/// is escaped. The result is pure ASCII and contains no '%' that could decode to
/// something structural, so a second pass changes nothing (idempotence).
fn normalise_bytes(input: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            let hi = input.get(i + 1).copied().and_then(hex_val);
            let lo = input.get(i + 2).copied().and_then(hex_val);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEncoding);
            };
            let v = (hi << 4) | lo;
            if v == b'/' || v == b'\\' {
                return Err(PathError::EncodedSlash);
            }
            if is_control(v) {
                return Err(PathError::NulOrControl);
            }
            // Some backends (Tomcat, Spring) decode before stripping path parameters.
            if v == b';' {
                return Err(PathError::Semicolon);
            }
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                push_escaped(&mut out, v);
            }
            i += 3;
            continue;
        }
        if is_control(b) {
            return Err(PathError::NulOrControl);
        }
        match b {
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            b'#' => return Err(PathError::Fragment),
            // Cannot be part of a path; if a caller hands one over, the split into path
            // and query went wrong somewhere and we must not guess.
            b'?' => return Err(PathError::NotOriginForm),
            b'/' => out.push('/'),
            _ if is_raw_path_char(b) => out.push(char::from(b)),
            // Non-ASCII bytes and ASCII outside pchar: encode so the output is ASCII.
            _ => push_escaped(&mut out, b),
        }
        i += 1;
    }
    Ok(out)
}

/// RFC 3986 5.2.4 dot-segment removal plus collapsing of empty segments. A `..` at
/// the root is an error rather than being clamped: such a request is never legitimate
/// and clamping would hide a probing attempt from the backend's own checks.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    // `path` starts with '/', so the first split element is empty; skip it.
    let mut segments = path.split('/').skip(1).peekable();
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
            }
            name => stack.push(name),
        }
        // A path ending in '/', '/.' or '/..' names a directory: keep the slash.
        trailing_slash = last && matches!(seg, "" | "." | "..");
    }
    let mut out = String::with_capacity(path.len());
    for seg in &stack {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    // Test helpers report failures by panicking with the offending input.
    #![allow(clippy::panic)]

    use super::*;

    fn path_of(t: &str) -> String {
        match canonicalize(t) {
            Ok(c) => c.path,
            Err(e) => panic!("{t:?} was refused: {e}"),
        }
    }

    fn err_of(t: &str) -> PathError {
        match canonicalize(t) {
            Ok(c) => panic!("{t:?} was accepted as {c:?}"),
            Err(e) => e,
        }
    }

    /// The slow path (decode, check, remove dot segments), as `canonicalize_parts` runs it
    /// when the fast path does not apply.
    fn slow(path: &str) -> Result<String, PathError> {
        let decoded = normalise_bytes(path.as_bytes())?;
        if double_encoded(decoded.as_bytes()) {
            return Err(PathError::DoubleEncoding);
        }
        remove_dot_segments(&decoded)
    }

    #[test]
    fn the_fast_path_agrees_with_the_slow_one() {
        // Every path of up to 6 characters from an alphabet with the structural ones.
        let alphabet = ['/', '.', 'a', '%', ';', '2', 'F', '~', ' '];
        let mut paths = vec![String::from("/")];
        let mut fast = 0;
        for _ in 0..5 {
            let longer: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            for p in &longer {
                if already_canonical(p.as_bytes()) {
                    fast += 1;
                    assert_eq!(slow(p).as_deref(), Ok(p.as_str()), "{p:?}");
                }
            }
            paths = longer;
        }
        assert!(fast > 1000, "{fast}");
    }

    /// Found by the `forward_auth` fuzz target: a query with a raw space from
    /// `X-Forwarded-Uri` went on as sent (`X-Nidan-Uri`), where the proxy reads the same
    /// request line with the space escaped.
    #[test]
    fn a_query_is_escaped_as_pingora_escapes_a_request_line() {
        let c = canonicalize_parts("/a", Some(": x POST\t\"<>\u{e9}")).unwrap();
        assert_eq!(c.query.as_deref(), Some(":%20x%20POST%09%22%3C%3E%C3%A9"));
        let plain = canonicalize_parts("/a", Some("q=%20&x=1")).unwrap();
        assert_eq!(plain.query.as_deref(), Some("q=%20&x=1"));
    }

    #[test]
    fn security_25_list() {
        assert_eq!(path_of("//admin"), "/admin");
        assert_eq!(path_of("/./admin"), "/admin");
        assert_eq!(err_of("/public/..%2fadmin"), PathError::EncodedSlash);
        assert_eq!(err_of("/public/..%2Fadmin"), PathError::EncodedSlash);
        assert_eq!(path_of("/public/../admin"), "/admin");
        assert_eq!(path_of("/%61dmin"), "/admin");
        assert_eq!(err_of("/%2561dmin"), PathError::DoubleEncoding);
        assert_eq!(err_of("/admin%252fx"), PathError::DoubleEncoding);
        assert_eq!(err_of("/admin;x"), PathError::Semicolon);
        assert_eq!(err_of("/admin%00"), PathError::NulOrControl);
        assert_eq!(err_of("/admin\\x"), PathError::Backslash);
        assert_eq!(err_of("\\admin"), PathError::NotOriginForm);
        assert_eq!(err_of("/%5cadmin"), PathError::EncodedSlash);
        assert_eq!(err_of("/%5Cadmin"), PathError::EncodedSlash);
        assert_eq!(err_of("/.."), PathError::EscapesRoot);
        assert_eq!(err_of("/../admin"), PathError::EscapesRoot);
        assert_eq!(err_of("/a/../../b"), PathError::EscapesRoot);
        assert_eq!(err_of("/%2e%2e/admin"), PathError::EscapesRoot);
    }

    #[test]
    fn malformed_escapes() {
        assert_eq!(err_of("/%zz"), PathError::BadEncoding);
        assert_eq!(err_of("/a%4"), PathError::BadEncoding);
        assert_eq!(err_of("/a%4/"), PathError::BadEncoding);
        assert_eq!(err_of("/a%"), PathError::BadEncoding);
        assert_eq!(err_of("/%g0"), PathError::BadEncoding);
        assert_eq!(err_of("/%0g"), PathError::BadEncoding);
        assert_eq!(err_of("/%%41"), PathError::BadEncoding);
        // Trailing '%' just before the query or fragment.
        assert_eq!(err_of("/a%?x=1"), PathError::BadEncoding);
        assert_eq!(err_of("/a%#f"), PathError::BadEncoding);
    }

    #[test]
    fn unreserved_escapes_are_decoded_once() {
        assert_eq!(path_of("/%41%5a%30%2D%2e%5F%7e"), "/AZ0-._~");
        assert_eq!(path_of("/public/%2e%2e/admin"), "/admin");
        assert_eq!(path_of("/public/%2E%2E/admin"), "/admin");
        assert_eq!(path_of("/public/.%2e/admin"), "/admin");
        assert_eq!(path_of("/%2e/admin"), "/admin");
        // %25 is '%' and must stay encoded so nothing gets decoded twice; followed by two
        // hex digits it is a double encoding and refused.
        assert_eq!(err_of("/%252e%252e/admin"), PathError::DoubleEncoding);
        assert_eq!(err_of("/%252f"), PathError::DoubleEncoding);
        assert_eq!(err_of("/%252F"), PathError::DoubleEncoding);
        assert_eq!(path_of("/100%25"), "/100%25");
        assert_eq!(path_of("/100%25x"), "/100%25x");
        assert_eq!(path_of("/100%252"), "/100%252");
        assert_eq!(path_of("/a%25%41"), "/a%25A");
        assert_eq!(err_of("/a%25%41B"), PathError::DoubleEncoding);
        assert_eq!(err_of("/a%25%34%31"), PathError::DoubleEncoding);
        // The query is the backend's business.
        assert_eq!(path_of("/a?x=%2561"), "/a");
    }

    #[test]
    fn kept_escapes_are_upper_cased() {
        assert_eq!(path_of("/a%e3%81%82"), "/a%E3%81%82");
        assert_eq!(path_of("/a%20b"), "/a%20b");
        assert_eq!(path_of("/a%3a"), "/a%3A");
        assert_eq!(path_of("/a%3F"), "/a%3F");
        assert_eq!(path_of("/a%23"), "/a%23");
    }

    #[test]
    fn control_characters() {
        for b in (0u8..0x20).chain([0x7f]) {
            let enc = format!("/a%{b:02x}b");
            assert_eq!(err_of(&enc), PathError::NulOrControl, "{enc}");
            let enc_upper = format!("/a%{b:02X}b");
            assert_eq!(err_of(&enc_upper), PathError::NulOrControl, "{enc_upper}");
            let raw = format!("/a{}b", char::from(b));
            assert_eq!(err_of(&raw), PathError::NulOrControl, "{raw:?}");
        }
        assert_eq!(err_of("/admin%0d%0aX-Injected:1"), PathError::NulOrControl);
    }

    #[test]
    fn semicolons_raw_and_encoded() {
        assert_eq!(err_of("/admin;jsessionid=1"), PathError::Semicolon);
        assert_eq!(err_of("/public;/../admin"), PathError::Semicolon);
        assert_eq!(err_of("/admin%3bx"), PathError::Semicolon);
        assert_eq!(err_of("/admin%3Bx"), PathError::Semicolon);
        // A semicolon in the query is none of our business.
        assert_eq!(path_of("/admin?a=1;b=2"), "/admin");
    }

    #[test]
    fn slashes_collapse() {
        assert_eq!(path_of("/a//b"), "/a/b");
        assert_eq!(path_of("///a///b///"), "/a/b/");
        assert_eq!(path_of("//"), "/");
        assert_eq!(path_of("/"), "/");
        assert_eq!(path_of("//.//a//..//"), "/");
        assert_eq!(err_of("//./..//.."), PathError::EscapesRoot);
    }

    #[test]
    fn dot_segments() {
        assert_eq!(path_of("/a/b/../c"), "/a/c");
        assert_eq!(path_of("/a/./b/./c"), "/a/b/c");
        assert_eq!(path_of("/a/b/.."), "/a/");
        assert_eq!(path_of("/a/.."), "/");
        assert_eq!(path_of("/a/../"), "/");
        assert_eq!(path_of("/a/b/c/../../d"), "/a/d");
        assert_eq!(path_of("/a/.../b"), "/a/.../b");
        assert_eq!(path_of("/a/..b/c"), "/a/..b/c");
        assert_eq!(path_of("/a/.b"), "/a/.b");
        assert_eq!(err_of("/a/../.."), PathError::EscapesRoot);
        assert_eq!(err_of("/./.."), PathError::EscapesRoot);
    }

    #[test]
    fn trailing_slash_kept() {
        assert_eq!(path_of("/app/"), "/app/");
        assert_eq!(path_of("/app"), "/app");
        assert_eq!(path_of("/app/."), "/app/");
        assert_eq!(path_of("/app/./"), "/app/");
        assert_eq!(path_of("/app//"), "/app/");
    }

    #[test]
    fn non_ascii_and_odd_ascii_are_encoded() {
        assert_eq!(path_of("/a\u{3042}"), "/a%E3%81%82");
        assert_eq!(path_of("/caf\u{e9}"), "/caf%C3%A9");
        assert_eq!(path_of("/a b"), "/a%20b");
        assert_eq!(path_of("/a\"<>`{|}^[]"), "/a%22%3C%3E%60%7B%7C%7D%5E%5B%5D");
        // Both spellings end up the same.
        assert_eq!(path_of("/a\u{3042}"), path_of("/a%e3%81%82"));
        assert_eq!(path_of("/!$&'()*+,=:@"), "/!$&'()*+,=:@");
    }

    #[test]
    fn query_and_fragment_never_affect_the_path() {
        let c = canonicalize("/admin?x=/public").ok();
        assert_eq!(
            c,
            Some(Canonical {
                path: "/admin".into(),
                query: Some("x=/public".into())
            })
        );
        let c = canonicalize("/public?x=../admin").ok();
        assert_eq!(
            c,
            Some(Canonical {
                path: "/public".into(),
                query: Some("x=../admin".into())
            })
        );
        assert_eq!(
            canonicalize("/a?x=%zz;\\").ok(),
            Some(Canonical {
                path: "/a".into(),
                query: Some("x=%zz;\\".into())
            })
        );
        assert_eq!(
            canonicalize("/a?").ok(),
            Some(Canonical {
                path: "/a".into(),
                query: Some(String::new())
            })
        );
        assert_eq!(path_of("/public?/../../admin"), "/public");
    }

    #[test]
    fn a_fragment_is_refused_wherever_it_is() {
        // Deciding on the part before `#` while a proxy passes the whole target on let
        // `/public#/../admin` through as the bypass `/public` (SECURITY 45).
        for t in [
            "/public#/../admin",
            "/a#frag",
            "/a#",
            "/#",
            "/a?x=1#/../../admin",
            "/a?x=%zz;\\#frag?y",
            "/a#?x=1",
            "/a%23#",
        ] {
            assert_eq!(err_of(t), PathError::Fragment, "{t}");
        }
        assert_eq!(canonicalize_parts("/a#b", None), Err(PathError::Fragment));
        assert_eq!(
            canonicalize_parts("/a", Some("x#y")),
            Err(PathError::Fragment)
        );
        // Escaped, it is a character like any other, in the path or the query.
        assert_eq!(path_of("/a%23b"), "/a%23b");
        assert_eq!(
            canonicalize("/a?q=%23").ok().and_then(|c| c.query),
            Some("q=%23".into())
        );
    }

    #[test]
    fn escapes_must_spell_utf8() {
        for t in [
            // Overlong `.`, `/` and `\\`: lenient decoders read `%C0%AE%C0%AE` as `..`.
            "/public/%C0%AE%C0%AE/admin",
            "/public/%c0%ae%c0%ae/admin",
            "/public/..%C0%AFadmin",
            "/public/..%C1%9Cadmin",
            "/%E0%80%AE",
            "/%E0%80%AF",
            "/%F0%80%80%AF",
            // Lone continuation bytes, cut sequences, surrogates, past U+10FFFF, never UTF-8.
            "/%80",
            "/a%BFb",
            "/%C3",
            "/%C3x",
            "/%C3%28",
            "/%E3%81",
            "/%E3%81/",
            "/%ED%A0%80",
            "/%ED%BF%BF",
            "/%F4%90%80%80",
            "/%F5%80%80%80",
            "/%F8%88%80%80%80",
            "/%FE",
            "/%FF",
            // Raw characters and escapes are one byte sequence: neither completes the other.
            "/\u{e9}%A9",
            "/%C3\u{e9}",
            "/%E3\u{3042}",
        ] {
            assert_eq!(err_of(t), PathError::NotUtf8, "{t:?}");
        }
        for (t, want) in [
            ("/%E3%81%82", "/%E3%81%82"),
            ("/%e3%81%82/x", "/%E3%81%82/x"),
            ("/%C3%A9", "/%C3%A9"),
            ("/%F0%9F%98%80", "/%F0%9F%98%80"),
            ("/%ED%9F%BF", "/%ED%9F%BF"),
            ("/%EE%80%80", "/%EE%80%80"),
            ("/%EF%BF%BF", "/%EF%BF%BF"),
            ("/%F4%8F%BF%BF", "/%F4%8F%BF%BF"),
            ("/\u{3042}%E3%81%82", "/%E3%81%82%E3%81%82"),
        ] {
            assert_eq!(path_of(t), want, "{t:?}");
        }
        // The query is the backend's: a Shift_JIS form (`あ` is `%82%A0`) still works.
        assert_eq!(
            canonicalize("/search?q=%82%A0").ok().and_then(|c| c.query),
            Some("q=%82%A0".into())
        );
    }

    #[test]
    fn to_target_round_trips() {
        let c = canonicalize("//x/./y?q=%2F").ok();
        assert_eq!(c.map(|c| c.to_target()), Some("/x/y?q=%2F".to_string()));
    }

    #[test]
    fn origin_form_only() {
        assert_eq!(err_of(""), PathError::NotOriginForm);
        assert_eq!(err_of("admin"), PathError::NotOriginForm);
        assert_eq!(err_of("*"), PathError::NotOriginForm);
        assert_eq!(err_of("http://evil.com/admin"), PathError::NotOriginForm);
        assert_eq!(err_of("?x=1"), PathError::NotOriginForm);
        assert_eq!(err_of("%2fadmin"), PathError::NotOriginForm);
    }

    #[test]
    fn parts_api() {
        assert_eq!(
            canonicalize_parts("//a/./b", Some("x=1")).ok(),
            Some(Canonical {
                path: "/a/b".into(),
                query: Some("x=1".into())
            })
        );
        assert_eq!(
            canonicalize_parts("/a?b", None),
            Err(PathError::NotOriginForm)
        );
        assert_eq!(canonicalize_parts("a", None), Err(PathError::NotOriginForm));
    }

    #[test]
    fn length_limits() {
        let ok = format!("/{}", "a".repeat(MAX_TARGET_LEN - 1));
        assert_eq!(path_of(&ok).len(), MAX_TARGET_LEN);
        let long = format!("/{}", "a".repeat(MAX_TARGET_LEN));
        assert_eq!(err_of(&long), PathError::TooLong);
        let long_query = format!("/a?{}", "b".repeat(MAX_TARGET_LEN));
        assert_eq!(err_of(&long_query), PathError::TooLong);
        assert_eq!(
            canonicalize_parts("/a", Some(&"b".repeat(MAX_TARGET_LEN))),
            Err(PathError::TooLong)
        );
        // Fits as input, but the escaped output would not.
        let wide = format!("/{}", "\u{e9}".repeat(MAX_TARGET_LEN / 2 - 1));
        assert!(wide.len() <= MAX_TARGET_LEN);
        assert_eq!(err_of(&wide), PathError::TooLong);
    }

    #[test]
    fn display_is_short_and_specific() {
        assert!(PathError::EncodedSlash.to_string().contains("%2F"));
        let all = [
            PathError::NotOriginForm,
            PathError::BadEncoding,
            PathError::DoubleEncoding,
            PathError::EncodedSlash,
            PathError::NulOrControl,
            PathError::Backslash,
            PathError::Semicolon,
            PathError::EscapesRoot,
            PathError::TooLong,
            PathError::Fragment,
            PathError::NotUtf8,
        ];
        for e in all {
            let s = e.to_string();
            assert!(!s.is_empty() && s.len() < 80, "{s}");
        }
    }

    /// Deterministic xorshift so a generated corpus is the same on every run (the return
    /// address tests use it too).
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            let n = u64::try_from(items.len()).unwrap_or(1);
            let i = usize::try_from(self.next() % n).unwrap_or(0);
            items[i]
        }
    }

    const PIECES: &[&str] = &[
        "/",
        "//",
        "/./",
        "/../",
        ".",
        "..",
        "a",
        "admin",
        "public",
        "%2e",
        "%2E",
        "%2e%2e",
        "%61",
        "%41",
        "%25",
        "%2561",
        "%20",
        "%e3%81%82",
        "\u{3042}",
        "%3a",
        "%3A",
        "~",
        "-",
        "_",
        "@",
        ":",
        "!",
        "+",
        "=",
        " ",
        "\"",
        "[",
        "]",
        "%7e",
        "%7E",
        "%2f",
        "%5c",
        ";",
        "\\",
        "%00",
        "%zz",
        "%4",
        "%",
        "?q=1",
        "#f",
        "%3b",
        "%23",
        "%3f",
        "...",
        "%C0%AE",
        "%c3%a9",
        "%80",
        "%E3",
    ];

    #[test]
    fn idempotent_on_generated_inputs() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        let mut refused = 0;
        for _ in 0..2000 {
            let len = 1 + (rng.next() % 8);
            let mut target = String::from("/");
            for _ in 0..len {
                target.push_str(rng.pick(PIECES));
            }
            match canonicalize(&target) {
                Ok(c) => {
                    accepted += 1;
                    let again = canonicalize(&c.path);
                    assert_eq!(
                        again.as_ref().map(|a| a.path.as_str()),
                        Ok(c.path.as_str()),
                        "not idempotent for {target:?}"
                    );
                    // Invariants of a canonical path.
                    assert!(c.path.starts_with('/'));
                    assert!(c.path.is_ascii());
                    assert!(!c.path.contains("//"), "{target:?} -> {}", c.path);
                    assert!(!c.path.contains(';') && !c.path.contains('\\'));
                    assert!(spells_utf8(c.path.as_bytes()), "{target:?} -> {}", c.path);
                    for seg in c.path.split('/') {
                        assert!(seg != "." && seg != "..", "{target:?} -> {}", c.path);
                    }
                    // Also stable through the split API.
                    assert_eq!(
                        canonicalize_parts(&c.path, c.query.as_deref()).ok(),
                        Some(c.clone())
                    );
                }
                Err(_) => refused += 1,
            }
        }
        // The generator must exercise both outcomes substantially.
        assert!(accepted > 300, "only {accepted} accepted");
        assert!(refused > 300, "only {refused} refused");
    }
}
