//! Several real `nidan serve` processes on loopback in the replica mode: a fresh PostgreSQL
//! database per test on the machine's server and a `redis-server` of the test's own. The
//! replicas share one directory (users file, device key, outbox), as replicas share a
//! deployment's files; no sticky sessions: one cookie jar (`Browser`) talks to every
//! replica. Use with `use crate::common::cluster::*;`.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::stores::{self, Cut, TestDb, TestRedis};
use crate::common::{self, Backend, PASSWORD, bin, free_port, set_cookie};
use serde_json::{Value, json};

/// The bearer token of every replica's admin API (`Node::admin`).
pub const ADMIN_TOKEN: &str = "admin-token-for-the-replica-tests-0123456789";

pub struct Node {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config: std::path::PathBuf,
    pub log: std::path::PathBuf,
    /// The Redis URL this replica is given (the cluster's, or a forwarder's that a test cuts).
    pub redis_url: String,
    /// The PostgreSQL URL this replica is given when not the cluster's (a forwarder's that
    /// a test cuts for this replica only: [`Cluster::start_links`]).
    pub pg_url: Option<String>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
    pub redis: TestRedis,
    /// Kept for its `Drop` (the database goes with the test).
    pub _db: TestDb,
    /// What the replicas are given as the PostgreSQL URL (the database's, or a forwarder's).
    pub pg_url: String,
    pub _backend: Backend,
}

impl Cluster {
    pub fn start(n: usize, grace: &str) -> Self {
        Self::start_with(n, grace, "")
    }

    /// `extra`: more top-level YAML for every replica's configuration.
    pub fn start_with(n: usize, grace: &str, extra: &str) -> Self {
        Self::start_full(n, grace, extra, None)
    }

    /// `cut`: reach PostgreSQL through this forwarder.
    pub fn start_full(n: usize, grace: &str, extra: &str, cut: Option<&Cut>) -> Self {
        let redis = TestRedis::start();
        let urls = vec![redis.url(); n];
        Self::start_on(redis, &urls, grace, extra, cut)
    }

    /// One replica per entry of `redis_urls`, each given that Redis URL (a forwarder to
    /// `redis` that a test may cut for one replica); `cut`: reach PostgreSQL through it.
    pub fn start_on(
        redis: TestRedis,
        redis_urls: &[String],
        grace: &str,
        extra: &str,
        cut: Option<&Cut>,
    ) -> Self {
        Self::start_in(
            common::deployment_dir(),
            redis,
            redis_urls,
            grace,
            extra,
            cut,
        )
    }

    /// [`Cluster::start_on`] in a deployment directory the caller prepared (a users file
    /// with more users, say).
    pub fn start_in(
        dir: tempfile::TempDir,
        redis: TestRedis,
        redis_urls: &[String],
        grace: &str,
        extra: &str,
        cut: Option<&Cut>,
    ) -> Self {
        let backend = Backend::start();
        let db = TestDb::create();
        let pg_url = match cut {
            Some(cut) => db.url.replacen(
                &pg_addr().to_string(),
                &format!("127.0.0.1:{}", cut.port),
                1,
            ),
            None => db.url.clone(),
        };
        std::fs::write(dir.path().join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        let mut c = Self {
            nodes: Vec::new(),
            dir,
            redis,
            _db: db,
            pg_url,
            _backend: backend,
        };
        for (i, url) in redis_urls.iter().enumerate() {
            let node = c.spawn_node(i, url, grace, extra);
            c.nodes.push(node);
        }
        for i in 0..c.nodes.len() {
            c.wait_ready(i);
        }
        c
    }

    /// Like [`Cluster::start_on`] (PostgreSQL reached directly), then replica `i` reaches
    /// PostgreSQL through `pg_links[i]` when that is given (started again so), as a network
    /// fault between one replica and the database would need.
    pub fn start_links(
        redis: TestRedis,
        redis_urls: &[String],
        pg_links: &[Option<&Cut>],
        grace: &str,
        extra: &str,
    ) -> Self {
        let mut c = Self::start_on(redis, redis_urls, grace, extra, None);
        for (i, link) in pg_links.iter().enumerate() {
            let Some(link) = link else { continue };
            c.kill9(i);
            let mut node = c.nodes.remove(i);
            node.pg_url = Some(c._db.url.replacen(
                &pg_addr().to_string(),
                &format!("127.0.0.1:{}", link.port),
                1,
            ));
            let started = c.spawn(&mut node);
            c.nodes.insert(i, node);
            assert!(started, "replica {i} did not start again\n{}", c.log(i));
            c.wait_ready(i);
        }
        c
    }

    pub fn spawn_node(&self, i: usize, redis_url: &str, grace: &str, extra: &str) -> Node {
        let b = self._backend.addr;
        // `extra` may name the directory itself (`users: { database: {} }`).
        let users = if extra.lines().any(|l| l.starts_with("users:")) {
            ""
        } else {
            "users: { file: users.yaml, reload_interval: 1s }"
        };
        for _ in 0..5 {
            let (port, admin) = (free_port(), free_port());
            let text = format!(
                r#"
version: 1
server: {{ listen: ["127.0.0.1:{port}"], admin_listen: "127.0.0.1:{admin}", admin_token_file: admin-token, threads: 2, grace_period: 1s }}
portal: {{ path_prefix: /_nidan, default_language: en, title: nidan test, allowed_return_hosts: [app.example.com] }}
trusted_devices:
  signing_keys: [{{ id: k1, secret_file: device-key }}]
notifiers: {{ outbox: {{ path: outbox.jsonl, console: false }} }}
{users}
# Many logins of one user from one browser class: the send budgets are not what is tested.
security_code: {{ max_sends_per_account: 100, max_sends_per_ip: 200 }}
storage:
  postgres: {{ url_env: NIDAN_DATABASE_URL }}
  redis: {{ url_env: NIDAN_REDIS_URL, key_prefix: replicas-test }}
  outage_grace: {grace}
routes:
  - {{ name: app, hosts: ["*"], path_prefix: /, upstream: ["{b}"], policy: login }}
{extra}
"#
            );
            let config = self.dir.path().join(format!("replica-{i}.yaml"));
            std::fs::write(&config, text).unwrap();
            let mut node = Node {
                child: None,
                addr: format!("127.0.0.1:{port}").parse().unwrap(),
                admin: format!("127.0.0.1:{admin}").parse().unwrap(),
                config,
                log: self.dir.path().join(format!("replica-{i}.log")),
                redis_url: redis_url.to_owned(),
                pg_url: None,
            };
            if self.spawn(&mut node) {
                return node;
            }
        }
        panic!("replica {i} did not start");
    }

    pub fn spawn(&self, node: &mut Node) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        // Where this run's lines start (`chores_holder` reads only the last run's).
        {
            use std::io::Write as _;
            let _ = writeln!(&log, "{SPAWNED}");
        }
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&node.config)
            .env("RUST_LOG", "info")
            .env(
                "NIDAN_DATABASE_URL",
                node.pg_url.as_deref().unwrap_or(&self.pg_url),
            )
            .env("NIDAN_REDIS_URL", &node.redis_url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&node.addr, Duration::from_millis(200)).is_ok()
            {
                node.child = Some(child);
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Waits until `/readyz` says both stores answer (the bus has subscribed).
    pub fn wait_ready(&self, i: usize) {
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

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.nodes[i].addr)
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The replica that took the chores lease (from the logs: call it before any restart),
    /// waiting up to 10 s for one.
    pub async fn wait_holder(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let holders: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.log(i).contains("now runs the periodic chores"))
                .collect();
            match holders.as_slice() {
                [one] => return *one,
                [] => assert!(Instant::now() < deadline, "nobody took the chores"),
                more => panic!("several holders: {more:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The audit trail of `user` in the cluster's database, newest first, as
    /// `(event, detail)`.
    pub async fn audit(&self, user: &str) -> Vec<(String, Value)> {
        let store = nidan::store::Store::open_postgres(&self._db.url, 1, true)
            .await
            .unwrap();
        store
            .audit_trail(Some(user), 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.event, serde_json::from_str(&r.detail).unwrap()))
            .collect()
    }

    /// How many audit records of `event` the trail holds for `user`.
    pub async fn audited(&self, user: &str, event: &str) -> usize {
        self.audit(user)
            .await
            .iter()
            .filter(|(e, _)| e == event)
            .count()
    }

    pub fn outbox(&self) -> Vec<Value> {
        common::outbox_in(&self.dir.path().join("outbox.jsonl"))
    }

    pub fn last_code(&self, user: &str) -> String {
        common::last_code_in(&self.dir.path().join("outbox.jsonl"), user)
    }

    /// Gives `user` the password hash of `other` in the shared users file.
    pub fn change_password(&self, user: &str, other: &str) {
        let text = std::fs::read_to_string(self.dir.path().join("users.yaml")).unwrap();
        let hash_of = |id: &str| {
            let at = text.find(&format!("id: {id}\n")).unwrap();
            text[at..]
                .lines()
                .find(|l| l.trim_start().starts_with("password_hash:"))
                .unwrap()
                .to_owned()
        };
        let (from, to) = (hash_of(user), hash_of(other));
        self.edit_users(user, &from, &to);
    }

    /// Rewrites the shared users file (after a second, so its modification time moves).
    pub fn edit_users(&self, user: &str, from: &str, to: &str) {
        let path = self.dir.path().join("users.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let at = text.find(&format!("id: {user}\n")).unwrap();
        let (head, tail) = text.split_at(at);
        let tail = tail.replacen(from, to, 1);
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&path, format!("{head}{tail}")).unwrap();
    }
}

/// The line [`Cluster::spawn`] writes to a replica's log before each start.
const SPAWNED: &str = "--- the test starts nidan serve ---";

/// A cluster whose every replica reaches PostgreSQL and Redis only through a forwarder the
/// test controls, one per store, shared by the replicas: cutting one is that store gone
/// for everyone, as a failover or a partition on the database side would be.
pub struct Faulty {
    pub c: Cluster,
    /// Between every replica and PostgreSQL.
    pub pg: Cut,
    /// Between every replica and Redis (the server itself is `c.redis`, which a test may
    /// stop and start again behind it).
    pub redis: Cut,
}

impl Faulty {
    /// `users`: entries appended to the users file before any replica starts (list items
    /// indented as in `config/test/users.yaml`).
    pub fn start(n: usize, grace: &str, extra: &str, users: &str) -> Self {
        let redis = TestRedis::start();
        let redis_cut = Cut::start(format!("127.0.0.1:{}", redis.port).parse().unwrap());
        let pg = Cut::start(pg_addr());
        let dir = common::deployment_dir();
        let file = dir.path().join("users.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, format!("{text}{users}")).unwrap();
        let urls = vec![format!("redis://127.0.0.1:{}/0", redis_cut.port); n];
        let c = Cluster::start_in(dir, redis, &urls, grace, extra, Some(&pg));
        Self {
            c,
            pg,
            redis: redis_cut,
        }
    }
}

impl Cluster {
    /// Starts replica `i` again from its configuration, on its ports, after a `kill9`
    /// (killing it first if it runs), and waits until it is ready.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        let n = &self.nodes[i];
        let mut node = Node {
            child: None,
            addr: n.addr,
            admin: n.admin,
            config: n.config.clone(),
            log: n.log.clone(),
            redis_url: n.redis_url.clone(),
            pg_url: n.pg_url.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.spawn(&mut node) {
            assert!(
                Instant::now() < deadline,
                "replica {i} did not start again\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.nodes[i] = node;
        self.wait_ready(i);
    }

    /// The running replica whose log (since its last start) last says it took the chores
    /// lease and not that it lost it, if exactly one does.
    pub fn chores_holder(&self) -> Option<usize> {
        let claims: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .filter(|&i| {
                let log = self.log(i);
                let run = log.rsplit(SPAWNED).next().unwrap_or("");
                let took = run.rfind("now runs the periodic chores");
                let lost = run.rfind("no longer runs the periodic chores");
                took.is_some_and(|t| lost.is_none_or(|l| l < t))
            })
            .collect();
        (claims.len() == 1).then(|| claims[0])
    }

    /// Waits (up to `limit`) until exactly one replica holds the chores; which, if one did.
    pub fn wait_chores_holder(&self, limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        loop {
            let holder = self.chores_holder();
            if holder.is_some() || Instant::now() > deadline {
                return holder;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A reader of the shared outbox that follows it as it grows.
    pub fn codes(&self) -> Codes {
        Codes::new(self.dir.path().join("outbox.jsonl"))
    }
}

/// The codes in an outbox, read as the file grows (from where the last look stopped, so
/// many simulated browsers can wait for theirs without re-reading the whole file): per
/// user, every code in the order sent. A browser notes [`Codes::count`] before the ID
/// step and waits for the next one, so a code from an earlier login is never taken.
pub struct Codes {
    path: std::path::PathBuf,
    seen: std::sync::Mutex<CodesSeen>,
}

#[derive(Default)]
struct CodesSeen {
    offset: usize,
    by_user: std::collections::HashMap<String, Vec<String>>,
}

impl Codes {
    pub fn new(path: std::path::PathBuf) -> Self {
        Self {
            path,
            seen: std::sync::Mutex::new(CodesSeen::default()),
        }
    }

    fn refresh(&self) -> std::sync::MutexGuard<'_, CodesSeen> {
        use std::io::{Read as _, Seek as _};
        let mut seen = self.seen.lock().unwrap();
        let mut bytes = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.path)
            && f.seek(std::io::SeekFrom::Start(seen.offset as u64)).is_ok()
        {
            let _ = f.read_to_end(&mut bytes);
        }
        // Whole lines only: a line being appended is read at the next look.
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if end > 0 {
            let fresh = String::from_utf8_lossy(&bytes[..end]).into_owned();
            for line in fresh.lines().filter(|l| !l.trim().is_empty()) {
                let m: Value = serde_json::from_str(line).unwrap();
                if let (Some(user), Some(code)) = (m["user"].as_str(), m["code"].as_str()) {
                    let codes = seen.by_user.entry(user.to_owned()).or_default();
                    codes.push(code.to_owned());
                }
            }
            seen.offset += end;
        }
        seen
    }

    /// How many codes `user` was sent so far.
    pub fn count(&self, user: &str) -> usize {
        self.refresh().by_user.get(user).map_or(0, Vec::len)
    }

    /// The first code `user` is sent after the first `before`, waiting up to `limit`.
    pub async fn after(&self, user: &str, before: usize, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let code = self
                .refresh()
                .by_user
                .get(user)
                .and_then(|c| c.get(before).cloned());
            if code.is_some() || Instant::now() > deadline {
                return code;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A client like [`http`] whose connections come from `ip` (any 127.x.y.z on Linux
/// loopback: another client network for the per-address limits), with `timeout`.
pub fn http_from(ip: std::net::IpAddr, timeout: Duration) -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip)
        .timeout(timeout)
        .build()
        .unwrap()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// The machine's PostgreSQL, as the test databases' URLs name it.
pub fn pg_addr() -> SocketAddr {
    let url = stores::admin_url();
    let host = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap();
    host.parse().unwrap()
}

/// Signals a replica's process (`TERM`: a graceful stop).
pub fn signal(node: &Node, sig: &str) {
    let pid = node.child.as_ref().unwrap().id();
    Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
}

pub fn readyz_blocking(admin: SocketAddr) -> (u16, Value) {
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

pub fn http() -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// What a browser holds: its cookies, sent by hand to whichever replica.
#[derive(Default, Clone)]
pub struct Browser {
    pub session: Option<String>,
    pub device: Option<String>,
}

impl Browser {
    pub fn cookies(&self) -> String {
        let mut c = Vec::new();
        if let Some(s) = &self.session {
            c.push(format!("nidan_session={s}"));
        }
        if let Some(d) = &self.device {
            c.push(format!("nidan_device={d}"));
        }
        c.join("; ")
    }

    pub async fn post(&mut self, c: &Cluster, i: usize, path: &str, body: Value) -> (u16, Value) {
        let r = http()
            .post(c.url(i, &format!("/_nidan/api{path}")))
            .header("cookie", self.cookies())
            .json(&body)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, c: &Cluster, i: usize, path: &str) -> (u16, Value) {
        let r = http()
            .get(c.url(i, &format!("/_nidan/api{path}")))
            .header("cookie", self.cookies())
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub fn keep(&mut self, r: &reqwest::Response) {
        if let Some(s) = set_cookie(r, "nidan_session") {
            self.session = (!s.is_empty()).then_some(s);
        }
        if let Some(d) = set_cookie(r, "nidan_device") {
            self.device = (!d.is_empty()).then_some(d);
        }
    }

    /// The step a new login asks for on replica `i`.
    pub async fn step(&mut self, c: &Cluster, i: usize, user: &str) -> String {
        let (s, v) = self.post(c, i, "/login", json!({"id": user})).await;
        assert_eq!(s, 200, "{v}");
        v["step"].as_str().unwrap().to_owned()
    }

    /// A whole login: the ID step on `start`, the rest on `finish`.
    pub async fn login(
        &mut self,
        c: &Cluster,
        start: usize,
        finish: usize,
        user: &str,
        trust: bool,
    ) {
        let (s, v) = self.post(c, start, "/login", json!({"id": user})).await;
        assert_eq!(s, 200, "{v}");
        let flow = v["flow"].as_str().unwrap().to_owned();
        let mut body = json!({"password": PASSWORD});
        if v["step"] == "password_and_code" {
            body["code"] = json!(c.last_code(user));
            if trust {
                body["trust_device"] = json!(true);
                body["device_name"] = json!("laptop");
            }
        }
        let (s, v) = self
            .post(c, finish, &format!("/login/{flow}/complete"), body)
            .await;
        assert_eq!(s, 200, "{v}");
        assert!(self.session.is_some());
    }

    pub async fn signed_in(&self, c: &Cluster, i: usize) -> bool {
        self.get(c, i, "/me").await.0 == 200
    }
}

/// Waits until `f(i)` holds on every replica; returns how long the slowest took.
pub async fn everywhere(c: &Cluster, what: &str, limit: Duration, f: impl AsyncFn(usize) -> bool) {
    let start = Instant::now();
    for i in 0..c.nodes.len() {
        while !f(i).await {
            assert!(
                start.elapsed() < limit,
                "{what}: replica {i} not within {limit:?}\n{}",
                c.log(i)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
