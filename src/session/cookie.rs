//! The gateway's cookies: one constructor with safe defaults and a removal that matches it,
//! reading a named cookie from the request, and hiding gateway cookies from backends.

use cookie::{Cookie, SameSite};
use http::HeaderMap;
use http::header::COOKIE;

/// The name a cookie goes by: `__Host-` prefixed over HTTPS (SECURITY 19, 44). Reading and
/// writing both go through it with the request's one HTTPS notion
/// ([`crate::proxy::scheme::https`]), so they cannot disagree.
pub fn name(base: &str, https: bool) -> String {
    if https {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// A `Set-Cookie` value for cookie `base` (named by [`name`]): Path=/, HttpOnly,
/// SameSite=Lax, and over HTTPS `__Host-` + Secure; session cookie (no Max-Age) unless
/// `max_age` is given.
pub fn set(base: &str, value: &str, https: bool, max_age: Option<i64>) -> String {
    let mut c = Cookie::build((name(base, https), value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(https);
    if let Some(secs) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    c.build().to_string()
}

/// A `Set-Cookie` value that deletes what `set` made.
pub fn remove(base: &str, https: bool) -> String {
    Cookie::build((name(base, https), ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(https)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

/// The value of cookie `name`. A cookie sent twice, or unparsable, counts as absent: the
/// caller then asks for a login (fails closed, SECURITY 28). Pairs are read as the cookie
/// crate's `Cookie::split_parse` reads them (split at `;`, whitespace trimmed, name up to the
/// first `=`; a pair without `=` or with an empty name is skipped), without building a
/// cookie per pair (hot path: every request to a login route).
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found: Option<&[u8]> = None;
    for value in headers.get_all(COOKIE) {
        // Visible ASCII only (else the line is skipped, as before).
        if value.to_str().is_err() {
            continue;
        }
        for pair in value.as_bytes().split(|b| *b == b';') {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            let (key, rest) = pair.split_at(eq);
            let key = key.trim_ascii();
            if key.is_empty() || key != name.as_bytes() {
                continue;
            }
            if found.is_some() {
                return None;
            }
            found = Some(rest.get(1..).unwrap_or_default().trim_ascii());
        }
    }
    found
        .filter(|v| !v.is_empty())
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// The `Cookie` header for the backend: every pair except those named in `hidden`
/// (with or without the `__Host-` prefix). `None` when nothing is left.
pub fn without(headers: &HeaderMap, hidden: &[&str]) -> Option<String> {
    let mut kept = Vec::new();
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let key = pair.split('=').next().unwrap_or("").trim();
            let bare = key.strip_prefix("__Host-").unwrap_or(key);
            if !hidden.contains(&bare) {
                kept.push(pair);
            }
        }
    }
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn set_has_safe_defaults() {
        let s = set("nidan_session", "abc", true, None);
        assert!(s.starts_with("__Host-nidan_session=abc"), "{s}");
        assert!(s.contains("HttpOnly") && s.contains("Secure") && s.contains("SameSite=Lax"));
        assert!(s.contains("Path=/") && !s.contains("Max-Age"));
        let r = remove("nidan_session", true);
        assert!(
            r.starts_with("__Host-nidan_session=") && r.contains("Secure"),
            "{r}"
        );
        let r = remove("nidan_session", false);
        assert!(
            r.starts_with("nidan_session=") && r.contains("Max-Age=0"),
            "{r}"
        );
        assert!(!r.contains("Secure"));
    }

    #[test]
    fn get_fails_closed_on_duplicates() {
        assert_eq!(get(&headers(&["a=1; s=x"]), "s").as_deref(), Some("x"));
        assert_eq!(get(&headers(&["s=x", "s=y"]), "s"), None);
        assert_eq!(get(&headers(&["s="]), "s"), None);
    }

    /// The reading `get` had before it stopped building a cookie per pair.
    fn get_with_the_cookie_crate(headers: &HeaderMap, name: &str) -> Option<String> {
        let mut found: Option<String> = None;
        for value in headers.get_all(COOKIE) {
            let Ok(text) = value.to_str() else {
                continue;
            };
            for c in Cookie::split_parse(text).flatten() {
                if c.name() == name {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(c.value().to_owned());
                }
            }
        }
        found.filter(|v| !v.is_empty())
    }

    #[test]
    fn get_reads_pairs_as_the_cookie_crate_does() {
        let pieces = [
            "s=x",
            " s = y ",
            "s=",
            "s",
            "=s",
            "a=1",
            "",
            " ",
            "s=\"q\"",
            "S=z",
            "s=a=b",
            "\ts=t\t",
            "s =",
            "xs=1",
            "s=1 2",
            "__Host-s=h",
        ];
        let mut checked = 0;
        for a in pieces {
            for b in pieces {
                for sep in [";", "; ", " ;"] {
                    for line in [format!("{a}{sep}{b}"), a.to_owned()] {
                        let Ok(value) = line.parse() else { continue };
                        let mut one = HeaderMap::new();
                        one.append(COOKIE, value);
                        let mut two = one.clone();
                        two.append(COOKIE, b.parse().unwrap());
                        for h in [&one, &two] {
                            assert_eq!(get(h, "s"), get_with_the_cookie_crate(h, "s"), "{h:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 1000);
    }

    #[test]
    fn without_hides_gateway_cookies() {
        let h = headers(&["app=1; nidan_session=x; __Host-nidan_device=y", "other=2"]);
        assert_eq!(
            without(&h, &["nidan_session", "nidan_device"]).as_deref(),
            Some("app=1; other=2")
        );
        assert_eq!(
            without(&headers(&["nidan_session=x"]), &["nidan_session"]),
            None
        );
    }
}
