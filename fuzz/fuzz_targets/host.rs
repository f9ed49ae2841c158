//! `Host` values (docs/fuzzing.md#host): an accepted host is lower-case, re-parses to
//! itself from the header nidan forwards, and is the host the `url` crate reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nidan::proxy::target::parse_host;

fuzz_target!(|data: &[u8]| {
    let Ok(a) = parse_host(data) else {
        return;
    };
    assert!(
        !a.host.is_empty() && a.host.len() <= 253 + 2,
        "host length: {a:?}"
    );
    assert_eq!(a.host, a.host.to_ascii_lowercase(), "not lower-case: {a:?}");
    assert!(!a.host.ends_with('.'), "trailing dot: {a:?}");
    let header = a.to_header();
    assert_eq!(
        parse_host(header.as_bytes()),
        Ok(a.clone()),
        "not a fixpoint"
    );
    let c = nidan::path::canonicalize("/").expect("/ is canonical");
    nidan_fuzz::check_against_url(&a, &c);
});
