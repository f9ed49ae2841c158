//! Forward-auth's described request (docs/fuzzing.md#forward_auth): `X-Original-URL` and
//! `X-Forwarded-*` combinations. What is accepted has the proxy path's properties, and the
//! proxy, given the same request directly, decides the same: same host, same target, or
//! both refuse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nidan_fuzz::{check_against_url, check_canonical, edge, head, header_map};

fuzz_target!(|data: &[u8]| {
    let headers = header_map(data);
    let described = nidan::fuzzing::forward_auth(&headers);
    let one = |name: &str| {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    };
    if let Ok((_, _, a, c)) = &described {
        check_canonical(c);
        check_against_url(a, c);
    }
    // The same request sent through the proxy: the absolute URL as the request target
    // (nginx), or the forwarded URI with the forwarded host as Host (Traefik, Caddy).
    let (target, host) = match (one("x-original-url"), one("x-forwarded-uri")) {
        (Some(url), None) => (url, None),
        (None, Some(uri)) => (uri, one("x-forwarded-host")),
        _ => return,
    };
    let method = match &described {
        Ok((_, m, _, _)) => m.as_str(),
        Err(_) => "GET",
    };
    let Some(proxied) = edge(&head(method, target, host)) else {
        // pingora refuses the head: nothing to compare with.
        return;
    };
    match (&described, proxied) {
        (Ok((_, _, a, c)), Ok(p)) => {
            assert_eq!(
                p.authority.as_ref(),
                Some(a),
                "another host than the proxy's"
            );
            assert_eq!(
                p.canonical.as_ref(),
                Some(c),
                "another target than the proxy's"
            );
        }
        (Ok(d), Err(status)) => panic!("forward-auth accepts {d:?}, the proxy answers {status}"),
        (Err(why), Ok(p)) if p.canonical.is_some() => {
            // Only the headers' own rules (each sent once, an http(s) URL, a path in
            // X-Forwarded-Uri, a method) may refuse what the proxy accepts; never the reading
            // of the target or host, which is the proxy's.
            assert!(
                why.to_ascii_lowercase().contains("x-") || why.contains("method"),
                "forward-auth refuses ({why}) what the proxy accepts: {p:?}"
            );
        }
        _ => {}
    }
});
