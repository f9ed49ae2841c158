//! Configuration reload: a valid edit of the file changes the routes without a restart; an
//! invalid edit is reported and the running configuration stays (SECURITY 31).
#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common;

use std::time::{Duration, Instant};

use common::*;

async fn status_until(gw: &Gateway, path: &str, want: u16) -> u16 {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = http
            .get(gw.url(path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if s == want || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn valid_edits_apply_and_invalid_ones_keep_the_running_config() {
    let gw = Gateway::start();
    assert_eq!(status_until(&gw, "/public/x", 200).await, 200);

    // A valid edit: the public route is closed.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let closed = text.replacen("policy: bypass", "policy: deny", 1);
    assert_ne!(closed, text);
    std::fs::write(&gw.config, &closed).unwrap();
    assert_eq!(status_until(&gw, "/public/x", 403).await, 403);

    // An invalid edit (unknown key): reported, and the running routes stay.
    std::fs::write(&gw.config, format!("{closed}\nnot_a_key: 1\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("configuration not reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.log().contains("not_a_key"),
        "the error names the key:\n{}",
        gw.log()
    );
    assert_eq!(
        client()
            .get(gw.url("/public/x"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        client().get(gw.url("/app")).send().await.unwrap().status(),
        401
    );
}
