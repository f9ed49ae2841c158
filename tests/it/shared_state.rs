//! Short-lived state shared by replicas: two real `nidan serve` processes in the replica
//! mode (`storage.postgres` + `storage.redis`, a fresh PostgreSQL database and a Redis of
//! the test's own), no sticky balancing. A login started on one finishes on the other;
//! wrong codes and passwords split across them count together; an app approval asked on
//! one is answered on the other; parallel completions of one flow on both finish it once.
//!
//! Both processes also share one configuration directory, so until the durable store
//! opens PostgreSQL they share its SQLite file there; either way the durable state (the
//! session, the enrolled app) is common to both, as the scenarios need.
#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common::{self, stores};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use stores::{TestDb, TestRedis};

/// Two gateways over the same stores and configuration directory.
struct Pair {
    dir: tempfile::TempDir,
    _backend: Backend,
    _db: TestDb,
    _redis: TestRedis,
    a: Replica,
    b: Replica,
}

struct Replica {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
    outbox: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn api(&self, path: &str) -> String {
        self.url(&format!("/_nidan/api{path}"))
    }
}

fn start(dir: &Path, name: &'static str, extra: &str, backend: &Backend) -> Replica {
    for _ in 0..5 {
        let port = free_port();
        let b = backend.addr;
        let text = format!(
            r#"
version: 1
server: {{ listen: ["127.0.0.1:{port}"], threads: 2, grace_period: 1s }}
portal: {{ path_prefix: /_nidan, default_language: en, title: nidan test, allowed_return_hosts: [app.example.com] }}
trusted_devices:
  signing_keys: [{{ id: k1, secret_file: device-key }}]
notifiers: {{ outbox: {{ path: outbox-{name}.jsonl, console: false }} }}
users: {{ file: users.yaml, reload_interval: 1s }}
storage:
  postgres: {{ url_file: postgres-url }}
  redis: {{ url_file: redis-url, key_prefix: shared }}
routes:
  - {{ name: admin, path_prefix: /admin, upstream: ["{b}"], policy: two_factor }}
  - {{ name: app, hosts: ["*"], path_prefix: /, upstream: ["{b}"], policy: login }}
{extra}
"#
        );
        let config = dir.join(format!("nidan-{name}.yaml"));
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.join(format!("gateway-{name}.log"))).unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Replica {
                    name,
                    addr,
                    child,
                    outbox: dir.join(format!("outbox-{name}.jsonl")),
                };
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            assert!(Instant::now() < deadline, "replica {name} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!(
        "replica {name} did not start:\n{}",
        read(&dir.join(format!("gateway-{name}.log")))
    );
}

impl Pair {
    fn start(extra: &str) -> Self {
        let db = TestDb::create();
        let redis = TestRedis::start();
        let backend = Backend::start();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("device-key"),
            "test-device-signing-key-0123456789abcdef",
        )
        .unwrap();
        std::fs::copy(repo().join("config/test/users.yaml"), p.join("users.yaml")).unwrap();
        std::fs::write(p.join("postgres-url"), &db.url).unwrap();
        std::fs::write(p.join("redis-url"), redis.url()).unwrap();
        let a = start(p, "a", extra, &backend);
        let b = start(p, "b", extra, &backend);
        Self {
            dir,
            _backend: backend,
            _db: db,
            _redis: redis,
            a,
            b,
        }
    }

    /// The newest code sent to `user` by any replica (waits up to 5 s).
    fn last_code(&self, user: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut all: Vec<Value> = Vec::new();
            for r in [&self.a, &self.b] {
                all.extend(
                    read(&r.outbox)
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| serde_json::from_str::<Value>(l).unwrap()),
                );
            }
            all.sort_by_key(|m| m["ts"].as_str().unwrap_or("").to_owned());
            if let Some(code) = all
                .iter()
                .rev()
                .find(|m| m["user"] == user && m["code"].is_string())
            {
                return code["code"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no code was sent to {user}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        ["a", "b"]
            .iter()
            .map(|n| read(&self.dir.path().join(format!("gateway-{n}.log"))))
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = http.post(url).json(&body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let r = http.get(url).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" { "000001" } else { "000000" }
}

#[tokio::test]
async fn a_login_started_on_one_replica_completes_on_the_other() {
    let pair = Pair::start("");
    let (a, b) = (&pair.a, &pair.b);
    let http = client();
    let (s, v) = post(&http, a.api("/login"), json!({"id": "hanako"})).await;
    assert_eq!(s, 200, "{v}\n{}", pair.logs());
    assert_eq!(v["step"], "password_and_code");
    let flow = v["flow"].as_str().unwrap().to_owned();
    let code = pair.last_code("hanako");
    // B knows the flow A started, and where its code went.
    let (s, seen) = get(&http, b.api(&format!("/login/{flow}"))).await;
    assert_eq!(s, 200, "{seen}");
    assert_eq!(seen["step"], "password_and_code");
    let (s, e) = post(
        &http,
        b.api(&format!("/login/{flow}/complete")),
        json!({"password": PASSWORD, "code": code}),
    )
    .await;
    assert_eq!(s, 200, "{e}\n{}", pair.logs());
    // The session works on both (durable state is shared).
    for r in [a, b] {
        let echo: Value = http
            .get(r.url("/admin/x"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo["headers"]["remote-user"], "hanako", "on {}", r.name);
    }
    // The flow is finished for both.
    let (s, _) = post(
        &http,
        a.api(&format!("/login/{flow}/complete")),
        json!({"password": PASSWORD, "code": code}),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn wrong_codes_and_passwords_split_across_replicas_count_together() {
    let pair = Pair::start(
        "security_code: { max_attempts: 4 }\nlogin_limits: { free_failures: 2, base_delay: 30s }",
    );
    let (a, b) = (&pair.a, &pair.b);
    let http = client();
    let (s, v) = post(&http, a.api("/login"), json!({"id": "kenta"})).await;
    assert_eq!(s, 200, "{v}\n{}", pair.logs());
    let flow = v["flow"].as_str().unwrap().to_owned();
    let code = pair.last_code("kenta");
    // The code's tries: four in all, whichever replica is asked. (The password is right,
    // so only the code's own budget is spent... and the account's failures grow too.)
    let mut answers = Vec::new();
    for (i, r) in [a, b, a, b].iter().enumerate() {
        let (s, e) = post(
            &http,
            r.api(&format!("/login/{flow}/complete")),
            json!({"password": PASSWORD, "code": wrong(&code)}),
        )
        .await;
        answers.push((i, s, e["error"].as_str().unwrap_or("").to_owned()));
    }
    // Two free failures, then the account waits: the third try is throttled wherever
    // it lands, so the code keeps its last tries.
    assert_eq!(answers[0].1, 401, "{answers:?}");
    assert_eq!(answers[1].1, 401, "{answers:?}");
    assert_eq!(answers[2].1, 429, "{answers:?}");
    assert_eq!(answers[3].1, 429, "{answers:?}");

    // Wrong passwords of another account, split across both: counted together.
    let (s, v) = post(&http, b.api("/login"), json!({"id": "taro"})).await;
    assert_eq!(s, 200, "{v}");
    let flow = v["flow"].as_str().unwrap().to_owned();
    for r in [a, b] {
        let (s, e) = post(
            &http,
            r.api(&format!("/login/{flow}/complete")),
            json!({"password": "wrong-password"}),
        )
        .await;
        assert_eq!(s, 401, "{e}");
    }
    for r in [a, b] {
        let (s, e) = post(
            &http,
            r.api(&format!("/login/{flow}/complete")),
            json!({"password": PASSWORD}),
        )
        .await;
        assert_eq!(
            (s, e["error"].as_str()),
            (429, Some("too_many_attempts")),
            "on {}",
            r.name
        );
    }
}

#[tokio::test]
async fn a_codes_tries_are_counted_across_replicas() {
    // No account delay in the way: only the code's own budget of four tries.
    let pair = Pair::start(
        "security_code: { max_attempts: 4 }\nlogin_limits: { free_failures: 50, max_failures_per_account: 100 }",
    );
    let (a, b) = (&pair.a, &pair.b);
    let http = client();
    let (s, v) = post(&http, a.api("/login"), json!({"id": "kenta"})).await;
    assert_eq!(s, 200, "{v}\n{}", pair.logs());
    let flow = v["flow"].as_str().unwrap().to_owned();
    let code = pair.last_code("kenta");
    let mut errors = Vec::new();
    for r in [a, b, a, b] {
        let (_, e) = post(
            &http,
            r.api(&format!("/login/{flow}/complete")),
            json!({"password": PASSWORD, "code": wrong(&code)}),
        )
        .await;
        errors.push(e["error"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(
        errors,
        [
            "login_failed",
            "login_failed",
            "login_failed",
            "code_exhausted"
        ]
    );
    // The right code no longer works, on either replica.
    for r in [a, b] {
        let (s, e) = post(
            &http,
            r.api(&format!("/login/{flow}/complete")),
            json!({"password": PASSWORD, "code": code}),
        )
        .await;
        assert_eq!(
            (s, e["error"].as_str()),
            (401, Some("no_code")),
            "{}",
            r.name
        );
    }
}

#[tokio::test]
async fn parallel_completions_on_both_replicas_finish_the_login_once() {
    let pair = Pair::start("");
    let (a, b) = (&pair.a, &pair.b);
    let http = client();
    let (s, v) = post(&http, a.api("/login"), json!({"id": "mika"})).await;
    assert_eq!(s, 200, "{v}\n{}", pair.logs());
    let flow = v["flow"].as_str().unwrap().to_owned();
    let code = pair.last_code("mika");
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let url = if i % 2 == 0 { a } else { b }.api(&format!("/login/{flow}/complete"));
            let code = code.clone();
            let http = plain();
            tokio::spawn(async move {
                post(&http, url, json!({"password": PASSWORD, "code": code}))
                    .await
                    .0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    // The others: the flow is finished (404), the state was busy (503), or the account's
    // free attempts were all reserved by the parallel ones (429).
    assert!(
        statuses.iter().all(|&s| matches!(s, 200 | 404 | 429 | 503)),
        "{statuses:?}"
    );
}

/// Runs `nidan app --key KEY ARGS…`; returns (success, stdout JSON or stderr text).
fn app_cli(key: &Path, args: &[&str]) -> (bool, Value) {
    let out = Command::new(bin())
        .arg("app")
        .arg("--key")
        .arg(key)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    })
    .into_owned();
    (
        out.status.success(),
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn an_app_approval_asked_on_one_replica_is_answered_on_the_other() {
    let pair = Pair::start("");
    let (a, b) = (&pair.a, &pair.b);
    let http = client();
    // jiro logs in with a code (no app yet) and opens an enrollment on A...
    let (s, v) = post(&http, a.api("/login"), json!({"id": "jiro"})).await;
    assert_eq!(s, 200, "{v}\n{}", pair.logs());
    let flow = v["flow"].as_str().unwrap().to_owned();
    let (s, e) = post(
        &http,
        a.api(&format!("/login/{flow}/complete")),
        json!({"password": PASSWORD, "code": pair.last_code("jiro")}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    let (s, e) = post(&http, a.api("/app/enroll/start"), json!({})).await;
    assert_eq!(s, 200, "{e}\n{}", pair.logs());
    // ...and the app enrolls through B (the ticket A opened is B's to check).
    let uri = e["uri"]
        .as_str()
        .unwrap()
        .replace(&a.addr.port().to_string(), &b.addr.port().to_string());
    let key = pair.dir.path().join("app-key.json");
    let code = pair.last_code("jiro");
    let (ok, out) = app_cli(
        &key,
        &[
            "enroll",
            "--uri",
            &uri,
            "--security-code",
            &code,
            "--name",
            "phone",
        ],
    );
    assert!(ok, "{out}\n{}", pair.logs());

    // A login on A asks the app; the app answers through B.
    let (s, v) = post(&http, a.api("/login"), json!({"id": "jiro"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step"], "app_approval");
    let flow = v["flow"].as_str().unwrap().to_owned();
    let number = v["approval_number"].as_str().unwrap().to_owned();
    let (ok, list) = app_cli(&key, &["list"]);
    assert!(ok, "{list}");
    let id = list["approvals"][0]["id"].as_str().unwrap().to_owned();
    let (ok, out) = app_cli(&key, &["approve", "--number", &number, "--", &id]);
    assert!(ok, "{out}");
    assert_eq!(out["status"], "approved");
    // A sees the answer; the password finishes the login there.
    let (_, v) = get(&http, a.api(&format!("/login/{flow}"))).await;
    assert_eq!(
        (v["step"].as_str(), v["approval"].as_str()),
        (Some("password"), Some("approved")),
        "{v}"
    );
    let (s, e) = post(
        &http,
        a.api(&format!("/login/{flow}/complete")),
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    // A replayed app request is refused by the other replica too.
    let (ok, _) = app_cli(&key, &["approve", "--number", &number, "--", &id]);
    assert!(!ok);
}

#[tokio::test]
async fn redis_down_is_a_quick_503_and_its_return_needs_no_restart() {
    let mut pair = Pair::start("");
    let http = client();
    let (s, v) = post(&http, pair.a.api("/login"), json!({"id": "taro"})).await;
    assert_eq!(s, 200, "{v}\n{}", pair.logs());
    let flow = v["flow"].as_str().unwrap().to_owned();
    pair._redis.stop();
    for r in [&pair.a, &pair.b] {
        let started = Instant::now();
        let (s, e) = post(&http, r.api("/login"), json!({"id": "taro"})).await;
        // `busy` from the state itself, or `unavailable` once the replica has noticed Redis
        // is down: 503 either way.
        assert_eq!(s, 503, "{e}");
        assert!(
            matches!(e["error"].as_str(), Some("busy" | "unavailable")),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "no hang");
        // A login half done is not finished without its flow and limits: never a skipped step.
        let (s, e) = post(
            &http,
            r.api(&format!("/login/{flow}/complete")),
            json!({"password": PASSWORD}),
        )
        .await;
        assert_eq!(s, 503, "{e}");
    }
    pair._redis.restart();
    // Back without a restart, on both (the flow is gone with the empty Redis: a new login
    // works). Each replica reconnects on its own; until then it answers 503.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (s, v) = loop {
        let (s, v) = post(&http, pair.b.api("/login"), json!({"id": "taro"})).await;
        if s == 200 || Instant::now() > deadline {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s, 200, "not back after Redis returned: {v}");
    let flow = v["flow"].as_str().unwrap().to_owned();
    let (s, e) = loop {
        let (s, e) = post(
            &http,
            pair.a.api(&format!("/login/{flow}/complete")),
            json!({"password": PASSWORD}),
        )
        .await;
        if s != 503 || Instant::now() > deadline {
            break (s, e);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s, 200, "{e}");
}

// --- records edited in Redis (SECURITY 48) ----------------------------------------------

/// A connection to the pair's Redis, as someone who can write to it (and nothing else).
async fn redis_of(pair: &Pair) -> redis::aio::MultiplexedConnection {
    redis::Client::open(pair._redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Edits the JSON inside a stored record, keeping whatever surrounds it (the attacker does
/// not know the key, so anything else in the record is left as it is).
fn edit_json(record: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let start = (0..record.len())
        .filter(|&i| record[i] == b'{')
        .find(|&i| serde_json::from_slice::<Value>(&record[i..]).is_ok())
        .expect("the record holds JSON");
    let mut v: Value = serde_json::from_slice(&record[start..]).unwrap();
    edit(&mut v);
    let mut out = record[..start].to_vec();
    out.extend(serde_json::to_vec(&v).unwrap());
    out
}

/// The details of every audit record of `event` (PostgreSQL, read-only).
async fn audited(pair: &Pair, event: &str) -> Vec<Value> {
    let store = nidan::store::Store::open_postgres(&pair._db.url, 1, true)
        .await
        .unwrap();
    store
        .audit_trail(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event == event)
        .map(|r| serde_json::from_str(&r.detail).unwrap())
        .collect()
}

/// Does this client's session open the `two_factor` route on either replica?
async fn opens_admin(pair: &Pair, http: &reqwest::Client) -> bool {
    for r in [&pair.a, &pair.b] {
        let resp = http.get(r.url("/admin/x")).send().await.unwrap();
        if resp.status() == 200 {
            let echo: Value = resp.json().await.unwrap_or(Value::Null);
            if echo["headers"]["remote-user"].is_string() {
                return true;
            }
        }
    }
    false
}

#[tokio::test]
async fn a_login_flow_edited_in_redis_grants_nothing() {
    let pair = Pair::start("");
    let http = client();
    let mut redis = redis_of(&pair).await;
    // hanako needs the second step; her flow asks for password and code.
    let (s, v) = post(&http, pair.a.api("/login"), json!({"id": "hanako"})).await;
    assert_eq!(s, 200, "{v}\n{}", pair.logs());
    assert_eq!(v["step"], "password_and_code");
    let flow = v["flow"].as_str().unwrap().to_owned();
    // With write access to Redis alone: "a trusted device skips the second step".
    let key = format!("shared:flow:{flow}");
    let record: Vec<u8> = redis::cmd("HGET")
        .arg(&key)
        .arg("d")
        .query_async(&mut redis)
        .await
        .unwrap();
    let forged = edit_json(&record, |f| {
        f["plan"]["step"] = json!("Password");
        f["plan"]["device_skip"] = json!(true);
    });
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("d")
        .arg(forged)
        .query_async(&mut redis)
        .await
        .unwrap();
    // The password alone finishes nothing, on either replica.
    for r in [&pair.b, &pair.a] {
        let (s, e) = post(
            &http,
            r.api(&format!("/login/{flow}/complete")),
            json!({"password": PASSWORD}),
        )
        .await;
        assert_ne!(s, 200, "a forged flow logged in on {}: {e}", r.name);
        assert_eq!(
            (s, e["error"].as_str()),
            (404, Some("flow_not_found")),
            "{e}"
        );
    }
    assert!(
        !opens_admin(&pair, &http).await,
        "a forged flow opened two_factor"
    );

    // A record copied under another flow's key is not that flow.
    let (s, v) = post(&http, pair.a.api("/login"), json!({"id": "hanako"})).await;
    assert_eq!(s, 200, "{v}");
    let first = v["flow"].as_str().unwrap().to_owned();
    let (s, v) = post(&http, pair.a.api("/login"), json!({"id": "taro"})).await;
    assert_eq!(s, 200, "{v}");
    let second = v["flow"].as_str().unwrap().to_owned();
    let copied: Vec<u8> = redis::cmd("HGET")
        .arg(format!("shared:flow:{first}"))
        .arg("d")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("shared:flow:{second}"))
        .arg("d")
        .arg(copied)
        .query_async(&mut redis)
        .await
        .unwrap();
    let (s, e) = get(&http, pair.b.api(&format!("/login/{second}"))).await;
    assert_eq!(s, 404, "a moved record was read as flow {second}: {e}");
    // The untouched flow still works: the MAC is no obstacle to a real login.
    let (s, e) = post(
        &http,
        pair.b.api(&format!("/login/{first}/complete")),
        json!({"password": PASSWORD, "code": pair.last_code("hanako")}),
    )
    .await;
    assert_eq!(s, 200, "{e}\n{}", pair.logs());
    let rejected = audited(&pair, "short_lived_record_rejected").await;
    assert!(
        rejected
            .iter()
            .any(|d| d["record"] == "flow" && d["reason"] == "mismatch"),
        "the forged records are audited: {rejected:?}"
    );
    assert!(
        rejected
            .iter()
            .all(|d| !d.to_string().contains(&flow) && !d.to_string().contains(&second)),
        "a flow ID is a bearer secret: not in the audit trail"
    );
}

/// Enrolls a phone app for `user` (logged in with a code on A, enrolled through B); the
/// app's key file.
async fn enroll_app(pair: &Pair, user: &str) -> PathBuf {
    let (a, b) = (&pair.a, &pair.b);
    let http = client();
    let (s, v) = post(&http, a.api("/login"), json!({"id": user})).await;
    assert_eq!(s, 200, "{v}\n{}", pair.logs());
    let flow = v["flow"].as_str().unwrap().to_owned();
    let (s, e) = post(
        &http,
        a.api(&format!("/login/{flow}/complete")),
        json!({"password": PASSWORD, "code": pair.last_code(user)}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    let (s, e) = post(&http, a.api("/app/enroll/start"), json!({})).await;
    assert_eq!(s, 200, "{e}\n{}", pair.logs());
    let uri = e["uri"]
        .as_str()
        .unwrap()
        .replace(&a.addr.port().to_string(), &b.addr.port().to_string());
    let key = pair.dir.path().join(format!("app-key-{user}.json"));
    let code = pair.last_code(user);
    let (ok, out) = app_cli(
        &key,
        &[
            "enroll",
            "--uri",
            &uri,
            "--security-code",
            &code,
            "--name",
            "phone",
        ],
    );
    assert!(ok, "{out}\n{}", pair.logs());
    key
}

#[tokio::test]
async fn an_approval_edited_in_redis_grants_nothing() {
    let pair = Pair::start("");
    let key = enroll_app(&pair, "jiro").await;
    let mut redis = redis_of(&pair).await;
    let http = client();
    let (s, v) = post(&http, pair.a.api("/login"), json!({"id": "jiro"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["step"], "app_approval");
    let flow = v["flow"].as_str().unwrap().to_owned();
    let (ok, list) = app_cli(&key, &["list"]);
    assert!(ok, "{list}");
    let id = list["approvals"][0]["id"].as_str().unwrap().to_owned();
    // Nobody touched the phone: the approval is "approved" in Redis only.
    let _: () = redis::cmd("HSET")
        .arg(format!("shared:ap:{id}"))
        .arg("s")
        .arg("approved")
        .arg("by")
        .arg("forged")
        .query_async(&mut redis)
        .await
        .unwrap();
    for r in [&pair.b, &pair.a] {
        let (s, e) = post(
            &http,
            r.api(&format!("/login/{flow}/complete")),
            json!({"password": PASSWORD}),
        )
        .await;
        assert_ne!(s, 200, "a forged approval logged in on {}: {e}", r.name);
    }
    assert!(
        !opens_admin(&pair, &http).await,
        "a forged approval opened two_factor"
    );
    // Nor can a record be made to look approved from the flow's side.
    let (s, v) = post(&http, pair.b.api("/login"), json!({"id": "jiro"})).await;
    assert_eq!(s, 200, "{v}");
    let flow = v["flow"].as_str().unwrap().to_owned();
    let fkey = format!("shared:flow:{flow}");
    let record: Vec<u8> = redis::cmd("HGET")
        .arg(&fkey)
        .arg("d")
        .query_async(&mut redis)
        .await
        .unwrap();
    let forged = edit_json(&record, |f| {
        f["stage"] = json!("password_proved");
        f["plan"]["step"] = json!("Password");
        f["approval"] = Value::Null;
    });
    let _: () = redis::cmd("HSET")
        .arg(&fkey)
        .arg("d")
        .arg(forged)
        .query_async(&mut redis)
        .await
        .unwrap();
    let (s, e) = post(
        &http,
        pair.a.api(&format!("/login/{flow}/complete")),
        json!({"password": PASSWORD}),
    )
    .await;
    assert_ne!(s, 200, "{e}");
    assert!(!opens_admin(&pair, &http).await);
    let rejected = audited(&pair, "short_lived_record_rejected").await;
    for record in ["approval", "flow"] {
        assert!(
            rejected.iter().any(|d| d["record"] == record),
            "{record}: {rejected:?}"
        );
    }
}

// --- a new app password waits in Redis for its page, not in clear ------------------------

/// Every string value in the pair's Redis.
async fn redis_values(pair: &Pair) -> Vec<Vec<u8>> {
    let mut con = redis_of(pair).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut out = Vec::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut con)
            .await
            .unwrap();
        if kind == "string" {
            let v: Vec<u8> = redis::cmd("GET")
                .arg(&k)
                .query_async(&mut con)
                .await
                .unwrap();
            out.push(v);
        }
    }
    out
}

#[tokio::test]
async fn a_new_app_password_is_shown_on_the_other_replica_and_never_stored_in_clear() {
    let pair = Pair::start("");
    let (a, b) = (&pair.a, &pair.b);
    let http = client();
    let (_, v) = post(&http, a.api("/login"), json!({"id": "hanako"})).await;
    let flow = v["flow"].as_str().unwrap().to_owned();
    let code = pair.last_code("hanako");
    let (s, e) = post(
        &http,
        a.api(&format!("/login/{flow}/complete")),
        json!({"password": PASSWORD, "code": code}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    let html = http
        .get(a.url("/_nidan/settings/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = http
        .post(a.url("/_nidan/settings/tokens"))
        .form(&[("name", "Mail"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", pair.logs());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let stored = redis_values(&pair).await;
    // Replica B shows it (the short-lived state is shared), once.
    let html = http
        .get(b.url(&location))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = html
        .split("<code class=\"token\" id=\"new-token\">")
        .nth(1)
        .expect("the new password is shown")
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    let html = http
        .get(a.url(&location))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains(&token), "shown once");
    // What Redis held while it waited was not the password, in any spelling.
    let body = token.strip_prefix("nidan_").unwrap();
    let bare = body.replace('-', "");
    for v in &stored {
        for needle in [body.as_bytes(), bare.as_bytes()] {
            assert!(!v.windows(needle.len()).any(|w| w == needle));
        }
    }
    assert!(!pair.logs().contains(&token));
}
