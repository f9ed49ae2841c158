//! The `security_code`, `login_limits` and `app_approval` sections.

use std::time::Duration;

use crate::config::file;
use crate::config::{AppApproval, ApprovalOrder, LoginLimits, SecurityCode};

use super::{Checker, Zero};

impl Checker<'_> {
    pub(super) fn security_code(&mut self, s: file::SecurityCodeFile) -> SecurityCode {
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

    pub(super) fn login_limits(&mut self, l: file::LoginLimitsFile) -> LoginLimits {
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
    pub(super) fn reserve(
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

    pub(super) fn app_approval(&mut self, a: file::AppApprovalFile) -> AppApproval {
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
}
