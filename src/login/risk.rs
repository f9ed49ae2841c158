//! Risk-based step-up for users without 2-step: a pure score from signals the gateway
//! knows (unknown browser, new network prefix, recent failures, new user-agent family,
//! watch list), the signals' data from the store, and what a successful login teaches.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::RiskSettings;
use crate::session::device::browser_summary;

/// Base name of the long-lived cookie that lets the risk engine recognise a browser.
pub const SEEN_COOKIE: &str = "nidan_seen";
/// The `nidan_seen` cookie lives 400 days (the longest browsers keep a cookie).
pub const SEEN_MAX_AGE: i64 = 400 * 86_400;

/// What the gateway knows about a login, before scoring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signals {
    /// Nothing is remembered for this user yet (their first login).
    pub first_login: bool,
    pub new_browser: bool,
    pub new_network: bool,
    /// Failed logins on the account within the window.
    pub failures_account: i64,
    /// Failed logins from the address within the window.
    pub failures_address: i64,
    pub new_user_agent: bool,
    /// The watch-list network the address is in.
    pub watchlisted: Option<IpNet>,
}

/// A scored login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub score: u32,
    /// Each signal that counted, with its weight, in a fixed order.
    pub reasons: Vec<(&'static str, u32)>,
    pub step_up: bool,
    /// The familiarity signals were not scored: the first login only learns.
    pub learning: bool,
}

/// The score: the sum of the weights of the signals present. Pure.
pub fn score(s: &Signals, cfg: &RiskSettings) -> Assessment {
    let learning = s.first_login && !cfg.score_first_login;
    let mut reasons = Vec::new();
    let familiar = !learning;
    if familiar && s.new_browser {
        reasons.push(("new_browser", cfg.new_browser));
    }
    if familiar && s.new_network {
        reasons.push(("new_network", cfg.new_network));
    }
    if s.failures_account > 0 || s.failures_address > 0 {
        reasons.push(("recent_failures", cfg.recent_failures));
    }
    if familiar && s.new_user_agent {
        reasons.push(("new_user_agent", cfg.new_user_agent));
    }
    if s.watchlisted.is_some() {
        reasons.push(("watchlist", cfg.watchlist));
    }
    let score = reasons
        .iter()
        .map(|(_, w)| *w)
        .fold(0u32, u32::saturating_add);
    Assessment {
        score,
        reasons,
        step_up: score >= cfg.threshold,
        learning,
    }
}

/// The network a login came from, as remembered: `/24` for IPv4, `/48` for IPv6.
pub fn network_prefix(ip: IpAddr) -> String {
    let ip = crate::net::canonical(ip);
    let len = if ip.is_ipv4() { 24 } else { 48 };
    IpNet::new(ip, len).map_or_else(|_| ip.to_string(), |n| n.trunc().to_string())
}

/// The user-agent family remembered for a user (browser and OS, e.g. `Firefox on Linux`).
pub fn agent_family(user_agent: &str) -> String {
    browser_summary(user_agent)
}

/// A `nidan_seen` cookie value the gateway could have issued (43 URL-safe characters).
pub fn seen_cookie_ok(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The watch-list network `ip` is in.
pub fn watchlisted(cfg: &RiskSettings, ip: IpAddr) -> Option<IpNet> {
    let ip = crate::net::canonical(ip);
    cfg.watch_networks.iter().find(|n| n.contains(&ip)).copied()
}

/// Does the risk engine score this login? For every portal login of a user without 2-step,
/// whatever the return address, host or route (SECURITY 35): the session records the result
/// and every route then holds the login to it.
pub fn applies(cfg: &RiskSettings, enabled: bool) -> bool {
    cfg.enabled && !enabled
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all() -> Signals {
        Signals {
            first_login: false,
            new_browser: true,
            new_network: true,
            failures_account: 1,
            failures_address: 0,
            new_user_agent: true,
            watchlisted: Some("192.0.2.0/24".parse().unwrap()),
        }
    }

    #[test]
    fn each_signal_adds_its_weight() {
        let cfg = RiskSettings::default();
        assert_eq!(score(&Signals::default(), &cfg).score, 0);
        let a = score(&all(), &cfg);
        assert_eq!(a.score, 20 + 30 + 20 + 10 + 60);
        let names: Vec<&str> = a.reasons.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            vec![
                "new_browser",
                "new_network",
                "recent_failures",
                "new_user_agent",
                "watchlist"
            ]
        );
        for (field, weight) in [("b", 20), ("n", 30), ("f", 20), ("u", 10), ("w", 60)] {
            let mut s = Signals::default();
            match field {
                "b" => s.new_browser = true,
                "n" => s.new_network = true,
                "f" => s.failures_address = 3,
                "u" => s.new_user_agent = true,
                _ => s.watchlisted = Some("10.0.0.0/8".parse().unwrap()),
            }
            assert_eq!(score(&s, &cfg).score, weight, "{field}");
        }
    }

    #[test]
    fn the_default_threshold_needs_new_browser_and_new_network_together() {
        let cfg = RiskSettings::default();
        let s = Signals {
            new_browser: true,
            new_user_agent: true,
            ..Signals::default()
        };
        assert!(!score(&s, &cfg).step_up);
        let s = Signals {
            new_browser: true,
            new_network: true,
            ..Signals::default()
        };
        assert!(score(&s, &cfg).step_up);
        let s = Signals {
            watchlisted: Some("10.0.0.0/8".parse().unwrap()),
            ..Signals::default()
        };
        assert!(score(&s, &cfg).step_up);
    }

    #[test]
    fn a_first_login_learns_unless_configured() {
        let mut cfg = RiskSettings::default();
        let s = Signals {
            first_login: true,
            new_browser: true,
            new_network: true,
            new_user_agent: true,
            ..Signals::default()
        };
        let a = score(&s, &cfg);
        assert!(a.learning && !a.step_up && a.score == 0);
        cfg.score_first_login = true;
        assert!(score(&s, &cfg).step_up);
        // The watch list and failures count on a first login too.
        cfg.score_first_login = false;
        let s = Signals {
            first_login: true,
            watchlisted: Some("10.0.0.0/8".parse().unwrap()),
            ..Signals::default()
        };
        assert!(score(&s, &cfg).step_up);
    }

    #[test]
    fn prefixes_and_cookies() {
        assert_eq!(
            network_prefix("192.0.2.77".parse().unwrap()),
            "192.0.2.0/24"
        );
        assert_eq!(
            network_prefix("::ffff:192.0.2.77".parse().unwrap()),
            "192.0.2.0/24"
        );
        assert_eq!(
            network_prefix("2001:db8:1:2::5".parse().unwrap()),
            "2001:db8:1::/48"
        );
        assert!(seen_cookie_ok(&crate::secret::random_token(32)));
        assert!(!seen_cookie_ok("short"));
        assert!(!seen_cookie_ok(&"a;".repeat(22)[..43]));
        // Scored for every login of a user without 2-step, whatever the route.
        assert!(applies(&RiskSettings::default(), false));
        assert!(!applies(&RiskSettings::default(), true));
    }
}
