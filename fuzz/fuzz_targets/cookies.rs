//! Cookies (docs/fuzzing.md#cookies): the gateway's reading of its own cookies, and the
//! `Cookie` header a backend gets. Properties: a cookie read is one clean value; a gateway
//! cookie never reaches the backend, as the `cookie` crate (a backend's reader) reads
//! names; and when the header is passed on unchanged, the gateway read none of its cookies
//! from it (what it decided on and what the backend sees cannot differ).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nidan::fuzzing::{GATEWAY_COOKIES, backend_cookie};
use nidan::session::cookie;

fuzz_target!(|data: &[u8]| {
    let mut sent = http::HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            sent.append(http::header::COOKIE, v);
        }
    }
    let mut read_any = false;
    for base in GATEWAY_COOKIES {
        for https in [false, true] {
            if let Some(v) = cookie::get(&sent, &cookie::name(base, https)) {
                read_any = true;
                assert!(!v.is_empty(), "an empty value read");
                assert!(!v.contains(';'), "a value with ; read: {v:?}");
                assert_eq!(v, v.trim(), "an untrimmed value read");
                // Visible ASCII; a tab or space inside stays, as the cookie crate reads it
                // (such a value names no session, device or setting).
                assert!(
                    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
                    "{v:?}"
                );
            }
        }
    }
    let forwarded: Vec<String> = match backend_cookie(&sent) {
        None => {
            assert!(
                !read_any,
                "a gateway cookie was read from a header passed on unchanged"
            );
            sent.get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect()
        }
        Some(v) => v.into_iter().collect(),
    };
    for line in &forwarded {
        for c in ::cookie::Cookie::split_parse(line.as_str()).flatten() {
            let name = c.name().trim();
            let bare = name.strip_prefix("__Host-").unwrap_or(name);
            assert!(
                !GATEWAY_COOKIES.contains(&bare),
                "the backend gets gateway cookie {name:?} in {line:?}"
            );
        }
        assert!(
            http::HeaderValue::from_str(line).is_ok(),
            "not a header value: {line:?}"
        );
    }
});
