//! Reads the YAML file, checks every value and builds the runtime [`Config`]. Each problem
//! becomes a [`ConfigError`] with file, line, column and a sentence on how to fix it;
//! semantic problems are all collected, not just the first.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::de::DeserializeOwned;

use super::AuditSettings;
use super::IdentityAssertion;
use super::file::{self, File};
use super::locate::Locator;
use super::{
    Accept, AppApproval, ApprovalOrder, Config, HostPattern, IdentityHeaders, Language,
    LoginLimits, Notifiers, Outbox, Policy, Portal, PushWebhook, Route, SecondStep, Secret,
    SecureCookies, SecurityCode, Server, SessionSettings, SigningKey, SmsGateway, Smtp,
    SmtpSecurity, Storage, Tls, TrustedDevices, TwoStepMethod, Upstream, UsersSource,
};
use super::{Brand, FooterLink, Logo};
use super::{Exemptions, Limits, OnPhoneLoss, PasskeySettings, Replicated, RiskSettings};

/// One problem in a configuration (or users) file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}\n  fix: {fix}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the file could not be read at all.
    pub line: usize,
    /// 1-based; 0 when the file could not be read at all.
    pub column: usize,
    pub message: String,
    pub fix: String,
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = read_file(path, "configuration")?;
    load_str(&text, path)
}

/// Checks configuration `text` that came from `source` (used in messages and to resolve
/// relative paths against its directory).
pub fn load_str(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(text, source, &|name| std::env::var_os(name))
}

/// [`load_str`] with the environment supplied by the caller (tests cannot safely set
/// process environment variables).
pub(crate) fn load_with_env(
    text: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Config, ConfigErrors> {
    let file: File = parse_yaml(text, source)?;
    let mut cx = Checker {
        base: base_dir(source),
        errors: Errors::new(text, source),
        env,
    };
    let config = cx.build(file, source);
    cx.errors.finish().map(|()| config)
}

/// Reads a whole text file; a failure is one error naming the file.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the {what} file {}: {e}", path.display()),
        fix: format!("check that the {what} file exists, is UTF-8 text and is readable by nidan"),
    })
}

/// The one place YAML text is turned into data, so the YAML library can be swapped.
pub(crate) fn parse_yaml<T: DeserializeOwned>(text: &str, source: &Path) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError {
            file: source.to_path_buf(),
            line: 1,
            column: 1,
            message: "the file is empty".into(),
            fix: "start the file with `version: 1`".into(),
        });
    }
    serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
        let message = plain_types(&strip_marks(&redact(&e.to_string())));
        let fix = fix_for(&message);
        ConfigError {
            file: source.to_path_buf(),
            line,
            column,
            message,
            fix,
        }
    })
}

/// Removes quoted scalar values and unknown enum values from a serde message: they are
/// the file's text and may be a misplaced secret. Key names (in backticks) are kept.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            // Skip to the closing quote (serde writes values with `{:?}`, so inner quotes are escaped).
            while let Some(d) = chars.next() {
                match d {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            if out.ends_with(' ') {
                out.pop();
            }
        } else {
            out.push(c);
        }
    }
    const VARIANT: &str = "unknown variant `";
    if let Some(start) = out.find(VARIANT) {
        let after = &out[start + VARIANT.len()..];
        let rest = match after.rfind("`, expected") {
            Some(end) => after[end + 1..].to_string(),
            None => String::new(),
        };
        out = format!("{}unknown value{rest}", &out[..start]);
    }
    out
}

/// Replaces Rust type names in serde messages with words an operator knows.
fn plain_types(message: &str) -> String {
    let Some(i) = message.find(", expected ") else {
        return message.to_string();
    };
    let (head, expected) = message.split_at(i + ", expected ".len());
    let words = if expected.starts_with("struct ") || expected == "a map" {
        "a mapping (`key: value`)"
    } else if matches!(expected, "u8" | "u16" | "u32" | "u64" | "usize") {
        "a whole number"
    } else if expected == "a sequence" {
        "a list (`[a, b]` or `- ` items)"
    } else if expected == "a boolean" {
        "`true` or `false`"
    } else if expected.contains("YAML tag") {
        "one of the documented words"
    } else {
        expected
    };
    format!("{head}{words}")
}

/// Removes `at line N column M` (serde_yaml appends it; we report it separately).
fn strip_marks(message: &str) -> String {
    let mut out = message.to_string();
    while let Some(start) = out.find(" at line ") {
        let rest = &out[start + " at line ".len()..];
        let digits = |s: &str| s.chars().take_while(char::is_ascii_digit).count();
        let n = digits(rest);
        let Some(after_col) = rest[n..].strip_prefix(" column ") else {
            break;
        };
        let m = digits(after_col);
        let end = start + " at line ".len() + n + " column ".len() + m;
        out.replace_range(start..end, "");
    }
    out
}

fn fix_for(message: &str) -> String {
    let expected = message
        .find(", expected ")
        .map(|i| &message[i + ", expected ".len()..]);
    if message.contains("unknown field") {
        match expected {
            Some(keys) => format!(
                "remove this key or correct its spelling; the keys accepted here are {}",
                keys.trim_start_matches("one of ")
            ),
            None => "remove this key: nothing is accepted here".into(),
        }
    } else if message.contains("unknown value") {
        match expected {
            Some(values) => format!("use {values}"),
            None => "use one of the documented values".into(),
        }
    } else if let Some(i) = message.find("missing field `") {
        let name = message[i + "missing field `".len()..]
            .split('`')
            .next()
            .unwrap_or_default();
        format!("add the required key `{name}` here")
    } else if message.contains("duplicate field") || message.contains("duplicate entry") {
        "write each key only once in a mapping".into()
    } else if message.contains("invalid type") || message.contains("invalid value") {
        match expected {
            Some(what) => format!("give {what} here"),
            None => "give a value of the documented type here".into(),
        }
    } else {
        "check the YAML syntax here: indentation, a `:` after each key, a `- ` before list \
         items, and quotes around values that contain `: ` or ` #`"
            .into()
    }
}

fn base_dir(source: &Path) -> PathBuf {
    match source.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Collects errors placed by path inside one document.
pub(crate) struct Errors {
    source: PathBuf,
    locator: Locator,
    list: Vec<ConfigError>,
}

impl Errors {
    pub(crate) fn new(text: &str, source: &Path) -> Self {
        Errors {
            source: source.to_path_buf(),
            locator: Locator::new(text),
            list: Vec::new(),
        }
    }

    /// Records an error at the node `path` (or its nearest ancestor).
    pub(crate) fn at(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        let (line, column) = self.locator.find(path);
        self.list.push(ConfigError {
            file: self.source.clone(),
            line,
            column,
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// The line where the node at `path` starts.
    pub(crate) fn line_of(&self, path: &str) -> usize {
        self.locator.find(path).0
    }

    /// `Ok` when nothing was recorded, else every error in file order.
    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(self.list))
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

    fn audit(&mut self, a: file::AuditFile) -> AuditSettings {
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
        }
    }

    fn passkeys(&mut self, p: file::PasskeysFile, portal: &Portal) -> PasskeySettings {
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

    fn server(&mut self, s: file::ServerFile) -> Server {
        let listen = match &s.listen {
            None if s.tls.is_some() => Vec::new(),
            None => vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            Some(list) => self.socket_addrs("server.listen", list),
        };
        let tls = s.tls.map(|t| {
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
        });
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
        let limits = s.limits.unwrap_or_default();
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
        let limits = Limits {
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
        };
        Server {
            limits,
            listen,
            tls,
            admin_listen,
            admin_token,
            threads: usize::try_from(threads).unwrap_or(2),
            grace_period,
        }
    }

    fn existing_file(&mut self, parent: &str, key: &str, value: Option<&str>) -> PathBuf {
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

    /// `sqlite` (one machine, the default) or `postgres` + `redis` (replicas): the two modes.
    fn storage(&mut self, s: file::StorageFile) -> Storage {
        let outage_grace = self.duration(
            "storage.outage_grace",
            s.outage_grace.as_ref(),
            Duration::from_secs(60),
            Zero::Allowed,
        );
        let sqlite_set = s.sqlite.is_some();
        let sqlite_path = self.path(
            s.sqlite
                .and_then(|s| s.path)
                .as_deref()
                .unwrap_or("nidan.db"),
        );
        let replicated = match (s.postgres, s.redis) {
            (None, None) => None,
            (Some(_), None) => {
                self.err(
                    "storage.postgres",
                    "`storage.postgres` is set without `storage.redis`",
                    "replicas share short-lived state (logins in progress, limits) and revocations through Redis: add `storage.redis: { url_env: NIDAN_REDIS_URL }`, or remove `storage.postgres` to run one machine on SQLite",
                );
                None
            }
            (None, Some(_)) => {
                self.err(
                    "storage.redis",
                    "`storage.redis` is set without `storage.postgres`",
                    "replicas keep what must last in PostgreSQL: add `storage.postgres: { url_env: NIDAN_DATABASE_URL }`, or remove `storage.redis` to run one machine on SQLite",
                );
                None
            }
            (Some(pg), Some(redis)) => {
                if sqlite_set {
                    self.err(
                        "storage.sqlite",
                        "`storage.sqlite` is set together with `storage.postgres` and `storage.redis`",
                        "choose one mode: `sqlite` for one machine, or `postgres` + `redis` for replicas",
                    );
                }
                let postgres_url = self.secret(
                    "storage.postgres",
                    "url",
                    pg.url_file.as_ref(),
                    pg.url_env.as_ref(),
                );
                if pg.url_file.is_none() && pg.url_env.is_none() {
                    self.err(
                        "storage.postgres",
                        "`storage.postgres` names no URL",
                        "add `url_env: NIDAN_DATABASE_URL` (or `url_file`) holding e.g. `postgres://nidan@db.internal/nidan`",
                    );
                }
                let redis_url = self.secret(
                    "storage.redis",
                    "url",
                    redis.url_file.as_ref(),
                    redis.url_env.as_ref(),
                );
                if redis.url_file.is_none() && redis.url_env.is_none() {
                    self.err(
                        "storage.redis",
                        "`storage.redis` names no URL",
                        "add `url_env: NIDAN_REDIS_URL` (or `url_file`) holding e.g. `redis://cache.internal:6379/0`",
                    );
                }
                let check = |u: &Secret, schemes: &[&str]| {
                    u.expose_str()
                        .is_some_and(|t| schemes.iter().any(|s| t.starts_with(s)))
                };
                if let Some(u) = &postgres_url
                    && !check(u, &["postgres://", "postgresql://"])
                {
                    self.err(
                        "storage.postgres",
                        "the PostgreSQL URL does not start with `postgres://` or `postgresql://`",
                        "give a URL such as `postgres://user@host:5432/db` (its text is not shown here: it may hold a password)",
                    );
                }
                if let Some(u) = &redis_url
                    && !check(u, &["redis://", "rediss://"])
                {
                    self.err(
                        "storage.redis",
                        "the Redis URL does not start with `redis://` or `rediss://`",
                        "give a URL such as `redis://host:6379/0` (its text is not shown here: it may hold a password)",
                    );
                }
                let key_prefix = redis.key_prefix.unwrap_or_else(|| "nidan".into());
                if key_prefix.is_empty()
                    || !key_prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    self.err(
                        "storage.redis.key_prefix",
                        "`storage.redis.key_prefix` is empty or has characters other than letters, digits, `-`, `_`, `.`",
                        "use a short name such as `nidan` or `nidan-prod`",
                    );
                }
                let max = pg.max_connections.unwrap_or(10);
                if max == 0 {
                    self.err(
                        "storage.postgres.max_connections",
                        "`storage.postgres.max_connections` is 0",
                        "use at least 1 (default 10)",
                    );
                }
                match (postgres_url, redis_url) {
                    (Some(postgres_url), Some(redis_url)) => Some(Replicated {
                        postgres_url,
                        postgres_max_connections: max.max(1),
                        redis_url,
                        key_prefix,
                    }),
                    _ => None,
                }
            }
        };
        Storage {
            sqlite_path,
            replicated,
            outage_grace,
        }
    }

    fn brand(&mut self, b: file::BrandFile) -> Brand {
        const P: &str = "portal.brand";
        let name = b.name.map(|n| n.trim().to_owned());
        if name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.chars().count() > 64)
        {
            self.err(
                &format!("{P}.name"),
                "`portal.brand.name` is empty or longer than 64 characters",
                "give the name shown in the header and page titles, e.g. `Example ID`",
            );
        }
        let logo = b
            .logo_file
            .and_then(|f| self.logo(&format!("{P}.logo_file"), &f));
        let primary_color = b.primary_color.and_then(|c| {
            let path = format!("{P}.primary_color");
            let Some(rgb) = parse_hex_color(&c) else {
                self.err(
                    &path,
                    "`portal.brand.primary_color` is not a colour",
                    "write it as `#rrggbb`, e.g. `#0b3d91`",
                );
                return None;
            };
            let ratio = contrast_with_white(rgb);
            if ratio < 4.5 {
                self.err(
                    &path,
                    format!(
                        "`portal.brand.primary_color` {} has a contrast of {:.1}:1 against white; \
                         white text on it (buttons, the header) needs at least 4.5:1",
                        c.trim(),
                        (ratio * 10.0).floor() / 10.0
                    ),
                    "choose a darker colour, e.g. `#0b3d91` (10.0:1) or `#1a7f37` (5.0:1)",
                );
                return None;
            }
            Some(format!("#{:02x}{:02x}{:02x}", rgb.0, rgb.1, rgb.2))
        });
        let mut footer_links = Vec::new();
        for (i, l) in b.footer_links.unwrap_or_default().into_iter().enumerate() {
            let path = format!("{P}.footer_links[{i}]");
            let (ja, en) = match l.label {
                file::LabelFile::One(s) => (s.clone(), s),
                file::LabelFile::PerLanguage { ja, en } => (ja, en),
            };
            let (ja, en) = (ja.trim().to_owned(), en.trim().to_owned());
            let label_ok = |s: &str| {
                !s.is_empty() && s.chars().count() <= 64 && !s.chars().any(char::is_control)
            };
            if !label_ok(&ja) || !label_ok(&en) {
                self.err(
                    &format!("{path}.label"),
                    format!("`{path}.label` is empty, too long or has control characters"),
                    "write 1 to 64 characters, or `{ ja: ヘルプ, en: Help }` for one per language",
                );
                continue;
            }
            let url = l.url.trim().to_owned();
            if !footer_url_ok(&url) {
                self.err(
                    &format!("{path}.url"),
                    format!("`{path}.url` is not an http(s) address or a path on this site"),
                    "write e.g. `https://example.com/help` or `/help`",
                );
                continue;
            }
            footer_links.push(FooterLink {
                label_ja: ja,
                label_en: en,
                url,
            });
        }
        if footer_links.len() > 10 {
            self.err(
                &format!("{P}.footer_links"),
                "`portal.brand.footer_links` has more than 10 links",
                "keep the footer to a few links (help, terms, privacy)",
            );
        }
        Brand {
            name,
            logo,
            primary_color,
            footer_links,
        }
    }

    /// Reads the logo file (at most 512 KiB of PNG, SVG, JPEG, WebP or GIF).
    fn logo(&mut self, path: &str, text: &str) -> Option<Logo> {
        let file = self.path(text);
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let content_type = match ext.as_str() {
            "png" => "image/png",
            "svg" => "image/svg+xml",
            "jpg" | "jpeg" => "image/jpeg",
            "webp" => "image/webp",
            "gif" => "image/gif",
            _ => {
                self.err(
                    path,
                    "the logo file is not a PNG, SVG, JPEG, WebP or GIF image",
                    "give a file ending in .png, .svg, .jpg, .webp or .gif",
                );
                return None;
            }
        };
        match std::fs::read(&file) {
            Ok(bytes) if bytes.len() <= 512 * 1024 && !bytes.is_empty() => Some(Logo {
                bytes: std::sync::Arc::new(bytes),
                content_type,
            }),
            Ok(_) => {
                self.err(
                    path,
                    "the logo file is empty or larger than 512 KiB",
                    "use a small image (a few KiB of SVG or PNG is plenty for a header)",
                );
                None
            }
            Err(e) => {
                self.err(
                    path,
                    format!("cannot read the logo file {}: {e}", file.display()),
                    "check the path (relative to the configuration file) and that nidan may read it",
                );
                None
            }
        }
    }

    fn portal(&mut self, p: file::PortalFile) -> Portal {
        let path_prefix = match p.path_prefix {
            None => "/_nidan".to_string(),
            Some(v) => {
                if portal_prefix_ok(&v) {
                    v
                } else {
                    self.err(
                        "portal.path_prefix",
                        "`portal.path_prefix` is not a plain path",
                        "write one or more plain segments starting with `/` and without a trailing `/`, e.g. `/_nidan`",
                    );
                    "/_nidan".to_string()
                }
            }
        };
        let title = p.title.unwrap_or_else(|| "nidan".into());
        if title.trim().is_empty() {
            self.err(
                "portal.title",
                "`portal.title` is empty",
                "give the product name shown on pages, e.g. `nidan`",
            );
        }
        let mut allowed_return_hosts = Vec::new();
        for (i, h) in p
            .allowed_return_hosts
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let h = h.trim().to_ascii_lowercase();
            if hostname_ok(&h) {
                allowed_return_hosts.push(h);
            } else {
                self.err(
                    &format!("portal.allowed_return_hosts[{i}]"),
                    format!("`portal.allowed_return_hosts[{i}]` is not a host name"),
                    "write a host name without scheme, port or path, e.g. `intranet.example.com`",
                );
            }
        }
        let public_url = p.public_url.and_then(|u| {
            let u = u.trim().trim_end_matches('/').to_ascii_lowercase();
            if public_url_ok(&u) {
                Some(u)
            } else {
                self.err(
                    "portal.public_url",
                    "`portal.public_url` is not an http(s) address of a host",
                    "write the scheme, host and optional port users reach nidan at, without a path, e.g. `https://login.example.com`",
                );
                None
            }
        });
        let time_zone = p.time_zone.and_then(|z| match z.trim().parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.err(
                    "portal.time_zone",
                    "`portal.time_zone` is not a time zone of the IANA database",
                    "write a zone name such as `Asia/Tokyo`, `Europe/Berlin` or `UTC`, or remove the key (Japanese pages then show Asia/Tokyo, English ones UTC)",
                );
                None
            }
        });
        let brand = self.brand(p.brand.unwrap_or_default());
        Portal {
            time_zone,
            brand,
            path_prefix,
            public_url,
            default_language: match p.default_language {
                Some(file::LanguageFile::En) => Language::En,
                Some(file::LanguageFile::Ja) | None => Language::Ja,
            },
            title,
            allowed_return_hosts,
            recent_login: self.duration(
                "portal.recent_login",
                p.recent_login.as_ref(),
                Duration::from_secs(300),
                Zero::Refused,
            ),
            flow_lifetime: self.duration(
                "portal.flow_lifetime",
                p.flow_lifetime.as_ref(),
                Duration::from_secs(600),
                Zero::Refused,
            ),
        }
    }

    fn cookie_name(&mut self, path: &str, value: Option<String>, default: &str) -> String {
        match value {
            None => default.to_string(),
            Some(v)
                if !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    && !v.starts_with("__") =>
            {
                v
            }
            Some(_) => {
                self.err(
                    path,
                    format!("`{path}` is not a usable cookie name"),
                    format!("use letters, digits, `_` and `-` only (nidan adds the `__Host-` prefix itself), e.g. `{default}`"),
                );
                default.to_string()
            }
        }
    }

    /// `session.secure_cookies`: `auto` (default) or `always` (`true`). Nothing sends
    /// cookies without `Secure` over HTTPS (SECURITY 19, 44), so `false` is refused, and
    /// `always` with a plain-HTTP `public_url` would leave nobody able to log in.
    fn secure_cookies(
        &mut self,
        value: Option<file::SecureCookiesFile>,
        portal: &Portal,
    ) -> SecureCookies {
        const P: &str = "session.secure_cookies";
        let public_http = portal
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://"));
        match value {
            None => SecureCookies::Auto,
            Some(file::SecureCookiesFile::Word(w)) if w.trim() == "auto" => SecureCookies::Auto,
            Some(file::SecureCookiesFile::Word(w)) if w.trim() == "always" && public_http => {
                self.err(
                    P,
                    "`session.secure_cookies: always` makes every cookie `Secure`, but `portal.public_url` is http://: browsers would drop the cookies and nobody could log in",
                    "make `portal.public_url` an https:// address (TLS in front), or remove `session.secure_cookies`",
                );
                SecureCookies::Always
            }
            Some(file::SecureCookiesFile::Flag(true)) => SecureCookies::Always,
            Some(file::SecureCookiesFile::Word(w)) if w.trim() == "always" => SecureCookies::Always,
            Some(file::SecureCookiesFile::Flag(false)) if portal.public_https() => {
                self.err(
                    P,
                    "`session.secure_cookies: false` would send cookies without `Secure` while `portal.public_url` is https://",
                    "remove `session.secure_cookies`: with an https `portal.public_url` every cookie is `__Host-` + `Secure` and HSTS is sent",
                );
                SecureCookies::Always
            }
            Some(file::SecureCookiesFile::Flag(false)) => {
                self.err(
                    P,
                    "`session.secure_cookies: false` is not offered: over HTTPS every cookie carries `Secure` (SECURITY 19, 44)",
                    "remove the key: over plain HTTP cookies go without `Secure` anyway (`auto`)",
                );
                SecureCookies::Auto
            }
            Some(file::SecureCookiesFile::Word(_)) => {
                self.err(
                    P,
                    "`session.secure_cookies` is neither `auto` nor `always`",
                    "write `auto` (HTTPS per request: an https `portal.public_url`, TLS, or a trusted proxy's `X-Forwarded-Proto: https`) or `always`, or remove the key",
                );
                SecureCookies::Auto
            }
        }
    }

    fn session(&mut self, s: file::SessionFile, portal: &Portal) -> SessionSettings {
        let idle_timeout = self.duration(
            "session.idle_timeout",
            s.idle_timeout.as_ref(),
            Duration::from_secs(30 * 60),
            Zero::Refused,
        );
        let absolute_timeout = self.duration(
            "session.absolute_timeout",
            s.absolute_timeout.as_ref(),
            Duration::from_secs(12 * 3600),
            Zero::Refused,
        );
        if idle_timeout > absolute_timeout {
            self.err(
                "session.idle_timeout",
                "`session.idle_timeout` is longer than `session.absolute_timeout`",
                "make `idle_timeout` at most `absolute_timeout` (defaults: 30m and 12h)",
            );
        }
        SessionSettings {
            idle_timeout,
            absolute_timeout,
            cookie_name: self.cookie_name("session.cookie_name", s.cookie_name, "nidan_session"),
            secure_cookies: self.secure_cookies(s.secure_cookies, portal),
        }
    }

    fn trusted_devices(
        &mut self,
        t: file::TrustedDevicesFile,
        session: &SessionSettings,
    ) -> TrustedDevices {
        let lifetime = self.duration(
            "trusted_devices.lifetime",
            t.lifetime.as_ref(),
            Duration::from_secs(30 * 86400),
            Zero::Refused,
        );
        let max_per_user =
            self.number("trusted_devices.max_per_user", t.max_per_user, 10, 1..=1000);
        let cookie_name =
            self.cookie_name("trusted_devices.cookie_name", t.cookie_name, "nidan_device");
        if cookie_name == session.cookie_name {
            self.err(
                "trusted_devices.cookie_name",
                "`trusted_devices.cookie_name` is the same as `session.cookie_name`",
                "give the two cookies different names, e.g. `nidan_device` and `nidan_session`",
            );
        }
        let keys = t.signing_keys.unwrap_or_default();
        if keys.is_empty() {
            self.err(
                "trusted_devices.signing_keys",
                "`trusted_devices.signing_keys` has no key",
                "add `signing_keys: [{ id: k1, secret_file: secrets/device-k1 }]` under `trusted_devices` \
                 and create the file with `head -c 48 /dev/urandom | base64 > secrets/device-k1`",
            );
        }
        let mut signing_keys: Vec<SigningKey> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let path = format!("trusted_devices.signing_keys[{i}]");
            if !name_ok(&k.id, 32) {
                self.err(
                    &format!("{path}.id"),
                    format!("`{path}.id` is not a usable key ID"),
                    "use 1 to 32 letters, digits, `.`, `_` or `-`, e.g. `k1`",
                );
            } else if signing_keys.iter().any(|s| s.id == k.id) {
                self.err(
                    &format!("{path}.id"),
                    format!("signing key ID `{}` is used twice", k.id),
                    "give every signing key its own ID",
                );
            }
            match self.secret(
                &path,
                "secret",
                k.secret_file.as_ref(),
                k.secret_env.as_ref(),
            ) {
                None if k.secret_file.is_none() && k.secret_env.is_none() => self.err(
                    &path,
                    format!("`{path}` has no secret"),
                    "add `secret_file: path` or `secret_env: VARIABLE` to the key",
                ),
                None => {}
                Some(secret) if secret.0.len() < 32 => self.err(
                    &path,
                    format!(
                        "the secret of signing key `{}` is {} bytes; at least 32 are needed",
                        k.id,
                        secret.0.len()
                    ),
                    "generate a longer one, e.g. `head -c 48 /dev/urandom | base64`",
                ),
                Some(secret) => signing_keys.push(SigningKey {
                    id: k.id.clone(),
                    secret,
                }),
            }
        }
        TrustedDevices {
            lifetime,
            max_per_user: usize::try_from(max_per_user).unwrap_or(10),
            cookie_name,
            signing_keys,
        }
    }

    fn security_code(&mut self, s: file::SecurityCodeFile) -> SecurityCode {
        let length = self.number("security_code.length", s.length, 6, 6..=10);
        let lifetime = self.duration(
            "security_code.lifetime",
            s.lifetime.as_ref(),
            Duration::from_secs(300),
            Zero::Refused,
        );
        let lifetime = self.at_most(
            "security_code.lifetime",
            lifetime,
            Duration::from_secs(600),
            "10m",
        );
        let n32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let per_account = self.number(
            "security_code.max_sends_per_account",
            s.max_sends_per_account,
            5,
            1..=100,
        );
        let global = self.number(
            "security_code.max_sends_global_per_hour",
            s.max_sends_global_per_hour,
            1000,
            1..=10_000_000,
        );
        let reserve = self.reserve(
            "security_code.reserve_for_known_browsers",
            s.reserve_for_known_browsers,
            2,
            "security_code.max_sends_per_account",
            per_account,
        );
        let global_reserve = self.reserve(
            "security_code.global_reserve_for_known_browsers",
            s.global_reserve_for_known_browsers,
            global / 5,
            "security_code.max_sends_global_per_hour",
            global,
        );
        SecurityCode {
            length: usize::try_from(length).unwrap_or(6),
            lifetime,
            max_attempts: n32(self.number("security_code.max_attempts", s.max_attempts, 5, 1..=5)),
            resend_cooldown: self.duration(
                "security_code.resend_cooldown",
                s.resend_cooldown.as_ref(),
                Duration::from_secs(30),
                Zero::Allowed,
            ),
            max_sends_per_account: n32(per_account),
            send_window: self.duration(
                "security_code.send_window",
                s.send_window.as_ref(),
                Duration::from_secs(15 * 60),
                Zero::Refused,
            ),
            max_sends_per_ip: n32(self.number(
                "security_code.max_sends_per_ip",
                s.max_sends_per_ip,
                20,
                1..=100_000,
            )),
            max_sends_global_per_hour: n32(global),
            reserve_for_known_browsers: n32(reserve),
            global_reserve_for_known_browsers: n32(global_reserve),
        }
    }

    fn login_limits(&mut self, l: file::LoginLimitsFile) -> LoginLimits {
        let max_failures = self.number(
            "login_limits.max_failures_per_account",
            l.max_failures_per_account,
            100,
            1..=100,
        );
        let free_failures = self.number("login_limits.free_failures", l.free_failures, 5, 0..=100);
        if free_failures > max_failures {
            self.err(
                "login_limits.free_failures",
                "`login_limits.free_failures` is larger than `login_limits.max_failures_per_account`",
                format!("use a value from 0 to {max_failures}"),
            );
        }
        let base_delay = self.duration(
            "login_limits.base_delay",
            l.base_delay.as_ref(),
            Duration::from_secs(1),
            Zero::Refused,
        );
        let max_delay = self.duration(
            "login_limits.max_delay",
            l.max_delay.as_ref(),
            Duration::from_secs(15 * 60),
            Zero::Refused,
        );
        if base_delay > max_delay {
            self.err(
                "login_limits.base_delay",
                "`login_limits.base_delay` is longer than `login_limits.max_delay`",
                "make `base_delay` at most `max_delay` (defaults: 1s and 15m)",
            );
        }
        let hashes = self.number(
            "login_limits.max_concurrent_hashes",
            l.max_concurrent_hashes,
            0,
            0..=1024,
        );
        let max_concurrent_hashes = match hashes {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => usize::try_from(n).unwrap_or(1),
        };
        let reserve = self.reserve(
            "login_limits.reserve_for_known_browsers",
            l.reserve_for_known_browsers,
            20,
            "login_limits.max_failures_per_account",
            max_failures,
        );
        let n32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let per_address =
            |c: &mut Self, path: &str, v: Option<u64>| n32(c.number(path, v, 60, 1..=1_000_000));
        let id_steps_per_address = per_address(
            self,
            "login_limits.id_steps_per_address",
            l.id_steps_per_address,
        );
        let passkey_starts_per_address = per_address(
            self,
            "login_limits.passkey_starts_per_address",
            l.passkey_starts_per_address,
        );
        let address_window = self.duration(
            "login_limits.address_window",
            l.address_window.as_ref(),
            Duration::from_secs(60),
            Zero::Refused,
        );
        let ipv4_prefix = self.number("login_limits.ipv4_prefix", l.ipv4_prefix, 32, 8..=32);
        let ipv6_prefix = self.number("login_limits.ipv6_prefix", l.ipv6_prefix, 64, 32..=128);
        LoginLimits {
            reserve_for_known_browsers: n32(reserve),
            id_steps_per_address,
            passkey_starts_per_address,
            address_window,
            ipv4_prefix: u8::try_from(ipv4_prefix).unwrap_or(32),
            ipv6_prefix: u8::try_from(ipv6_prefix).unwrap_or(64),
            max_failures_per_account: u32::try_from(max_failures).unwrap_or(100),
            free_failures: u32::try_from(free_failures).unwrap_or(5),
            base_delay,
            max_delay,
            max_concurrent_hashes,
        }
    }

    /// A share of `total` kept for browsers the account knows: at most `total - 1`, so
    /// other browsers always keep at least one. Unset: `default`, lowered to fit.
    fn reserve(
        &mut self,
        path: &str,
        value: Option<u64>,
        default: u64,
        total_path: &str,
        total: u64,
    ) -> u64 {
        let most = total.saturating_sub(1);
        match value {
            None => default.min(most),
            Some(v) if v <= most => v,
            Some(v) => {
                self.err(
                    path,
                    format!("`{path}` is {v}, not less than `{total_path}` ({total})"),
                    format!("use a value from 0 to {most}, or raise `{total_path}`"),
                );
                default.min(most)
            }
        }
    }

    fn notifiers(&mut self, n: file::NotifiersFile) -> Notifiers {
        Notifiers {
            email: n.email.map(|e| self.email(e)),
            sms: n.sms.map(|s| self.sms(s)),
            push: n.push.map(|p| self.push(p)),
            outbox: n.outbox.map(|o| Outbox {
                path: o.path.map(|p| self.path(&p)),
                console: o.console.unwrap_or(true),
            }),
        }
    }

    fn required_text(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<String>,
        example: &str,
    ) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v.trim().to_string(),
            other => {
                let at = if other.is_some() {
                    format!("{parent}.{key}")
                } else {
                    parent.to_string()
                };
                self.err(
                    &at,
                    format!("`{parent}.{key}` is missing or empty"),
                    format!("add `{key}: {example}` under `{parent}`"),
                );
                String::new()
            }
        }
    }

    fn email(&mut self, e: file::EmailFile) -> Smtp {
        const P: &str = "notifiers.email";
        let host = self.required_text(P, "host", e.host, "smtp.example.com");
        let security = match e.security {
            None | Some(file::SmtpSecurityFile::Starttls) => SmtpSecurity::StartTls,
            Some(file::SmtpSecurityFile::Tls) => SmtpSecurity::Tls,
            Some(file::SmtpSecurityFile::None) => SmtpSecurity::None,
        };
        let default_port = match security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        };
        let port = self.number("notifiers.email.port", e.port, default_port, 1..=65535);
        let password = self.secret(
            P,
            "password",
            e.password_file.as_ref(),
            e.password_env.as_ref(),
        );
        let has_password = e.password_file.is_some() || e.password_env.is_some();
        if e.username.is_some() && !has_password {
            self.err(
                "notifiers.email.username",
                "`notifiers.email` has a `username` but no password",
                "add `password_file: path` or `password_env: VARIABLE` under `notifiers.email`",
            );
        }
        if e.username.is_none() && has_password {
            self.err(
                P,
                "`notifiers.email` has a password but no `username`",
                "add `username:` under `notifiers.email`, or remove the password",
            );
        }
        let from = self.required_text(P, "from", e.from, "\"nidan <no-reply@example.com>\"");
        if !from.is_empty() && !from.contains('@') {
            self.err(
                "notifiers.email.from",
                "`notifiers.email.from` is not an email address",
                "write e.g. `nidan <no-reply@example.com>` or `no-reply@example.com`",
            );
        }
        Smtp {
            host,
            port: u16::try_from(port).unwrap_or(587),
            security,
            username: e.username,
            password,
            from,
            timeout: self.duration(
                "notifiers.email.timeout",
                e.timeout.as_ref(),
                Duration::from_secs(10),
                Zero::Refused,
            ),
        }
    }

    fn sms(&mut self, s: file::SmsFile) -> SmsGateway {
        const P: &str = "notifiers.sms";
        let url = self.required_text(P, "url", s.url, "https://sms.example.com/send");
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !url.is_empty() && (!scheme_ok || url.chars().any(char::is_whitespace)) {
            self.err(
                "notifiers.sms.url",
                "`notifiers.sms.url` is not an http:// or https:// URL",
                "write the gateway's full URL, e.g. `https://sms.example.com/send`",
            );
        }
        let method = s
            .method
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            self.err(
                "notifiers.sms.method",
                "`notifiers.sms.method` is not an HTTP method",
                "use `POST`, `PUT` or `GET`",
            );
        }
        let secret = self.secret(P, "secret", s.secret_file.as_ref(), s.secret_env.as_ref());
        let has_secret = s.secret_file.is_some() || s.secret_env.is_some();
        let mut headers = Vec::new();
        for (name, value) in s.headers.unwrap_or_default().0 {
            let path = format!("notifiers.sms.headers.{name}");
            if !token_ok(&name) {
                self.err(
                    &path,
                    "a header name under `notifiers.sms.headers` is not a valid HTTP header name",
                    "use letters, digits and `-`, e.g. `Authorization`",
                );
            } else if value.contains(['\r', '\n', '\0']) {
                self.err(
                    &path,
                    format!("header `{name}` has a line break in its value"),
                    "write the value on one line",
                );
            } else if value.contains("{secret}") && !has_secret {
                self.err(
                    &path,
                    format!("header `{name}` uses `{{secret}}` but `notifiers.sms` has no secret"),
                    "add `secret_file: path` or `secret_env: VARIABLE` under `notifiers.sms`",
                );
            }
            headers.push((name, value));
        }
        let success_status = match s.success_status {
            None => (200..=299).collect(),
            Some(list) => {
                if list.is_empty() {
                    self.err(
                        "notifiers.sms.success_status",
                        "`notifiers.sms.success_status` is empty",
                        "list the statuses that mean sent, e.g. `[200, 201]`",
                    );
                }
                list.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let n = self.number(
                            &format!("notifiers.sms.success_status[{i}]"),
                            Some(*v),
                            200,
                            100..=599,
                        );
                        u16::try_from(n).unwrap_or(200)
                    })
                    .collect()
            }
        };
        SmsGateway {
            url,
            method,
            headers,
            body_template: s
                .body_template
                .unwrap_or_else(|| "To={to}&Body={body}".into()),
            content_type: s
                .content_type
                .unwrap_or_else(|| "application/x-www-form-urlencoded".into()),
            success_status,
            secret,
            timeout: self.duration(
                "notifiers.sms.timeout",
                s.timeout.as_ref(),
                Duration::from_secs(10),
                Zero::Refused,
            ),
        }
    }

    fn app_approval(&mut self, a: file::AppApprovalFile) -> AppApproval {
        const P: &str = "app_approval";
        let lifetime = self.duration(
            "app_approval.lifetime",
            a.lifetime.as_ref(),
            Duration::from_secs(120),
            Zero::Refused,
        );
        let lifetime = self.at_most(
            "app_approval.lifetime",
            lifetime,
            Duration::from_secs(300),
            "5m",
        );
        let patterns = a.feature_phone_patterns.unwrap_or_else(|| {
            [
                "DoCoMo/",
                "KDDI-",
                "UP.Browser",
                "SoftBank/",
                "Vodafone/",
                "J-PHONE/",
                "WILLCOM",
                "emobile/",
                "MOT-",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
        });
        for (i, p) in patterns.iter().enumerate() {
            if p.trim().is_empty() {
                self.err(
                    &format!("{P}.feature_phone_patterns[{i}]"),
                    "a feature-phone pattern is empty",
                    "remove the empty entry or write a User-Agent substring such as `DoCoMo/`",
                );
            }
        }
        AppApproval {
            order: match a.order {
                Some(file::ApprovalOrderFile::AfterPassword) => ApprovalOrder::AfterPassword,
                _ => ApprovalOrder::BeforePassword,
            },
            lifetime,
            max_per_window: u32::try_from(self.number(
                "app_approval.max_per_window",
                a.max_per_window,
                3,
                1..=3,
            ))
            .unwrap_or(3),
            window: self.duration(
                "app_approval.window",
                a.window.as_ref(),
                Duration::from_secs(600),
                Zero::Refused,
            ),
            suspend_after_denial: self.duration(
                "app_approval.suspend_after_denial",
                a.suspend_after_denial.as_ref(),
                Duration::from_secs(900),
                Zero::Allowed,
            ),
            enrollment_lifetime: self.duration(
                "app_approval.enrollment_lifetime",
                a.enrollment_lifetime.as_ref(),
                Duration::from_secs(600),
                Zero::Refused,
            ),
            feature_phone_patterns: patterns,
        }
    }

    fn push(&mut self, p: file::PushFile) -> PushWebhook {
        const P: &str = "notifiers.push";
        let url = self.required_text(P, "url", p.url, "https://push.example.com/nidan");
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !url.is_empty() && (!scheme_ok || url.chars().any(char::is_whitespace)) {
            self.err(
                "notifiers.push.url",
                "`notifiers.push.url` is not an http:// or https:// URL",
                "write the webhook's full URL, e.g. `https://push.example.com/nidan`",
            );
        }
        let secret = self.secret(P, "secret", p.secret_file.as_ref(), p.secret_env.as_ref());
        let mut headers = Vec::new();
        for (name, value) in p.headers.unwrap_or_default().0 {
            let path = format!("{P}.headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(&value).is_err()
            {
                self.err(
                    &path,
                    format!("`{path}` is not a valid HTTP header"),
                    "use a plain header name and a printable value",
                );
            } else if value.contains("{secret}") && secret.is_none() {
                self.err(
                    &path,
                    format!("header `{name}` uses `{{secret}}` but `{P}` has no secret"),
                    format!("add `secret_file: path` or `secret_env: VARIABLE` under `{P}`"),
                );
            } else {
                headers.push((name, value));
            }
        }
        PushWebhook {
            url,
            headers,
            secret,
            timeout: self.duration(
                "notifiers.push.timeout",
                p.timeout.as_ref(),
                Duration::from_secs(10),
                Zero::Refused,
            ),
        }
    }

    fn users(&mut self, u: file::UsersFile) -> UsersSource {
        UsersSource {
            file: self.path(u.file.as_deref().unwrap_or("users.yaml")),
            reload_interval: self.duration(
                "users.reload_interval",
                u.reload_interval.as_ref(),
                Duration::from_secs(2),
                Zero::Refused,
            ),
            default_two_step: u.default_two_step.unwrap_or(false),
            default_method: u.default_method.map_or(TwoStepMethod::Sms, method),
            on_phone_loss: match u.on_phone_loss {
                None | Some(file::OnPhoneLossFile::Disable) => OnPhoneLoss::Disable,
                Some(file::OnPhoneLossFile::SwitchToEmail) => OnPhoneLoss::SwitchToEmail,
            },
        }
    }

    fn identity_headers(&mut self, h: file::IdentityHeadersFile) -> IdentityHeaders {
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

    fn trusted_proxies(&mut self, list: Vec<String>) -> Vec<IpNet> {
        self.networks("trusted_proxies", &list)
    }

    /// `assertion`: `identity_assertion.enabled` when the section is there (a route's own
    /// `identity_assertion` overrides it), `None` when it is not.
    fn routes(&mut self, list: Vec<file::RouteFile>, assertion: Option<bool>) -> Vec<Route> {
        if list.is_empty() {
            self.err(
                "routes",
                "no routes are configured",
                "add at least one route, e.g. `routes: [{ name: app, hosts: [\"*\"], upstream: [\"127.0.0.1:3000\"], policy: login }]`",
            );
        }
        let mut routes: Vec<Route> = Vec::new();
        // Whether hosts and path_prefix were valid, so the shadowing check can trust them.
        let mut matchable: Vec<bool> = Vec::new();
        for (i, r) in list.into_iter().enumerate() {
            let (route, ok) = self.route(i, r, &routes, assertion);
            routes.push(route);
            matchable.push(ok);
        }
        for j in 0..routes.len() {
            let Some(i) =
                (0..j).find(|&i| matchable[i] && matchable[j] && shadows(&routes[i], &routes[j]))
            else {
                continue;
            };
            let line = self.errors.line_of(&format!("routes[{i}]"));
            let (earlier, later) = (routes[i].name.clone(), routes[j].name.clone());
            self.err(
                &format!("routes[{j}]"),
                format!("route {later} can never match: route {earlier} (line {line}) catches every request it would"),
                format!("move route {later} above route {earlier}, or narrow the hosts or path_prefix of route {earlier}"),
            );
        }
        routes
    }

    fn route(
        &mut self,
        i: usize,
        r: file::RouteFile,
        earlier: &[Route],
        assertion: Option<bool>,
    ) -> (Route, bool) {
        let at = |key: &str| format!("routes[{i}].{key}");
        let mut ok = true;
        if !name_ok(&r.name, 64) {
            self.err(
                &at("name"),
                format!("`routes[{i}].name` is not a usable route name"),
                "use 1 to 64 letters, digits, `.`, `_` or `-`",
            );
        } else if let Some(k) = earlier.iter().position(|e| e.name == r.name) {
            let line = self.errors.line_of(&format!("routes[{k}]"));
            self.err(
                &at("name"),
                format!(
                    "route name {} is already used by the route on line {line}",
                    r.name
                ),
                "give every route its own name",
            );
        }
        let hosts = match r.hosts {
            None => vec![HostPattern::Any],
            Some(list) => {
                if list.is_empty() {
                    ok = false;
                    self.err(
                        &at("hosts"),
                        format!("`routes[{i}].hosts` is empty"),
                        "list at least one host, or `\"*\"` for any host",
                    );
                }
                let mut out = Vec::new();
                for (k, h) in list.iter().enumerate() {
                    match host_pattern(h) {
                        Some(p) => out.push(p),
                        None => {
                            ok = false;
                            self.err(
                                &format!("routes[{i}].hosts[{k}]"),
                                format!("`routes[{i}].hosts[{k}]` is not a host pattern"),
                                "write a host without scheme, port or path: `wiki.example.com`, `*.example.com` (every name below example.com) or `\"*\"` (any host)",
                            );
                        }
                    }
                }
                out
            }
        };
        let path_prefix = match r.path_prefix {
            None => "/".to_string(),
            Some(p) => match route_prefix(&p) {
                Some(p) => p,
                None => {
                    ok = false;
                    self.err(
                        &at("path_prefix"),
                        format!("`routes[{i}].path_prefix` is not a plain path"),
                        "start with `/` and leave out `..`, `//`, `%`, `\\`, `;` and control characters, e.g. `/app`",
                    );
                    "/".to_string()
                }
            },
        };
        let policy = match r.policy {
            file::PolicyFile::Bypass => Policy::Bypass,
            file::PolicyFile::Login => Policy::Login,
            file::PolicyFile::TwoFactor => Policy::TwoFactor,
            file::PolicyFile::Deny => Policy::Deny,
        };
        let upstream_texts = r.upstream.unwrap_or_default();
        if upstream_texts.is_empty() && policy != Policy::Deny {
            self.err(
                &at("upstream"),
                format!("route {} has no upstream", r.name),
                "add `upstream: [\"127.0.0.1:3000\"]` (only `policy: deny` routes may go without)",
            );
        }
        let mut upstreams = Vec::new();
        for (k, u) in upstream_texts.iter().enumerate() {
            match parse_upstream(u) {
                Ok(up) => upstreams.push(up),
                Err(reason) => self.err(
                    &format!("routes[{i}].upstream[{k}]"),
                    format!("`routes[{i}].upstream[{k}]` is not a usable upstream: {reason}"),
                    "write `host:port`, optionally with `http://` or `https://` in front, e.g. `127.0.0.1:3000` or `https://app.internal:8443`",
                ),
            }
        }
        let accept_list = r.accept.unwrap_or_else(|| vec![file::AcceptFile::Session]);
        if accept_list.is_empty() {
            self.err(
                &at("accept"),
                format!("`routes[{i}].accept` is empty"),
                "use `[session]`, `[basic]`, `[token]` or a combination such as `[session, basic, token]`",
            );
        }
        let accept = Accept {
            session: accept_list.contains(&file::AcceptFile::Session),
            basic: accept_list.contains(&file::AcceptFile::Basic),
            token: accept_list.contains(&file::AcceptFile::Token),
        };
        let mut groups = Vec::new();
        for (k, g) in r.groups.unwrap_or_default().into_iter().enumerate() {
            if g.trim().is_empty() {
                self.err(
                    &format!("routes[{i}].groups[{k}]"),
                    "a group name is empty",
                    "remove the entry or name a group",
                );
            } else {
                groups.push(g.trim().to_string());
            }
        }
        let allowed_methods = match r.second_steps {
            None => vec![TwoStepMethod::Sms, TwoStepMethod::Email, TwoStepMethod::App],
            Some(list) => {
                if list.is_empty() {
                    self.err(
                        &at("second_steps"),
                        format!("`routes[{i}].second_steps` is empty"),
                        "list at least one of `sms`, `email`, `app`, or remove the key to accept all",
                    );
                }
                let mut out: Vec<TwoStepMethod> = Vec::new();
                for m in list {
                    let m = method(m);
                    if !out.contains(&m) {
                        out.push(m);
                    }
                }
                out
            }
        };
        if r.identity_assertion == Some(true) && assertion.is_none() {
            self.err(
                &at("identity_assertion"),
                format!("route {} asks for an identity assertion, but none is configured", r.name),
                "add a top-level `identity_assertion: { enabled: false }` section (with `portal.public_url` set) so routes can turn it on, or remove this key",
            );
        }
        let route = Route {
            assertion: r.identity_assertion.or(assertion).unwrap_or(false),
            name: r.name,
            hosts,
            path_prefix,
            upstreams,
            policy,
            second_step: match r.second_step {
                Some(file::SecondStepFile::Exempt) => SecondStep::Exempt,
                Some(file::SecondStepFile::Required) | None => SecondStep::Required,
            },
            accept,
            groups,
            groups_also: Vec::new(),
            allowed_methods,
            case_sensitive: r.case_sensitive.unwrap_or(false),
        };
        (route, ok)
    }
}

/// The exemptions and risk sections.
impl Checker<'_> {
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

    fn exemptions(&mut self, e: file::ExemptionsFile) -> Exemptions {
        let list = e.networks.unwrap_or_default();
        let networks = self.networks("exemptions.networks", &list);
        if let Some(i) = networks.iter().position(|n| n.prefix_len() == 0) {
            self.err(
                &format!("exemptions.networks[{i}]"),
                format!("`exemptions.networks[{i}]` contains every address"),
                "list only the networks you trust (e.g. an office's `203.0.113.0/24`); `0.0.0.0/0` or `::/0` would turn the second step off for everyone",
            );
        }
        Exemptions { networks }
    }

    fn weight(&mut self, key: &str, value: Option<u64>, default: u32) -> u32 {
        let n = self.number(&format!("risk.{key}"), value, u64::from(default), 0..=1000);
        u32::try_from(n).unwrap_or(default)
    }

    fn risk(&mut self, r: file::RiskFile) -> RiskSettings {
        let d = RiskSettings::default();
        let threshold = self.weight("threshold", r.threshold, d.threshold);
        if threshold == 0 {
            self.err(
                "risk.threshold",
                "`risk.threshold` is 0: every login would ask for a security code",
                "use a threshold from 1 to 1000 (default 50), or `enabled: false` to turn the risk step-up off",
            );
        }
        let watch = r.watch_networks.unwrap_or_default();
        RiskSettings {
            enabled: r.enabled.unwrap_or(d.enabled),
            threshold: threshold.max(1),
            new_browser: self.weight("new_browser", r.new_browser, d.new_browser),
            new_network: self.weight("new_network", r.new_network, d.new_network),
            recent_failures: self.weight("recent_failures", r.recent_failures, d.recent_failures),
            new_user_agent: self.weight("new_user_agent", r.new_user_agent, d.new_user_agent),
            watchlist: self.weight("watchlist", r.watchlist, d.watchlist),
            watch_networks: self.networks("risk.watch_networks", &watch),
            network_memory: self.duration(
                "risk.network_memory",
                r.network_memory.as_ref(),
                d.network_memory,
                Zero::Refused,
            ),
            failure_window: self.duration(
                "risk.failure_window",
                r.failure_window.as_ref(),
                d.failure_window,
                Zero::Refused,
            ),
            score_first_login: r.score_first_login.unwrap_or(d.score_first_login),
        }
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

/// `*` → any host; `*.example.com` → `Suffix("example.com")` (every name below it);
/// otherwise an exact host. Lower-cased; IPv6 literals are kept in brackets, as in `Host`.
fn host_pattern(text: &str) -> Option<HostPattern> {
    let h = text.trim().to_ascii_lowercase();
    let h = h.strip_suffix('.').unwrap_or(&h);
    if h == "*" {
        return Some(HostPattern::Any);
    }
    if let Some(rest) = h.strip_prefix("*.") {
        return hostname_ok(rest).then(|| HostPattern::Suffix(rest.to_string()));
    }
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if let Ok(IpAddr::V6(v6)) = bare.parse::<IpAddr>() {
        return Some(HostPattern::Exact(format!("[{v6}]")));
    }
    hostname_ok(bare).then(|| HostPattern::Exact(bare.to_string()))
}

/// Checks a route's path prefix and removes a trailing slash (except for `/`).
fn route_prefix(p: &str) -> Option<String> {
    let bad = !p.starts_with('/')
        || p.contains("..")
        || p.contains("//")
        || p.contains(['%', '\\', ';', '?', '#'])
        || p.chars().any(|c| c.is_control() || c.is_whitespace());
    if bad {
        return None;
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Some("/".into());
    }
    // Requests are matched on their canonical path, where a character such as `管` or `[`
    // stays percent-encoded: the prefix is kept in that same form, or it would never match
    // and its area would fall through to the next route.
    crate::proxy::path::canonicalize_parts(trimmed, None)
        .ok()
        .map(|c| c.path)
}

/// `http(s)://host[:port]`, no path, query, userinfo or fragment.
/// `#rgb` or `#rrggbb`.
fn parse_hex_color(text: &str) -> Option<(u8, u8, u8)> {
    let hex = text.trim().strip_prefix('#')?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |i: usize, n: usize| u8::from_str_radix(hex.get(i..i + n)?, 16).ok();
    match hex.len() {
        3 => Some((digit(0, 1)? * 17, digit(1, 1)? * 17, digit(2, 1)? * 17)),
        6 => Some((digit(0, 2)?, digit(2, 2)?, digit(4, 2)?)),
        _ => None,
    }
}

/// The WCAG 2 contrast ratio of a colour against white.
pub(crate) fn contrast_with_white((r, g, b): (u8, u8, u8)) -> f64 {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    1.05 / (l + 0.05)
}

/// A footer link: an absolute http(s) URL, or a path on this site (never `//host`).
fn footer_url_ok(u: &str) -> bool {
    if u.len() > 2048 || u.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    if let Some(rest) = u.strip_prefix('/') {
        return !rest.starts_with('/') && !rest.starts_with('\\');
    }
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    !authority.contains('@') && hostname_ok(&host.to_ascii_lowercase())
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

fn public_url_ok(u: &str) -> bool {
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return false;
    };
    let (host_ok, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, after)) => (
                addr.parse::<std::net::Ipv6Addr>().is_ok(),
                after
                    .strip_prefix(':')
                    .or(Some(""))
                    .filter(|_| after.is_empty() || after.starts_with(':')),
            ),
            None => (false, None),
        },
        None => match rest.split_once(':') {
            Some((h, p)) => (hostname_ok(h), Some(p)),
            None => (hostname_ok(rest), Some("")),
        },
    };
    let port_ok = port.is_some_and(|p| p.is_empty() || p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

/// `/_nidan`, `/auth/portal`: plain segments, no trailing slash.
fn portal_prefix_ok(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'))
        })
}

/// `host:port`, `[v6]:port`, `http://host[:port]`, `https://host[:port]`; names are resolved now.
fn parse_upstream(text: &str) -> Result<Upstream, &'static str> {
    let text = text.trim();
    let (tls, rest, default_port) = if let Some(r) = text.strip_prefix("https://") {
        (true, r, Some(443))
    } else if let Some(r) = text.strip_prefix("http://") {
        (false, r, Some(80))
    } else if text.contains("://") {
        return Err("only http:// and https:// are supported");
    } else {
        (false, text, None)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) || rest.chars().any(char::is_whitespace) {
        return Err("an upstream is a host and port, without a path, query or user");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("the IPv6 address has no closing `]`")?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("write IPv6 addresses in brackets, e.g. `[::1]:3000`");
            }
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing");
    }
    let port: u16 = match (port, default_port) {
        (Some(p), _) => p
            .parse()
            .map_err(|_| "the port is not a number from 1 to 65535")?,
        (None, Some(d)) => d,
        (None, None) => return Err("the port is missing"),
    };
    if port == 0 {
        return Err("the port is not a number from 1 to 65535");
    }
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => {
            if !hostname_ok(&host.to_ascii_lowercase()) {
                return Err("the host is not a valid name or address");
            }
            (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or("the host name does not resolve")?
        }
    };
    Ok(Upstream {
        addr,
        tls,
        sni: host.to_ascii_lowercase(),
    })
}

/// Whether `earlier` catches every request `later` could: its hosts cover all of
/// `later`'s and its path prefix is a segment-prefix of `later`'s.
fn shadows(earlier: &Route, later: &Route) -> bool {
    let host_covers = |a: &HostPattern, b: &HostPattern| match (a, b) {
        (HostPattern::Any, _) => true,
        (HostPattern::Exact(x), HostPattern::Exact(y)) => x == y,
        // `*.a.b` covers `*.a.b` and `*.x.a.b`, and every name below `a.b`.
        (HostPattern::Suffix(x), HostPattern::Suffix(y)) => {
            x == y || crate::proxy::route::host_matches(a, y)
        }
        (HostPattern::Suffix(_), HostPattern::Exact(h)) => crate::proxy::route::host_matches(a, h),
        _ => false,
    };
    let hosts = later
        .hosts
        .iter()
        .all(|b| earlier.hosts.iter().any(|a| host_covers(a, b)));
    let (p, q) = (earlier.path_prefix.as_str(), later.path_prefix.as_str());
    let path = p == "/" || q == p || q.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    hosts && path
}

/// The `identity_assertion` section.
impl Checker<'_> {
    fn identity_assertion(
        &mut self,
        a: file::IdentityAssertionFile,
        portal: &Portal,
        identity: &IdentityHeaders,
    ) -> IdentityAssertion {
        let header = a.header.unwrap_or_else(|| "X-Nidan-Assertion".to_owned());
        let lower = header.to_ascii_lowercase().replace('_', "-");
        let taken = [
            &identity.user,
            &identity.name,
            &identity.email,
            &identity.groups,
        ]
        .iter()
        .any(|h| h.to_ascii_lowercase().replace('_', "-") == lower);
        // Headers the gateway or HTTP itself gives a meaning to cannot carry the token.
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
        if !token_ok(&header) || taken || reserved {
            self.err(
                "identity_assertion.header",
                "`identity_assertion.header` is not a header name the assertion can use",
                "use a header name of its own (letters, digits and `-`), e.g. `X-Nidan-Assertion`; not an identity header, `Cookie`, `Authorization`, `Host` or a forwarding header",
            );
        }
        let issuer = match a.issuer.map(|i| i.trim().to_owned()) {
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
        };
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const DEVICE_KEY: &str = "device-key-for-tests-0123456789-abcdefgh";

    fn test_env(name: &str) -> Option<OsString> {
        match name {
            "NIDAN_TEST_DEVICE_KEY" | "NIDAN_DEVICE_KEY_K0" => Some(DEVICE_KEY.into()),
            "NIDAN_SMS_TOKEN" => Some("sms-token-for-tests".into()),
            "NIDAN_EMPTY" => Some("".into()),
            "NIDAN_TEST_PG" => Some("postgres://nidan:s3cret@db.internal/nidan".into()),
            "NIDAN_TEST_REDIS" => Some("redis://:s3cret@cache.internal:6379/0".into()),
            "NIDAN_TEST_NOT_A_URL" => Some("mysql://nidan:s3cret@db/nidan".into()),
            _ => None,
        }
    }

    fn load_t(text: &str) -> Result<Config, ConfigErrors> {
        load_with_env(text, Path::new("/etc/nidan/nidan.yaml"), &test_env)
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match load_t(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.0,
        }
    }

    const MINIMAL: &str = "\
version: 1
trusted_devices:
  signing_keys: [{ id: k1, secret_env: NIDAN_TEST_DEVICE_KEY }]
routes:
  - { name: app, upstream: [\"127.0.0.1:3000\"], policy: login }
";

    /// MINIMAL with `extra` top-level YAML inserted after `version` (line 2 onwards).
    fn with(extra: &str) -> String {
        MINIMAL.replacen("version: 1\n", &format!("version: 1\n{extra}"), 1)
    }

    fn manifest(rel: &str) -> PathBuf {
        std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join(rel)
    }

    #[test]
    fn storage_modes() {
        let c = load_t(MINIMAL).unwrap();
        assert!(c.storage.replicated.is_none());
        assert_eq!(c.storage.outage_grace, Duration::from_secs(60));
        let both = "storage:\n  postgres: { url_env: NIDAN_TEST_PG }\n  redis: { url_env: NIDAN_TEST_REDIS, key_prefix: nidan-prod }\n";
        let c = load_t(&with(both)).unwrap();
        let r = c.storage.replicated.unwrap();
        assert_eq!(r.key_prefix, "nidan-prod");
        assert_eq!(r.postgres_max_connections, 10);
        // One without the other names the missing half.
        let e = &errors(&with("storage:\n  postgres: { url_env: NIDAN_TEST_PG }\n"))[0];
        assert_eq!(e.line, 3, "{e}");
        assert!(e.fix.contains("storage.redis"), "{e}");
        let e = &errors(&with("storage:\n  redis: { url_env: NIDAN_TEST_REDIS }\n"))[0];
        assert!(e.fix.contains("storage.postgres"), "{e}");
        let e = &errors(&with(&format!("{both}  sqlite: {{ path: n.db }}\n")))[0];
        assert!(e.message.contains("storage.sqlite"), "{e}");
        // A wrong scheme is named, the URL (and its password) never shown.
        let e = &errors(&with(
            "storage:\n  postgres: { url_env: NIDAN_TEST_NOT_A_URL }\n  redis: { url_env: NIDAN_TEST_REDIS }\n",
        ))[0];
        assert!(e.message.contains("postgres://"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = &errors(&with(
            "storage:\n  postgres: { url_env: NIDAN_MISSING }\n  redis: { url_env: NIDAN_TEST_REDIS }\n",
        ))[0];
        assert!(e.message.contains("not set"), "{e}");
    }

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

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = load_t(MINIMAL).unwrap();
        assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert!(
            c.server.tls.is_none()
                && c.server.admin_listen.is_none()
                && c.server.admin_token.is_none()
        );
        assert_eq!(c.server.threads, 2);
        assert_eq!(c.server.grace_period, Duration::from_secs(5));
        assert_eq!(c.portal.path_prefix, "/_nidan");
        assert_eq!(c.portal.default_language, Language::Ja);
        assert_eq!(c.portal.title, "nidan");
        assert_eq!(c.portal.recent_login, Duration::from_secs(300));
        assert_eq!(c.portal.flow_lifetime, Duration::from_secs(600));
        assert_eq!(c.session.idle_timeout, Duration::from_secs(1800));
        assert_eq!(c.session.absolute_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(c.session.cookie_name, "nidan_session");
        assert_eq!(c.trusted_devices.lifetime, Duration::from_secs(30 * 86400));
        assert_eq!(c.trusted_devices.max_per_user, 10);
        assert_eq!(c.trusted_devices.cookie_name, "nidan_device");
        assert_eq!(c.trusted_devices.signing_keys[0].id, "k1");
        assert_eq!(
            c.trusted_devices.signing_keys[0].secret.expose(),
            DEVICE_KEY.as_bytes()
        );
        assert_eq!(c.security_code.length, 6);
        assert_eq!(c.security_code.lifetime, Duration::from_secs(300));
        assert_eq!(c.security_code.max_attempts, 5);
        assert_eq!(c.security_code.resend_cooldown, Duration::from_secs(30));
        assert_eq!(c.security_code.max_sends_per_account, 5);
        assert_eq!(c.security_code.send_window, Duration::from_secs(900));
        assert_eq!(c.security_code.max_sends_per_ip, 20);
        assert_eq!(c.security_code.max_sends_global_per_hour, 1000);
        assert_eq!(c.login_limits.max_failures_per_account, 100);
        assert_eq!(c.login_limits.free_failures, 5);
        assert_eq!(c.login_limits.base_delay, Duration::from_secs(1));
        assert_eq!(c.login_limits.max_delay, Duration::from_secs(900));
        assert!(c.login_limits.max_concurrent_hashes >= 1);
        assert!(
            c.notifiers.email.is_none()
                && c.notifiers.sms.is_none()
                && c.notifiers.outbox.is_none()
        );
        assert_eq!(c.users.file, PathBuf::from("/etc/nidan/users.yaml"));
        assert_eq!(c.users.reload_interval, Duration::from_secs(2));
        assert!(!c.users.default_two_step);
        assert_eq!(c.users.default_method, TwoStepMethod::Sms);
        assert_eq!(c.storage.sqlite_path, PathBuf::from("/etc/nidan/nidan.db"));
        assert_eq!(c.identity_headers.user, "Remote-User");
        assert_eq!(c.identity_headers.groups, "Remote-Groups");
        assert!(c.trusted_proxies.is_empty());
        let r = &c.routes[0];
        assert_eq!(r.name, "app");
        assert_eq!(r.hosts, vec![HostPattern::Any]);
        assert_eq!(r.path_prefix, "/");
        assert_eq!(r.upstreams[0].addr, "127.0.0.1:3000".parse().unwrap());
        assert!(!r.upstreams[0].tls);
        assert_eq!(r.policy, Policy::Login);
        assert_eq!(r.second_step, SecondStep::Required);
        assert_eq!(
            r.accept,
            Accept {
                session: true,
                basic: false,
                token: false
            }
        );
        assert!(r.groups.is_empty());
        assert_eq!(
            r.allowed_methods,
            vec![TwoStepMethod::Sms, TwoStepMethod::Email, TwoStepMethod::App]
        );
    }

    /// Switches on the example's commented-out keys: an indented `# key:` or `# - key:`
    /// becomes `key:` at the column of the `#`.
    fn uncommented(text: &str) -> String {
        let mut out = String::new();
        for line in text.lines() {
            let indent = line.len() - line.trim_start().len();
            let rest = line.trim_start().strip_prefix("# ").unwrap_or("");
            let key = rest.trim_start();
            let key = key.strip_prefix("- ").unwrap_or(key);
            let name_len = key
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            let is_key = indent > 0 && name_len > 0 && key[name_len..].starts_with(':');
            if is_key {
                out.push_str(&" ".repeat(indent));
                out.push_str(rest);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_annotated_example_loads() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("secrets")).unwrap();
        std::fs::create_dir_all(d.join("tls")).unwrap();
        std::fs::create_dir_all(d.join("brand")).unwrap();
        std::fs::write(
            d.join("brand/logo.svg"),
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>",
        )
        .unwrap();
        std::fs::write(
            d.join("secrets/device-k1"),
            "k1-secret-0123456789-0123456789-0123456789\n",
        )
        .unwrap();
        std::fs::write(d.join("secrets/admin-token"), "admin-token\n").unwrap();
        std::fs::write(d.join("secrets/smtp-password"), "smtp-password\r\n").unwrap();
        std::fs::write(d.join("tls/cert.pem"), "cert").unwrap();
        std::fs::write(d.join("tls/key.pem"), "key").unwrap();
        // With the parts shown commented out (they need files and variables a fresh
        // checkout lacks) switched on, every key of the example is loaded.
        let text = uncommented(&std::fs::read_to_string(manifest("config/nidan.yaml")).unwrap());
        assert!(text.contains("\n  tls: "), "{text}");
        let source = d.join("nidan.yaml");
        std::fs::write(&source, &text).unwrap();
        let c = match load_with_env(&text, &source, &test_env) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.source, source);
        assert_eq!(c.server.tls.as_ref().unwrap().cert, d.join("tls/cert.pem"));
        assert_eq!(
            c.server.admin_token.as_ref().unwrap().expose(),
            b"admin-token"
        );
        let keys = &c.trusted_devices.signing_keys;
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[0].secret.expose(),
            b"k1-secret-0123456789-0123456789-0123456789"
        );
        assert_eq!(keys[1].secret.expose(), DEVICE_KEY.as_bytes());
        let email = c.notifiers.email.as_ref().unwrap();
        assert_eq!(email.security, SmtpSecurity::StartTls);
        assert_eq!(email.password.as_ref().unwrap().expose(), b"smtp-password");
        let sms = c.notifiers.sms.as_ref().unwrap();
        assert_eq!(
            sms.headers,
            vec![("Authorization".to_string(), "Bearer {secret}".to_string())]
        );
        assert_eq!(sms.success_status, vec![200, 201, 202]);
        assert_eq!(
            sms.secret.as_ref().unwrap().expose(),
            b"sms-token-for-tests"
        );
        assert_eq!(
            c.notifiers.outbox.as_ref().unwrap().path,
            Some(d.join("outbox.jsonl"))
        );
        assert_eq!(c.users.file, d.join("users.example.yaml"));
        assert_eq!(c.storage.sqlite_path, d.join("nidan.db"));
        assert_eq!(
            c.trusted_proxies,
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        assert_eq!(c.routes.len(), 5);
        let sync = &c.routes[1];
        assert!(sync.upstreams[0].tls);
        assert_eq!(sync.upstreams[0].sni, "10.0.0.5");
        assert_eq!(sync.second_step, SecondStep::Exempt);
        assert_eq!(
            sync.accept,
            Accept {
                session: true,
                basic: true,
                token: true
            }
        );
        assert_eq!(c.routes[2].groups, vec!["admins".to_string()]);
        assert_eq!(
            c.routes[2].allowed_methods,
            vec![TwoStepMethod::App, TwoStepMethod::Sms]
        );
        assert_eq!(
            c.routes[0].hosts,
            vec![HostPattern::Suffix("example.org".into())]
        );
        assert_eq!(c.routes[4].policy, Policy::Deny);
        assert!(c.routes[4].upstreams.is_empty());
    }

    #[test]
    fn each_broken_example_is_placed_and_explained() {
        // (file, line, column, words in the message)
        let cases = [
            (
                "broken-unknown-key.yaml",
                4,
                3,
                "unknown field `idle_timout`",
            ),
            (
                "broken-duration.yaml",
                5,
                21,
                "`session.absolute_timeout` is not a duration",
            ),
            (
                "broken-cidr.yaml",
                7,
                5,
                "`trusted_proxies[1]` is not an IP network",
            ),
            (
                "broken-upstream.yaml",
                7,
                34,
                "`routes[0].upstream[1]` is not a usable upstream: the port is missing",
            ),
            (
                "broken-shadowed-route.yaml",
                10,
                5,
                "route wiki can never match: route all (line 6) catches every request it would",
            ),
            (
                "broken-missing-secret.yaml",
                6,
                20,
                "cannot read the secret file",
            ),
        ];
        for (name, line, column, words) in cases {
            let path = manifest(&format!("config/test/{name}"));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("# broken: "),
                "{name}: line 1 must say what is wrong"
            );
            let errs = match load_with_env(&text, &path, &test_env) {
                Ok(_) => panic!("{name} loaded"),
                Err(e) => e.0,
            };
            assert_eq!(errs.len(), 1, "{name}: {errs:?}");
            let e = &errs[0];
            assert_eq!((e.line, e.column), (line, column), "{name}: {e}");
            assert!(e.message.contains(words), "{name}: {e}");
            assert!(!e.fix.is_empty(), "{name}");
            assert_eq!(e.file, path);
        }
    }

    #[test]
    fn unknown_key_lists_the_accepted_keys() {
        let e = &errors(&with("session:\n  idle_timout: 30m\n"))[0];
        assert_eq!((e.line, e.column), (3, 3));
        assert!(
            e.message.contains("session: unknown field `idle_timout`"),
            "{e}"
        );
        assert!(
            e.fix
                .contains("`idle_timeout`, `absolute_timeout`, `cookie_name`"),
            "{e}"
        );
        assert!(!e.message.contains("at line"), "{e}");
        let e = &errors(&with("sesion: {}\n"))[0];
        assert!(
            e.fix.contains("`session`") && e.fix.contains("`routes`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_values_for_enums_and_types_are_placed() {
        let e = &errors(&with("portal: { default_language: fr }\n"))[0];
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown value"), "{e}");
        assert_eq!(e.fix, "use `ja` or `en`");
        let e = &errors(&with("server:\n  threads: many\n"))[0];
        assert_eq!((e.line, e.column), (3, 12));
        assert!(
            e.message
                .contains("invalid type: string, expected a whole number"),
            "{e}"
        );
        assert_eq!(e.fix, "give a whole number here");
        let e = &errors("version: 1\nroutes:\n  - a\n")[0];
        assert!(
            e.message
                .ends_with("routes[0]: invalid type: string, expected a mapping (`key: value`)"),
            "{e}"
        );
        let e = &errors("routes: []\n")[0];
        assert!(e.message.contains("missing field `version`"), "{e}");
        assert!(e.fix.contains("add the required key `version`"), "{e}");
        let e = &errors("version: 1\nroutes: [\n")[0];
        assert!(e.line >= 2, "{e}");
        assert!(e.fix.contains("YAML syntax"), "{e}");
        let e = &errors("  \n")[0];
        assert!(e.message.contains("empty"), "{e}");
        let e = &errors(&MINIMAL.replace("version: 1", "version: 2"))[0];
        assert_eq!((e.line, e.column), (1, 10));
    }

    #[test]
    fn all_semantic_errors_are_reported_in_file_order() {
        let text = with(
            "session:\n  idle_timeout: soon\n\
             security_code:\n  length: 11\n  max_attempts: 9\n  lifetime: 11m\n\
             trusted_proxies: [\"10.0.0.0/8\", \"nope\"]\n\
             login_limits: { max_failures_per_account: 0 }\n",
        )
        .replace("\"127.0.0.1:3000\"", "\"127.0.0.1:http\"");
        let errs = errors(&text);
        let got: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(
            got,
            vec![
                (3, 17),
                (5, 11),
                (6, 17),
                (7, 13),
                (8, 33),
                (9, 43),
                (13, 29)
            ],
            "{errs:#?}"
        );
        assert!(errs[1].fix.contains("from 6 to 10"));
        assert!(errs[2].fix.contains("from 1 to 5"));
        assert!(errs[3].fix.contains("at most 10m"));
        assert!(errs[5].fix.contains("from 1 to 100"));
        let shown = ConfigErrors(errs).to_string();
        assert_eq!(shown.lines().count(), 14);
        assert!(shown.starts_with(
            "/etc/nidan/nidan.yaml:3:17: `session.idle_timeout` is not a duration\n  fix: "
        ));
    }

    #[test]
    fn secret_values_never_appear_in_errors() {
        const SECRET: &str = "TOPSECRET-zq9";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short-key"), format!("{SECRET}\n")).unwrap();
        let source = dir.path().join("nidan.yaml");
        let keyed = MINIMAL.replace(
            "secret_env: NIDAN_TEST_DEVICE_KEY",
            "secret_file: short-key",
        );
        let docs = [
            // Too short to sign with: the error names the key, not the content.
            keyed.clone(),
            // The secret pasted where other values belong.
            keyed.replace("policy: login", &format!("policy: {SECRET}")),
            keyed.replace("policy: login", &format!("policy: \"{SECRET}\"")),
            format!("server: {{ threads: \"{SECRET}\" }}\n{keyed}"),
            format!("server: {{ threads: [{SECRET}] }}\n{keyed}"),
            format!("server: {{ listen: [\"{SECRET}\"] }}\n{keyed}"),
            format!("{keyed}trusted_proxies: [{SECRET}]\n"),
            format!("session: {{ idle_timeout: {SECRET} }}\n{keyed}"),
            keyed.replace("[\"127.0.0.1:3000\"]", &format!("[\"{SECRET}\"]")),
            keyed.replace(
                "name: app",
                &format!("name: app, hosts: [\"{SECRET}.example/\"]"),
            ),
            format!("{keyed}users: {{ default_method: {{ {SECRET}: 1 }} }}\n"),
            format!("server: {{ admin_token_env: {SECRET} }}\n{keyed}"),
        ];
        for doc in docs {
            let doc = doc.replacen("version: 1\n", "", 1);
            let doc = format!("version: 1\n{doc}");
            match load_with_env(&doc, &source, &test_env) {
                Ok(_) => panic!("loaded:\n{doc}"),
                Err(e) => {
                    let shown = format!("{e} {e:?}");
                    assert!(!shown.contains(SECRET), "secret echoed: {shown}");
                    assert!(!shown.contains("zq9"), "secret echoed: {shown}");
                }
            }
        }
    }

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

    fn routes_yaml(routes: &[(&str, &str, &str)]) -> String {
        let mut s = String::from(
            "version: 1\ntrusted_devices:\n  signing_keys: [{ id: k1, secret_env: NIDAN_TEST_DEVICE_KEY }]\nroutes:\n",
        );
        for (name, hosts, prefix) in routes {
            s.push_str(&format!(
                "  - {{ name: {name}, hosts: {hosts}, path_prefix: \"{prefix}\", upstream: [\"127.0.0.1:1\"], policy: login }}\n"
            ));
        }
        s
    }

    #[test]
    fn shadowed_routes_are_found() {
        let shadowed = [
            [("a", "[\"*\"]", "/"), ("b", "[x.example.com]", "/y")],
            [
                ("a", "[x.example.com]", "/app"),
                ("b", "[X.Example.COM]", "/app/x"),
            ],
            [
                ("a", "[x.example.com]", "/app"),
                ("b", "[x.example.com]", "/app/"),
            ],
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[x.example.com]", "/"),
            ],
            // A wildcard covers every depth.
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[a.b.example.com]", "/"),
            ],
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[\"*.b.example.com\"]", "/"),
            ],
            [
                ("a", "[a.example.com, b.example.com]", "/"),
                ("b", "[b.example.com]", "/z"),
            ],
        ];
        for routes in shadowed {
            let e = &errors(&routes_yaml(&routes))[0];
            assert_eq!((e.line, e.column), (6, 5), "{e}");
            assert_eq!(
                e.message,
                "route b can never match: route a (line 5) catches every request it would"
            );
            assert!(e.fix.contains("move route b above route a"), "{e}");
        }
        let fine = [
            [
                ("a", "[x.example.com]", "/app"),
                ("b", "[x.example.com]", "/apple"),
            ],
            [
                ("a", "[x.example.com]", "/app/x"),
                ("b", "[x.example.com]", "/app"),
            ],
            [
                ("a", "[x.example.com]", "/"),
                ("b", "[x.example.com, y.example.com]", "/"),
            ],
            [
                ("a", "[\"*.b.example.com\"]", "/"),
                ("b", "[\"*.example.com\"]", "/"),
            ],
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[example.com]", "/"),
            ],
            [("a", "[x.example.com]", "/"), ("b", "[\"*\"]", "/")],
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[xexample.com]", "/"),
            ],
        ];
        for routes in fine {
            let text = routes_yaml(&routes);
            assert!(load_t(&text).is_ok(), "{text}");
        }
    }

    #[test]
    fn routes_are_checked() {
        let c = load_t(&routes_yaml(&[(
            "a",
            "[Wiki.Example.COM, \"*.Example.org\", \"[::1]\"]",
            "/app/",
        )]))
        .unwrap();
        assert_eq!(
            c.routes[0].hosts,
            vec![
                HostPattern::Exact("wiki.example.com".into()),
                HostPattern::Suffix("example.org".into()),
                HostPattern::Exact("[::1]".into())
            ]
        );
        assert_eq!(c.routes[0].path_prefix, "/app");
        // Prefixes are kept in the canonical form requests are matched in.
        let c = load_t(&routes_yaml(&[("a", "[\"*\"]", "/管理/")])).unwrap();
        assert_eq!(c.routes[0].path_prefix, "/%E7%AE%A1%E7%90%86");
        for bad in ["app", "/a/../b", "/a//b", "/%2e", "/a\\\\b", "/a;b", "/a b"] {
            let e = &errors(&routes_yaml(&[("a", "[\"*\"]", bad)]))[0];
            assert!(e.message.contains("path_prefix"), "{bad}: {e}");
            assert_eq!(e.line, 5);
        }
        for bad in [
            "[\"x.*.com\"]",
            "[\"http://x.com\"]",
            "[\"x.com:80\"]",
            "[]",
        ] {
            let e = &errors(&routes_yaml(&[("a", bad, "/")]))[0];
            assert!(e.message.contains("hosts"), "{bad}: {e}");
        }
        let text = routes_yaml(&[("a", "[a.com]", "/"), ("a", "[b.com]", "/")]);
        let e = &errors(&text)[0];
        assert_eq!(
            e.message,
            "route name a is already used by the route on line 5"
        );
        assert_eq!((e.line, e.column), (6, 13));
        let e = &errors(&MINIMAL.replace("upstream: [\"127.0.0.1:3000\"], ", ""))[0];
        assert!(e.message.contains("has no upstream"), "{e}");
        assert!(
            load_t(&MINIMAL.replace(
                "upstream: [\"127.0.0.1:3000\"], policy: login",
                "policy: deny"
            ))
            .is_ok()
        );
        let e = &errors(&MINIMAL.replace(
            "routes:\n  - { name: app, upstream: [\"127.0.0.1:3000\"], policy: login }\n",
            "",
        ))[0];
        assert_eq!(e.message, "no routes are configured");
        let e = &errors(&MINIMAL.replace(", policy: login", ""))[0];
        assert!(e.message.contains("missing field `policy`"), "{e}");
        let e = &errors(&MINIMAL.replace("policy: login", "policy: login, accept: []"))[0];
        assert!(e.message.contains("accept"), "{e}");
    }

    #[test]
    fn upstreams_parse() {
        let u = |s: &str| parse_upstream(s);
        let a = u("https://localhost").unwrap();
        assert!(a.tls && a.addr.port() == 443 && a.sni == "localhost" && a.addr.ip().is_loopback());
        let a = u("http://127.0.0.1:81/").unwrap();
        assert!(!a.tls && a.addr == "127.0.0.1:81".parse().unwrap());
        assert_eq!(u("[::1]:3000").unwrap().addr, "[::1]:3000".parse().unwrap());
        assert_eq!(u("https://[::1]").unwrap().sni, "::1");
        for bad in [
            "127.0.0.1",
            "ftp://x:1",
            "http://x/path",
            "::1:80",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            ":80",
            "no such host.invalid:1",
        ] {
            assert!(u(bad).is_err(), "{bad}");
        }
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

    #[test]
    fn other_sections_are_checked() {
        let e = &errors(&with("portal: { path_prefix: /_nidan/ }\n"))[0];
        assert!(e.message.contains("portal.path_prefix"), "{e}");
        for bad in ["/", "_nidan", "/a//b", "/a/../b", "/a b"] {
            assert!(
                load_t(&with(&format!("portal: {{ path_prefix: \"{bad}\" }}\n"))).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            load_t(&with("portal: { path_prefix: /auth/x }\n"))
                .unwrap()
                .portal
                .path_prefix,
            "/auth/x"
        );
        let e = &errors(&with("session: { cookie_name: nidan_device }\n"))[0];
        assert!(e.message.contains("same as"), "{e}");
        let e = &errors(&with("identity_headers: { name: remote-user }\n"))[0];
        assert!(e.message.contains("same header"), "{e}");
        let e = &errors(&with("server: { listen: [] }\n"))[0];
        assert!(e.message.contains("listen nowhere"), "{e}");
        let e = &errors(&with(
            "server: { tls: { listen: [\"0.0.0.0:8443\"], cert: no.pem, key: no.pem } }\n",
        ));
        assert_eq!(e.len(), 2);
        assert!(e[0].message.contains("/etc/nidan/no.pem"), "{}", e[0]);
        let c = load_t(&with(
            "notifiers: { email: { host: mail, security: tls, from: a@b.c }, outbox: {} }\n",
        ))
        .unwrap();
        assert_eq!(c.notifiers.email.as_ref().unwrap().port, 465);
        assert!(c.notifiers.outbox.as_ref().unwrap().console);
        let e = errors(&with("notifiers: { email: { username: u } }\n"));
        assert_eq!(e.len(), 3, "{e:?}");
        let c = load_t(&with("notifiers: { sms: { url: \"https://x\" } }\n")).unwrap();
        let sms = c.notifiers.sms.unwrap();
        assert_eq!(sms.success_status.len(), 100);
        assert_eq!(sms.method, "POST");
        assert_eq!(sms.content_type, "application/x-www-form-urlencoded");
        let c = load_t(&with("login_limits: { max_concurrent_hashes: 3 }\n")).unwrap();
        assert_eq!(c.login_limits.max_concurrent_hashes, 3);
    }

    #[test]
    fn unreadable_file_names_it() {
        let e = load(Path::new("/nonexistent/nidan.yaml")).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].column), (0, 0));
        assert!(e.to_string().contains("/nonexistent/nidan.yaml"), "{e}");
    }

    #[test]
    fn redaction_keeps_keys_and_drops_values() {
        assert_eq!(
            redact("invalid type: string \"a\\\"b\", expected u64"),
            "invalid type: string, expected u64"
        );
        assert_eq!(
            redact("routes[0].policy: unknown variant `s3cr`t`, expected one of `a`, `b`"),
            "routes[0].policy: unknown value, expected one of `a`, `b`"
        );
        assert_eq!(
            strip_marks("x at line 3 column 14, y at line 1 column 1"),
            "x, y"
        );
    }

    #[test]
    fn exemptions_and_risk_are_checked() {
        let c = load_t(&with(
            "exemptions: { networks: [\"10.1.2.3/8\", 192.0.2.7] }\nrisk: { threshold: 40, new_browser: 5, watch_networks: [\"203.0.113.0/24\"], network_memory: 30d }\nusers: { on_phone_loss: switch_to_email }\n",
        ))
        .unwrap();
        let nets: Vec<String> = c
            .exemptions
            .networks
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, vec!["10.0.0.0/8", "192.0.2.7/32"]);
        assert_eq!(
            (c.risk.threshold, c.risk.new_browser, c.risk.new_network),
            (40, 5, 30)
        );
        assert_eq!(c.risk.network_memory, Duration::from_secs(30 * 86_400));
        assert_eq!(c.users.on_phone_loss, OnPhoneLoss::SwitchToEmail);
        let d = load_t(MINIMAL).unwrap();
        assert!(d.exemptions.networks.is_empty() && d.risk.enabled && d.risk.threshold == 50);
        assert_eq!(d.users.on_phone_loss, OnPhoneLoss::Disable);

        let e = &errors(&with("exemptions: { networks: [\"10.0.0.0/8\", nope] }\n"))[0];
        assert_eq!((e.line, e.column), (2, 40), "{e}");
        assert!(
            e.message.contains("`exemptions.networks[1]`") && e.fix.contains("CIDR"),
            "{e}"
        );
        let e = &errors(&with("exemptions:\n  networks: [\"0.0.0.0/0\"]\n"))[0];
        assert!(e.message.contains("every address") && e.line == 3, "{e}");
        let errs = errors(&with(
            "risk:\n  threshold: 0\n  watchlist: 5000\n  network_memory: forever\n  watch_networks: [\"x\"]\n",
        ));
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6], "{errs:#?}");
        assert!(errs[0].fix.contains("enabled: false"), "{}", errs[0]);
        assert!(errs[1].fix.contains("0 to 1000"), "{}", errs[1]);
        let e = &errors(&with("risk: { treshold: 10 }\n"))[0];
        assert!(e.message.contains("treshold"), "{e}");
        let e = &errors(&with("users: { on_phone_loss: forget }\n"))[0];
        assert!(e.fix.contains("switch_to_email"), "{e}");
    }

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

    #[test]
    fn brand_colours_are_checked_for_contrast() {
        assert!((contrast_with_white((255, 255, 255)) - 1.0).abs() < 1e-9);
        assert!((contrast_with_white((0, 0, 0)) - 21.0).abs() < 1e-9);
        assert_eq!(parse_hex_color("#abc"), Some((0xaa, 0xbb, 0xcc)));
        assert_eq!(parse_hex_color("0b3d91"), None);
        assert_eq!(parse_hex_color("#0b3d9"), None);
        assert_eq!(parse_hex_color("#0b3d9g"), None);
        let c = load_t(&with("portal: { brand: { primary_color: \"#0B3D91\" } }\n")).unwrap();
        assert_eq!(c.portal.brand.primary_color.as_deref(), Some("#0b3d91"));
        // #777777 is 4.48:1: just short.
        let e = &errors(&with("portal: { brand: { primary_color: \"#777777\" } }\n"))[0];
        assert!(
            e.message.contains("4.4:1") && e.message.contains("4.5:1"),
            "{}",
            e.message
        );
        assert!(footer_url_ok("/help") && footer_url_ok("https://example.com/terms?x=1"));
        for bad in [
            "//evil.example",
            "javascript:alert(1)",
            "https://u@evil/",
            "help",
            "",
        ] {
            assert!(!footer_url_ok(bad), "{bad}");
        }
        let c = load_t(&with("portal: { time_zone: Asia/Tokyo }\n")).unwrap();
        assert_eq!(c.portal.time_zone, Some(chrono_tz::Tz::Asia__Tokyo));
    }

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
}
