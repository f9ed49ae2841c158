//! Helpers for the exemption, risk and phone tests: reading the audit trail from the
//! gateway's database (read-only), and clients bound to other loopback addresses.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Every audit record of `user` (newest first) as `(event, detail)`.
pub async fn audit(db: &std::path::Path, user: &str) -> Vec<(String, Value)> {
    let store = nidan::store::Store::open_read_only(db).await.unwrap();
    store
        .audit_trail(Some(user), 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.event, serde_json::from_str(&r.detail).unwrap()))
        .collect()
}

/// The newest audit record of `event` for `user`.
pub async fn last(db: &std::path::Path, user: &str, event: &str) -> Option<Value> {
    audit(db, user)
        .await
        .into_iter()
        .find(|(e, _)| e == event)
        .map(|(_, d)| d)
}

/// A browser-like client whose connections come from `ip` (any 127.x.y.z works on Linux
/// loopback), sharing `jar`, with `user_agent`.
pub fn client_from(ip: &str, jar: &Arc<reqwest::cookie::Jar>, user_agent: &str) -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .local_address(ip.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(user_agent)
        .build()
        .unwrap()
}

pub fn jar() -> Arc<reqwest::cookie::Jar> {
    Arc::new(reqwest::cookie::Jar::default())
}

pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
pub const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
