//! Exemptions from the second step: trusted networks (checked at login) and the audit
//! record of every exemption used. Route exemptions are decided in `login::flow` and
//! `proxy`; API tokens live in `tokens`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::json;

use crate::app::App;
use crate::config::Exemptions;
use crate::login::flow::{Exemption, Plan, Why};

/// The trusted network the client address is in, if any. `ip` is the client address as
/// `proxy::upstream::client_ip` computed it (`X-Forwarded-For` only from trusted proxies).
pub fn trusted_network(cfg: &Exemptions, ip: IpAddr) -> Option<IpNet> {
    let ip = canonical(ip);
    cfg.networks.iter().find(|n| n.contains(&ip)).copied()
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub fn why_str(why: Why) -> &'static str {
    match why {
        Why::UserSetting => "user_setting",
        Why::RoutePolicy => "route_policy",
        Why::Risk => "risk",
    }
}

/// Records the exemption a login plan used, with its reason (`second_step_skipped`).
pub async fn record_login(
    app: &App,
    user: &str,
    ip: &str,
    plan: &Plan,
    network: Option<IpNet>,
    route: Option<&str>,
) {
    let Some(e) = plan.exemption else {
        return;
    };
    let mut detail = json!({"reason": e.as_str()});
    if let Some(why) = plan.second_step {
        detail["asked_by"] = json!(why_str(why));
    }
    match e {
        Exemption::TrustedNetwork => {
            if let Some(n) = network {
                detail["network"] = json!(n.to_string());
            }
        }
    }
    if let Some(r) = route {
        detail["route"] = json!(r);
    }
    app.audit
        .record("second_step_skipped", user, ip, detail)
        .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn networks_match_v4_v6_and_mapped() {
        let cfg = Exemptions {
            networks: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
        };
        assert!(trusted_network(&cfg, "10.1.2.3".parse().unwrap()).is_some());
        assert!(trusted_network(&cfg, "::ffff:10.1.2.3".parse().unwrap()).is_some());
        assert!(trusted_network(&cfg, "2001:db8::5".parse().unwrap()).is_some());
        assert!(trusted_network(&cfg, "11.0.0.1".parse().unwrap()).is_none());
        assert!(trusted_network(&Exemptions::default(), "10.0.0.1".parse().unwrap()).is_none());
    }
}
