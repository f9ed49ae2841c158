//! What a caller is told when a store the answer needs cannot be reached: `503` with one
//! `Retry-After`, the same on every edge — the portal's JSON (`{"error":"unavailable"}`, or
//! `busy` in a login step) and pages, the proxy's and forward-auth's answers, the admin API.
//! Documented in docs/replicas.md and docs/api.md.
//!
//! One second: each store call gives up after `storage.*.timeout` (1 s by default) and a
//! replica works again within about a second of a store's return, so a client that waits
//! longer only waits for nothing; one that retries sooner meets the same outage.

/// Seconds a client is asked to wait before trying again after a store-unavailable 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// [`RETRY_AFTER_SECS`] as the `Retry-After` header's value.
pub fn retry_after() -> String {
    RETRY_AFTER_SECS.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_header_says_the_constant() {
        assert_eq!(super::retry_after(), "1");
    }
}
