//! Upgraded connections (WebSocket) held to the credential that opened them (SECURITY 46).
//!
//! A tunnel is decided once, when it is opened, like any request; after that no request
//! passes through it for the gateway to decide on. So every open tunnel is decided again
//! every [`EVERY`] with what opened it (the session cookie, or the Basic / token
//! credentials) on the route it was opened on: logout, a revocation on any replica (the
//! session caches follow the bus), a disabled account, a password change, the absolute
//! timeout, or a route that no longer admits the user end the tunnel within a second. A
//! tunnel where nothing moved since the last look does not count as the session's activity,
//! so an idle session still idles out.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::conn::Shared;

/// How often open tunnels are decided again.
pub const EVERY: Duration = Duration::from_millis(250);

/// What a look at an open tunnel found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// What opened it still opens the route.
    Open,
    /// It no longer does: the tunnel ends now.
    Closed,
    /// Nobody could say (a store error, a throttled re-check): the tunnel ends once that has
    /// lasted [`DOUBT`], so a revocation is never honoured later than that.
    Unknown,
}

/// How long a tunnel stays open while its credential cannot be checked.
pub const DOUBT: Duration = Duration::from_secs(1);

/// What opened a tunnel, to decide it again (on the route table in force then).
pub struct Opened {
    /// The request's credentials only: its `Cookie` and `Authorization` lines.
    pub headers: http::HeaderMap,
    /// The host and canonical path the tunnel was decided on.
    pub host: String,
    pub path: String,
    pub client: IpAddr,
    pub https: bool,
    /// Since when its checks could not answer.
    doubt: Mutex<Option<std::time::Instant>>,
}

impl Opened {
    /// The credentials of a request's headers, and where it was decided.
    pub fn new(
        headers: &http::HeaderMap,
        host: &str,
        path: &str,
        client: IpAddr,
        https: bool,
    ) -> Self {
        let mut kept = http::HeaderMap::new();
        for name in [http::header::COOKIE, http::header::AUTHORIZATION] {
            for value in headers.get_all(&name) {
                kept.append(name.clone(), value.clone());
            }
        }
        Self {
            headers: kept,
            host: host.to_owned(),
            path: path.to_owned(),
            client,
            https,
            doubt: Mutex::new(None),
        }
    }
}

struct Tunnel {
    conn: Weak<Shared>,
    opened: Arc<Opened>,
    /// Bytes moved when last looked at.
    moved: u64,
}

/// The open tunnels of this process.
#[derive(Default)]
pub struct Tunnels {
    open: Mutex<Vec<Tunnel>>,
}

impl Tunnels {
    /// Holds the tunnel on `conn` to what opened it, from now on.
    pub fn add(&self, conn: &Arc<Shared>, opened: Opened) {
        conn.watch();
        if let Ok(mut open) = self.open.lock() {
            open.push(Tunnel {
                conn: Arc::downgrade(conn),
                opened: Arc::new(opened),
                moved: conn.moved(),
            });
        }
    }

    /// The tunnels still open, with whether anything moved since the last look; closed
    /// ones are forgotten.
    fn due(&self) -> Vec<(Arc<Shared>, bool, Arc<Opened>)> {
        let Ok(mut open) = self.open.lock() else {
            return Vec::new();
        };
        open.retain(|t| t.conn.upgrade().is_some_and(|c| !c.is_killed()));
        open.iter_mut()
            .filter_map(|t| {
                let conn = t.conn.upgrade()?;
                let moved = conn.moved();
                let active = moved != t.moved;
                t.moved = moved;
                Some((conn, active, t.opened.clone()))
            })
            .collect()
    }

    /// Decides every open tunnel again, every [`EVERY`], until the process ends.
    pub fn spawn(self: &Arc<Self>, gateway: Arc<super::Gateway>) {
        let tunnels = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                tunnels.look(&gateway).await;
            }
        });
    }

    async fn look(&self, gateway: &super::Gateway) {
        // The lock is not held across the decisions.
        for (conn, active, opened) in self.due() {
            let verdict = gateway.still_open(&opened, active).await;
            let Ok(mut doubt) = opened.doubt.lock() else {
                conn.kill();
                continue;
            };
            let end = match verdict {
                Verdict::Open => {
                    *doubt = None;
                    false
                }
                Verdict::Closed => true,
                Verdict::Unknown => {
                    doubt.get_or_insert_with(std::time::Instant::now).elapsed() >= DOUBT
                }
            };
            if end {
                crate::metrics::connection_refused("session_ended");
                tracing::info!(
                    ?verdict,
                    "an upgraded connection ended: its credential no longer opens the route"
                );
                conn.kill();
            }
        }
    }
}
