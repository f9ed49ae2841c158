//! The `users.ldap` section: the LDAP / Active Directory server the users come from.

use std::sync::Arc;
use std::time::Duration;

use super::{Checker, Zero};
use crate::config::file::LdapFile;
use crate::config::{LdapAttributes, LdapGroups, LdapSettings};

const P: &str = "users.ldap";

impl Checker<'_> {
    pub(super) fn ldap(&mut self, l: LdapFile) -> Option<LdapSettings> {
        let url = self.ldap_url(l.url.as_deref());
        let base_dn = self.ldap_text("base_dn", l.base_dn, "e.g. `ou=people,dc=example,dc=org`");
        let user_filter = self.user_filter(l.user_filter);
        let bind_password = self.secret(
            P,
            "bind_password",
            l.bind_password_file.as_ref(),
            l.bind_password_env.as_ref(),
        );
        let bind_dn = l.bind_dn.filter(|d| !d.trim().is_empty());
        if bind_dn.is_some() != bind_password.is_some() {
            self.err(
                P,
                "`users.ldap` sets only one of `bind_dn` and `bind_password_file`",
                "give both the service account's DN and a file holding its password, or neither for anonymous look-ups",
            );
        }
        let (attributes, groups) =
            self.ldap_attributes(l.attributes.unwrap_or_default(), l.group_search);
        let (tls, starttls) = self.ldap_tls(l.tls.unwrap_or_default(), url.as_deref());
        let timeout = self.duration(
            "users.ldap.timeout",
            l.timeout.as_ref(),
            Duration::from_secs(5),
            Zero::Refused,
        );
        let timeout = self.at_most(
            "users.ldap.timeout",
            timeout,
            Duration::from_secs(30),
            "30s",
        );
        let pool = self.size("users.ldap.pool", l.pool, 8, 1..=256);
        let cache_ttl = self.duration(
            "users.ldap.cache_ttl",
            l.cache_ttl.as_ref(),
            Duration::from_secs(30),
            Zero::Allowed,
        );
        let cache_ttl = self.at_most(
            "users.ldap.cache_ttl",
            cache_ttl,
            Duration::from_secs(600),
            "10m",
        );
        Some(LdapSettings {
            url: url?,
            bind_dn,
            bind_password: bind_password.map(Arc::new),
            base_dn: base_dn?,
            user_filter: user_filter?,
            attributes,
            groups,
            tls,
            starttls,
            timeout,
            pool,
            cache_ttl,
        })
    }

    fn ldap_text(&mut self, key: &str, value: Option<String>, example: &str) -> Option<String> {
        match value.filter(|v| !v.trim().is_empty()) {
            Some(v) => Some(v.trim().to_owned()),
            None => {
                self.err(
                    P,
                    format!("`users.ldap.{key}` is missing"),
                    format!("add `{key}:` under `users.ldap`, {example}"),
                );
                None
            }
        }
    }

    fn ldap_url(&mut self, url: Option<&str>) -> Option<String> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            self.err(
                P,
                "`users.ldap.url` is missing",
                "add `url:` under `users.ldap`, e.g. `ldaps://ldap.example.com`",
            );
            return None;
        };
        let lower = url.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("ldaps://")
            .or_else(|| lower.strip_prefix("ldap://"));
        let ok = rest.is_some_and(|r| {
            let host = r.split('/').next().unwrap_or("");
            !host.is_empty() && !host.contains(['@', ' ', '?', '#'])
        });
        if !ok {
            self.err(
                "users.ldap.url",
                "`users.ldap.url` is not an LDAP URL",
                "write `ldaps://host[:port]` (TLS) or `ldap://host[:port]`",
            );
            return None;
        }
        Some(url.to_owned())
    }

    fn user_filter(&mut self, filter: Option<String>) -> Option<String> {
        let Some(f) = filter
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
        else {
            self.err(
                P,
                "`users.ldap.user_filter` is missing",
                "add `user_filter:` under `users.ldap`, e.g. `\"(uid={id})\"` or `\"(sAMAccountName={id})\"`",
            );
            return None;
        };
        let fix = "write an LDAP filter in parentheses with `{id}` where the ID goes, e.g. `\"(&(objectClass=person)(uid={id}))\"`";
        if !f.contains("{id}") {
            self.err(
                "users.ldap.user_filter",
                "`users.ldap.user_filter` has no `{id}`",
                fix,
            );
            return None;
        }
        if ldap3::parse_filter(f.replace("{id}", "x")).is_err() {
            self.err(
                "users.ldap.user_filter",
                "`users.ldap.user_filter` is not a valid LDAP filter (RFC 4515)",
                fix,
            );
            return None;
        }
        Some(f)
    }

    fn ldap_attributes(
        &mut self,
        a: crate::config::file::LdapAttributesFile,
        search: Option<crate::config::file::LdapGroupSearchFile>,
    ) -> (LdapAttributes, LdapGroups) {
        let d = LdapAttributes::default();
        let mut name = |key: &str, v: Option<String>, default: String| match v {
            None => default,
            Some(v) if attribute_ok(&v) => v,
            Some(_) => {
                self.err(
                    &format!("users.ldap.attributes.{key}"),
                    format!("`users.ldap.attributes.{key}` is not an attribute name"),
                    "write an attribute name such as `mail` or `sAMAccountName` (letters, digits and `-`)",
                );
                default
            }
        };
        let attributes = LdapAttributes {
            id: name("id", a.id, d.id),
            name: name("name", a.name, d.name),
            email: name("email", a.email, d.email),
            phone: name("phone", a.phone, d.phone),
        };
        let member_of = name("groups", a.groups, "memberOf".into());
        let groups = match search {
            None => LdapGroups::Attribute(member_of),
            Some(s) => self.group_search(s),
        };
        (attributes, groups)
    }

    fn group_search(&mut self, s: crate::config::file::LdapGroupSearchFile) -> LdapGroups {
        let base_dn = s.base_dn.unwrap_or_default();
        if base_dn.trim().is_empty() {
            self.err(
                "users.ldap.group_search",
                "`users.ldap.group_search.base_dn` is missing",
                "add `base_dn:` where the groups are, e.g. `ou=groups,dc=example,dc=org`",
            );
        }
        let filter = s
            .filter
            .unwrap_or_else(|| "(&(objectClass=groupOfNames)(member={dn}))".into());
        let probe = filter.replace("{dn}", "x").replace("{id}", "x");
        if ldap3::parse_filter(probe).is_err() {
            self.err(
                "users.ldap.group_search.filter",
                "`users.ldap.group_search.filter` is not a valid LDAP filter (RFC 4515)",
                "write a filter with `{dn}` (the user's DN) or `{id}`, e.g. `\"(member={dn})\"`",
            );
        }
        let name = s.name.unwrap_or_else(|| "cn".into());
        if !attribute_ok(&name) {
            self.err(
                "users.ldap.group_search.name",
                "`users.ldap.group_search.name` is not an attribute name",
                "write the attribute that names a group, e.g. `cn`",
            );
        }
        LdapGroups::Search {
            base_dn: base_dn.trim().to_owned(),
            filter,
            name,
        }
    }

    fn ldap_tls(
        &mut self,
        t: crate::config::file::LdapTlsFile,
        url: Option<&str>,
    ) -> (Option<Arc<rustls::ClientConfig>>, bool) {
        let starttls = t.starttls.unwrap_or(false);
        if starttls && url.is_some_and(|u| u.to_ascii_lowercase().starts_with("ldaps://")) {
            self.err(
                "users.ldap.tls.starttls",
                "`users.ldap.tls.starttls` is set for an `ldaps://` URL, which is TLS already",
                "remove `starttls`, or use an `ldap://` URL",
            );
        }
        let Some(ca) = t.ca_file else {
            return (None, starttls);
        };
        let path = self.path(&ca);
        match ca_config(&path) {
            Ok(c) => (Some(c), starttls),
            Err(e) => {
                self.err(
                    "users.ldap.tls.ca_file",
                    format!("cannot use the CA file {}: {e}", path.display()),
                    "name a PEM file with the certificate(s) of the CA that signed the LDAP server's certificate",
                );
                (None, starttls)
            }
        }
    }
}

/// An attribute description: a name (letters, digits, `-`) or a numeric OID.
fn attribute_ok(a: &str) -> bool {
    (1..=64).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A TLS client configuration that trusts exactly the certificates in the PEM file `path`.
fn ca_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())?;
    for cert in certs {
        let cert = cert.map_err(|e| e.to_string())?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("it holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use crate::config::testing::*;

    #[test]
    fn an_ldap_directory_is_checked_with_placed_errors() {
        let ok = "users:\n  ldap:\n    url: ldap://127.0.0.1:389\n    base_dn: ou=people,dc=example,dc=org\n    user_filter: \"(uid={id})\"\n";
        let c = load_t(&with(ok)).unwrap();
        let l = c.users.ldap.unwrap();
        assert_eq!(l.user_filter, "(uid={id})");
        assert_eq!(l.pool, 8);
        assert_eq!(l.attributes.id, "uid");
        let e = &errors(&with(&ok.replace("ldap://127.0.0.1:389", "http://x")))[0];
        // `with` puts the section after one line of its own.
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("users.ldap.url"), "{e}");
        let e = &errors(&with(&ok.replace("(uid={id})", "(uid=x)")))[0];
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("{id}"), "{e}");
        let e = &errors(&with(&ok.replace("(uid={id})", "(uid={id}")))[0];
        assert!(e.message.contains("not a valid LDAP filter"), "{e}");
        let e = &errors(&with(&format!("{ok}    bind_dn: cn=reader\n")))[0];
        assert!(e.message.contains("bind_dn"), "{e}");
        let e = &errors(&with(&format!(
            "{ok}    tls: {{ ca_file: /nonexistent/ca.pem }}\n"
        )))[0];
        assert!(e.message.contains("CA file"), "{e}");
        let e = &errors(&with(&format!("{ok}    timeout: 2m\n")))[0];
        assert!(e.message.contains("users.ldap.timeout"), "{e}");
        let e = &errors(&with("users:\n  ldap: { url: ldap://h }\n"))[0];
        assert!(e.message.contains("base_dn"), "{e}");
    }
}
