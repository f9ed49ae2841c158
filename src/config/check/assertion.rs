//! The `identity_assertion` section.

use std::time::Duration;

use crate::config::file;
use crate::config::{IdentityAssertion, IdentityHeaders, Portal};

use super::{Checker, Zero, token_ok};

impl Checker<'_> {
    pub(super) fn identity_assertion(
        &mut self,
        a: file::IdentityAssertionFile,
        portal: &Portal,
        identity: &IdentityHeaders,
    ) -> IdentityAssertion {
        let header = a.header.unwrap_or_else(|| "X-Nidan-Assertion".to_owned());
        if !header_ok(&header, identity) {
            self.err(
                "identity_assertion.header",
                "`identity_assertion.header` is not a header name the assertion can use",
                "use a header name of its own (letters, digits and `-`), e.g. `X-Nidan-Assertion`; not an identity header, `Cookie`, `Authorization`, `Host` or a forwarding header",
            );
        }
        let issuer = self.issuer(a.issuer, portal);
        let audience = a.audience.map(|v| v.trim().to_owned());
        if audience
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.len() > 256 || v.chars().any(char::is_control))
        {
            self.err(
                "identity_assertion.audience",
                "`identity_assertion.audience` must have 1 to 256 characters and no control characters",
                "write the audience backends check, e.g. `intranet`, or leave it out to use each route's name",
            );
        }
        let max_lifetime = Duration::from_secs(300);
        let lifetime = self.duration(
            "identity_assertion.lifetime",
            a.lifetime.as_ref(),
            max_lifetime,
            Zero::Refused,
        );
        if lifetime > max_lifetime || lifetime < Duration::from_secs(10) {
            self.err(
                "identity_assertion.lifetime",
                "`identity_assertion.lifetime` must be between 10s and 5m",
                "an assertion is for one request: keep it short, e.g. `5m` (the default) or `1m`",
            );
        }
        let key_rotation = self.duration(
            "identity_assertion.key_rotation",
            a.key_rotation.as_ref(),
            Duration::from_secs(86_400),
            Zero::Refused,
        );
        if key_rotation < Duration::from_secs(600)
            || key_rotation < lifetime * 2
            || key_rotation > Duration::from_secs(90 * 86_400)
        {
            self.err(
                "identity_assertion.key_rotation",
                "`identity_assertion.key_rotation` must be between 10m (and twice the lifetime) and 90d",
                "use e.g. `24h` (the default): a new signing key that often, the previous one published until its last assertion expired",
            );
        }
        IdentityAssertion {
            enabled: a.enabled.unwrap_or(true),
            header,
            issuer,
            audience,
            lifetime,
            key_rotation,
        }
    }

    /// The `iss` claim: the configured issuer, else `portal.public_url`.
    fn issuer(&mut self, issuer: Option<String>, portal: &Portal) -> String {
        match issuer.map(|i| i.trim().to_owned()) {
            Some(i) if i.is_empty() || i.len() > 256 || i.chars().any(char::is_control) => {
                self.err(
                    "identity_assertion.issuer",
                    "`identity_assertion.issuer` must have 1 to 256 characters and no control characters",
                    "write the issuer backends expect, e.g. `https://login.example.com`, or leave it out to use `portal.public_url`",
                );
                String::new()
            }
            Some(i) => i,
            None => match &portal.public_url {
                Some(u) => u.clone(),
                None => {
                    self.err(
                        "identity_assertion",
                        "the identity assertion needs an issuer, and `portal.public_url` is not set",
                        "set `portal.public_url` (e.g. `https://login.example.com`) or `identity_assertion.issuer`",
                    );
                    String::new()
                }
            },
        }
    }
}

/// A header the assertion may use: a valid name that is neither an identity header nor one
/// the gateway or HTTP itself gives a meaning to (compared case-insensitively, `_` as `-`).
fn header_ok(header: &str, identity: &IdentityHeaders) -> bool {
    let lower = header.to_ascii_lowercase().replace('_', "-");
    let taken = [
        &identity.user,
        &identity.name,
        &identity.email,
        &identity.groups,
    ]
    .iter()
    .any(|h| h.to_ascii_lowercase().replace('_', "-") == lower);
    let reserved = [
        "host",
        "cookie",
        "authorization",
        "connection",
        "content-length",
        "content-type",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ]
    .contains(&lower.as_str());
    token_ok(header) && !taken && !reserved
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn identity_assertion_is_checked() {
        let none = load_t(MINIMAL).unwrap();
        assert!(none.identity_assertion.is_none() && !none.routes[0].assertion);
        let c = load_t(&with(
            "portal: { public_url: \"https://login.example.com\" }\nidentity_assertion: { enabled: true }\n",
        ))
        .unwrap();
        let a = c.identity_assertion.unwrap();
        assert_eq!(
            (
                a.header.as_str(),
                a.issuer.as_str(),
                a.lifetime,
                a.key_rotation
            ),
            (
                "X-Nidan-Assertion",
                "https://login.example.com",
                Duration::from_secs(300),
                Duration::from_secs(86_400)
            )
        );
        assert!(c.routes[0].assertion);
        // Off by default, on for one route.
        let c = load_t(&MINIMAL.replace(
            "policy: login }",
            "policy: login, identity_assertion: true }\nidentity_assertion: { enabled: false, issuer: nidan }",
        ))
        .unwrap();
        assert!(c.routes[0].assertion);
        // No issuer to name; a lifetime over five minutes; a header that is an identity
        // header: each placed, with the fix.
        let errs = errors(&with(
            "identity_assertion:\n  lifetime: 10m\n  header: remote_user\n",
        ));
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 3, 4], "{errs:#?}");
        assert!(errs[0].fix.contains("portal.public_url"), "{}", errs[0]);
        assert!(
            errs[1].message.contains("between 10s and 5m"),
            "{}",
            errs[1]
        );
        assert!(errs[2].message.contains("header"), "{}", errs[2]);
        let e = &errors(&with(
            "identity_assertion: { issuer: x, key_rotation: 5m }\n",
        ))[0];
        assert!(e.message.contains("key_rotation"), "{e}");
        // A route cannot ask for it without the section.
        let e = &errors(&MINIMAL.replace(
            "policy: login }",
            "policy: login, identity_assertion: true }",
        ))[0];
        assert!(e.fix.contains("identity_assertion"), "{e}");
        assert_eq!(e.line, 5, "{e}");
    }

    #[test]
    fn assertion_headers() {
        let identity = load_t(MINIMAL).unwrap().identity_headers;
        assert!(header_ok("X-Nidan-Assertion", &identity));
        assert!(!header_ok("Authorization", &identity));
        assert!(!header_ok("x_forwarded_for", &identity));
        assert!(!header_ok(&identity.user.to_ascii_uppercase(), &identity));
        assert!(!header_ok("X Assertion", &identity));
    }
}
