//! The `exemptions` and `risk` sections: where and when the second step is not asked.

use crate::config::file;
use crate::config::{Exemptions, RiskSettings};

use super::{Checker, Zero};

impl Checker<'_> {
    pub(super) fn exemptions(&mut self, e: file::ExemptionsFile) -> Exemptions {
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

    pub(super) fn weight(&mut self, key: &str, value: Option<u64>, default: u32) -> u32 {
        let n = self.number(&format!("risk.{key}"), value, u64::from(default), 0..=1000);
        u32::try_from(n).unwrap_or(default)
    }

    pub(super) fn risk(&mut self, r: file::RiskFile) -> RiskSettings {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use crate::config::OnPhoneLoss;
    use crate::config::testing::*;
    use std::time::Duration;

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
}
