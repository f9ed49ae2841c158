//! `nidan explain`: what the gateway would do with a URL — the route (after the same
//! canonicalisation as live traffic), its policy, second-step rule and accepted
//! credentials, which exemption would apply, and for a user their 2-step setting and the
//! risk signals that can be known offline. No traffic, no database writes (the database is
//! opened read-only when it exists).

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Config, Policy, Route, SecondStep, TwoStepMethod};
use crate::login::flow::{self, Exemption, PlanInput, Step, Why};
use crate::login::risk;
use crate::proxy::route::{RouteTable, host_of};
use crate::store::{SeenKind, Store};
use crate::users::{PhoneStatus, User};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExplainError {
    #[error("bad URL: {0}")]
    BadUrl(&'static str),
}

/// A URL split the way the gateway sees a request: host (no port, lower-case), path and
/// query. The fragment never reaches a server and is dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub path: String,
    pub query: Option<String>,
}

pub fn parse_url(url: &str) -> Result<Target, ExplainError> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ExplainError::BadUrl(
            "it contains spaces or control characters; percent-encode them",
        ));
    }
    let lower = url.to_ascii_lowercase();
    let (tls, rest) = if lower.starts_with("https://") {
        (true, &url[8..])
    } else if lower.starts_with("http://") {
        (false, &url[7..])
    } else {
        return Err(ExplainError::BadUrl(
            "give an absolute http:// or https:// URL, e.g. https://wiki.example.com/page",
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err(ExplainError::BadUrl(
            "user information (`user@`) in a URL is not sent to the gateway; remove it",
        ));
    }
    if authority.is_empty() {
        return Err(ExplainError::BadUrl("the URL has no host"));
    }
    let host = host_of(authority);
    if host.is_empty() {
        return Err(ExplainError::BadUrl(
            "the host is not a host name, IPv4 or [IPv6] address with an optional port; the gateway answers such a request with 400",
        ));
    }
    if let Some((_, port)) = authority
        .rsplit_once(':')
        .filter(|_| !authority.ends_with(']'))
        && port.parse::<u16>().is_err()
    {
        return Err(ExplainError::BadUrl(
            "the port is not a number from 0 to 65535",
        ));
    }
    let after = &rest[end..];
    let after = after.split('#').next().unwrap_or("");
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (after, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target {
        tls,
        host,
        path: path.to_owned(),
        query,
    })
}

fn policy_str(p: Policy) -> &'static str {
    match p {
        Policy::Bypass => "bypass (public: no login)",
        Policy::Login => "login (2-step when the user enabled it or the risk engine asks)",
        Policy::TwoFactor => "two_factor (always both steps)",
        Policy::Deny => "deny (403 for everyone)",
    }
}

/// Explains `url` (and optionally `user` from `ip`) under `cfg`. The database is read when
/// it exists; nothing is written.
pub async fn explain(
    cfg: &Config,
    url: &str,
    user: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<String, ExplainError> {
    let target = parse_url(url)?;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "URL        {url}");
    let _ = writeln!(w, "host       {}", target.host);
    let canonical = match crate::path::canonicalize_parts(&target.path, target.query.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(w, "path       {} is refused: {e}", target.path);
            let _ = writeln!(
                w,
                "decision   400 Bad Request (the gateway never guesses what an ambiguous path means)"
            );
            return Ok(out);
        }
    };
    let _ = writeln!(
        w,
        "path       {} (canonical; the query never affects routing)",
        canonical.path
    );
    let prefix = &cfg.portal.path_prefix;
    if canonical
        .path
        .strip_prefix(prefix.as_str())
        .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    {
        let _ = writeln!(
            w,
            "route      none: {prefix} is the login portal (pages and API), answered by the gateway itself"
        );
        return Ok(out);
    }
    let table = RouteTable::new(cfg.routes.clone());
    let Some(found) = table.find(&target.host, &canonical.path) else {
        let _ = writeln!(w, "route      none matches this host and path");
        let _ = writeln!(w, "decision   404 Not Found");
        return Ok(out);
    };
    let index = found.index;
    let route = found.route.as_ref();
    let _ = writeln!(
        w,
        "route      {} (routes[{index}], path_prefix {}; first match in file order)",
        route.name, route.path_prefix
    );
    if matches!(found.route, std::borrow::Cow::Owned(_)) {
        let _ = writeln!(
            w,
            "letter case  another route's rule is reached by a case variant of this path; the stricter rule applies (set `case_sensitive: true` on the route if its backend is case-sensitive)"
        );
    }
    if !rules(w, route) {
        return Ok(out);
    }
    let network = exemptions(w, cfg, route, ip);

    let Some(id) = user else {
        return Ok(out);
    };
    let store = open_store(w, cfg).await;
    let Some(users) = users_of(w, cfg, id, store.as_ref()).await else {
        return Ok(out);
    };
    user_section(
        w,
        cfg,
        route,
        id,
        &users,
        store.as_ref(),
        ip,
        network.is_some(),
    )
    .await;
    Ok(out)
}

/// The route's rules: policy, second step, accepted credentials, groups and methods. False
/// when the route has no login at all (`bypass`, `deny`): nothing more applies.
fn rules(w: &mut String, route: &Route) -> bool {
    let _ = writeln!(w, "policy     {}", policy_str(route.policy));
    if matches!(route.policy, Policy::Bypass | Policy::Deny) {
        let _ = writeln!(w, "second step  not applicable");
        return false;
    }
    let _ = writeln!(
        w,
        "second step  {}",
        match (route.policy, route.second_step) {
            (_, SecondStep::Exempt) =>
                "exempt: never asked on this route (the password alone is enough)",
            (Policy::TwoFactor, _) => "always asked (a trusted device may skip it)",
            _ => "asked when the user enabled 2-step or the risk score reaches the threshold",
        }
    );
    let mut accepts = Vec::new();
    if route.accept.session {
        accepts.push("session (browser login)");
    }
    if route.accept.basic {
        accepts.push("basic (ID and password)");
    }
    if route.accept.token {
        accepts.push("token (API token as Bearer, or as the Basic password)");
    }
    let _ = writeln!(w, "accepts    {}", accepts.join(", "));
    if !route.groups.is_empty() {
        let _ = writeln!(w, "groups     one of: {}", route.groups.join(", "));
    }
    for also in &route.groups_also {
        let _ = writeln!(w, "groups     and one of: {}", also.join(", "));
    }
    let methods: Vec<&str> = route.allowed_methods.iter().map(|m| m.as_str()).collect();
    let _ = writeln!(w, "second steps accepted  {}", methods.join(", "));
    let password_alone = route.second_step == SecondStep::Exempt || route.policy == Policy::Login;
    if route.accept.basic || route.accept.token {
        let _ = writeln!(
            w,
            "password-only credentials (Basic, tokens)  {}",
            if route.second_step == SecondStep::Exempt {
                "accepted for every user (route exemption)"
            } else if password_alone {
                "accepted only for users without 2-step"
            } else {
                "never accepted (two_factor route)"
            }
        );
    }
    true
}

/// Which exemptions apply on `route` (for a client at `ip`, when given); the trusted
/// network `ip` is in.
fn exemptions(w: &mut String, cfg: &Config, route: &Route, ip: Option<IpAddr>) -> Option<IpNet> {
    let _ = writeln!(w, "exemptions");
    let _ = writeln!(
        w,
        "  route    {}",
        if route.second_step == SecondStep::Exempt {
            "applies: second_step: exempt"
        } else {
            "does not apply"
        }
    );
    let network = ip.and_then(|a| crate::exempt::trusted_network(&cfg.exemptions, a));
    match ip {
        None if cfg.exemptions.networks.is_empty() => {
            let _ = writeln!(w, "  network  none configured");
        }
        None => {
            let nets: Vec<String> = cfg
                .exemptions
                .networks
                .iter()
                .map(ToString::to_string)
                .collect();
            let _ = writeln!(
                w,
                "  network  trusted: {} (give --ip to check an address)",
                nets.join(", ")
            );
        }
        Some(a) => {
            let _ = match network {
                Some(n)
                    if route.policy == Policy::TwoFactor
                        && route.second_step == SecondStep::Required =>
                {
                    writeln!(
                        w,
                        "  network  {a} is in trusted network {n}, but two_factor routes never skip the second step for a network"
                    )
                }
                Some(n) => writeln!(w, "  network  applies: {a} is in trusted network {n}"),
                None => writeln!(w, "  network  does not apply: {a} is in no trusted network"),
            };
            if !cfg.trusted_proxies.is_empty() {
                let _ = writeln!(
                    w,
                    "           (--ip is the client address after trusted_proxies; X-Forwarded-For is believed only from them)"
                );
            }
        }
    }
    network
}

/// The store, read-only through its own code: PostgreSQL in the replica mode, else the
/// SQLite file when it exists.
/// The user `id` as the configured directory has them (the whole users file, or the one
/// user from the database directory); `None` when the directory could not be read.
async fn users_of(
    w: &mut String,
    cfg: &Config,
    id: &str,
    store: Option<&Store>,
) -> Option<Vec<User>> {
    match cfg.users.directory {
        crate::config::DirectoryKind::File => match crate::users::file::load_users(&cfg.users.file)
        {
            Ok(u) => Some(u),
            Err(e) => {
                let _ = writeln!(w, "user {id}: the users file could not be read:\n{e}");
                None
            }
        },
        crate::config::DirectoryKind::Ldap => {
            let Some(l) = &cfg.users.ldap else {
                return Some(Vec::new());
            };
            let dir = crate::users::ldap::LdapSource::new(l.clone(), None);
            match crate::users::Source::get(&dir, id).await {
                Ok(u) => Some(u.map(|u| vec![User::clone(&u)]).unwrap_or_default()),
                Err(e) => {
                    let _ = writeln!(w, "user {id}: the LDAP directory could not be read: {e}");
                    None
                }
            }
        }
        // The database directory: this one user, read from the store.
        crate::config::DirectoryKind::Database => {
            let Some(store) = store else {
                return Some(Vec::new());
            };
            let dir = crate::users::DatabaseDirectory::new(store.clone(), None);
            match crate::users::Source::get(&dir, id).await {
                Ok(u) => Some(u.map(|u| vec![User::clone(&u)]).unwrap_or_default()),
                Err(e) => {
                    let _ = writeln!(w, "user {id}: the user directory could not be read: {e}");
                    None
                }
            }
        }
    }
}

async fn open_store(w: &mut String, cfg: &Config) -> Option<Store> {
    if cfg.storage.replicated.is_some() || cfg.storage.sqlite_path.exists() {
        match Store::connect_read_only(&cfg.storage).await {
            Ok(s) => Some(s),
            Err(e) => {
                let _ = writeln!(w, "database   not readable ({e}); only the files are used");
                None
            }
        }
    } else {
        let _ = writeln!(
            w,
            "database   {} does not exist yet; only the files are used",
            cfg.storage.sqlite_path.display()
        );
        None
    }
}

#[allow(clippy::too_many_arguments)]
async fn user_section(
    w: &mut String,
    cfg: &Config,
    route: &Route,
    id: &str,
    users: &[User],
    store: Option<&Store>,
    ip: Option<IpAddr>,
    trusted_network: bool,
) {
    let _ = writeln!(w, "user {id}");
    let Some(file_user) = users.iter().find(|u| u.id == id) else {
        let _ = writeln!(
            w,
            "  not in the users file: the login runs like a user without 2-step and always fails"
        );
        return;
    };
    let mut u = file_user.clone();
    if u.disabled {
        let _ = writeln!(w, "  disabled: every login fails");
        return;
    }
    phone_override(w, store, id, &mut u).await;
    let (enabled, method) = two_step_setting(w, cfg, store, id, &u).await;
    contacts(w, &u);
    let score = risk_score(w, cfg, store, id, ip, enabled).await;
    login_plan(
        w,
        cfg,
        route,
        id,
        &u,
        (enabled, method),
        trusted_network,
        score,
    );
}

/// A phone status or number the admin API changed (it wins over the users file).
async fn phone_override(w: &mut String, store: Option<&Store>, id: &str, u: &mut User) {
    if let Some(s) = store
        && let Ok(list) = s.phone_overrides().await
        && let Some(o) = list.iter().find(|o| o.user_id == id)
    {
        if let Some(st) = crate::phone::status_from_str(&o.status) {
            u.phone_status = st;
        }
        if let Some(p) = &o.phone {
            u.phone = Some(p.clone());
        }
        let _ = writeln!(
            w,
            "  phone    changed by the admin API at {}: {}",
            crate::time::rfc3339(o.updated),
            o.status
        );
    }
}

/// The user's 2-step setting: the stored one wins over the users file (and its defaults).
async fn two_step_setting(
    w: &mut String,
    cfg: &Config,
    store: Option<&Store>,
    id: &str,
    u: &User,
) -> (bool, TwoStepMethod) {
    let file_setting = u
        .two_step
        .unwrap_or((cfg.users.default_two_step, cfg.users.default_method));
    let _ = writeln!(
        w,
        "  users file  2-step {} ({}){}",
        if file_setting.0 { "on" } else { "off" },
        file_setting.1.as_str(),
        if u.two_step.is_none() {
            ", from users.default_two_step/default_method"
        } else {
            ""
        }
    );
    let stored = match store {
        Some(s) => s.setting(id).await.ok().flatten(),
        None => None,
    };
    match stored
        .as_ref()
        .and_then(|r| Some((r.enabled, TwoStepMethod::parse(&r.method)?)))
    {
        Some((e, m)) => {
            let _ = writeln!(
                w,
                "  stored setting  2-step {} ({}), wins over the users file",
                if e { "on" } else { "off" },
                m.as_str()
            );
            (e, m)
        }
        None => file_setting,
    }
}

/// The phone and email address, masked.
fn contacts(w: &mut String, u: &User) {
    let phone = match (&u.phone, u.phone_status) {
        (None, _) => "none".to_owned(),
        (Some(p), s) => format!(
            "{} ({})",
            crate::notify::mask_phone(p),
            crate::phone::status_str(s)
        ),
    };
    let _ = writeln!(
        w,
        "  contacts    phone {phone}, email {}",
        u.email
            .as_deref()
            .map_or_else(|| "none".to_owned(), crate::notify::mask_email)
    );
}

/// Risk signals that can be known without the browser: whether risk applies, the points
/// known offline and those an unknown browser would add.
async fn risk_score(
    w: &mut String,
    cfg: &Config,
    store: Option<&Store>,
    id: &str,
    ip: Option<IpAddr>,
    enabled: bool,
) -> RiskScore {
    let applies = risk::applies(&cfg.risk, enabled);
    let mut known = 0u32;
    let mut unknown = 0u32;
    if applies {
        let _ = writeln!(
            w,
            "risk (threshold {}; user without 2-step, scored on every portal login)",
            cfg.risk.threshold
        );
        let now = crate::time::now();
        let history = match store {
            Some(s) => s.has_history(id).await.unwrap_or(false),
            None => false,
        };
        let learning = !history && !cfg.risk.score_first_login;
        if learning {
            let _ = writeln!(
                w,
                "  first login: the browser, network and user-agent signals only learn (risk.score_first_login: false)"
            );
        } else {
            unknown += cfg.risk.new_browser + cfg.risk.new_user_agent;
            let _ = writeln!(
                w,
                "  new_browser (+{}) and new_user_agent (+{}): depend on the browser, unknown offline",
                cfg.risk.new_browser, cfg.risk.new_user_agent
            );
        }
        if let Some(a) = ip {
            known += address_risk(w, cfg, store, id, a, learning, now).await;
        } else {
            let _ = writeln!(
                w,
                "  give --ip to check the watch list, the network prefix and failures from the address"
            );
        }
        let _ = writeln!(
            w,
            "  score      {known} known offline, up to {} with an unknown browser",
            known + unknown
        );
    } else if !cfg.risk.enabled {
        let _ = writeln!(w, "risk       turned off (risk.enabled: false)");
    } else {
        let _ = writeln!(w, "risk       not scored: the user's 2-step is on");
    }
    RiskScore {
        applies,
        known,
        unknown,
    }
}

/// The signals an address gives: watch list, a new network, recent failures; their points.
async fn address_risk(
    w: &mut String,
    cfg: &Config,
    store: Option<&Store>,
    id: &str,
    a: IpAddr,
    learning: bool,
    now: i64,
) -> u32 {
    let mut known = 0u32;
    if let Some(n) = risk::watchlisted(&cfg.risk, a) {
        known += cfg.risk.watchlist;
        let _ = writeln!(w, "  watchlist (+{}): {a} is in {n}", cfg.risk.watchlist);
    } else {
        let _ = writeln!(w, "  watchlist: {a} is not on the watch list");
    }
    let prefix = risk::network_prefix(a);
    let memory = i64::try_from(cfg.risk.network_memory.as_secs()).unwrap_or(i64::MAX);
    let seen = match store {
        Some(s) => s
            .seen_since(id, SeenKind::Network, &prefix, now.saturating_sub(memory))
            .await
            .unwrap_or(false),
        None => false,
    };
    if seen {
        let _ = writeln!(w, "  new_network: {prefix} was seen for {id} recently");
    } else if !learning {
        known += cfg.risk.new_network;
        let _ = writeln!(
            w,
            "  new_network (+{}): {prefix} not seen for {id} within {}",
            cfg.risk.new_network,
            humantime::format_duration(cfg.risk.network_memory)
        );
    }
    if let Some(s) = store {
        let window = i64::try_from(cfg.risk.failure_window.as_secs()).unwrap_or(3_600);
        let (acc, addr) = s
            .recent_failures(id, &a.to_string(), now - window)
            .await
            .unwrap_or((0, 0));
        if acc > 0 || addr > 0 {
            known += cfg.risk.recent_failures;
            let _ = writeln!(
                w,
                "  recent_failures (+{}): {acc} on the account, {addr} from the address within {}",
                cfg.risk.recent_failures,
                humantime::format_duration(cfg.risk.failure_window)
            );
        } else {
            let _ = writeln!(w, "  recent_failures: none");
        }
    }
    known
}

/// What `risk_score` found out offline.
struct RiskScore {
    applies: bool,
    known: u32,
    unknown: u32,
}

/// The plan the ID step would make, for a browser without a trusted device.
#[allow(clippy::too_many_arguments)]
fn login_plan(
    w: &mut String,
    cfg: &Config,
    route: &Route,
    id: &str,
    u: &User,
    (enabled, method): (bool, TwoStepMethod),
    trusted_network: bool,
    score: RiskScore,
) {
    let RiskScore {
        applies,
        known,
        unknown,
    } = score;
    let plan_for = |risk_step_up: bool| {
        flow::plan(&PlanInput {
            user: Some(u),
            enabled,
            method,
            policy: if route.policy == Policy::TwoFactor
                && route.second_step == SecondStep::Required
            {
                Policy::TwoFactor
            } else {
                Policy::Login
            },
            allowed: &route.allowed_methods,
            trusted_device: false,
            risk_step_up,
            trusted_network,
            app_enrolled: false,
            feature_phone: false,
        })
    };
    let low = plan_for(applies && known >= cfg.risk.threshold);
    let high = plan_for(applies && known + unknown >= cfg.risk.threshold);
    let _ = writeln!(w, "login      {}", describe(&low, u));
    if high != low {
        let _ = writeln!(
            w,
            "           from an unknown browser: {}",
            describe(&high, u)
        );
    }
    let _ = writeln!(
        w,
        "           (a valid trusted-device cookie of {id} skips the second step)"
    );
}

fn describe(p: &flow::Plan, u: &User) -> String {
    let why = |w: Why| match w {
        Why::UserSetting => "the user's 2-step setting",
        Why::RoutePolicy => "the route's two_factor policy",
        Why::Risk => "the risk score",
    };
    if let Some(e) = p.exemption {
        return match e {
            Exemption::TrustedNetwork => format!(
                "password only: the trusted network skips the second step asked by {}",
                p.second_step.map_or("-", why)
            ),
        };
    }
    if let Some(b) = p.blocked {
        return format!("blocked: the second step cannot be done ({b:?})");
    }
    match p.step {
        Step::Password => "password only".to_owned(),
        Step::AppApproval => "approval in the phone app, then the password".to_owned(),
        Step::PasswordAndCode => {
            let dest = match &p.send_to {
                Some((crate::notify::Channel::Sms, to)) => {
                    format!("by SMS to {}", crate::notify::mask_phone(to))
                }
                Some((_, to)) => format!("by email to {}", crate::notify::mask_email(to)),
                None => "nowhere".to_owned(),
            };
            let kept = if u.phone_status == PhoneStatus::Kept {
                " (phone kept: SMS cannot arrive)"
            } else {
                ""
            };
            let app = match p.notice {
                _ if p.second_step != Some(Why::UserSetting) => "",
                Some(flow::Notice::AppNotEnrolled) => " (no app enrolled)",
                Some(flow::Notice::AppNotAccepted) => " (the route does not accept the app)",
                Some(flow::Notice::AppFeaturePhone) => " (a feature phone: no app)",
                _ => "",
            };
            format!(
                "password and a security code {dest}{kept}{app}, asked by {}",
                p.second_step.map_or("-", why)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_parse_like_requests() {
        let t = parse_url("HTTPS://Wiki.Example.com:8443/a/../b?x=1#frag").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "wiki.example.com".into(),
                path: "/a/../b".into(),
                query: Some("x=1".into())
            }
        );
        assert_eq!(parse_url("http://h").unwrap().path, "/");
        assert_eq!(parse_url("http://[::1]:80/x").unwrap().host, "[::1]");
        assert_eq!(parse_url("http://A.B.Test./").unwrap().host, "a.b.test");
        for bad in [
            "wiki/page",
            "ftp://h/",
            "http:///x",
            "http://u@h/",
            "http://h:99999/",
            "http://h/a b",
            "http://wiki.test:80:80/",
            "http://wiki..test/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
