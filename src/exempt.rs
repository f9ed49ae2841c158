//! Exemptions from the second step: trusted networks (checked at login). The audit record
//! of every exemption used is the login's (`login::record_exemption`). Route exemptions are
//! decided in `login::flow` and `proxy`; API tokens live in `tokens`.

use std::net::IpAddr;

use crate::config::Exemptions;
use ipnet::IpNet;

/// The trusted network the client address is in, if any. `ip` is the client address as
/// `proxy::upstream::client_ip` computed it (`X-Forwarded-For` only from trusted proxies).
pub fn trusted_network(cfg: &Exemptions, ip: IpAddr) -> Option<IpNet> {
    let ip = canonical(ip);
    cfg.networks.iter().find(|n| n.contains(&ip)).copied()
}

pub use crate::net::canonical;

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
