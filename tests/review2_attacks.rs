//! Attacks found in the second review of the replica mode (issue 13). Each test attacks real
//! `nidan serve` replicas (a fresh PostgreSQL database, a `redis-server` of the test's own)
//! the way the hole was found, and checks that it is now closed.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod common;
#[path = "common/stores.rs"]
mod stores;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, PASSWORD, bin, free_port, set_cookie};
use serde_json::{Value, json};
use stores::{Cut, TestDb, TestRedis};

// --- harness (as in tests/replicas.rs, with a cuttable path to Redis per replica) -------

struct Node {
    child: Option<Child>,
    addr: SocketAddr,
    admin: SocketAddr,
}

struct Cluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    _redis: TestRedis,
    _db: TestDb,
    _backend: Backend,
}

impl Cluster {
    /// `redis_urls[i]`: the Redis URL replica `i` is given.
    fn start(redis: TestRedis, redis_urls: &[String], extra: &str) -> Self {
        Self::start_full(redis, redis_urls, extra, None)
    }

    /// `pg_cut`: every replica reaches PostgreSQL through this forwarder.
    fn start_full(
        redis: TestRedis,
        redis_urls: &[String],
        extra: &str,
        pg_cut: Option<&Cut>,
    ) -> Self {
        let backend = Backend::start();
        let db = TestDb::create();
        let pg_url = match pg_cut {
            Some(cut) => db.url.replacen(
                &pg_addr().to_string(),
                &format!("127.0.0.1:{}", cut.port),
                1,
            ),
            None => db.url.clone(),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("device-key"),
            "test-device-signing-key-0123456789abcdef",
        )
        .unwrap();
        std::fs::copy(
            common::repo().join("config/test/users.yaml"),
            dir.path().join("users.yaml"),
        )
        .unwrap();
        let mut nodes = Vec::new();
        for (i, url) in redis_urls.iter().enumerate() {
            nodes.push(spawn_node(dir.path(), i, &pg_url, url, backend.addr, extra));
        }
        let c = Self {
            nodes,
            dir,
            _redis: redis,
            _db: db,
            _backend: backend,
        };
        for i in 0..c.nodes.len() {
            c.wait_ready(i);
        }
        c
    }

    fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (s, v) = readyz_blocking(self.nodes[i].admin);
            if s == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {i} not ready: {v}\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.nodes[i].addr)
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("replica-{i}.log")))
            .unwrap_or_default()
    }

    fn last_code(&self, user: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text =
                std::fs::read_to_string(self.dir.path().join("outbox.jsonl")).unwrap_or_default();
            if let Some(code) = text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|m| m["user"] == user && m["code"].is_string())
                .and_then(|m| m["code"].as_str().map(str::to_owned))
            {
                return code;
            }
            assert!(Instant::now() < deadline, "no code sent to {user}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Gives `user` the password hash of `other` in the shared users file (after a second,
    /// so its modification time moves).
    fn change_password(&self, user: &str, other: &str) {
        let path = self.dir.path().join("users.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let hash_of = |id: &str| {
            let at = text.find(&format!("id: {id}\n")).unwrap();
            text[at..]
                .lines()
                .find(|l| l.trim_start().starts_with("password_hash:"))
                .unwrap()
                .to_owned()
        };
        let (from, to) = (hash_of(user), hash_of(other));
        let at = text.find(&format!("id: {user}\n")).unwrap();
        let (head, tail) = text.split_at(at);
        let tail = tail.replacen(&from, &to, 1);
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&path, format!("{head}{tail}")).unwrap();
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

fn spawn_node(
    dir: &std::path::Path,
    i: usize,
    pg_url: &str,
    redis_url: &str,
    backend: SocketAddr,
    extra: &str,
) -> Node {
    for _ in 0..5 {
        let (port, admin) = (free_port(), free_port());
        let text = format!(
            r#"
version: 1
server: {{ listen: ["127.0.0.1:{port}"], admin_listen: "127.0.0.1:{admin}", threads: 2, grace_period: 1s }}
portal: {{ path_prefix: /_nidan, default_language: en, title: nidan test, allowed_return_hosts: [app.example.com] }}
trusted_devices:
  signing_keys: [{{ id: k1, secret_file: device-key }}]
notifiers: {{ outbox: {{ path: outbox.jsonl, console: false }} }}
users: {{ file: users.yaml, reload_interval: 1s }}
security_code: {{ max_sends_per_account: 100, max_sends_per_ip: 200 }}
storage:
  postgres: {{ url_env: NIDAN_DATABASE_URL }}
  redis: {{ url_env: NIDAN_REDIS_URL, key_prefix: review2 }}
  outage_grace: 60s
routes:
  - {{ name: app, hosts: ["*"], path_prefix: /, upstream: ["{backend}"], policy: login }}
{extra}
"#
        );
        let config = dir.join(format!("replica-{i}.yaml"));
        std::fs::write(&config, text).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("replica-{i}.log")))
            .unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NIDAN_DATABASE_URL", pg_url)
            .env("NIDAN_REDIS_URL", redis_url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Node {
                    child: Some(child),
                    addr,
                    admin: format!("127.0.0.1:{admin}").parse().unwrap(),
                };
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("replica {i} did not start");
}

/// The machine's PostgreSQL, as the test databases' URLs name it.
fn pg_addr() -> SocketAddr {
    let url = stores::admin_url();
    let host = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap();
    host.parse().unwrap()
}

fn readyz_blocking(admin: SocketAddr) -> (u16, Value) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&admin, Duration::from_millis(500)) else {
        return (0, Value::Null);
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn http() -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// What a browser holds: its cookies, sent by hand to whichever replica.
#[derive(Default, Clone)]
struct Browser {
    session: Option<String>,
}

impl Browser {
    fn cookies(&self) -> String {
        self.session
            .as_ref()
            .map(|s| format!("nidan_session={s}"))
            .unwrap_or_default()
    }

    async fn post(&mut self, c: &Cluster, i: usize, path: &str, body: Value) -> (u16, Value) {
        let r = http()
            .post(c.url(i, &format!("/_nidan/api{path}")))
            .header("cookie", self.cookies())
            .json(&body)
            .send()
            .await
            .unwrap();
        if let Some(s) = set_cookie(&r, "nidan_session") {
            self.session = (!s.is_empty()).then_some(s);
        }
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, c: &Cluster, i: usize, path: &str) -> (u16, Value) {
        let r = http()
            .get(c.url(i, &format!("/_nidan/api{path}")))
            .header("cookie", self.cookies())
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// A one-step login (taro has 2-step off) on replica `i`.
    async fn login_taro(&mut self, c: &Cluster, i: usize) {
        let (s, v) = self.post(c, i, "/login", json!({"id": "taro"})).await;
        assert_eq!(s, 200, "{v}");
        let flow = v["flow"].as_str().unwrap().to_owned();
        let mut body = json!({"password": PASSWORD});
        if v["step"] == "password_and_code" {
            body["code"] = json!(c.last_code("taro"));
        }
        let (s, v) = self
            .post(c, i, &format!("/login/{flow}/complete"), body)
            .await;
        assert_eq!(s, 200, "{v}");
        assert!(self.session.is_some());
    }

    async fn signed_in(&self, c: &Cluster, i: usize) -> bool {
        self.get(c, i, "/me").await.0 == 200
    }
}

// --- finding 1 --------------------------------------------------------------------------

/// A revocation is acknowledged before any other replica can know of it. Replica 0 cannot
/// reach Redis (a partition of that one machine; replica 1 and Redis are fine). The user
/// logs out on replica 0: the session is deleted in PostgreSQL and 200 is answered, the
/// bus event waits in replica 0's memory. Replica 1 hears nothing, its bus is healthy (so
/// the outage grace never starts there), and it keeps serving the logged-out session from
/// its cache — for as long as the partition lasts, and for good if replica 0 is restarted
/// meanwhile (the queue is in memory). Issue 13: "every replica drops the entry within a
/// second".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_a_replica_cut_from_redis_never_reaches_the_others() {
    let redis = TestRedis::start();
    let cut = Cut::start(format!("127.0.0.1:{}", redis.port).parse().unwrap());
    let urls = [format!("redis://127.0.0.1:{}/0", cut.port), redis.url()];
    let mut c = Cluster::start(redis, &urls, "");
    let mut b = Browser::default();
    b.login_taro(&c, 0).await;
    for i in 0..2 {
        assert!(b.signed_in(&c, i).await, "replica {i}");
    }
    let stolen = b.clone();

    // Replica 0 loses Redis; the owner logs out there (it does not need Redis to do so).
    cut.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = b.post(&c, 0, "/logout", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !stolen.signed_in(&c, 0).await,
        "replica 0 itself forgot the logout"
    );

    // Whoever holds the cookie still gets in through replica 1, well past a second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = stolen.signed_in(&c, 1).await;

    // And the revocation is lost for good once replica 0 restarts before Redis is back.
    c.kill9(0);
    cut.restore();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let forever = stolen.signed_in(&c, 1).await;
    assert!(
        !still && !forever,
        "the logged-out session still opens replica 1: 3 s after the logout {still}, \
         3 s after replica 0 died and Redis came back {forever}\n{}",
        c.log(1)
    );
}

// --- finding 2 --------------------------------------------------------------------------

/// Logout ignores the store's answer (`let _ = sessions.end(..)`): while PostgreSQL is
/// unreachable it answers 200 `{"logged_out": true}` and clears the cookie, but nothing
/// was deleted and not even this replica's cache dropped the entry (`end` returns before
/// `cache.revoke` on a store error). The user believes the shared computer is signed out;
/// whoever copied the cookie keeps the session, during the outage (from the cache, within
/// the outage grace) and after it (from PostgreSQL). SECURITY 36: a store error gives 503,
/// never "done".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_during_a_postgres_outage_says_logged_out_but_the_session_lives_on() {
    let redis = TestRedis::start();
    let pg = Cut::start(pg_addr());
    let urls = [redis.url()];
    let c = Cluster::start_full(redis, &urls, "", Some(&pg));
    let mut b = Browser::default();
    b.login_taro(&c, 0).await;
    assert!(b.signed_in(&c, 0).await);
    let stolen = b.clone();

    pg.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = b.post(&c, 0, "/logout", json!({})).await;
    let during = stolen.signed_in(&c, 0).await;
    pg.restore();
    // Let the pool reconnect.
    let deadline = Instant::now() + Duration::from_secs(15);
    while readyz_blocking(c.nodes[0].admin).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not come back\n{}",
            c.log(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = stolen.signed_in(&c, 0).await;
    assert!(
        s != 200 || (!during && !after),
        "logout answered {s} {v} while PostgreSQL was down, yet the session still opens: \
         during the outage {during}, after it {after}"
    );
}

// --- finding 3 --------------------------------------------------------------------------

/// The consequences of a users-file change swallow store errors and are never retried:
/// `revoke_everything` does `sessions.end_user(..).unwrap_or(0)` and
/// `devices.revoke_all(..).unwrap_or(0)`, and the chores holder then tells every replica the
/// change is applied (`Event::Users` clears their pending copy). An operator who changes a
/// compromised user's password while PostgreSQL is briefly unreachable (a failover, a
/// network blip: the replica mode's expected faults) leaves the attacker's sessions (and
/// trusted devices, app passwords) alive after PostgreSQL is back, for as long as they are
/// used. SECURITY 15: a password change ends every session of the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_during_a_postgres_blip_never_ends_the_sessions() {
    let redis = TestRedis::start();
    let pg = Cut::start(pg_addr());
    let urls = [redis.url()];
    let c = Cluster::start_full(redis, &urls, "", Some(&pg));
    let mut b = Browser::default();
    b.login_taro(&c, 0).await;
    assert!(b.signed_in(&c, 0).await);

    pg.cut();
    c.change_password("taro", "hanako");
    // The users file is reloaded every second; its consequences run (and fail) meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    pg.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    while readyz_blocking(c.nodes[0].admin).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not come back\n{}",
            c.log(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !b.signed_in(&c, 0).await,
        "taro's password was changed, PostgreSQL has been back for 3 s, and the old session \
         still opens\n{}",
        c.log(0)
    );
}
