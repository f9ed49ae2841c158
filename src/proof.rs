//! What a login proved, as plain values: the factors, the exemption that stood in for a
//! second step, and their stored forms. A leaf, so that the store can keep a session's
//! proof without importing the assurance rule (`assurance` re-exports these types).

use std::fmt;

use ipnet::IpNet;

/// How the user proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstFactor {
    Password,
    /// An API token (app password) stands in for the password.
    Token,
    /// WebAuthn with user verification.
    Passkey,
}

/// The second step the login did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    Sms,
    Email,
    App,
    TrustedDevice,
    /// A passkey with user verification counts as both steps.
    Passkey,
}

/// What stood in for a second step that was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exemption {
    /// The client was inside this trusted network; holds only while requests come from it.
    Network(IpNet),
    /// The route says `second_step: exempt` (HTTP Basic and tokens: decided per request).
    Route,
}

/// What a login (or a Basic/token request) proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof {
    pub first: FirstFactor,
    pub second: Option<SecondFactor>,
    pub exemption: Option<Exemption>,
    /// This user's login required the second step: 2-step on, or the risk score was over
    /// the threshold. Recorded so that a later request cannot forget the risk decision.
    pub required: bool,
}

// --- stored forms ---------------------------------------------------------------------

impl FirstFactor {
    pub fn as_str(self) -> &'static str {
        match self {
            FirstFactor::Password => "password",
            FirstFactor::Token => "token",
            FirstFactor::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "password" => FirstFactor::Password,
            "token" => FirstFactor::Token,
            "passkey" => FirstFactor::Passkey,
            _ => return None,
        })
    }
}

impl SecondFactor {
    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactor::Sms => "sms",
            SecondFactor::Email => "email",
            SecondFactor::App => "app",
            SecondFactor::TrustedDevice => "trusted_device",
            SecondFactor::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sms" => SecondFactor::Sms,
            "email" => SecondFactor::Email,
            "app" => SecondFactor::App,
            "trusted_device" => SecondFactor::TrustedDevice,
            "passkey" => SecondFactor::Passkey,
            _ => return None,
        })
    }
}

impl fmt::Display for Exemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exemption::Network(n) => write!(f, "network:{n}"),
            Exemption::Route => f.write_str("route"),
        }
    }
}

impl Exemption {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "route" => Some(Exemption::Route),
            _ => s
                .strip_prefix("network:")
                .and_then(|n| n.parse().ok())
                .map(Exemption::Network),
        }
    }
}
