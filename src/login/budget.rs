//! Who may spend which budget (SECURITY 9, 40): per-network keys for per-address limits,
//! whether a browser is known to an account, the send budgets (per network, per account and
//! overall, each with a share only browsers known to their account may spend; decoys have
//! their own per-ID window and never touch an account's or the overall budget), and the
//! per-network limits on anonymous work (ID steps, passkey login starts).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{LoginLimits, SecurityCode};
use crate::state::{Ephemeral, Hit, StateError, WindowRule};

/// Whether the browser asking is one the account knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Browser {
    /// A valid trusted-device cookie of this user, or a `nidan_seen` cookie remembered for
    /// this user at an earlier login: only the owner's own browsers hold one.
    Known,
    /// Anyone else, including the owner on a new browser.
    Stranger,
}

pub use crate::net::network_key;

/// A budget's answer: allowed, the seconds to wait, or the count could not be read
/// (callers answer 503: never "allowed").
pub type Spent = Result<Result<(), u64>, StateError>;

/// The send and anonymous-work budgets, counted in the short-lived state (shared by all
/// replicas in the replica mode).
pub struct Budgets {
    state: Arc<dyn Ephemeral>,
    v4: u8,
    v6: u8,
    /// Sends per network (every send, decoys included: the client's own budget).
    per_address: WindowRule,
    /// Sends per account, every browser together (`max_sends_per_account`).
    account: WindowRule,
    /// Sends per account from strangers (`max_sends_per_account - reserve`).
    account_strangers: WindowRule,
    /// Decoy sends per unknown ID, counted like `account_strangers` (nobody owns it).
    decoy: WindowRule,
    /// Sends overall per hour, and the part strangers may use.
    global: WindowRule,
    global_strangers: WindowRule,
    id_steps: WindowRule,
    passkey_starts: WindowRule,
}

impl Budgets {
    pub fn new(state: Arc<dyn Ephemeral>, code: &SecurityCode, limits: &LoginLimits) -> Self {
        let hour = Duration::from_secs(3_600);
        let strangers = code
            .max_sends_per_account
            .saturating_sub(code.reserve_for_known_browsers);
        Self {
            state,
            v4: limits.ipv4_prefix,
            v6: limits.ipv6_prefix,
            per_address: WindowRule::new("send_net", code.max_sends_per_ip, code.send_window),
            account: WindowRule::new("send_acct", code.max_sends_per_account, code.send_window),
            account_strangers: WindowRule::new("send_acct_s", strangers, code.send_window),
            decoy: WindowRule::new("send_decoy", strangers, code.send_window),
            global: WindowRule::new("send_all", code.max_sends_global_per_hour, hour),
            global_strangers: WindowRule::new(
                "send_all_s",
                code.max_sends_global_per_hour
                    .saturating_sub(code.global_reserve_for_known_browsers),
                hour,
            ),
            id_steps: WindowRule::new(
                "id_step",
                limits.id_steps_per_address,
                limits.address_window,
            ),
            passkey_starts: WindowRule::new(
                "passkey_start",
                limits.passkey_starts_per_address,
                limits.address_window,
            ),
        }
    }

    pub fn key(&self, ip: IpAddr) -> String {
        network_key(ip, self.v4, self.v6)
    }

    /// One code to a real account. The network's budget is spent first and kept even when
    /// a later budget refuses (it is the client's own); the account's and the overall
    /// budgets are spent together or not at all.
    pub async fn send(&self, ip: IpAddr, user: &str, browser: Browser, now: i64) -> Spent {
        let net = self.key(ip);
        if let Err(wait) = self
            .state
            .window_hit(&[Hit::count(&self.per_address, &net)], now)
            .await?
        {
            return Ok(Err(wait));
        }
        let hits = match browser {
            Browser::Known => vec![
                Hit::count(&self.account, user),
                Hit::count(&self.global, "all"),
            ],
            Browser::Stranger => vec![
                Hit::count(&self.account_strangers, user),
                Hit::count(&self.account, user),
                Hit::count(&self.global_strangers, "all"),
                Hit::count(&self.global, "all"),
            ],
        };
        self.state.window_hit(&hits, now).await
    }

    /// A decoy "send" for an unknown ID: the network's budget and the ID's own window, like
    /// a stranger's send to a real account; the overall budget is only looked at (so the
    /// answer matches a real account's while it is spent), never spent.
    pub async fn send_decoy(&self, ip: IpAddr, id: &str, now: i64) -> Spent {
        let net = self.key(ip);
        if let Err(wait) = self
            .state
            .window_hit(&[Hit::count(&self.per_address, &net)], now)
            .await?
        {
            return Ok(Err(wait));
        }
        self.state
            .window_hit(
                &[
                    Hit::count(&self.decoy, id),
                    Hit::look(&self.global_strangers, "all"),
                ],
                now,
            )
            .await
    }

    /// One ID step (a new login flow) from `ip`.
    pub async fn id_step(&self, ip: IpAddr, now: i64) -> Spent {
        let net = self.key(ip);
        self.state
            .window_hit(&[Hit::count(&self.id_steps, &net)], now)
            .await
    }

    /// One passkey login start (a new challenge) from `ip`.
    pub async fn passkey_start(&self, ip: IpAddr, now: i64) -> Spent {
        let net = self.key(ip);
        self.state
            .window_hit(&[Hit::count(&self.passkey_starts, &net)], now)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn network_keys() {
        let k = |s: &str| network_key(s.parse().unwrap(), 32, 64);
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(k("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(k("2001:db8:1:2::9"), k("2001:db8:1:2:ffff::1"));
        assert_ne!(k("2001:db8:1:2::9"), k("2001:db8:1:3::9"));
        assert_eq!(
            network_key("192.0.2.7".parse().unwrap(), 24, 64),
            "192.0.2.0/24"
        );
    }

    fn budgets() -> Budgets {
        let code = SecurityCode {
            length: 6,
            lifetime: Duration::from_secs(300),
            max_attempts: 5,
            resend_cooldown: Duration::from_secs(30),
            max_sends_per_account: 5,
            send_window: Duration::from_secs(900),
            max_sends_per_ip: 100,
            max_sends_global_per_hour: 10,
            reserve_for_known_browsers: 2,
            global_reserve_for_known_browsers: 4,
        };
        let limits = LoginLimits {
            max_failures_per_account: 100,
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(900),
            max_concurrent_hashes: 1,
            reserve_for_known_browsers: 20,
            id_steps_per_address: 60,
            passkey_starts_per_address: 60,
            address_window: Duration::from_secs(60),
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        };
        Budgets::new(
            Arc::new(crate::state::memory::MemoryState::new()),
            &code,
            &limits,
        )
    }

    #[tokio::test]
    async fn strangers_leave_the_reserve_to_known_browsers() {
        let b = budgets();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            b.send(ip, "u", Browser::Stranger, 0)
                .await
                .unwrap()
                .unwrap();
        }
        assert!(
            b.send(ip, "u", Browser::Stranger, 0)
                .await
                .unwrap()
                .is_err()
        );
        b.send(ip, "u", Browser::Known, 0).await.unwrap().unwrap();
        b.send(ip, "u", Browser::Known, 0).await.unwrap().unwrap();
        assert!(
            b.send(ip, "u", Browser::Known, 0).await.unwrap().is_err(),
            "5 in all"
        );
    }

    #[tokio::test]
    async fn decoys_spend_nothing_shared() {
        let b = budgets();
        for i in 0..50 {
            let ip: IpAddr = format!("192.0.2.{i}").parse().unwrap();
            for _ in 0..3 {
                b.send_decoy(ip, &format!("nobody{i}"), 0)
                    .await
                    .unwrap()
                    .unwrap();
            }
            assert!(
                b.send_decoy(ip, &format!("nobody{i}"), 0)
                    .await
                    .unwrap()
                    .is_err()
            );
        }
        // Strangers may still use 10 - 4 = 6 overall sends, known browsers all 10.
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        for i in 0..6 {
            b.send(ip, &format!("u{i}"), Browser::Stranger, 0)
                .await
                .unwrap()
                .unwrap();
        }
        assert!(
            b.send(ip, "u9", Browser::Stranger, 0)
                .await
                .unwrap()
                .is_err()
        );
        // Once strangers used their part, decoys answer the same way.
        assert!(b.send_decoy(ip, "nobody-new", 0).await.unwrap().is_err());
        for i in 0..4 {
            b.send(ip, &format!("k{i}"), Browser::Known, 0)
                .await
                .unwrap()
                .unwrap();
        }
        assert!(b.send(ip, "k9", Browser::Known, 0).await.unwrap().is_err());
    }
}
