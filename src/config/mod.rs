//! The validated runtime configuration: what every other module reads.
//!
//! The YAML file is mirrored by `file.rs` (serde, unknown keys rejected) and converted once
//! by `load.rs` into these types; nothing downstream sees a raw string that should have
//! been an enum, an address or a duration.

mod check;
pub mod diff;
pub(crate) mod errors;
mod file;
pub(crate) mod load;
pub(crate) mod locate;
#[cfg(test)]
mod testing;

pub use load::{ConfigError, ConfigErrors, load, load_str};

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File the configuration came from (for messages and relative paths).
    pub source: PathBuf,
    pub server: Server,
    pub portal: Portal,
    pub session: SessionSettings,
    pub trusted_devices: TrustedDevices,
    pub security_code: SecurityCode,
    pub login_limits: LoginLimits,
    pub app_approval: AppApproval,
    pub notifiers: Notifiers,
    pub users: UsersSource,
    pub storage: Storage,
    pub identity_headers: IdentityHeaders,
    /// Peers whose `X-Forwarded-For` is believed. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Where the second step is not asked (trusted networks).
    pub exemptions: Exemptions,
    /// Risk-based step-up for users without 2-step.
    pub risk: RiskSettings,
    /// Passkey login (WebAuthn), which counts as both steps.
    pub passkeys: PasskeySettings,
    pub routes: Vec<Route>,
    /// How long the audit trail is kept, and how unauthenticated events are bounded.
    pub audit: AuditSettings,
    /// Signed identity assertions for backends; `None` when the section is absent.
    pub identity_assertion: Option<IdentityAssertion>,
}

impl Config {
    /// Does the configuration alone make every request HTTPS (an https `portal.public_url`,
    /// or `session.secure_cookies: always`)? See [`crate::proxy::scheme`].
    pub fn always_https(&self) -> bool {
        self.portal.public_https() || self.session.secure_cookies == SecureCookies::Always
    }
}

/// `identity_assertion`: a short-lived signed JWT about the user on proxied requests (and
/// forward-auth answers), verifiable against `{prefix}/.well-known/jwks.json`.
#[derive(Debug, Clone)]
pub struct IdentityAssertion {
    /// Routes carry it unless they say `identity_assertion: false` (default true).
    pub enabled: bool,
    /// Request header the token travels in (default `X-Nidan-Assertion`).
    pub header: String,
    /// `iss`: `issuer`, else `portal.public_url`.
    pub issuer: String,
    /// `aud` for every route; `None`: the route's name.
    pub audience: Option<String>,
    /// Token lifetime (default and at most 5m).
    pub lifetime: Duration,
    /// A new signing key every this long (default 24h, at least 10m and twice the lifetime).
    pub key_rotation: Duration,
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Rows older than this are purged (default 180 days).
    pub retention: Duration,
    /// At most this many rows are kept; the oldest go first (default 1,000,000).
    pub max_rows: u64,
    /// Events an unauthenticated request can cause, per network and event, per minute
    /// (default 30); beyond it they are only counted and summed up periodically.
    pub unauthenticated_per_address: u32,
    /// The same, all networks together, per minute (default 600).
    pub unauthenticated_total: u32,
    /// Events kept in memory while the store cannot take them, at most (default 10,000);
    /// past it (or `queue_bytes`) they are only counted, and one `audit_dropped` row says
    /// how many once the store is back.
    pub queue_events: usize,
    /// The same bound in bytes (default 8 MiB).
    pub queue_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Server {
    /// Request-line and header size limits.
    pub limits: Limits,
    /// Plain HTTP listeners.
    pub listen: Vec<SocketAddr>,
    pub tls: Option<Tls>,
    /// Admin listener (metrics, health); `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token for the admin API, read from a file or env var.
    pub admin_token: Option<Secret>,
    /// pingora worker threads per service (default 2).
    pub threads: usize,
    /// Grace period for in-flight requests on shutdown (default 5s).
    pub grace_period: Duration,
    /// The Unix socket over which a running process hands its listening sockets to the one
    /// started with `serve --upgrade` (default `nidan-upgrade.sock` next to the file).
    pub upgrade_sock: PathBuf,
}

/// How large a request head may be (SECURITY 39), like nginx's header buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Method, target and version, in bytes; longer gets 414.
    pub max_request_line: usize,
    /// All header fields together (names, values, separators), in bytes; more gets 431.
    /// Enforced while the head is read, not after it was buffered (SECURITY 42).
    pub max_header_bytes: usize,
    /// How long a whole request head may take to arrive once its first byte has (and a new
    /// connection's first head from the accept); later gets 408 and the connection closed.
    pub head_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
    /// Open client connections in all; over it a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// Open client connections from one client network (an IPv4 address or the
    /// `login_limits.ipv4_prefix`, an IPv6 /64); trusted proxies count only in the total.
    pub max_connections_per_network: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line: 8 * 1024,
            max_header_bytes: 32 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 8192,
            max_connections_per_network: 256,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub listen: Vec<SocketAddr>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Ja,
    En,
}

#[derive(Debug, Clone)]
pub struct Portal {
    /// Always starts with `/`, never ends with `/`, e.g. `/_nidan`.
    pub path_prefix: String,
    pub default_language: Language,
    /// Product name shown on pages (default "nidan").
    pub title: String,
    /// Hosts (besides route hosts) that return addresses may name.
    pub allowed_return_hosts: Vec<String>,
    /// Where users reach the portal, e.g. `https://login.example.com` (no path): absolute
    /// URLs the gateway hands out (the app enrollment's server) are built from it, never from
    /// a request's `Host` (SECURITY 21).
    pub public_url: Option<String>,
    /// How long after a login the settings/devices pages may change things (default 5m).
    pub recent_login: Duration,
    /// Lifetime of an unfinished login flow (default 10m).
    pub flow_lifetime: Duration,
    /// The zone times are shown in when the browser has not told its own; `None`: by the
    /// page's language (`Asia/Tokyo` for Japanese, UTC otherwise).
    pub time_zone: Option<chrono_tz::Tz>,
    pub brand: Brand,
    /// Where users get help (the footer's and error pages' "Help"); `None`: no link.
    pub help_url: Option<String>,
    /// The operator's own account page (change password, contact details) for directories
    /// nidan cannot write; `None`: no link.
    pub account_url: Option<String>,
    /// The operator's page for a forgotten ID or password ("Forgot your ID or password?" on
    /// the ID page); `None`: no link.
    pub recovery_url: Option<String>,
}

impl Portal {
    /// Is the configured public address an `https://` one?
    pub fn public_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }

    /// The name pages, mails and SMS show: the brand's, else `portal.title`.
    pub fn site_name(&self) -> &str {
        self.brand.name.as_deref().unwrap_or(&self.title)
    }
}

/// The operator's look: name, logo, primary colour, footer links.
#[derive(Debug, Clone, Default)]
pub struct Brand {
    /// Shown in the header and page titles instead of `portal.title`.
    pub name: Option<String>,
    pub logo: Option<Logo>,
    /// `#rrggbb`, checked for contrast against white (≥ 4.5:1).
    pub primary_color: Option<String>,
    pub footer_links: Vec<FooterLink>,
}

/// A logo file read at load time, served by the portal at `{prefix}/static/logo`.
#[derive(Debug, Clone)]
pub struct Logo {
    pub bytes: std::sync::Arc<Vec<u8>>,
    pub content_type: &'static str,
}

#[derive(Debug, Clone)]
pub struct FooterLink {
    pub label_ja: String,
    pub label_en: String,
    /// An `http(s)` URL or a path on this site.
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Default 30m.
    pub idle_timeout: Duration,
    /// Default 12h.
    pub absolute_timeout: Duration,
    /// Base cookie name (default `nidan_session`); `__Host-` is prefixed over HTTPS.
    pub cookie_name: String,
    /// When requests count as HTTPS for cookies and HSTS (`session.secure_cookies`).
    pub secure_cookies: SecureCookies,
}

/// `session.secure_cookies`: which requests count as served over HTTPS, so that every
/// cookie is `__Host-` + `Secure` and HSTS is sent (SECURITY 19, 44). There is no setting
/// that sends cookies without `Secure` over HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookies {
    /// Per request: an https `portal.public_url` (then always), a TLS socket, or
    /// `X-Forwarded-Proto: https` from a trusted proxy.
    Auto,
    /// Every request, for a TLS terminator in front that cannot say so.
    Always,
}

#[derive(Debug, Clone)]
pub struct TrustedDevices {
    /// Default 30d; the server-side cap for every device.
    pub lifetime: Duration,
    /// Default 10.
    pub max_per_user: usize,
    /// Base cookie name (default `nidan_device`).
    pub cookie_name: String,
    /// First key signs; all verify. At least one.
    pub signing_keys: Vec<SigningKey>,
}

#[derive(Debug, Clone)]
pub struct SigningKey {
    pub id: String,
    pub secret: Secret,
}

/// How the placeholder secrets shipped with the annotated example begin: anyone can read
/// them, so `nidan serve` refuses to sign with one (`check-config` only warns).
pub const PLACEHOLDER_SECRET: &[u8] = b"example-only-";

impl SigningKey {
    /// Is this the example's published placeholder rather than a secret of the operator's?
    pub fn is_placeholder(&self) -> bool {
        self.secret.expose().starts_with(PLACEHOLDER_SECRET)
    }
}

#[derive(Debug, Clone)]
pub struct SecurityCode {
    /// Digits, 6..=10 (default 6).
    pub length: usize,
    /// Default 5m, at most 10m.
    pub lifetime: Duration,
    /// Wrong tries per code (default 5, at most 5).
    pub max_attempts: u32,
    /// Default 30s.
    pub resend_cooldown: Duration,
    /// Sends per account per `send_window` (default 5 per 15m).
    pub max_sends_per_account: u32,
    pub send_window: Duration,
    /// Sends per client IP per `send_window` (default 20).
    pub max_sends_per_ip: u32,
    /// Sends in total per hour (default 1000).
    pub max_sends_global_per_hour: u32,
    /// Of `max_sends_per_account`, sends only browsers the account knows may use (default 2).
    pub reserve_for_known_browsers: u32,
    /// Of `max_sends_global_per_hour`, sends only browsers known to their account may use
    /// (default a fifth).
    pub global_reserve_for_known_browsers: u32,
}

#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Failed passwords/codes per account per hour before logins wait (default 100, at most 100).
    pub max_failures_per_account: u32,
    /// Failures per account before delays start (default 5); each further failure doubles it.
    pub free_failures: u32,
    /// First delay (default 1s), doubling, capped by `max_delay` (default 15m).
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Concurrent password hashes (default: number of cores).
    pub max_concurrent_hashes: usize,
    /// Of `max_failures_per_account`, failures only a browser the account knows may use
    /// (default 20); failures from other browsers never delay it.
    pub reserve_for_known_browsers: u32,
    /// ID steps (new login flows) per network per `address_window` (default 60).
    pub id_steps_per_address: u32,
    /// Passkey login starts per network per `address_window` (default 60).
    pub passkey_starts_per_address: u32,
    /// Default 1m.
    pub address_window: Duration,
    /// Prefix lengths that make one "address" for per-address limits (defaults 32 and 64).
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOrder {
    /// The seed's order: approve in the app, then enter the password.
    BeforePassword,
    /// Password first; the app is asked only after a right password.
    AfterPassword,
}

/// Passkey login: WebAuthn with user verification, counted as both steps.
#[derive(Debug, Clone)]
pub struct PasskeySettings {
    pub enabled: bool,
    /// The WebAuthn relying party ID; `None`: the request's host (without port).
    pub rp_id: Option<String>,
    /// The name authenticators show next to the passkey.
    pub rp_name: String,
}

/// Login approval in the phone app, with number matching.
#[derive(Debug, Clone)]
pub struct AppApproval {
    pub order: ApprovalOrder,
    /// An approval expires after this (default 2m, at most 5m).
    pub lifetime: Duration,
    /// Approvals per account per `window` (default 3 per 10m).
    pub max_per_window: u32,
    pub window: Duration,
    /// "This wasn't me" suspends app prompts for this long (default 15m).
    pub suspend_after_denial: Duration,
    /// An enrollment code is valid this long (default 10m).
    pub enrollment_lifetime: Duration,
    /// User-Agent substrings of feature-phone browsers, which get a security code instead.
    pub feature_phone_patterns: Vec<String>,
}

/// A webhook told about each login approval (FCM, APNs, ntfy… behind it).
#[derive(Debug, Clone)]
pub struct PushWebhook {
    pub url: String,
    /// Extra headers; `{secret}` in a value is replaced by `secret`.
    pub headers: Vec<(String, String)>,
    pub secret: Option<Secret>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Notifiers {
    pub email: Option<Smtp>,
    pub sms: Option<SmsGateway>,
    pub push: Option<PushWebhook>,
    pub outbox: Option<Outbox>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on localhost.
    None,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `From:` address, e.g. `nidan <no-reply@example.com>`.
    pub from: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SmsGateway {
    /// http:// or https:// URL of the gateway.
    pub url: String,
    /// HTTP method (default POST).
    pub method: String,
    /// Extra headers; values may contain `{secret}` (replaced by `secret`).
    pub headers: Vec<(String, String)>,
    /// Body template with `{to}`, `{body}`, `{code}` placeholders.
    pub body_template: String,
    /// Content-Type of the body (default `application/x-www-form-urlencoded`).
    pub content_type: String,
    /// Statuses that mean "sent" (default 200..=299).
    pub success_status: Vec<u16>,
    pub secret: Option<Secret>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Outbox {
    /// JSON-lines file to append to; `None` only prints to the console.
    pub path: Option<PathBuf>,
    /// Also print each message on stdout.
    pub console: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoStepMethod {
    Sms,
    Email,
    App,
}

#[derive(Debug, Clone)]
pub struct UsersSource {
    /// Where the users are kept.
    pub directory: DirectoryKind,
    /// The users file (read only with [`DirectoryKind::File`]).
    pub file: PathBuf,
    /// How often the file's modification time is checked (default 2s).
    pub reload_interval: Duration,
    /// 2-step setting for users whose entry says nothing (default off, sms).
    pub default_two_step: bool,
    pub default_method: TwoStepMethod,
    /// What happens to a user's 2-step setting when their phone is marked gone.
    pub on_phone_loss: OnPhoneLoss,
    /// `users.ldap`: the users come from this LDAP / Active Directory server (the users file
    /// is then not read).
    pub ldap: Option<LdapSettings>,
}

/// Where an LDAP user's groups come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapGroups {
    /// An attribute of the user's entry holding group DNs (`memberOf`: Active Directory,
    /// OpenLDAP's memberof overlay); each group is named by its DN's first RDN value.
    Attribute(String),
    /// A search under `base_dn` with `filter` (`{dn}`: the user's DN, `{id}`: the ID, both
    /// escaped); each group is named by its `name` attribute.
    Search {
        base_dn: String,
        filter: String,
        name: String,
    },
}

/// Which attributes of an LDAP user's entry give what nidan knows about the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapAttributes {
    /// The user's ID: the entry must hold exactly the ID asked for (LDAP matching is often
    /// case-insensitive: `ALICE` must not become a second user with settings of its own).
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
}

impl Default for LdapAttributes {
    fn default() -> Self {
        Self {
            id: "uid".into(),
            name: "cn".into(),
            email: "mail".into(),
            phone: "mobile".into(),
        }
    }
}

/// `users.ldap`, checked.
#[derive(Clone)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// The service account look-ups bind as (`None`: anonymous look-ups).
    pub bind_dn: Option<String>,
    pub bind_password: Option<std::sync::Arc<Secret>>,
    pub base_dn: String,
    /// A filter with `{id}` where the (escaped) ID goes, e.g. `(uid={id})`.
    pub user_filter: String,
    pub attributes: LdapAttributes,
    pub groups: LdapGroups,
    /// Trust for `ldaps://` and StartTLS: `None` uses the system's roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// `ldap://` upgraded with StartTLS before anything is sent.
    pub starttls: bool,
    /// Deadline of each connection and each operation.
    pub timeout: Duration,
    /// Connections kept open for look-ups, and the bound on concurrent operations.
    pub pool: usize,
    /// How long a look-up is kept (dropped at once by a revocation).
    pub cache_ttl: Duration,
}

impl fmt::Debug for LdapSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapSettings")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("base_dn", &self.base_dn)
            .field("user_filter", &self.user_filter)
            .field("attributes", &self.attributes)
            .field("groups", &self.groups)
            .field("tls", &self.tls.is_some())
            .field("starttls", &self.starttls)
            .field("timeout", &self.timeout)
            .field("pool", &self.pool)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

/// `users.file` or `users.database`: which directory holds the users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryKind {
    /// The operator's YAML users file, read whole (the default).
    File,
    /// The durable store (`storage`): users looked up one at a time, written through the
    /// admin API and `nidan users import`.
    Database,
    /// An LDAP / Active Directory server (`users.ldap`): users looked up and passwords
    /// checked by binds, cached briefly.
    Ldap,
}

/// `users.on_phone_loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPhoneLoss {
    /// 2-step is turned off (the seed's behaviour; the default).
    Disable,
    /// 2-step switches to codes by email when a contact address is on file, else off.
    SwitchToEmail,
}

/// `exemptions`: networks where the second step is skipped at login.
#[derive(Debug, Clone, Default)]
pub struct Exemptions {
    /// Client addresses (after `trusted_proxies`) inside these skip the second step, except
    /// on `two_factor` routes.
    pub networks: Vec<IpNet>,
}

/// `risk`: signals, weights and the threshold of the risk-based step-up.
#[derive(Debug, Clone)]
pub struct RiskSettings {
    /// Default true.
    pub enabled: bool,
    /// A score at or above this asks for a security code (default 50).
    pub threshold: u32,
    /// No `nidan_seen` cookie this user's logins ever set (default 20).
    pub new_browser: u32,
    /// The /24 (IPv4) or /48 (IPv6) not seen for this user within `network_memory` (default 30).
    pub new_network: u32,
    /// A failed login on the account or from the address within `failure_window` (default 20).
    pub recent_failures: u32,
    /// A user-agent family never seen for this user (default 10).
    pub new_user_agent: u32,
    /// The address is on `watch_networks` (default 60).
    pub watchlist: u32,
    pub watch_networks: Vec<IpNet>,
    /// Default 90d.
    pub network_memory: Duration,
    /// Default 1h.
    pub failure_window: Duration,
    /// Score the familiarity signals (browser, network, user agent) on a user's very first
    /// login too, when nothing is known yet (default false: the first login only learns).
    pub score_first_login: bool,
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 50,
            new_browser: 20,
            new_network: 30,
            recent_failures: 20,
            new_user_agent: 10,
            watchlist: 60,
            watch_networks: Vec::new(),
            network_memory: Duration::from_secs(90 * 86_400),
            failure_window: Duration::from_secs(3_600),
            score_first_login: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Storage {
    /// SQLite database file (the single-machine mode; also where `explain` looks when no
    /// PostgreSQL is configured).
    pub sqlite_path: PathBuf,
    /// Several replicas: PostgreSQL for what must last, Redis for what is short-lived and
    /// for invalidation. `None`: one machine, SQLite and in-process state.
    pub replicated: Option<Replicated>,
    /// How long existing sessions keep working from the local cache while a store is
    /// unreachable, before they fail closed (default 60s).
    pub outage_grace: Duration,
    /// `storage.postgres.timeout`: the longest one PostgreSQL call may take — a pooled
    /// connection, the statement and its answer (default 1s).
    pub postgres_timeout: Duration,
    /// `storage.redis.timeout`: the longest one Redis call may take, connect and answer, for
    /// the short-lived state and the revocation bus alike (default 1s).
    pub redis_timeout: Duration,
}

/// `storage.postgres` + `storage.redis`: the replica mode. The URLs are secrets (they may
/// carry passwords): never printed.
#[derive(Debug, Clone)]
pub struct Replicated {
    pub postgres_url: Secret,
    pub postgres_max_connections: u32,
    pub redis_url: Secret,
    /// Every Redis key and channel starts with `{key_prefix}:` (default `nidan`).
    pub key_prefix: String,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: String,
    pub name: String,
    pub email: String,
    pub groups: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Bypass,
    Login,
    TwoFactor,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondStep {
    /// Asked as the policy says.
    Required,
    /// Never asked on this route (password alone).
    Exempt,
}

/// A host pattern: exact (`wiki.example.com`), wildcard (`*.example.com`: every name below
/// `example.com`, at any depth, not `example.com` itself), or any (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact(String),
    Suffix(String),
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub tls: bool,
    /// SNI / Host for TLS upstreams.
    pub sni: String,
}

/// How a route talks to its upstreams: timeouts, and how a peer is found down and up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// To establish a connection (TCP, and TLS for `https://` upstreams).
    pub connect_timeout: Duration,
    /// Between two reads from the upstream (the response head, each body chunk); not for
    /// upgraded connections (WebSocket), which may be idle for long.
    pub read_timeout: Duration,
    /// Between two writes to the upstream.
    pub write_timeout: Duration,
    /// How long an idle upstream connection is kept for reuse.
    pub idle_timeout: Duration,
    /// How long a peer that refused a connection is left out (passive check).
    pub fail_timeout: Duration,
    /// Active checks (off when `None`).
    pub health_check: Option<HealthCheck>,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            fail_timeout: Duration::from_secs(10),
            health_check: None,
        }
    }
}

/// An active health check: `GET path` every `interval`; a peer is down after `unhealthy`
/// failed checks in a row (no answer within `timeout`, or a status outside 200–399) and up
/// again after `healthy` good ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy: u32,
    pub unhealthy: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    pub session: bool,
    pub basic: bool,
    /// API tokens (app passwords) as `Authorization: Bearer` or as the Basic password.
    pub token: bool,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Lower-case, without port.
    pub hosts: Vec<HostPattern>,
    /// Canonical, starts with `/`; matches whole segments (`/app` matches `/app` and `/app/x`, not `/apple`).
    pub path_prefix: String,
    pub upstreams: Vec<Upstream>,
    /// Timeouts and health checks of the upstreams.
    pub upstream: UpstreamSettings,
    pub policy: Policy,
    pub second_step: SecondStep,
    pub accept: Accept,
    /// If non-empty, the user must be in one of these groups (else 403).
    pub groups: Vec<String>,
    /// More group lists that must hold as well (one group of each): set when the route
    /// table merges the rules of routes a path reaches by letter case (see
    /// `RouteTable::find`); empty for routes from the file.
    pub groups_also: Vec<Vec<String>>,
    /// Second-step methods this route accepts (default all).
    pub allowed_methods: Vec<TwoStepMethod>,
    /// The backend reads paths case-sensitively, so a request this route forwards is
    /// decided on its exact letter case only (default false: the stricter rule of any
    /// route the path reaches by case applies).
    pub case_sensitive: bool,
    /// Requests for a user carry the signed identity assertion (`identity_assertion`).
    pub assertion: bool,
}

impl Route {
    /// Does a user in `user_groups` pass the route's group rule (one group of
    /// `groups`, and one of each list in `groups_also`)?
    pub fn admits(&self, user_groups: &[String]) -> bool {
        std::iter::once(&self.groups)
            .chain(&self.groups_also)
            .all(|list| list.is_empty() || user_groups.iter().any(|g| list.contains(g)))
    }
}

/// A secret loaded from a file or environment variable; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}
