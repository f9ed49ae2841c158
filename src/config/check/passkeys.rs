//! The `passkeys` section.

use std::net::IpAddr;

use crate::config::file;
use crate::config::{PasskeySettings, Portal};

use super::{Checker, hostname_ok, url_host};

impl Checker<'_> {
    pub(super) fn passkeys(&mut self, p: file::PasskeysFile, portal: &Portal) -> PasskeySettings {
        let rp_id = p.rp_id.map(|v| v.trim().to_ascii_lowercase());
        if let Some(id) = &rp_id
            && (!hostname_ok(id) || id.contains('*') || id.parse::<IpAddr>().is_ok())
        {
            self.err(
                "passkeys.rp_id",
                "`passkeys.rp_id` is not a domain name",
                "write the domain the portal is served on (or a parent domain of it) without scheme, port or path, e.g. `login.example.com`; leave it out to use the request's host",
            );
        } else if let (Some(id), Some(host)) = (&rp_id, portal.public_url.as_deref().map(url_host))
            && !crate::login::passkey::rp_id_covers(id, host)
        {
            // Browsers refuse a passkey whose RP ID is not the page's host or a parent of it.
            self.err(
                "passkeys.rp_id",
                "`passkeys.rp_id` is neither the host of `portal.public_url` nor a parent domain of it: browsers would refuse every passkey",
                "write the host of `portal.public_url` or a parent domain of it (e.g. `example.com` for `https://login.example.com`), or leave the key out to use that host",
            );
        }
        let rp_name = p.rp_name.unwrap_or_else(|| "nidan".into());
        let n = rp_name.chars().count();
        if rp_name.trim().is_empty() || n > 64 || rp_name.chars().any(char::is_control) {
            self.err(
                "passkeys.rp_name",
                "`passkeys.rp_name` must have 1 to 64 characters and no control characters",
                "give the name authenticators show with the passkey, e.g. `nidan`",
            );
        }
        PasskeySettings {
            enabled: p.enabled.unwrap_or(true),
            rp_id,
            rp_name,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use crate::config::testing::*;

    #[test]
    fn passkeys_section() {
        let d = load_t(MINIMAL).unwrap();
        assert!(d.passkeys.enabled && d.passkeys.rp_id.is_none() && d.passkeys.rp_name == "nidan");
        let c = load_t(&with(
            "passkeys: { enabled: false, rp_id: Login.Example.com, rp_name: Example }\n",
        ))
        .unwrap();
        assert!(!c.passkeys.enabled);
        assert_eq!(c.passkeys.rp_id.as_deref(), Some("login.example.com"));
        assert_eq!(c.passkeys.rp_name, "Example");
        let errs = errors(&with(
            "passkeys:\n  rp_id: \"https://x.example\"\n  rp_name: \"\"\n",
        ));
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4], "{errs:#?}");
        assert!(errs[0].fix.contains("login.example.com"), "{}", errs[0]);
        let e = &errors(&with("passkeys: { rp_id: 192.0.2.1 }\n"))[0];
        assert!(e.message.contains("not a domain name"), "{e}");
        let e = &errors(&with("passkeys: { rpid: x }\n"))[0];
        assert!(e.message.contains("rpid"), "{e}");
    }
}
