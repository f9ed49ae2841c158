//! Test harness: the real `nidan` binary on a free loopback port, in front of the real echo
//! backend process, with a temp directory for its database, keys and outbox. Everything
//! started here is stopped on `Drop`.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

// The harness's parts, each for the tests that need it (`use crate::common::stores;`).
pub mod audit;
pub mod caddy;
pub mod cluster;
pub mod ldap;
pub mod login;
pub mod nginx;
pub mod pg;
pub mod smtp;
pub mod stores;
pub mod webauthn;
pub mod ws;

pub use login::*;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::Value;

pub const PASSWORD: &str = "test-password-1";

/// The gateway binary: `NIDAN_BIN` when set (e.g. the release build, to run a suite
/// against what ships), else the one cargo built for the tests.
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("NIDAN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_nidan").to_owned())
    })
}

pub fn repo() -> PathBuf {
    // Read at run time: CI reuses a warm target dir from another checkout folder, and a
    // path baked in at compile time could name a folder that is gone.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The fenced block that follows `<!-- snippet: {name} -->` in docs/forward-auth.md. Tests run the
/// documented deployments from there, verbatim but for addresses ([`substitute`]), so the
/// documentation cannot drift from what is tested.
pub fn readme_snippet(name: &str) -> String {
    doc_snippet("docs/forward-auth.md", name)
}

/// The fenced block that follows `<!-- snippet: {name} -->` in `page` (a path from the
/// repository's root), e.g. the systemd unit in docs/operations.md.
pub fn doc_snippet(page: &str, name: &str) -> String {
    let readme = std::fs::read_to_string(repo().join(page)).unwrap();
    let marker = format!("<!-- snippet: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("{page} has no {marker}"))
        .1;
    let mut lines = after.lines().skip_while(|l| l.trim().is_empty());
    let fence = lines.next().unwrap_or("");
    assert!(
        fence.starts_with("```"),
        "{marker} is not followed by a fenced block"
    );
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    body.join("\n") + "\n"
}

/// `text` with each `(from, to)` replaced; every `from` must be there (a snippet that no
/// longer names the address a test substitutes fails loudly instead of running unchanged).
pub fn substitute(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        assert!(
            out.contains(from),
            "the snippet no longer contains {from:?}"
        );
        out = out.replace(from, to);
    }
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(addr: SocketAddr, child: &mut Child, what: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("{what} exited early: {status}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start listening on {addr}");
}

/// The echo backend as its own process (`nidan echo-backend`).
pub struct Backend {
    child: Child,
    pub addr: SocketAddr,
}

impl Backend {
    pub fn start() -> Self {
        Self::start_at("127.0.0.1:0")
    }

    /// An echo backend on `addr` again (after the one there was stopped).
    pub fn start_on(addr: SocketAddr) -> Self {
        Self::start_at(&addr.to_string())
    }

    fn start_at(listen: &str) -> Self {
        let mut child = Command::new(bin())
            .args(["echo-backend", "--listen", listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Self { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets `path` (dotted, with `[n]` for list items) in a YAML document.
pub fn set(doc: &mut Value, path: &str, value: Value) {
    let mut cur = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (
                k,
                Some(rest.trim_end_matches(']').parse::<usize>().unwrap()),
            ),
            None => (*part, None),
        };
        let last = i == parts.len() - 1 && index.is_none();
        let map = cur.as_mapping_mut().expect("a mapping on the path");
        let k = Value::String(key.to_owned());
        if last {
            map.insert(k, value);
            return;
        }
        if !map.contains_key(&k) {
            map.insert(k.clone(), Value::Mapping(Default::default()));
        }
        cur = map.get_mut(&k).unwrap();
        if let Some(n) = index {
            cur = cur
                .as_sequence_mut()
                .expect("a list on the path")
                .get_mut(n)
                .expect("list index");
            if i == parts.len() - 1 {
                *cur = value;
                return;
            }
        }
    }
}

/// Parses a YAML snippet into a value (for `set`).
pub fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

/// Builds a test gateway's configuration.
pub struct GatewayBuilder {
    doc: Value,
    backend: Backend,
}

/// A running gateway process.
pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub outbox: PathBuf,
    pub backend: Backend,
    pub admin: Option<SocketAddr>,
}

impl GatewayBuilder {
    /// The standard test setup: routes `/public` bypass, `/admin` two_factor,
    /// `/sync` exempt with Basic, `/basic` login with Basic, `/deny` deny, `/` login;
    /// outbox only; short security settings are left at their defaults.
    pub fn new() -> Self {
        let backend = Backend::start();
        let b = backend.addr.to_string();
        let text = format!(
            r#"
version: 1
server: {{ listen: ["127.0.0.1:1"], threads: 2, grace_period: 1s }}
portal: {{ path_prefix: /_nidan, default_language: en, title: nidan test, allowed_return_hosts: [app.example.com] }}
trusted_devices:
  signing_keys: [{{ id: k1, secret_file: device-key }}]
notifiers: {{ outbox: {{ path: outbox.jsonl, console: false }} }}
users: {{ file: users.yaml, reload_interval: 1s }}
storage: {{ sqlite: {{ path: nidan.db }} }}
routes:
  - {{ name: public, path_prefix: /public, upstream: ["{b}"], policy: bypass }}
  - {{ name: admin, path_prefix: /admin, upstream: ["{b}"], policy: two_factor }}
  - {{ name: sync, path_prefix: /sync, upstream: ["{b}"], policy: login, second_step: exempt, accept: [basic] }}
  - {{ name: basic, path_prefix: /basic, upstream: ["{b}"], policy: login, accept: [session, basic] }}
  - {{ name: closed, path_prefix: /deny, upstream: ["{b}"], policy: deny }}
  - {{ name: app, hosts: ["*"], path_prefix: /, upstream: ["{b}"], policy: login }}
"#
        );
        Self {
            doc: serde_yaml::from_str(&text).unwrap(),
            backend,
        }
    }

    /// Sets a configuration value, e.g. `.set("session.idle_timeout", "2s")`.
    pub fn set(mut self, path: &str, value: &str) -> Self {
        set(&mut self.doc, path, yaml(value));
        self
    }

    pub fn doc(&mut self) -> &mut Value {
        &mut self.doc
    }

    pub fn backend_addr(&self) -> SocketAddr {
        self.backend.addr
    }

    pub fn start(self) -> Gateway {
        let dir = deployment_dir();
        let config = dir.path().join("nidan.yaml");
        let mut gw = Gateway {
            child: None,
            addr: "127.0.0.1:1".parse().unwrap(),
            outbox: dir.path().join("outbox.jsonl"),
            config,
            dir,
            backend: self.backend,
            admin: None,
        };
        let mut doc = self.doc;
        for _ in 0..5 {
            let port = free_port();
            set(
                &mut doc,
                "server.listen",
                yaml(&format!("[\"127.0.0.1:{port}\"]")),
            );
            if doc
                .get("server")
                .and_then(|s| s.get("admin_listen"))
                .is_some()
            {
                let admin = free_port();
                set(
                    &mut doc,
                    "server.admin_listen",
                    yaml(&format!("\"127.0.0.1:{admin}\"")),
                );
                gw.admin = Some(format!("127.0.0.1:{admin}").parse().unwrap());
            }
            std::fs::write(&gw.config, serde_yaml::to_string(&doc).unwrap()).unwrap();
            gw.addr = format!("127.0.0.1:{port}").parse().unwrap();
            if gw.spawn() {
                return gw;
            }
        }
        panic!("the gateway did not start; log:\n{}", gw.log());
    }
}

impl Gateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::new()
    }

    pub fn start() -> Self {
        GatewayBuilder::new().start()
    }

    fn spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let ok = wait_port(self.addr, &mut child, "nidan");
        self.child = Some(child);
        ok
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// The gateway process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The gateway process's exit status once it has exited on its own (e.g. after handing
    /// its sockets to a new process); `None` while it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends the gateway process a signal by name (`HUP`, `QUIT`, …).
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().expect("running");
        Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
    }

    /// Kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGINT, and wait for the exit.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status()
            .unwrap();
        c.wait().unwrap()
    }

    /// Starts the same gateway again (same port, data and config).
    pub fn restart(&mut self) {
        self.kill9();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "restart failed:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every outbox message so far.
    pub fn outbox(&self) -> Vec<serde_json::Value> {
        outbox_in(&self.outbox)
    }

    /// The newest code sent to `user` (waits up to 5 s for it).
    pub fn last_code(&self, user: &str) -> String {
        last_code_in(&self.outbox, user)
    }

    /// Number of outbox messages carrying a code for `user`.
    pub fn codes_sent(&self, user: &str) -> usize {
        self.outbox()
            .iter()
            .filter(|m| m["user"] == user && m["code"].is_string())
            .count()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A client with a cookie jar that does not follow redirects.
pub fn client() -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A client without a cookie jar and without redirects: cookies are sent by hand.
pub fn plain() -> reqwest::Client {
    pingora::tls::install_default_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value a response sets for cookie `name` (last one wins).
pub fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_owned())
        .next_back()
}

/// JSON API helpers over a client.
pub struct Api<'a> {
    pub gw: &'a Gateway,
    pub http: reqwest::Client,
}

impl<'a> Api<'a> {
    pub fn new(gw: &'a Gateway) -> Self {
        Self { gw, http: client() }
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.gw.url(&format!("/_nidan/api{path}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(serde_json::Value::Null);
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(self.gw.url(&format!("/_nidan/api{path}")))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Starts a login; returns (status, body).
    pub async fn start(&self, id: &str) -> (u16, serde_json::Value) {
        self.post("/login", serde_json::json!({"id": id})).await
    }

    pub async fn complete(&self, flow: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.post(&format!("/login/{flow}/complete"), body).await
    }

    /// A whole login (with the code from the outbox when one is asked); returns the body of
    /// the answer that completed it. Panics on failure.
    pub async fn login(&self, id: &str) -> serde_json::Value {
        let start = serde_json::json!({"id": id});
        let none = serde_json::json!({});
        let (_, r) = api_login(&self.http, &self.gw.url(""), self.gw, start, none, &[]).await;
        r.json().await.unwrap_or(serde_json::Value::Null)
    }
}

/// Reads a file into a string (for checks).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `nidan hash-password` for a users-file entry.
pub fn hash_password(password: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// POSTs JSON to the portal API `path` with `http`: (status, body or null).
pub async fn post_api(
    http: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = http
        .post(gw.url(&format!("/_nidan/api{path}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// A temp directory with what every test deployment reads: the device signing key and the
/// test users file.
pub fn deployment_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("device-key"),
        "test-device-signing-key-0123456789abcdef",
    )
    .unwrap();
    std::fs::copy(
        repo().join("config/test/users.yaml"),
        dir.path().join("users.yaml"),
    )
    .unwrap();
    dir
}

/// Every message in the outbox file at `path` so far.
pub fn outbox_in(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The newest code sent to `user` through the outbox at `path` (waits up to 5 s for it).
pub fn last_code_in(path: &std::path::Path, user: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(code) = outbox_in(path)
            .iter()
            .rev()
            .find(|m| m["user"] == user && m["code"].is_string())
            .and_then(|m| m["code"].as_str().map(str::to_owned))
        {
            return code;
        }
        assert!(Instant::now() < deadline, "no code was sent to {user}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server process listening on a free 127.0.0.1 port: `spawn(port)` starts it; another
/// port is tried when it exits before listening (the port was taken meanwhile), five times,
/// then the test fails with `log()`.
pub fn listening(
    what: &str,
    mut spawn: impl FnMut(u16) -> Child,
    log: impl Fn() -> String,
) -> (Child, SocketAddr) {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = spawn(port);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return (child, addr);
            }
            if let Ok(Some(_)) = child.try_wait() {
                break; // the port was taken meanwhile, or the configuration is wrong
            }
            assert!(Instant::now() < deadline, "{what} did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("{what} did not start; log:\n{}", log());
}

/// A GET on the gateway's admin listener (it must have one): status and body.
pub async fn admin_get(gw: &Gateway, path: &str) -> (u16, String) {
    let r = client()
        .get(format!("http://{}{path}", gw.admin.unwrap()))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The status page's view of `route`: upstream name → up.
pub async fn route_health(gw: &Gateway, route: &str) -> Vec<(String, bool)> {
    let (_, text) = admin_get(gw, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let r = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == route)
        .unwrap_or_else(|| panic!("no route {route} in {v}"));
    r["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["upstream"].as_str().unwrap().to_owned(), u["up"] == true))
        .collect()
}
