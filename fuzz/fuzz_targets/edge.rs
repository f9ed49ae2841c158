//! The proxy's request edge on raw request heads (docs/fuzzing.md#edge): what is accepted
//! is re-read identically from what is forwarded, the canonical path is idempotent and
//! clean, and the `http` and `url` readers find the host and path nidan routed on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nidan_fuzz::{check_against_url, check_canonical, edge, head};

fuzz_target!(|data: &[u8]| {
    let Some(Ok(read)) = edge(data) else {
        return;
    };
    let Some(c) = &read.canonical else {
        return;
    };
    check_canonical(c);
    let Some(a) = &read.authority else {
        return;
    };
    check_against_url(a, c);
    // Re-serialised as forwarded (origin-form target, normalised Host), the request reads
    // back to exactly what was decided.
    let method = data
        .split(|b| *b == b' ')
        .next()
        .and_then(|m| std::str::from_utf8(m).ok())
        .unwrap_or("GET");
    let method = if method.bytes().all(|b| b.is_ascii_uppercase()) && !method.is_empty() {
        method
    } else {
        "GET"
    };
    let forwarded = head(method, &c.to_target(), Some(&a.to_header()));
    match edge(&forwarded) {
        Some(Ok(again)) => assert_eq!(again, read, "the forwarded request reads differently"),
        other => panic!("the forwarded request is not accepted: {other:?}"),
    }
});
