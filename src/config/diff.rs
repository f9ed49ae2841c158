//! What changed between two configurations, and whether a reload applies it or only a
//! restart (`nidan serve --upgrade`) does. Used by the reload (which keeps the running value
//! of everything it cannot apply, and names it in the log) and by `check-config --diff`.
//! Secrets are compared, never shown.

use std::fmt::Debug;

use sha2::{Digest, Sha256};

use super::{Config, SigningKey};

/// One changed setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key in the file, e.g. `server.listen` or `routes`.
    pub key: &'static str,
    /// Whether a reload applies it (`false`: the running process keeps its value until it
    /// is restarted or upgraded).
    pub reloads: bool,
}

/// What a reload applies: the routes (hosts, paths, upstreams, policies), the TLS
/// certificate and key, the trusted-device signing keys (which also sign the identity
/// assertions), the notifiers and the risk settings. Everything else is read at start.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    let mut check = |key: &'static str, changed: bool, reloads: bool| {
        if changed {
            out.push(Change { key, reloads });
        }
    };
    check("routes", differs(&old.routes, &new.routes), true);
    check(
        "server.tls.cert",
        old.server.tls.as_ref().map(|t| &t.cert) != new.server.tls.as_ref().map(|t| &t.cert),
        true,
    );
    check(
        "server.tls.key",
        old.server.tls.as_ref().map(|t| &t.key) != new.server.tls.as_ref().map(|t| &t.key),
        true,
    );
    check(
        "trusted_devices.signing_keys",
        keys(&old.trusted_devices.signing_keys) != keys(&new.trusted_devices.signing_keys),
        true,
    );
    server(old, new, &mut check);
    sections(old, new, &mut check);
    out
}

/// `server`: everything but the certificate is read once at start.
fn server(old: &Config, new: &Config, check: &mut impl FnMut(&'static str, bool, bool)) {
    let (o, n) = (&old.server, &new.server);
    check("server.listen", o.listen != n.listen, false);
    check(
        "server.tls.listen",
        o.tls.as_ref().map(|t| &t.listen) != n.tls.as_ref().map(|t| &t.listen),
        false,
    );
    check(
        "server.admin_listen",
        o.admin_listen != n.admin_listen,
        false,
    );
    check(
        "server.admin_token",
        o.admin_token.as_ref().map(|s| digest(s.expose()))
            != n.admin_token.as_ref().map(|s| digest(s.expose())),
        false,
    );
    check("server.threads", o.threads != n.threads, false);
    check(
        "server.grace_period",
        o.grace_period != n.grace_period,
        false,
    );
    check(
        "server.upgrade_sock",
        o.upgrade_sock != n.upgrade_sock,
        false,
    );
    check("server.limits", o.limits != n.limits, false);
}

/// The other sections, read once at start.
fn sections(old: &Config, new: &Config, check: &mut impl FnMut(&'static str, bool, bool)) {
    check("storage", differs(&old.storage, &new.storage), false);
    check("portal", differs(&old.portal, &new.portal), false);
    check("session", differs(&old.session, &new.session), false);
    check(
        "trusted_devices.lifetime",
        old.trusted_devices.lifetime != new.trusted_devices.lifetime,
        false,
    );
    check(
        "trusted_devices.max_per_user",
        old.trusted_devices.max_per_user != new.trusted_devices.max_per_user,
        false,
    );
    check(
        "security_code",
        differs(&old.security_code, &new.security_code),
        false,
    );
    check(
        "login_limits",
        differs(&old.login_limits, &new.login_limits),
        false,
    );
    check(
        "app_approval",
        differs(&old.app_approval, &new.app_approval),
        false,
    );
    check("notifiers", differs(&old.notifiers, &new.notifiers), true);
    check("users", differs(&old.users, &new.users), false);
    check(
        "identity_headers",
        differs(&old.identity_headers, &new.identity_headers),
        false,
    );
    check(
        "trusted_proxies",
        old.trusted_proxies != new.trusted_proxies,
        false,
    );
    check(
        "exemptions",
        differs(&old.exemptions, &new.exemptions),
        false,
    );
    check("risk", differs(&old.risk, &new.risk), true);
    check("passkeys", differs(&old.passkeys, &new.passkeys), false);
    check("audit", differs(&old.audit, &new.audit), false);
    check(
        "identity_assertion",
        differs(&old.identity_assertion, &new.identity_assertion),
        false,
    );
}

/// The settings that differ and that a reload does not apply.
pub fn needs_restart(changes: &[Change]) -> Vec<&'static str> {
    changes
        .iter()
        .filter(|c| !c.reloads)
        .map(|c| c.key)
        .collect()
}

/// SHA-256 of a configuration file's bytes, lower-case hex: the `hash` of
/// `nidan_config_info` (the same as `sha256sum FILE`).
pub fn hash(text: &[u8]) -> String {
    hex::encode(Sha256::digest(text))
}

/// The runtime types hold no secret in their `Debug` output (`Secret` prints
/// `<redacted>`): a change of a secret's value alone is found where it is compared
/// explicitly (signing keys, admin token).
fn differs<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

fn keys(keys: &[SigningKey]) -> Vec<(&str, String)> {
    keys.iter()
        .map(|k| (k.id.as_str(), digest(k.secret.expose())))
        .collect()
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::load_str;

    fn cfg(extra: &str) -> Config {
        static DIR: std::sync::LazyLock<tempfile::TempDir> =
            std::sync::LazyLock::new(|| tempfile::tempdir().unwrap());
        let dir = &*DIR;
        std::fs::write(dir.path().join("users.yaml"), "users: []\n").unwrap();
        std::fs::write(dir.path().join("k"), "0123456789abcdef0123456789abcdef").unwrap();
        std::fs::write(dir.path().join("k2"), "fedcba9876543210fedcba9876543210").unwrap();
        let text = format!(
            "version: 1\ntrusted_devices: {{ signing_keys: [{{ id: k1, secret_file: k }}] }}\n{extra}routes:\n  - {{ name: a, path_prefix: /, upstream: [\"127.0.0.1:1\"], policy: login }}\n"
        );
        load_str(&text, &dir.path().join("nidan.yaml")).unwrap()
    }

    #[test]
    fn listeners_need_a_restart_and_routes_reload() {
        let a = cfg("server: { listen: [\"127.0.0.1:8080\"] }\n");
        let b = cfg("server: { listen: [\"127.0.0.1:8081\"] }\n");
        assert_eq!(
            diff(&a, &b),
            vec![Change {
                key: "server.listen",
                reloads: false
            }]
        );
        assert_eq!(needs_restart(&diff(&a, &b)), vec!["server.listen"]);
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn a_changed_key_secret_is_seen_without_being_shown() {
        let a = cfg("");
        let mut b = a.clone();
        b.trusted_devices.signing_keys[0].secret.0 = b"another secret, 32 bytes or more!!".to_vec();
        let changes = diff(&a, &b);
        assert_eq!(changes.len(), 1);
        assert!(changes[0].reloads);
        assert!(!format!("{changes:?}").contains("another"));
    }
}
