//! A first end-to-end check: the demo's main path through the real binary.
use crate::common;

use common::*;

#[tokio::test]
async fn taro_logs_in_and_the_backend_sees_him() {
    let gw = Gateway::start();
    let api = Api::new(&gw);
    let r = api
        .http
        .get(gw.url("/app/x"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/_nidan/login?rd=%2Fapp%2Fx");
    api.login("taro").await;
    let echo: serde_json::Value = api
        .http
        .get(gw.url("/app/x"))
        .header("remote-user", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["remote-user"], "taro");
    assert!(echo["headers"].get("cookie").is_none(), "{echo}");
}
