//! The OpenAPI description against the real binary: it is served with this deployment's
//! server URL, every operation it describes is answered (and nothing else on its paths),
//! and schemathesis (PyPI; `.ci/run` installs it) finds no server error, schema violation or
//! crash — on `nidan demo` itself for the JSON API, and on a gateway's admin listener for
//! the admin API.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

async fn description(gw: &Gateway, prefix: &str) -> Value {
    let r = plain()
        .get(gw.url(&format!("{prefix}/api/openapi.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    r.json().await.unwrap()
}

/// `(METHOD, path)` of every operation of the JSON API (`admin: false`) or of the rest:
/// the admin API, forward-auth (any method, at the request edge) and the keys.
fn operations(doc: &Value, admin: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m.to_lowercase()) else {
                continue;
            };
            let is_admin = op["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "admin" || t == "forward-auth" || t == "keys");
            if is_admin == admin {
                out.push((m.to_owned(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_description_names_this_deployments_prefix() {
    let gw = Gateway::builder()
        .set("portal.path_prefix", "/auth")
        .start();
    let doc = description(&gw, "/auth").await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/auth/api");
    assert!(doc["paths"]["/login/{flow}/complete"]["post"].is_object());
    assert_eq!(
        doc["paths"]["/.well-known/jwks.json"]["servers"][0]["url"],
        "/auth"
    );
}

/// Each described operation reaches its handler (never the "no such endpoint" answer), and
/// a method the description does not list is a 405 naming exactly the listed ones.
#[tokio::test]
async fn every_described_operation_is_answered_and_nothing_else() {
    let gw = Gateway::start();
    let doc = description(&gw, "/_nidan").await;
    let ops = operations(&doc, false);
    assert!(ops.len() > 25, "{ops:?}");
    let http = plain();
    for (method, path) in &ops {
        let url = gw.url(&format!(
            "/_nidan/api{}",
            path.replace("{flow}", "f0").replace("{id}", "x0")
        ));
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = http
            .request(m, &url)
            .header("origin", gw.url(""))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            status != 405 && body["message"] != "no such API endpoint",
            "{method} {path}: {status} {body}"
        );
    }
    for path in doc["paths"].as_object().unwrap().keys() {
        if operations(&doc, true).iter().any(|(_, p)| p == path) {
            continue;
        }
        let listed: Vec<&str> = METHODS
            .into_iter()
            .filter(|m| ops.contains(&((*m).to_owned(), path.clone())))
            .collect();
        let Some(other) = METHODS.into_iter().find(|m| !listed.contains(m)) else {
            continue;
        };
        let url = gw.url(&format!(
            "/_nidan/api{}",
            path.replace("{flow}", "f0").replace("{id}", "x0")
        ));
        let r = http
            .request(reqwest::Method::from_bytes(other.as_bytes()).unwrap(), &url)
            .header("origin", gw.url(""))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{other} {path}");
        let mut allow: Vec<&str> = r.headers()["allow"].to_str().unwrap().split(", ").collect();
        allow.sort_unstable();
        let mut want = listed.clone();
        want.sort_unstable();
        assert_eq!(allow, want, "{path}");
    }
}

/// `nidan demo` on a free port with its data in a temporary directory.
struct Demo {
    child: Child,
    addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl Demo {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut child = Command::new(bin())
                .args(["demo", "--listen", &addr.to_string(), "--data"])
                .arg(data.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if TcpStream::connect(addr).is_ok() {
                    return Self {
                        child,
                        addr,
                        _data: data,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("nidan demo did not start");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs schemathesis with `args`; fails the test with its report on any finding.
fn schemathesis(args: &[String]) {
    schemathesis_checking(args, &format!("{CHECKS},unsupported_method"));
}

/// What every run checks: no 5xx, and every answer's status, content type, headers and body
/// as described.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

fn schemathesis_checking(args: &[String], checks: &str) {
    // schemathesis keeps a cache in its working directory: not in the checkout.
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new("schemathesis")
        .current_dir(cwd.path())
        .arg("run")
        .args(args)
        .args([
            "--checks",
            checks,
            "--max-examples",
            "15",
            // One worker: hypothesis's source inspection is not thread-safe on Python 3.11
            // (a "recursion depth mismatch" runtime error with two).
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--suppress-health-check",
            "all",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis runs (`bash .ci/run` installs it: pip install schemathesis)");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // A run that tested nothing would pass too: make sure it tested.
    assert!(
        report.contains("passed") && !report.contains("No operations"),
        "schemathesis tested nothing:\n{report}"
    );
    eprintln!("{report}");
}

/// A signed-in browser's cookie on the demo (taro: password only).
async fn demo_session(addr: SocketAddr) -> String {
    let http = plain();
    let base = format!("http://{addr}");
    let r = http
        .post(format!("http://{addr}/_nidan/api/login"))
        .header("origin", &base)
        .json(&json!({"id": "taro"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let flow = v["flow"].as_str().expect("a login flow");
    let r = http
        .post(format!("http://{addr}/_nidan/api/login/{flow}/complete"))
        .header("origin", &base)
        .json(&json!({"password": "nidan-demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    set_cookie(&r, "nidan_session").expect("a session cookie")
}

/// Three runs on one demo: anonymous (every operation), signed in (all but the two calls
/// that end the session: a logout, and a 2-step change, which renews the session), and
/// those two on a session of their own.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_in_the_demos_json_api() {
    let demo = Demo::start();
    let base = format!("http://{}", demo.addr);
    let run = |extra: &[&str], cookie: Option<String>| {
        let mut args = vec![
            format!("{base}/_nidan/api/openapi.json"),
            "--exclude-tag".into(),
            "admin".into(),
            "--exclude-tag".into(),
            "forward-auth".into(),
            "--exclude-tag".into(),
            "keys".into(),
            "--header".into(),
            format!("Origin: {base}"),
        ];
        if let Some(c) = cookie {
            args.extend(["--header".into(), format!("Cookie: nidan_session={c}")]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        schemathesis(&args);
    };
    run(&[], None);
    let ends_session = [
        "--exclude-operation-id",
        "logout",
        "--exclude-operation-id",
        "settingsPut",
    ];
    run(&ends_session, Some(demo_session(demo.addr).await));
    for op in ["settingsPut", "logout"] {
        let only = ["--include-operation-id", op];
        run(&only, Some(demo_session(demo.addr).await));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_in_the_admin_api() {
    const TOKEN: &str = "admin-token-for-the-openapi-test-0123456789";
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("admin-token");
    std::fs::write(&file, TOKEN).unwrap();
    let gw = Gateway::builder()
        .set("server.admin_listen", "\"127.0.0.1:1\"")
        .set(
            "server.admin_token_file",
            &format!("\"{}\"", file.display()),
        )
        .start();
    let admin = gw.admin.unwrap();
    schemathesis(&[
        gw.url("/_nidan/api/openapi.json"),
        "--include-tag".into(),
        "admin".into(),
        "--url".into(),
        format!("http://{admin}"),
        "--header".into(),
        format!("Authorization: Bearer {TOKEN}"),
    ]);
}

/// Forward-auth from a trusted proxy and the identity assertion's keys under the portal
/// prefix (neither is checked for unsupported methods: forward-auth answers any method, as
/// nginx asks with the original one).
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_in_forward_auth_and_the_keys() {
    let gw = Gateway::builder()
        .set("trusted_proxies", "[\"127.0.0.1\"]")
        .set(
            "identity_assertion",
            "{ issuer: \"https://login.example.com\" }",
        )
        .start();
    let spec = gw.url("/_nidan/api/openapi.json");
    schemathesis_checking(
        &[
            spec.clone(),
            "--include-tag".into(),
            "forward-auth".into(),
            "--url".into(),
            gw.url("/_nidan/api"),
        ],
        CHECKS,
    );
    // The keys are a portal page: another method is the portal's 404, not an API 405.
    schemathesis_checking(
        &[
            spec,
            "--include-tag".into(),
            "keys".into(),
            "--url".into(),
            gw.url("/_nidan"),
        ],
        CHECKS,
    );
}
