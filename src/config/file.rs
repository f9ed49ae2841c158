//! The serde mirror of the YAML file: shape only, no meaning.
//!
//! Every key is optional except `version` (and a route's `name` and `policy`); defaults and
//! range checks are applied in `load.rs`, where errors can be collected and placed.
//! Durations, addresses and CIDRs stay text here so that a bad one becomes a placed,
//! explained error rather than the first and only serde failure.

use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    pub version: u32,
    #[serde(default)]
    pub server: Option<ServerFile>,
    #[serde(default)]
    pub portal: Option<PortalFile>,
    #[serde(default)]
    pub session: Option<SessionFile>,
    #[serde(default)]
    pub trusted_devices: Option<TrustedDevicesFile>,
    #[serde(default)]
    pub security_code: Option<SecurityCodeFile>,
    #[serde(default)]
    pub login_limits: Option<LoginLimitsFile>,
    pub app_approval: Option<AppApprovalFile>,
    #[serde(default)]
    pub notifiers: Option<NotifiersFile>,
    #[serde(default)]
    pub users: Option<UsersFile>,
    #[serde(default)]
    pub storage: Option<StorageFile>,
    #[serde(default)]
    pub identity_headers: Option<IdentityHeadersFile>,
    #[serde(default)]
    pub trusted_proxies: Option<Vec<String>>,
    #[serde(default)]
    pub exemptions: Option<ExemptionsFile>,
    #[serde(default)]
    pub risk: Option<RiskFile>,
    #[serde(default)]
    pub passkeys: Option<PasskeysFile>,
    #[serde(default)]
    pub routes: Option<Vec<RouteFile>>,
    #[serde(default)]
    pub audit: Option<AuditFile>,
    #[serde(default)]
    pub identity_assertion: Option<IdentityAssertionFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityAssertionFile {
    pub enabled: Option<bool>,
    pub header: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub lifetime: Option<String>,
    pub key_rotation: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeysFile {
    pub enabled: Option<bool>,
    pub rp_id: Option<String>,
    pub rp_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExemptionsFile {
    pub networks: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RiskFile {
    pub enabled: Option<bool>,
    pub threshold: Option<u64>,
    pub new_browser: Option<u64>,
    pub new_network: Option<u64>,
    pub recent_failures: Option<u64>,
    pub new_user_agent: Option<u64>,
    pub watchlist: Option<u64>,
    pub watch_networks: Option<Vec<String>>,
    pub network_memory: Option<String>,
    pub failure_window: Option<String>,
    pub score_first_login: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnPhoneLossFile {
    Disable,
    SwitchToEmail,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerFile {
    pub listen: Option<Vec<String>>,
    pub tls: Option<TlsFile>,
    pub admin_listen: Option<String>,
    pub admin_token_file: Option<String>,
    pub admin_token_env: Option<String>,
    pub threads: Option<u64>,
    pub grace_period: Option<String>,
    pub upgrade_sock: Option<String>,
    pub limits: Option<LimitsFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsFile {
    pub max_request_line: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub head_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<u64>,
    pub max_connections_per_network: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    pub listen: Option<Vec<String>>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LanguageFile {
    Ja,
    En,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PortalFile {
    pub path_prefix: Option<String>,
    pub default_language: Option<LanguageFile>,
    pub title: Option<String>,
    pub allowed_return_hosts: Option<Vec<String>>,
    pub public_url: Option<String>,
    pub recent_login: Option<String>,
    pub flow_lifetime: Option<String>,
    pub time_zone: Option<String>,
    pub brand: Option<BrandFile>,
    pub help_url: Option<String>,
    pub account_url: Option<String>,
    pub recovery_url: Option<String>,
}

/// The operator's look of the portal.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BrandFile {
    pub name: Option<String>,
    pub logo_file: Option<String>,
    pub primary_color: Option<String>,
    pub footer_links: Option<Vec<FooterLinkFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FooterLinkFile {
    pub label: LabelFile,
    pub url: String,
}

/// One label for every language, or one per language.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum LabelFile {
    One(String),
    PerLanguage { ja: String, en: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionFile {
    pub idle_timeout: Option<String>,
    pub absolute_timeout: Option<String>,
    pub cookie_name: Option<String>,
    pub secure_cookies: Option<SecureCookiesFile>,
}

/// `secure_cookies`: `auto`, `always`, or a YAML boolean (checked in `load.rs`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum SecureCookiesFile {
    Flag(bool),
    Word(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrustedDevicesFile {
    pub lifetime: Option<String>,
    pub max_per_user: Option<u64>,
    pub cookie_name: Option<String>,
    pub signing_keys: Option<Vec<SigningKeyFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SigningKeyFile {
    pub id: String,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecurityCodeFile {
    pub length: Option<u64>,
    pub lifetime: Option<String>,
    pub max_attempts: Option<u64>,
    pub resend_cooldown: Option<String>,
    pub max_sends_per_account: Option<u64>,
    pub send_window: Option<String>,
    pub max_sends_per_ip: Option<u64>,
    pub max_sends_global_per_hour: Option<u64>,
    pub reserve_for_known_browsers: Option<u64>,
    pub global_reserve_for_known_browsers: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginLimitsFile {
    pub max_failures_per_account: Option<u64>,
    pub free_failures: Option<u64>,
    pub base_delay: Option<String>,
    pub max_delay: Option<String>,
    pub max_concurrent_hashes: Option<u64>,
    pub reserve_for_known_browsers: Option<u64>,
    pub id_steps_per_address: Option<u64>,
    pub passkey_starts_per_address: Option<u64>,
    pub address_window: Option<String>,
    pub ipv4_prefix: Option<u64>,
    pub ipv6_prefix: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditFile {
    pub retention: Option<String>,
    pub max_rows: Option<u64>,
    pub unauthenticated_per_address: Option<u64>,
    pub unauthenticated_total: Option<u64>,
    pub queue_events: Option<u64>,
    pub queue_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotifiersFile {
    pub email: Option<EmailFile>,
    pub sms: Option<SmsFile>,
    pub push: Option<PushFile>,
    pub outbox: Option<OutboxFile>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SmtpSecurityFile {
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmailFile {
    pub host: Option<String>,
    pub port: Option<u64>,
    pub security: Option<SmtpSecurityFile>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub from: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SmsFile {
    pub url: Option<String>,
    pub method: Option<String>,
    pub headers: Option<OrderedMap>,
    pub body_template: Option<String>,
    pub content_type: Option<String>,
    pub success_status: Option<Vec<u64>>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutboxFile {
    pub path: Option<String>,
    pub console: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TwoStepMethodFile {
    Sms,
    Email,
    App,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppApprovalFile {
    pub order: Option<ApprovalOrderFile>,
    pub lifetime: Option<String>,
    pub max_per_window: Option<u64>,
    pub window: Option<String>,
    pub suspend_after_denial: Option<String>,
    pub enrollment_lifetime: Option<String>,
    pub feature_phone_patterns: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ApprovalOrderFile {
    BeforePassword,
    AfterPassword,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushFile {
    pub url: Option<String>,
    pub headers: Option<OrderedMap>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
    pub timeout: Option<String>,
}

/// `users.database`: no settings yet (the store is `storage`'s).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseUsersFile {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsersFile {
    pub file: Option<String>,
    /// `database: {}`: the users are kept in the durable store (issue 24).
    pub database: Option<DatabaseUsersFile>,
    pub reload_interval: Option<String>,
    pub default_two_step: Option<bool>,
    pub default_method: Option<TwoStepMethodFile>,
    pub on_phone_loss: Option<OnPhoneLossFile>,
    /// The users come from an LDAP / Active Directory server instead of the file.
    pub ldap: Option<LdapFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LdapFile {
    pub url: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<String>,
    pub bind_password_env: Option<String>,
    pub base_dn: Option<String>,
    pub user_filter: Option<String>,
    pub attributes: Option<LdapAttributesFile>,
    pub group_search: Option<LdapGroupSearchFile>,
    pub tls: Option<LdapTlsFile>,
    pub timeout: Option<String>,
    pub pool: Option<u64>,
    pub cache_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LdapAttributesFile {
    pub id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub groups: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LdapGroupSearchFile {
    pub base_dn: Option<String>,
    pub filter: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LdapTlsFile {
    pub ca_file: Option<String>,
    pub starttls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StorageFile {
    pub sqlite: Option<SqliteFile>,
    pub postgres: Option<PostgresFile>,
    pub redis: Option<RedisFile>,
    /// How long existing sessions keep working from cache while a store is unreachable.
    pub outage_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresFile {
    pub url_env: Option<String>,
    pub url_file: Option<String>,
    pub max_connections: Option<u32>,
    /// The longest one call may take (connection, statement, answer).
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisFile {
    pub url_env: Option<String>,
    pub url_file: Option<String>,
    pub key_prefix: Option<String>,
    /// The longest one call may take (connect and answer), short-lived state and bus alike.
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqliteFile {
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityHeadersFile {
    pub user: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub groups: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PolicyFile {
    Bypass,
    Login,
    TwoFactor,
    Deny,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SecondStepFile {
    Required,
    Exempt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AcceptFile {
    Session,
    Basic,
    Token,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteFile {
    pub name: String,
    pub hosts: Option<Vec<String>>,
    pub path_prefix: Option<String>,
    pub upstream: Option<Vec<String>>,
    pub policy: PolicyFile,
    pub second_step: Option<SecondStepFile>,
    pub accept: Option<Vec<AcceptFile>>,
    pub groups: Option<Vec<String>>,
    pub second_steps: Option<Vec<TwoStepMethodFile>>,
    pub case_sensitive: Option<bool>,
    pub identity_assertion: Option<bool>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub fail_timeout: Option<String>,
    pub health_check: Option<HealthCheckFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheckFile {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy: Option<u64>,
    pub unhealthy: Option<u64>,
}

/// A string-to-string mapping that keeps the file's order (for SMS headers).
#[derive(Debug, Default)]
pub(crate) struct OrderedMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of header names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}
