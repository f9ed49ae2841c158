//! Who is logging in, and what a finished login hands back: plain values the login's
//! parts share (a leaf, so they need not import the login itself).

use std::net::IpAddr;

use crate::config::Language;

/// Who is logging in, as far as the gateway can tell.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: IpAddr,
    pub user_agent: String,
    /// The trusted-device cookie, if the browser sent one.
    pub device_cookie: Option<String>,
    /// The risk engine's `nidan_seen` cookie, if the browser sent one.
    pub seen_cookie: Option<String>,
    /// The session cookie, if the browser sent one: a login for the session's own user is a
    /// step-up, which asks only for the second step the session lacks.
    pub session_cookie: Option<String>,
    pub lang: Language,
}

pub struct Completed {
    pub user_id: String,
    pub session_token: String,
    pub device_token: Option<String>,
    /// The `nidan_seen` cookie value to (re)set: lets the risk engine know this browser.
    pub seen_token: String,
    pub redirect: String,
}
