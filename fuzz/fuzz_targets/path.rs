//! `path::canonicalize` on any target (docs/fuzzing.md#path): what it accepts is clean,
//! idempotent, forwarded unchanged by `http::Uri`, and read the same by the `url` crate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nidan::fuzzing::Authority;
use nidan_fuzz::{check_against_url, check_canonical};

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = nidan::path::canonicalize(target) else {
        return;
    };
    check_canonical(&c);
    let a = Authority {
        host: "app.example.com".into(),
        port: None,
    };
    check_against_url(&a, &c);
});
