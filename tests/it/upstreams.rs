//! Healthy upstreams, one request id and the status page, through the real binary (issue
//! 25 items 3, 4 and 6): a peer that dies is taken out by the active checks (and at once by
//! the passive one, with the request retried on another peer), a route whose peers are all
//! down answers 502 naming the request id, and one id follows a request from the client to
//! the backend, the access line, the audit row and the error page.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::time::{Duration, Instant};

use crate::common::{
    self, Backend, Gateway, admin_get, audit, client, free_port, route_health, yaml,
};
use base64::Engine;
use serde_json::Value;

const HTML: &str = "text/html,application/xhtml+xml";

/// A gateway whose first route is `route` (YAML), with the admin listener on.
fn gateway_with(route: &str, extra: &[(&str, &str)]) -> Gateway {
    let mut b = Gateway::builder().set("server.admin_listen", "\"127.0.0.1:1\"");
    for (k, v) in extra {
        b = b.set(k, v);
    }
    b.doc()
        .get_mut("routes")
        .unwrap()
        .as_sequence_mut()
        .unwrap()
        .insert(0, yaml(route));
    b.start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_is_taken_out_by_the_health_checks_and_no_request_fails() {
    let a = Backend::start();
    let b = Backend::start();
    let b_sock = b.addr;
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    let gw = gateway_with(
        &format!(
            "{{ name: pool, path_prefix: /pool, upstream: [\"{a_addr}\", \"{b_addr}\"], policy: bypass, \
             health_check: {{ path: /healthz, interval: 400ms, timeout: 350ms, healthy: 1, unhealthy: 1 }} }}"
        ),
        &[],
    );
    let http = client();
    for _ in 0..10 {
        let r = http.get(gw.url("/pool/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(route_health(&gw, "pool").await.iter().all(|(_, up)| *up));

    drop(b); // killed
    // The checks notice within an interval or two.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = route_health(&gw, "pool").await;
        if health.contains(&(b_addr.clone(), false)) {
            assert!(health.contains(&(a_addr.clone(), true)), "{health:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never taken out: {health:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Counted: every request succeeds, on the peer that is left.
    let mut failed = 0;
    for _ in 0..200 {
        let r = http.get(gw.url("/pool/x")).send().await.unwrap();
        if r.status() != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 0);
    let (_, metrics) = admin_get(&gw, "/metrics").await;
    let down = format!("nidan_upstream_up{{route=\"pool\",upstream=\"{b_addr}\"}} 0");
    let up = format!("nidan_upstream_up{{route=\"pool\",upstream=\"{a_addr}\"}} 1");
    assert!(
        metrics.contains(&down) && metrics.contains(&up),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "nidan_upstream_requests_total{{route=\"pool\",upstream=\"{a_addr}\"}}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("nidan_upstream_duration_seconds_bucket{route=\"pool\""));
    assert!(gw.log().contains("upstream failed its health checks"));

    // Back again: the peer takes requests after a good check.
    let b = Backend::start_on(b_sock);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !route_health(&gw, "pool")
        .await
        .contains(&(b_addr.clone(), true))
    {
        assert!(Instant::now() < deadline, "never back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_leaves_the_peer_out_and_the_request_goes_to_another() {
    let a = Backend::start();
    let closed = format!("127.0.0.1:{}", free_port());
    let gw = gateway_with(
        &format!(
            "{{ name: pool, path_prefix: /pool, upstream: [\"{closed}\", \"{}\"], policy: bypass, fail_timeout: 30s, connect_timeout: 1s }}",
            a.addr
        ),
        &[],
    );
    let http = client();
    // No active checks: the first request to the dead peer is retried on the other one.
    for _ in 0..20 {
        let r = http.get(gw.url("/pool/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let health = route_health(&gw, "pool").await;
    assert!(health.contains(&(closed.clone(), false)), "{health:?}");
    // Logged in the request's span: the line names the request.
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("upstream refused a connection: left out"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("request{id="), "{line}");

    // A reload builds the peers again, and keeps what was known of them.
    let (_, before) = admin_get(&gw, "/status").await;
    let before: Value = serde_json::from_str(&before).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(&gw.config, format!("{text}\n# edited\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, now) = admin_get(&gw, "/status").await;
        let now: Value = serde_json::from_str(&now).unwrap();
        if now["config"]["hash"] != before["config"]["hash"] {
            assert!(now["config"]["loaded_at"].as_i64() >= before["config"]["loaded_at"].as_i64());
            break;
        }
        assert!(Instant::now() < deadline, "not reloaded: {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let health = route_health(&gw, "pool").await;
    assert!(health.contains(&(closed.clone(), false)), "{health:?}");
    for _ in 0..10 {
        let r = http.get(gw.url("/pool/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_peers_are_all_down_answers_502_naming_the_request_and_others_work() {
    let closed = format!("127.0.0.1:{}", free_port());
    let gw = gateway_with(
        &format!("{{ name: down, path_prefix: /down, upstream: [\"{closed}\"], policy: bypass }}"),
        &[],
    );
    let http = client();
    for _ in 0..2 {
        // HTML for a browser, naming the reference.
        let r = http
            .get(gw.url("/down/x"))
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let page = r.text().await.unwrap();
        assert!(page.contains("Reference") && page.contains(&id), "{page}");
        // JSON for an API client.
        let r = http.get(gw.url("/down/x")).send().await.unwrap();
        assert_eq!(r.status(), 502);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "bad_gateway");
        assert_eq!(body["reference"], id.as_str());
        // The gateway keeps serving the other routes.
        let r = http.get(gw.url("/public/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let (code, status) = admin_get(&gw, "/status").await;
    assert_eq!(code, 200, "{status}");
    let v: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["routes"][0]["up"], false, "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["store"]["status"], "ok");
    assert_eq!(v["replica"]["role"], "single");
    assert_eq!(v["listeners"]["http"][0], gw.addr.to_string());
    assert_eq!(v["config"]["hash"].as_str().unwrap().len(), 64);

    // The same from the command line.
    let out = std::process::Command::new(common::bin())
        .args(["status", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["routes"], v["routes"]);
    // Without an admin listener there is nothing to ask: said, exit 2.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc["server"]
        .as_mapping_mut()
        .unwrap()
        .remove("admin_listen");
    let bare = gw.path("bare.yaml");
    std::fs::write(&bare, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["status", "--config"])
        .arg(&bare)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.admin_listen"));
}

/// Reads the access log until a line names `id` (the writer flushes within 100 ms).
async fn access_line(gw: &Gateway, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = gw
            .log()
            .lines()
            .find(|l| l.contains("access:") && l.contains(&format!("request_id={id} ")))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no access line for {id}:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_goes_to_the_backend_the_access_line_and_the_audit_row() {
    let gw = Gateway::start();
    let basic = base64::engine::general_purpose::STANDARD.encode("taro:test-password-1");
    let r = client()
        .get(gw.url("/basic/x"))
        .header("authorization", format!("Basic {basic}"))
        // A client's own id is never forwarded, nor believed.
        .header("x-request-id", "client-chosen")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"], id.as_str(), "{echo}");
    assert_ne!(id, "client-chosen");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");

    let line = access_line(&gw, &id).await;
    assert!(
        line.contains("path=\"/basic/x\"") && line.contains("user=\"taro\""),
        "{line}"
    );
    let rows = audit::audit(&gw.path("nidan.db"), "taro").await;
    let row = rows
        .iter()
        .find(|(e, _)| e == "basic_auth_succeeded")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(row.1["request_id"], id.as_str(), "{rows:?}");

    // The portal's answers and its audit rows carry the id too.
    let r = client()
        .post(gw.url("/_nidan/api/login"))
        .json(&serde_json::json!({"id": "taro"}))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let line = access_line(&gw, &id).await;
    assert!(line.contains("/_nidan/api/login"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_trusted_proxy_may_name_the_request_and_only_with_a_plain_id() {
    let gw = Gateway::builder()
        .set("trusted_proxies", "[\"127.0.0.1/32\"]")
        .start();
    let proxy = client();
    let sent = |http: reqwest::Client, id: &'static str| {
        let url = gw.url("/public/x");
        async move {
            let r = http
                .get(url)
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            let answered = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            let echo: Value = r.json().await.unwrap();
            let backend = echo["headers"]["x-request-id"].as_str().unwrap().to_owned();
            assert_eq!(answered, backend);
            backend
        }
    };
    let uuid = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
    assert_eq!(sent(proxy.clone(), uuid).await, uuid);
    for bad in ["a b", "<script>", "x\u{1}", ""] {
        let Ok(_) = http::HeaderValue::from_str(bad) else {
            continue;
        };
        let got = sent(proxy.clone(), Box::leak(bad.to_owned().into_boxed_str())).await;
        assert_ne!(got, bad);
        assert_eq!(got.len(), 32);
    }
    let long: &'static str = Box::leak("a".repeat(65).into_boxed_str());
    assert_ne!(sent(proxy.clone(), long).await, long);
    // A client that is not a trusted proxy cannot choose its id, however plain.
    let stranger = common::audit::client_from("127.0.0.2", &common::audit::jar(), "curl/8");
    let got = sent(stranger, uuid).await;
    assert_ne!(got, uuid);
    let _ = access_line(&gw, &got).await;
}

/// Steady concurrent load (keep-alive and new connections) while one peer is killed: once
/// the checks have noticed, not one request fails (counted, not sampled). Before, only the
/// requests the killed process was answering at that instant may fail (a refused
/// connection is retried on the other peer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_killed_peer_costs_no_request() {
    let a = Backend::start();
    let b = Backend::start();
    let b_addr = b.addr.to_string();
    let gw = gateway_with(
        &format!(
            "{{ name: pool, path_prefix: /pool, upstream: [\"{}\", \"{b_addr}\"], policy: bypass, \
             health_check: {{ path: /, interval: 400ms, timeout: 350ms, healthy: 1, unhealthy: 1 }} }}",
            a.addr
        ),
        &[],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Set once the checks have taken the killed peer out: only then is a failure counted.
    let noticed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (stop, noticed, url) = (stop.clone(), noticed.clone(), gw.url("/pool/x"));
        workers.push(tokio::spawn(async move {
            // Half keep their connections, half open a new one for each request.
            let http = if w % 2 == 0 {
                client()
            } else {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap()
            };
            let (mut ok, mut failed, mut before) = (0u32, Vec::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let counted = noticed.load(std::sync::atomic::Ordering::SeqCst);
                let status = match http.get(&url).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                match (status, counted) {
                    (200, true) => ok += 1,
                    (200, false) => {}
                    (s, true) => failed.push(s),
                    (_, false) => before += 1,
                }
            }
            (ok, failed, before)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !route_health(&gw, "pool")
        .await
        .contains(&(b_addr.clone(), false))
    {
        assert!(Instant::now() < deadline, "never taken out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    noticed.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed, mut before) = (0, Vec::new(), 0);
    for w in workers {
        let (o, f, b) = w.await.unwrap();
        ok += o;
        failed.extend(f);
        before += b;
    }
    eprintln!("after the checks noticed: {ok} ok; before: {before} failed");
    assert!(ok > 100, "only {ok} requests");
    assert!(
        failed.is_empty(),
        "{} of {ok} failed: {failed:?}",
        failed.len()
    );
}
