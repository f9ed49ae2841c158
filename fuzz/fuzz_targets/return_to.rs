//! Return addresses after login and logout (docs/fuzzing.md#return_to). Property: an
//! accepted address, resolved the way a browser resolves a `Location` (the WHATWG `url`
//! crate, against the portal's URL), lands on the portal's own host or an allowed one, over
//! http(s); and checking it again gives it back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nidan::portal::redirect::safe_return_to;

const ALLOWED: [&str; 2] = ["good.com", "auth.good.com"];
const PORTAL: &str = "https://auth.good.com/auth/login?rd=x";

fn allowed(h: &str) -> bool {
    ALLOWED.contains(&h)
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Some(out) = safe_return_to(raw, &allowed) else {
        return;
    };
    assert!(out.bytes().all(|b| (0x21..0x7f).contains(&b)), "{out:?}");
    assert!(!out.contains('\\') && !out.contains('#'), "{out:?}");
    let base = url::Url::parse(PORTAL).expect("the portal URL");
    let landed = match base.join(&out) {
        Ok(u) => u,
        Err(e) => panic!("a browser cannot follow {out:?}: {e}"),
    };
    assert!(
        matches!(landed.scheme(), "http" | "https"),
        "{out:?} -> {landed}"
    );
    let host = landed.host_str().unwrap_or_default();
    assert!(allowed(host), "{raw:?} -> {out:?} lands on {host:?}");
    assert!(
        landed.username().is_empty() && landed.password().is_none(),
        "{landed}"
    );
    // Escaping can make it longer than the 2048 bytes a return address may have.
    if out.len() > 2048 {
        return;
    }
    assert_eq!(
        safe_return_to(&out, &allowed).as_deref(),
        Some(out.as_str()),
        "not a fixpoint"
    );
});
