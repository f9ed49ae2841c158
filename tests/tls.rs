//! The TLS listener: the gateway serves HTTPS with the configured certificate, and cookies
//! set over TLS carry `Secure` and the `__Host-` prefix, with HSTS on portal pages
//! (SECURITY 19, 23).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;

#[tokio::test]
async fn cookies_over_tls_are_host_prefixed_and_secure() {
    let tls_port = free_port();
    let certs = repo().join("config/test/tls");
    let gw = Gateway::builder()
        .set(
            "server.tls",
            &format!(
                "{{ listen: [\"127.0.0.1:{tls_port}\"], cert: \"{}\", key: \"{}\" }}",
                certs.join("cert.pem").display(),
                certs.join("key.pem").display()
            ),
        )
        .start();
    // The plain listener answers first; wait for the TLS one too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "TLS listener never came up:\n{}",
            gw.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    pingora::tls::install_default_crypto_provider();
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{tls_port}");

    let page = http
        .get(format!("{base}/_nidan/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    let csrf = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(csrf.starts_with("__Host-nidan_csrf="), "{csrf}");
    assert!(
        csrf.contains("Secure") && csrf.contains("HttpOnly") && csrf.contains("Path=/"),
        "{csrf}"
    );

    let r = http
        .post(format!("{base}/_nidan/api/login"))
        .json(&serde_json::json!({"id": "taro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let flow = v["flow"].as_str().unwrap();
    let r = http
        .post(format!("{base}/_nidan/api/login/{flow}/complete"))
        .json(&serde_json::json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(session.starts_with("__Host-nidan_session="), "{session}");
    assert!(
        session.contains("Secure") && !session.contains("Max-Age"),
        "{session}"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");

    let echo: serde_json::Value = http
        .get(format!("{base}/app"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["remote-user"], "taro");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    // The cookie set over TLS is not the plain-HTTP session cookie: plain HTTP asks to log in.
    let plain = client().get(gw.url("/app")).send().await.unwrap();
    assert_eq!(plain.status(), 401);
}
