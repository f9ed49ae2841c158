//! Checks every section of the parsed file and builds the runtime [`Config`]: the
//! [`Checker`] core (error placement, durations, numbers, sizes, addresses, secrets) lives
//! here, each section's checks in a file of its own.

mod assertion;
mod exemptions;
mod ldap;
mod login;
mod notifiers;
mod passkeys;
mod portal;
mod routes;
mod server;
mod session;
mod storage;

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::config::file::{self, File};
use crate::config::{Config, Secret, TwoStepMethod};

use super::errors::{ConfigErrors, Errors};

/// Checks the parsed `file` (whose text is `text`, read from `source`) and builds the
/// [`Config`], or returns every problem in file order.
pub(super) fn config(
    file: File,
    text: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Config, ConfigErrors> {
    let mut cx = Checker {
        base: base_dir(source),
        errors: Errors::new(text, source),
        env,
    };
    let config = cx.build(file, source);
    cx.errors.finish().map(|()| config)
}

fn base_dir(source: &Path) -> PathBuf {
    match source.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

const DURATION_FIX: &str = "write a number followed by a unit, e.g. `30s`, `5m`, `2h` or `30d`";

struct Checker<'a> {
    base: PathBuf,
    errors: Errors,
    env: &'a dyn Fn(&str) -> Option<OsString>,
}

/// Whether a zero duration makes sense for a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Zero {
    Allowed,
    Refused,
}

impl Checker<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.errors.at(path, message, fix);
    }

    fn duration(
        &mut self,
        path: &str,
        value: Option<&String>,
        default: Duration,
        zero: Zero,
    ) -> Duration {
        let Some(text) = value else {
            return default;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() && zero == Zero::Refused => {
                self.err(
                    path,
                    format!("`{path}` must be longer than zero"),
                    DURATION_FIX,
                );
                default
            }
            Ok(d) => d,
            Err(_) => {
                self.err(path, format!("`{path}` is not a duration"), DURATION_FIX);
                default
            }
        }
    }

    fn number(
        &mut self,
        path: &str,
        value: Option<u64>,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> u64 {
        let v = value.unwrap_or(default);
        if range.contains(&v) {
            v
        } else {
            self.err(
                path,
                format!("`{path}` is {v}, outside the allowed range"),
                format!("use a value from {} to {}", range.start(), range.end()),
            );
            default
        }
    }

    /// A size in bytes within `range`.
    fn size(
        &mut self,
        path: &str,
        value: Option<u64>,
        default: usize,
        range: RangeInclusive<u64>,
    ) -> usize {
        let default64 = u64::try_from(default).unwrap_or(u64::MAX);
        let v = self.number(path, value, default64, range);
        usize::try_from(v).unwrap_or(default)
    }

    fn at_most(&mut self, path: &str, value: Duration, max: Duration, max_text: &str) -> Duration {
        if value > max {
            self.err(
                path,
                format!("`{path}` is longer than the allowed {max_text}"),
                format!("use a duration of at most {max_text}"),
            );
            max
        } else {
            value
        }
    }

    /// Resolves a path from the file against the configuration file's directory.
    fn path(&self, text: &str) -> PathBuf {
        let p = Path::new(text);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    path,
                    format!("`{path}` is not an IP address with a port"),
                    "write an address such as `127.0.0.1:8080`, `0.0.0.0:8443` or `[::]:8080`",
                );
                None
            }
        }
    }

    fn socket_addrs(&mut self, path: &str, list: &[String]) -> Vec<SocketAddr> {
        list.iter()
            .enumerate()
            .filter_map(|(i, t)| self.socket_addr(&format!("{path}[{i}]"), t))
            .collect()
    }

    /// A secret given by `{key}_file` or `{key}_env` under `parent`; `None` when neither is set.
    fn secret(
        &mut self,
        parent: &str,
        key: &str,
        file: Option<&String>,
        env: Option<&String>,
    ) -> Option<Secret> {
        let file_key = format!("{key}_file");
        let env_key = format!("{key}_env");
        match (file, env) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.err(
                    &format!("{parent}.{env_key}"),
                    format!("`{parent}` sets both `{file_key}` and `{env_key}`"),
                    format!("keep only one of `{file_key}` and `{env_key}`"),
                );
                None
            }
            (Some(name), None) => {
                let path = format!("{parent}.{file_key}");
                let full = self.path(name);
                match std::fs::read(&full) {
                    Ok(mut bytes) => {
                        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                            bytes.pop();
                        }
                        if bytes.is_empty() {
                            self.err(
                                &path,
                                format!(
                                    "the secret file {} named by `{path}` is empty",
                                    full.display()
                                ),
                                "write the secret into the file",
                            );
                            return None;
                        }
                        Some(Secret(bytes))
                    }
                    Err(e) => {
                        // The path is not printed: a secret written here by mistake
                        // would end up in the output (line and column locate it).
                        self.err(
                            &path,
                            format!("cannot read the secret file named by `{path}`: {e}"),
                            "create the file (relative paths are relative to the configuration file's directory) and let nidan read it",
                        );
                        None
                    }
                }
            }
            (None, Some(name)) => {
                let path = format!("{parent}.{env_key}");
                let value = if name.is_empty() {
                    None
                } else {
                    (self.env)(name)
                };
                match value.map(OsString::into_string) {
                    Some(Ok(v)) if !v.is_empty() => Some(Secret(v.into_bytes())),
                    Some(Ok(_)) => {
                        self.err(
                            &path,
                            format!("the environment variable named by `{path}` is empty"),
                            "set the variable to the secret before starting nidan",
                        );
                        None
                    }
                    Some(Err(_)) => {
                        self.err(
                            &path,
                            format!(
                                "the environment variable named by `{path}` is not valid UTF-8"
                            ),
                            "set the variable to a UTF-8 secret, or use a file instead",
                        );
                        None
                    }
                    None => {
                        self.err(
                            &path,
                            format!("the environment variable named by `{path}` is not set"),
                            format!("export the variable before starting nidan, or use `{file_key}` instead"),
                        );
                        None
                    }
                }
            }
        }
    }

    fn build(&mut self, f: File, source: &Path) -> Config {
        if f.version != 1 {
            self.err(
                "version",
                format!("unsupported configuration version {}", f.version),
                "this nidan reads `version: 1`",
            );
        }
        let server = self.server(f.server.unwrap_or_default());
        let portal = self.portal(f.portal.unwrap_or_default());
        let session = self.session(f.session.unwrap_or_default(), &portal);
        let trusted_devices = self.trusted_devices(f.trusted_devices.unwrap_or_default(), &session);
        let security_code = self.security_code(f.security_code.unwrap_or_default());
        let login_limits = self.login_limits(f.login_limits.unwrap_or_default());
        let app_approval = self.app_approval(f.app_approval.unwrap_or_default());
        let notifiers = self.notifiers(f.notifiers.unwrap_or_default());
        let users = self.users(f.users.unwrap_or_default());
        let storage = self.storage(f.storage.unwrap_or_default());
        let identity_headers = self.identity_headers(f.identity_headers.unwrap_or_default());
        let trusted_proxies = self.trusted_proxies(f.trusted_proxies.unwrap_or_default());
        let exemptions = self.exemptions(f.exemptions.unwrap_or_default());
        let risk = self.risk(f.risk.unwrap_or_default());
        let passkeys = self.passkeys(f.passkeys.unwrap_or_default(), &portal);
        let identity_assertion = f
            .identity_assertion
            .map(|a| self.identity_assertion(a, &portal, &identity_headers));
        let routes = self.routes(
            f.routes.unwrap_or_default(),
            identity_assertion.as_ref().map(|a| a.enabled),
        );
        let audit = self.audit(f.audit.unwrap_or_default());
        Config {
            source: source.to_path_buf(),
            server,
            portal,
            session,
            trusted_devices,
            security_code,
            login_limits,
            app_approval,
            notifiers,
            users,
            storage,
            identity_headers,
            trusted_proxies,
            exemptions,
            risk,
            passkeys,
            routes,
            audit,
            identity_assertion,
        }
    }

    /// A list of CIDRs (a bare address is a /32 or /128) at `path`.
    fn networks(&mut self, path: &str, list: &[String]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let t = text.trim();
            let net = t
                .parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from));
            match net {
                Ok(n) => out.push(n),
                Err(_) => self.err(
                    &format!("{path}[{i}]"),
                    format!("`{path}[{i}]` is not an IP network"),
                    "write a CIDR such as `10.0.0.0/8` or `2001:db8::/32`, or a single address such as `192.0.2.1`",
                ),
            }
        }
        out
    }
}

fn method(m: file::TwoStepMethodFile) -> TwoStepMethod {
    match m {
        file::TwoStepMethodFile::Sms => TwoStepMethod::Sms,
        file::TwoStepMethodFile::Email => TwoStepMethod::Email,
        file::TwoStepMethodFile::App => TwoStepMethod::App,
    }
}

/// Route/key names: 1..=max of `[A-Za-z0-9._-]`.
fn name_ok(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An HTTP token (header name).
fn token_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A lower-case DNS name or IP literal, without port.
fn hostname_ok(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// The host of a checked `public_url` (`https://host[:port]`, `http://[v6]:port`),
/// without brackets or port.
fn url_host(u: &str) -> &str {
    let rest = u.split_once("://").map_or(u, |(_, r)| r);
    match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => rest.split(':').next().unwrap_or(rest),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::config::load::load_with_env;
    use crate::config::testing::*;

    #[test]
    fn durations_use_units() {
        let c = load_t(&with("session: { idle_timeout: 1h 30m, absolute_timeout: 2d }\nserver: { grace_period: 0s }\n")).unwrap();
        assert_eq!(c.session.idle_timeout, Duration::from_secs(5400));
        assert_eq!(c.session.absolute_timeout, Duration::from_secs(2 * 86400));
        assert_eq!(c.server.grace_period, Duration::ZERO);
        for bad in ["30", "0s", "5 parsecs", "-1m"] {
            let e = &errors(&with(&format!("portal: {{ recent_login: \"{bad}\" }}\n")))[0];
            assert_eq!((e.line, e.column), (2, 25), "{bad}: {e}");
            assert!(e.fix.contains("`30s`"), "{e}");
        }
        let e = &errors(&with("session: { idle_timeout: 13h }\n"))[0];
        assert!(
            e.message.contains("longer than `session.absolute_timeout`"),
            "{e}"
        );
    }

    #[test]
    fn cidrs_and_addresses() {
        let c = load_t(&with(
            "trusted_proxies: [\"10.1.2.3/8\", 192.0.2.1, \"fd00::/8\", \"::1\"]\n",
        ))
        .unwrap();
        let got: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.0.0.0/8", "192.0.2.1/32", "fd00::/8", "::1/128"]);
        for bad in ["10.0.0.0/33", "10.0.0", "example.com", "fd00::/129"] {
            let e = &errors(&with(&format!("trusted_proxies: [\"{bad}\"]\n")))[0];
            assert_eq!((e.line, e.column), (2, 19), "{bad}");
        }
    }

    #[test]
    fn the_directory_is_a_file_or_the_database() {
        use crate::config::DirectoryKind;
        let c = load_t(&with("users: { database: {} }\n")).unwrap();
        assert_eq!(c.users.directory, DirectoryKind::Database);
        let c = load_t(MINIMAL).unwrap();
        assert_eq!(c.users.directory, DirectoryKind::File);
        let e = &errors(&with("users: { file: u.yaml, database: {} }\n"))[0];
        assert!(e.message.contains("both"), "{e}");
        assert!(e.fix.contains("database: {}"), "{e}");
        let e = &errors(&with("users: { database: { url: x } }\n"))[0];
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c = load_with_env(MINIMAL, Path::new("nidan.yaml"), &test_env).unwrap();
        assert_eq!(c.users.file, PathBuf::from("./users.yaml"));
        let text =
            with("users: { file: /srv/users.yaml }\nstorage: { sqlite: { path: data/n.db } }\n");
        let c = load_with_env(&text, Path::new("conf/nidan.yaml"), &test_env).unwrap();
        assert_eq!(c.users.file, PathBuf::from("/srv/users.yaml"));
        assert_eq!(c.storage.sqlite_path, PathBuf::from("conf/data/n.db"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/key"), format!("{DEVICE_KEY}\n")).unwrap();
        let text = MINIMAL.replace("secret_env: NIDAN_TEST_DEVICE_KEY", "secret_file: s/key");
        let c = load_with_env(&text, &dir.path().join("nidan.yaml"), &test_env).unwrap();
        assert_eq!(
            c.trusted_devices.signing_keys[0].secret.expose(),
            DEVICE_KEY.as_bytes()
        );
        // The same file seen from elsewhere is not found: paths are not relative to the CWD.
        assert!(load_with_env(&text, Path::new("/nonexistent/nidan.yaml"), &test_env).is_err());
    }

    #[test]
    fn secrets_need_exactly_one_source_and_enough_bytes() {
        let e = &errors(&MINIMAL.replace(
            "secret_env: NIDAN_TEST_DEVICE_KEY",
            "secret_env: NIDAN_UNSET_FOR_TESTS",
        ))[0];
        assert!(
            e.message
                .contains("`trusted_devices.signing_keys[0].secret_env` is not set"),
            "{e}"
        );
        assert_eq!((e.line, e.column), (3, 40));
        let e = &errors(&MINIMAL.replace(
            "secret_env: NIDAN_TEST_DEVICE_KEY",
            "secret_env: NIDAN_EMPTY",
        ))[0];
        assert!(e.message.contains("empty"), "{e}");
        let e = &errors(&MINIMAL.replace("secret_env:", "secret_file: x, secret_env:"))[0];
        assert!(e.message.contains("sets both"), "{e}");
        let e = &errors(&MINIMAL.replace(", secret_env: NIDAN_TEST_DEVICE_KEY", ""))[0];
        assert!(e.message.contains("has no secret"), "{e}");
        let e = &errors(&MINIMAL.replace(
            "signing_keys: [{ id: k1, secret_env: NIDAN_TEST_DEVICE_KEY }]",
            "lifetime: 30d",
        ))[0];
        assert!(e.message.contains("has no key"), "{e}");
        let e =
            &errors(&MINIMAL.replace("}]", "}, { id: k1, secret_env: NIDAN_TEST_DEVICE_KEY }]"))[0];
        assert!(e.message.contains("used twice"), "{e}");
        let e = &errors(&with(
            "server: { admin_token_env: NIDAN_UNSET_FOR_TESTS }\n",
        ))[0];
        assert!(e.message.contains("`server.admin_token_env`"), "{e}");
        let e = &errors(&with(
            "notifiers: { sms: { url: \"https://x\", headers: { Authorization: \"Bearer {secret}\" } } }\n",
        ))[0];
        assert!(e.message.contains("no secret"), "{e}");
    }
}
