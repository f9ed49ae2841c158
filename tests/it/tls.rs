//! HTTPS wherever it ends (SECURITY 19, 23, 44): the gateway's own TLS listener, a trusted
//! proxy's `X-Forwarded-Proto: https`, an https `portal.public_url`, and a real nginx
//! terminating TLS in front of plain-HTTP nidan. Over HTTPS every cookie is `__Host-` +
//! `Secure`, HSTS is sent, a plain-HTTP cookie opens nothing, and passkey and enrollment
//! origins come from configuration; an untrusted peer's header changes nothing.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]
#![allow(clippy::too_many_lines)] // tests are exempt: a scenario reads top to bottom

use crate::common::{self, nginx, webauthn};

use std::net::{IpAddr, SocketAddr};

use common::*;
use nginx::Nginx;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use webauthn::{Authenticator, Tweak, UP, UV};

const XFP: &str = "x-forwarded-proto";

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

/// Every `Set-Cookie` line of an answer.
fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value an answer sets for cookie `name`.
fn cookie_value(h: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(h).iter().find_map(|c| {
        let pair = c.split(';').next()?;
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_owned())
    })
}

/// A `Set-Cookie` line's attributes, lower-case.
fn attributes(c: &str) -> Vec<String> {
    c.split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

/// A cookie as a browser must get it over HTTPS: `__Host-`, Secure, HttpOnly,
/// SameSite=Lax, Path=/, no Domain (SECURITY 19).
fn assert_https_cookie(c: &str) {
    let a = attributes(c);
    assert!(c.starts_with("__Host-"), "no __Host- prefix: {c}");
    for want in ["secure", "httponly", "samesite=lax", "path=/"] {
        assert!(a.iter().any(|x| x == want), "{want} missing: {c}");
    }
    assert!(!a.iter().any(|x| x.starts_with("domain")), "{c}");
}

/// A cookie over plain HTTP: neither `__Host-` nor Secure (a browser would drop them).
fn assert_plain_cookie(c: &str) {
    assert!(!c.starts_with("__Host-"), "{c}");
    assert!(!attributes(c).iter().any(|x| x == "secure"), "{c}");
}

/// `Strict-Transport-Security` with at least a year's `max-age`.
fn assert_hsts(h: &HeaderMap, what: &str) {
    let v = h
        .get("strict-transport-security")
        .unwrap_or_else(|| panic!("no HSTS on {what}: {h:?}"))
        .to_str()
        .unwrap();
    let age: u64 = v
        .split(';')
        .find_map(|p| p.trim().strip_prefix("max-age="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("HSTS without max-age on {what}: {v}"));
    assert!(
        age >= 31_536_000,
        "HSTS max-age under a year on {what}: {v}"
    );
}

fn assert_no_hsts(h: &HeaderMap, what: &str) {
    assert!(
        h.get("strict-transport-security").is_none(),
        "HSTS over plain HTTP on {what}: {h:?}"
    );
}

/// Logs `id` in through the portal API under `base` (`…/_nidan/api`), every request with
/// `extra` headers and `body` fields added to the last step (the code from the outbox when
/// one is asked). Returns the headers of the answer that opened the session.
async fn login_at(
    http: &reqwest::Client,
    base: &str,
    gw: &Gateway,
    id: &str,
    extra: &[(&str, &str)],
    more: Value,
) -> HeaderMap {
    let (_, r) = api_login(http, base, gw, json!({"id": id}), more, extra).await;
    r.headers().clone()
}

/// GET `url` with `headers`: (status, headers, body).
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut req = http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (
        r.status().as_u16(),
        r.headers().clone(),
        r.text().await.unwrap(),
    )
}

/// A TLS-terminating proxy in front (a trusted peer saying `X-Forwarded-Proto: https`):
/// every cookie nidan sets is `__Host-` + Secure, HSTS is on portal pages, the gateway's
/// own answers and proxied ones, the backend and the enrollment URI say https, and a
/// plain-HTTP session cookie (one a downgraded page could plant) opens nothing.
#[tokio::test]
async fn https_said_by_a_trusted_proxy_counts() {
    let gw = Gateway::builder()
        .set("trusted_proxies", "[\"127.0.0.1/32\"]")
        .start();
    let http = plain();
    let https = [(XFP, "https")];

    for path in ["/_nidan/login", "/_nidan/login?lang=ja"] {
        let (s, h, _) = fetch(&http, &gw.url(path), &https).await;
        assert_eq!(s, 200);
        assert_hsts(&h, path);
        let cookies = set_cookies(&h);
        assert!(!cookies.is_empty(), "{path}: no cookie");
        cookies.iter().for_each(|c| assert_https_cookie(c));
    }
    let (_, h, _) = fetch(&http, &gw.url("/_nidan/login?lang=ja"), &https).await;
    assert!(cookie_value(&h, "__Host-nidan_lang").is_some(), "{h:?}");
    assert!(cookie_value(&h, "__Host-nidan_csrf").is_some(), "{h:?}");

    // A login with a code that trusts the browser: session, device and seen cookies.
    let h = login_at(
        &http,
        &gw.url(""),
        &gw,
        "hanako",
        &https,
        json!({"trust_device": true, "device_name": "laptop"}),
    )
    .await;
    assert_hsts(&h, "the login's answer");
    let cookies = set_cookies(&h);
    cookies.iter().for_each(|c| assert_https_cookie(c));
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-nidan_session="))
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert!(
        !session.to_ascii_lowercase().contains("max-age"),
        "{session}"
    );
    assert!(
        cookie_value(&h, "__Host-nidan_device").is_some(),
        "{cookies:?}"
    );
    let token = cookie_value(&h, "__Host-nidan_session").unwrap();

    let ours = format!("__Host-nidan_session={token}");
    let (s, h, body) = fetch(
        &http,
        &gw.url("/admin/x"),
        &[(XFP, "https"), ("cookie", &ours)],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_hsts(&h, "a proxied answer");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["remote-user"], "hanako", "{echo}");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "{echo}");
    assert!(echo["headers"]["cookie"].is_null(), "{echo}");

    // The same session under the plain-HTTP name, as a page downgraded to http:// could
    // plant it: not read where the request is HTTPS.
    let planted = format!("nidan_session={token}");
    for path in ["/admin/x", "/app/y"] {
        let (s, h, body) = fetch(
            &http,
            &gw.url(path),
            &[
                (XFP, "https"),
                ("cookie", &planted),
                ("accept", "application/json"),
            ],
        )
        .await;
        assert_eq!(s, 401, "{path}: a plain-HTTP cookie opened it: {body}");
        assert_hsts(&h, "a 401");
    }
    let (s, _, body) = fetch(
        &http,
        &gw.url("/_nidan/api/me"),
        &[(XFP, "https"), ("cookie", &planted)],
    )
    .await;
    assert_eq!(s, 401, "the portal read a plain-HTTP cookie: {body}");

    // The gateway's own answers carry HSTS too.
    let (s, h, _) = fetch(
        &http,
        &gw.url("/app/z"),
        &[(XFP, "https"), ("accept", "text/html")],
    )
    .await;
    assert_eq!(s, 302);
    assert_hsts(&h, "the redirect to the login");
    let (s, h, _) = fetch(
        &http,
        &gw.url("/deny"),
        &[(XFP, "https"), ("cookie", &ours)],
    )
    .await;
    assert_eq!(s, 403);
    assert_hsts(&h, "a 403");

    // The enrollment URI names https, as the browser reached the portal.
    let h = login_at(&http, &gw.url(""), &gw, "jiro", &https, json!({})).await;
    let jiro = format!(
        "__Host-nidan_session={}",
        cookie_value(&h, "__Host-nidan_session").unwrap()
    );
    let r = http
        .post(gw.url("/_nidan/api/app/enroll/start"))
        .header(XFP, "https")
        .header("cookie", &jiro)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    let uri = e["uri"].as_str().unwrap();
    let query = uri.split_once('?').unwrap().1;
    let server = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "server")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert_eq!(server, format!("https://{}/_nidan", gw.addr), "{uri}");

    // Logging out removes the cookie under the name it was set with.
    let r = http
        .post(gw.url("/_nidan/api/logout"))
        .header(XFP, "https")
        .header("cookie", &ours)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let gone = set_cookies(r.headers());
    assert!(
        cookie_value(r.headers(), "__Host-nidan_session").is_some(),
        "{gone:?}"
    );
    gone.iter().for_each(|c| assert_https_cookie(c));
    let (s, _, _) = fetch(
        &http,
        &gw.url("/admin/x"),
        &[
            (XFP, "https"),
            ("cookie", &ours),
            ("accept", "application/json"),
        ],
    )
    .await;
    assert_eq!(s, 401);
}

/// The same header from a peer outside `trusted_proxies` changes nothing: plain cookies, no
/// HSTS, the backend told http, and a `__Host-` cookie is not what it reads.
#[tokio::test]
async fn https_said_by_an_untrusted_peer_changes_nothing() {
    let gw = Gateway::builder()
        .set("trusted_proxies", "[\"127.0.0.1/32\"]")
        .start();
    pingora::tls::install_default_crypto_provider();
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let https = [(XFP, "https")];
    let (s, h, _) = fetch(&stranger, &gw.url("/_nidan/login"), &https).await;
    assert_eq!(s, 200);
    assert_no_hsts(&h, "the login page");
    let cookies = set_cookies(&h);
    assert!(
        cookies.iter().any(|c| c.starts_with("nidan_csrf=")),
        "{cookies:?}"
    );
    cookies.iter().for_each(|c| assert_plain_cookie(c));

    let h = login_at(&stranger, &gw.url(""), &gw, "taro", &https, json!({})).await;
    assert_no_hsts(&h, "the login's answer");
    set_cookies(&h).iter().for_each(|c| assert_plain_cookie(c));
    let token = cookie_value(&h, "nidan_session").unwrap();

    let (s, h, body) = fetch(
        &stranger,
        &gw.url("/app/x"),
        &[
            (XFP, "https"),
            ("cookie", &format!("nidan_session={token}")),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_no_hsts(&h, "a proxied answer");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "http", "{echo}");
    let (s, _, body) = fetch(
        &stranger,
        &gw.url("/app/x"),
        &[
            (XFP, "https"),
            ("cookie", &format!("__Host-nidan_session={token}")),
            ("accept", "application/json"),
        ],
    )
    .await;
    assert_eq!(s, 401, "{body}");
}

/// An https `portal.public_url` makes every request HTTPS, whatever the socket or a header
/// says: the deployment is reached over TLS, so nothing is ever set for plain HTTP.
#[tokio::test]
async fn an_https_public_url_makes_every_request_https() {
    let gw = Gateway::builder()
        .set("portal.public_url", "\"https://login.example.test\"")
        .start();
    let http = plain();
    // An untrusted `X-Forwarded-Proto: http` changes nothing either.
    for extra in [&[][..], &[(XFP, "http")][..]] {
        let (s, h, _) = fetch(&http, &gw.url("/_nidan/login"), extra).await;
        assert_eq!(s, 200);
        assert_hsts(&h, "the login page");
        let cookies = set_cookies(&h);
        assert!(
            cookies.iter().any(|c| c.starts_with("__Host-nidan_csrf=")),
            "{cookies:?}"
        );
        cookies.iter().for_each(|c| assert_https_cookie(c));
    }
    let h = login_at(&http, &gw.url(""), &gw, "taro", &[], json!({})).await;
    set_cookies(&h).iter().for_each(|c| assert_https_cookie(c));
    assert_hsts(&h, "the login's answer");
    let token = cookie_value(&h, "__Host-nidan_session").unwrap();
    let (s, h, body) = fetch(
        &http,
        &gw.url("/app/x"),
        &[("cookie", &format!("__Host-nidan_session={token}"))],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_hsts(&h, "a proxied answer");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "{echo}");
    let (s, h, body) = fetch(
        &http,
        &gw.url("/app/x"),
        &[
            ("cookie", &format!("nidan_session={token}")),
            ("accept", "application/json"),
        ],
    )
    .await;
    assert_eq!(
        s, 401,
        "a plain-HTTP cookie opened an https deployment: {body}"
    );
    assert_hsts(&h, "a 401");
    let (s, h, _) = fetch(&http, &gw.url("/nowhere-404"), &[("accept", "text/html")]).await;
    assert_eq!(s, 302);
    assert_hsts(&h, "the redirect to the login");
}

/// The lines of the README's "TLS in front" nginx block this test runs: `listen … ssl`,
/// `ssl_certificate`, `ssl_certificate_key` and `proxy_set_header X-Forwarded-Proto`, as
/// written there (so the docs cannot drift from what is tested).
fn readme_tls_lines() -> [String; 4] {
    let readme = std::fs::read_to_string(repo().join("docs/forward-auth.md")).unwrap();
    let section = readme
        .split("\n## TLS in front\n")
        .nth(1)
        .expect("docs/forward-auth.md has a `## TLS in front` section");
    let block = section
        .split("```nginx\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an nginx block in `TLS in front`");
    let line = |start: &str| {
        block
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` line in the README's block:\n{block}"))
            .to_owned()
    };
    [
        line("listen "),
        line("ssl_certificate "),
        line("ssl_certificate_key "),
        line("proxy_set_header X-Forwarded-Proto "),
    ]
}

/// nginx terminating TLS with a throw-away certificate in front of plain-HTTP nidan, as the
/// README's forward-auth deployment with its "TLS in front" lines: the portal behind
/// `/_nidan/`, `auth_request` for the rest. The same `server` also listens on plain HTTP.
fn tls_nginx(gw: &Gateway, tls_port: u16, name: &str, certs: &std::path::Path) -> Nginx {
    let (cert, key) = nginx::throwaway_cert(certs, name);
    let [listen, ssl_cert, ssl_key, proto] = readme_tls_lines();
    assert_eq!(listen, "listen 443 ssl;");
    let listen = listen.replace(" 443 ", &format!(" 127.0.0.1:{tls_port} "));
    let path_of = |l: &str| {
        l.trim_end_matches(';')
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let ssl_cert = ssl_cert.replace(&path_of(&ssl_cert), &cert.display().to_string());
    let ssl_key = ssl_key.replace(&path_of(&ssl_key), &key.display().to_string());
    let nidan = gw.addr;
    let backend = gw.backend.addr;
    Nginx::start(&format!(
        r#"
    {listen}
    {ssl_cert}
    {ssl_key}
    server_name {name};
    location /_nidan/ {{
        proxy_pass http://{nidan};
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
        {proto}
    }}
    location = /_nidan/api/authz/forward-auth {{
        return 404;
    }}
    location = /_nidan_authz {{
        internal;
        proxy_pass http://{nidan}/_nidan/api/authz/forward-auth;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Original-URL $scheme://$server_name$request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Forwarded-For $remote_addr;
        {proto}
        proxy_set_header X-Forwarded-Host "";
        proxy_set_header X-Forwarded-Uri "";
    }}
    location @nidan_login {{
        return 302 $nidan_login;
    }}
    location / {{
        auth_request /_nidan_authz;
        auth_request_set $nidan_user $upstream_http_remote_user;
        auth_request_set $nidan_login $upstream_http_location;
        auth_request_set $nidan_cookie $upstream_http_cookie;
        error_page 401 = @nidan_login;
        proxy_set_header Cookie $nidan_cookie;
        proxy_set_header Remote-User $nidan_user;
        proxy_set_header Host $http_host;
        proxy_pass http://{backend};
    }}"#
    ))
}

/// A browser-like client for `https://{name}:{port}` (through nginx on 127.0.0.1): a cookie
/// jar, no redirects, the throw-away certificate accepted.
fn browser_for(name: &str, port: u16) -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(true)
        .resolve(name, SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap()
}

/// What a browser sees through nginx terminating TLS in front of plain-HTTP nidan
/// (forward-auth): `__Host-` + Secure cookies and HSTS on the portal, a session that opens
/// the app; and a session cookie got over the same nginx's plain-HTTP listener opens
/// nothing over HTTPS.
#[tokio::test]
async fn nginx_terminating_tls_in_front_of_forward_auth() {
    let gw = Gateway::builder()
        .set("trusted_proxies", "[\"127.0.0.1\"]")
        .start();
    let certs = tempfile::tempdir().unwrap();
    let tls_port = free_port();
    let ng = tls_nginx(&gw, tls_port, "localhost", certs.path());
    let base = format!("https://localhost:{tls_port}");
    let browser = browser_for("localhost", tls_port);

    let (s, h, _) = fetch(
        &browser,
        &format!("{base}/app/x"),
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(s, 302, "{}", ng.error_log());
    let (s, h2, _) = fetch(&browser, &format!("{base}/_nidan/login"), &[]).await;
    assert_eq!(s, 200);
    assert_hsts(&h2, "the login page through nginx");
    let cookies = set_cookies(&h2);
    assert!(
        cookies.iter().any(|c| c.starts_with("__Host-nidan_csrf=")),
        "{cookies:?} {h:?}"
    );
    cookies.iter().for_each(|c| assert_https_cookie(c));

    let h = login_at(&browser, &base, &gw, "taro", &[], json!({})).await;
    assert_hsts(&h, "the login's answer through nginx");
    let cookies = set_cookies(&h);
    cookies.iter().for_each(|c| assert_https_cookie(c));
    assert!(
        cookie_value(&h, "__Host-nidan_session").is_some(),
        "{cookies:?}"
    );
    let (s, _, body) = fetch(&browser, &format!("{base}/app/x"), &[]).await;
    assert_eq!(s, 200, "{body}\n{}", gw.log());
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["remote-user"], "taro", "{echo}");
    assert!(
        !echo["headers"]["cookie"]
            .as_str()
            .unwrap_or("")
            .contains("nidan_session"),
        "{echo}"
    );

    // The same deployment over nginx's plain-HTTP listener hands out a plain cookie...
    let downgraded = client();
    let h = login_at(&downgraded, &ng.url(""), &gw, "taro", &[], json!({})).await;
    set_cookies(&h).iter().for_each(|c| assert_plain_cookie(c));
    let token = cookie_value(&h, "nidan_session").unwrap();
    // ...which, planted in a browser, opens nothing over HTTPS.
    let (s, _, body) = fetch(
        &plain_tls(),
        &format!("https://127.0.0.1:{tls_port}/app/x"),
        &[("cookie", &format!("nidan_session={token}"))],
    )
    .await;
    assert_eq!(s, 302, "a plain-HTTP session opened the https app: {body}");
}

/// A client without a jar that accepts the throw-away certificate.
fn plain_tls() -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// Passkeys behind nginx terminating TLS: the RP ID and the origin are `portal.public_url`'s
/// (https, nginx's port), so registration and login work there; asked with another `Host`
/// (or over nidan's own plain socket), they stay the configured ones.
#[tokio::test]
async fn passkey_origin_comes_from_public_url_behind_tls_nginx() {
    let tls_port = free_port();
    let public = format!("https://login.test:{tls_port}");
    let gw = Gateway::builder()
        .set("trusted_proxies", "[\"127.0.0.1\"]")
        .set("portal.public_url", &format!("\"{public}\""))
        .start();
    let certs = tempfile::tempdir().unwrap();
    let _ng = tls_nginx(&gw, tls_port, "login.test", certs.path());
    let browser = browser_for("login.test", tls_port);
    login_at(&browser, &public, &gw, "hanako", &[], json!({})).await;

    let post = |path: &str, body: Value| {
        let browser = browser.clone();
        let url = format!("{public}/_nidan/api{path}");
        async move {
            let r = browser.post(url).json(&body).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, options) = post("/passkeys/register/start", json!({})).await;
    assert_eq!(s, 200, "{options}");
    assert_eq!(options["rp"]["id"], "login.test", "{options}");
    let mut auth = Authenticator::es256();
    let cred = auth.create(&options, &public, UP | UV);
    let (s, v) = post(
        "/passkeys/register/finish",
        json!({"name": "laptop", "credential": cred}),
    )
    .await;
    assert_eq!(s, 201, "the https origin behind nginx was refused: {v}");

    // A fresh browser logs in with it through nginx and reaches a two_factor route.
    let fresh = browser_for("login.test", tls_port);
    let r = fresh
        .post(format!("{public}/_nidan/api/passkeys/login/start"))
        .json(&json!({"return_to": "/admin/x"}))
        .send()
        .await
        .unwrap();
    let options: Value = r.json().await.unwrap();
    assert_eq!(options["rpId"], "login.test", "{options}");
    let cred = auth.get(&options, &public, Tweak::default());
    let r = fresh
        .post(format!("{public}/_nidan/api/passkeys/login/finish"))
        .json(&json!({"credential": cred}))
        .send()
        .await
        .unwrap();
    let h = r.headers().clone();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    set_cookies(&h).iter().for_each(|c| assert_https_cookie(c));
    let (s, _, body) = fetch(&fresh, &format!("{public}/admin/x"), &[]).await;
    assert_eq!(s, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["remote-user"], "hanako", "{echo}");

    // Straight to nidan's plain socket with the attacker's Host: the RP ID and the origin
    // stay the configured ones, so a credential made for that host is refused.
    let direct = client();
    for origin in ["http://evil.test", &format!("http://{}", gw.addr)] {
        let r = direct
            .post(gw.url("/_nidan/api/passkeys/login/start"))
            .header("host", "evil.test")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let options: Value = r.json().await.unwrap();
        assert_eq!(options["rpId"], "login.test", "{options}");
        let tweak = Tweak {
            origin: Some(origin.to_owned()),
            ..Tweak::default()
        };
        let cred = auth.get(&options, &public, tweak);
        let r = direct
            .post(gw.url("/_nidan/api/passkeys/login/finish"))
            .header("host", "evil.test")
            .json(&json!({"credential": cred}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "origin {origin} was accepted");
    }
}
