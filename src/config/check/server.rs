//! The `server`, `identity_headers`, `trusted_proxies` and `audit` sections: listeners, TLS,
//! request-head limits and the admin listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::file;
use crate::config::{AuditSettings, IdentityHeaders, Limits, Server, Tls};

use super::{Checker, Zero, token_ok};

/// Longest `server.upgrade_sock`: the socket, `<path>.d/sock`, fits in `sun_path` (107).
const MAX_UPGRADE_SOCK: usize = 100;

impl Checker<'_> {
    pub(super) fn audit(&mut self, a: file::AuditFile) -> AuditSettings {
        let retention = self.duration(
            "audit.retention",
            a.retention.as_ref(),
            Duration::from_secs(180 * 86_400),
            Zero::Refused,
        );
        let n32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        AuditSettings {
            retention,
            max_rows: self.number("audit.max_rows", a.max_rows, 1_000_000, 100..=1_000_000_000),
            unauthenticated_per_address: n32(self.number(
                "audit.unauthenticated_per_address",
                a.unauthenticated_per_address,
                30,
                1..=100_000,
            )),
            unauthenticated_total: n32(self.number(
                "audit.unauthenticated_total",
                a.unauthenticated_total,
                600,
                1..=10_000_000,
            )),
            queue_events: self.size("audit.queue_events", a.queue_events, 10_000, 1..=1_000_000),
            queue_bytes: self.size("audit.queue_bytes", a.queue_bytes, 8 << 20, 4096..=1 << 30),
        }
    }

    pub(super) fn server(&mut self, s: file::ServerFile) -> Server {
        let listen = match &s.listen {
            None if s.tls.is_some() => Vec::new(),
            None => vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            Some(list) => self.socket_addrs("server.listen", list),
        };
        let tls = s.tls.map(|t| self.tls(t));
        if s.listen.as_ref().is_some_and(Vec::is_empty) && tls.is_none() {
            self.err(
                "server.listen",
                "`server.listen` is empty and there is no `server.tls`: nidan would listen nowhere",
                "add an address such as `127.0.0.1:8080` to `server.listen`",
            );
        }
        let admin_listen = s
            .admin_listen
            .as_ref()
            .and_then(|a| self.socket_addr("server.admin_listen", a));
        let admin_token = self.secret(
            "server",
            "admin_token",
            s.admin_token_file.as_ref(),
            s.admin_token_env.as_ref(),
        );
        let threads = self.number("server.threads", s.threads, 2, 1..=1024);
        let grace_period = self.duration(
            "server.grace_period",
            s.grace_period.as_ref(),
            Duration::from_secs(5),
            Zero::Allowed,
        );
        let limits = self.limits(s.limits.unwrap_or_default());
        let upgrade_sock = self.upgrade_sock(s.upgrade_sock.as_deref());
        Server {
            limits,
            listen,
            tls,
            admin_listen,
            admin_token,
            threads: usize::try_from(threads).unwrap_or(2),
            grace_period,
            upgrade_sock,
        }
    }

    /// `server.upgrade_sock`: a Unix socket path, short enough for `sun_path`.
    fn upgrade_sock(&mut self, value: Option<&str>) -> PathBuf {
        let path = self.path(value.unwrap_or("nidan-upgrade.sock"));
        // sun_path holds 108 bytes with the terminating NUL; the socket is
        // `<upgrade_sock>.d/sock` (src/server.rs), 7 bytes longer.
        if path.as_os_str().len() > MAX_UPGRADE_SOCK {
            self.err(
                "server.upgrade_sock",
                format!(
                    "the upgrade socket path {} is {} bytes long; the socket is made as `<path>.d/sock`, so the path holds at most {MAX_UPGRADE_SOCK}",
                    path.display(),
                    path.as_os_str().len()
                ),
                "give a shorter absolute path, e.g. `/run/nidan/upgrade.sock`",
            );
        }
        path
    }

    /// The gateway's own HTTPS listener.
    fn tls(&mut self, t: file::TlsFile) -> Tls {
        let listen =
            self.socket_addrs("server.tls.listen", t.listen.as_deref().unwrap_or_default());
        if t.listen.as_ref().is_none_or(Vec::is_empty) {
            self.err(
                "server.tls.listen",
                "`server.tls` has no `listen` addresses",
                "add `listen: [\"0.0.0.0:8443\"]` under `server.tls`",
            );
        }
        let cert = self.existing_file("server.tls", "cert", t.cert.as_deref());
        let key = self.existing_file("server.tls", "key", t.key.as_deref());
        Tls { listen, cert, key }
    }

    /// `server.limits`: request-head sizes, timeouts (bounded above) and connection caps.
    fn limits(&mut self, limits: file::LimitsFile) -> Limits {
        let defaults = Limits::default();
        let limits = Limits {
            max_request_line: self.size(
                "server.limits.max_request_line",
                limits.max_request_line,
                defaults.max_request_line,
                1024..=65_536,
            ),
            max_header_bytes: self.size(
                "server.limits.max_header_bytes",
                limits.max_header_bytes,
                defaults.max_header_bytes,
                4096..=524_288,
            ),
            head_timeout: self.duration(
                "server.limits.head_timeout",
                limits.head_timeout.as_ref(),
                defaults.head_timeout,
                Zero::Refused,
            ),
            idle_timeout: self.duration(
                "server.limits.idle_timeout",
                limits.idle_timeout.as_ref(),
                defaults.idle_timeout,
                Zero::Refused,
            ),
            max_connections: self.size(
                "server.limits.max_connections",
                limits.max_connections,
                defaults.max_connections,
                1..=1_000_000,
            ),
            max_connections_per_network: self.size(
                "server.limits.max_connections_per_network",
                limits.max_connections_per_network,
                defaults.max_connections_per_network,
                1..=1_000_000,
            ),
        };
        Limits {
            head_timeout: self.at_most(
                "server.limits.head_timeout",
                limits.head_timeout,
                Duration::from_secs(300),
                "5m",
            ),
            // pingora closes a kept-alive connection after 60 s of its own.
            idle_timeout: self.at_most(
                "server.limits.idle_timeout",
                limits.idle_timeout,
                Duration::from_secs(60),
                "60s",
            ),
            ..limits
        }
    }

    pub(super) fn existing_file(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<&str>,
    ) -> PathBuf {
        let path = format!("{parent}.{key}");
        match value {
            None => {
                self.err(
                    parent,
                    format!("`{parent}` has no `{key}`"),
                    format!("add `{key}: path/to/file.pem` under `{parent}`"),
                );
                PathBuf::new()
            }
            Some(v) => {
                let full = self.path(v);
                if !full.is_file() {
                    self.err(
                        &path,
                        format!("the file {} named by `{path}` does not exist", full.display()),
                        "give the path of an existing PEM file (relative paths are relative to the configuration file's directory)",
                    );
                }
                full
            }
        }
    }

    pub(super) fn identity_headers(&mut self, h: file::IdentityHeadersFile) -> IdentityHeaders {
        let mut one = |key: &str, value: Option<String>, default: &str| -> String {
            match value {
                None => default.to_string(),
                Some(v) if token_ok(&v) => v,
                Some(_) => {
                    self.err(
                        &format!("identity_headers.{key}"),
                        format!("`identity_headers.{key}` is not a valid HTTP header name"),
                        format!("use letters, digits and `-`, e.g. `{default}`"),
                    );
                    default.to_string()
                }
            }
        };
        let headers = IdentityHeaders {
            user: one("user", h.user, "Remote-User"),
            name: one("name", h.name, "Remote-Name"),
            email: one("email", h.email, "Remote-Email"),
            groups: one("groups", h.groups, "Remote-Groups"),
        };
        let all = [
            ("user", &headers.user),
            ("name", &headers.name),
            ("email", &headers.email),
            ("groups", &headers.groups),
        ];
        for (i, (key, value)) in all.iter().enumerate() {
            if let Some((other, _)) = all[..i].iter().find(|(_, v)| v.eq_ignore_ascii_case(value)) {
                self.err(
                    &format!("identity_headers.{key}"),
                    format!(
                        "`identity_headers.{key}` is the same header as `identity_headers.{other}`"
                    ),
                    "give each identity header its own name",
                );
            }
        }
        headers
    }

    pub(super) fn trusted_proxies(&mut self, list: Vec<String>) -> Vec<IpNet> {
        self.networks("trusted_proxies", &list)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn request_head_limits_and_case_sensitivity() {
        let c = load_t(MINIMAL).unwrap();
        assert_eq!(c.server.limits, Limits::default());
        assert_eq!(c.server.limits.max_request_line, 8192);
        assert_eq!(c.server.limits.max_header_bytes, 32768);
        assert_eq!(c.server.limits.head_timeout, Duration::from_secs(10));
        assert_eq!(c.server.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.server.limits.max_connections, 8192);
        assert_eq!(c.server.limits.max_connections_per_network, 256);
        assert!(!c.routes[0].case_sensitive && c.routes[0].groups_also.is_empty());
        let c = load_t(&with(
            "server: { limits: { head_timeout: 2s, idle_timeout: 5s, max_connections: 10, max_connections_per_network: 3 } }\n",
        ))
        .unwrap();
        assert_eq!(c.server.limits.head_timeout, Duration::from_secs(2));
        assert_eq!(c.server.limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.server.limits.max_connections, 10);
        assert_eq!(c.server.limits.max_connections_per_network, 3);
        let e = &errors(&with("server: { limits: { head_timeout: 0s } }\n"))[0];
        assert!(e.message.contains("server.limits.head_timeout"), "{e}");
        let e = &errors(&with("server: { limits: { head_timeout: 1h } }\n"))[0];
        assert!(e.fix.contains("5m"), "{e}");
        let e = &errors(&with("server: { limits: { max_connections: 0 } }\n"))[0];
        assert!(e.message.contains("server.limits.max_connections"), "{e}");
        let c = load_t(&with(
            "server: { limits: { max_request_line: 4096, max_header_bytes: 65536 } }\n",
        ))
        .unwrap();
        assert_eq!(c.server.limits.max_request_line, 4096);
        assert_eq!(c.server.limits.max_header_bytes, 65536);
        let e = &errors(&with("server: { limits: { max_request_line: 100 } }\n"))[0];
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("server.limits.max_request_line"), "{e}");
        assert!(e.fix.contains("1024 to 65536"), "{e}");
        let e = &errors(&with("server: { limits: { max_headers: 1 } }\n"))[0];
        assert!(e.message.contains("unknown field `max_headers`"), "{e}");
        let c =
            load_t(&MINIMAL.replace("policy: login }", "policy: login, case_sensitive: true }"))
                .unwrap();
        assert!(c.routes[0].case_sensitive);
    }
}
