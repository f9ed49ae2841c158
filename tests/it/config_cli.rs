//! The configuration through the real binary (SECURITY 31): `nidan check-config` and
//! `nidan serve` on broken files, and the users file reloaded while the gateway runs.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const DEVICE_KEY: &str = "a-device-signing-key-for-tests-0123456789";

fn check_config(path: &Path) -> Output {
    Command::new(bin())
        .args(["check-config", "--config"])
        .arg(path)
        .env("NIDAN_TEST_DEVICE_KEY", DEVICE_KEY)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One reported problem.
#[derive(Debug)]
struct Problem {
    line: usize,
    column: usize,
    message: String,
    fix: String,
}

/// Parses `FILE:LINE:COL: message` + `  fix: ...` pairs for `file` from the output.
fn problems(output: &str, file: &Path) -> Vec<Problem> {
    let prefix = format!("{}:", file.display());
    let lines: Vec<&str> = output.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix(&prefix) else {
            continue;
        };
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().unwrap().parse().unwrap();
        let column = parts.next().unwrap().parse().unwrap();
        let message = parts.next().unwrap().trim().to_owned();
        let fix = lines
            .get(i + 1)
            .and_then(|f| f.strip_prefix("  fix: "))
            .unwrap_or_else(|| panic!("no fix: line after {l:?} in\n{output}"))
            .to_owned();
        assert!(fix.trim().len() > 10, "{output}");
        out.push(Problem {
            line,
            column,
            message,
            fix,
        });
    }
    out
}

/// 1-based line and column where `marker` first appears in `text`.
fn position(text: &str, marker: &str) -> (usize, usize) {
    for (i, l) in text.lines().enumerate() {
        if l.trim_start().starts_with('#') {
            continue;
        }
        if let Some(c) = l.find(marker) {
            return (i + 1, c + 1);
        }
    }
    panic!("{marker:?} not in the file");
}

#[test]
fn each_broken_example_names_its_line_and_a_fix() {
    // (file, text marking the offending value, words the message must have)
    let cases = [
        ("broken-cidr.yaml", "192.168.0.0/33", "trusted_proxies[1]"),
        (
            "broken-duration.yaml",
            "twelve hours",
            "session.absolute_timeout",
        ),
        (
            "broken-missing-secret.yaml",
            "secrets/does-not-exist",
            "signing_keys[0].secret_file",
        ),
        ("broken-shadowed-route.yaml", "name: wiki", "wiki"),
        ("broken-unknown-key.yaml", "idle_timout", "idle_timout"),
        (
            "broken-upstream.yaml",
            "\"127.0.0.1\"]",
            "routes[0].upstream[1]",
        ),
    ];
    for (name, marker, words) in cases {
        let path = repo().join("config/test").join(name);
        let file = std::fs::read_to_string(&path).unwrap();
        let (line, column) = position(&file, marker);
        let out = check_config(&path);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}:\n{all}");
        let p = problems(&all, &path);
        assert_eq!(p.len(), 1, "{name}: exactly one problem expected:\n{all}");
        assert_eq!(p[0].line, line, "{name}:\n{all}");
        assert_eq!(p[0].column, column, "{name}:\n{all}");
        assert!(p[0].message.contains(words), "{name}: {:?}", p[0]);
        assert!(!p[0].fix.is_empty(), "{name}: {:?}", p[0]);
        assert!(
            all.contains("1 problem(s) found"),
            "{name}: the count is missing:\n{all}"
        );
        assert!(out.stdout.is_empty(), "{name}: errors go to stderr");
    }
}

#[test]
fn a_missing_environment_variable_is_reported_with_the_other_problem() {
    let path = repo().join("config/test/broken-cidr.yaml");
    let file = std::fs::read_to_string(&path).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("NIDAN_TEST_DEVICE_KEY")
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let p = problems(&all, &path);
    let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
    assert_eq!(
        lines,
        vec![position(&file, "secret_env").0, position(&file, "/33").0],
        "{all}"
    );
}

/// A directory with a complete, valid configuration (as an operator would write it).
struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("device-key"), DEVICE_KEY).unwrap();
        std::fs::copy(
            repo().join("config/test/users.yaml"),
            dir.path().join("users.yaml"),
        )
        .unwrap();
        Self { dir }
    }

    fn write(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("nidan.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn valid_config(port: u16) -> String {
    format!(
        r#"version: 1
server:
  listen: ["127.0.0.1:{port}"]
  threads: 1
  grace_period: 1s
portal:
  path_prefix: /_nidan
  default_language: en
session:
  idle_timeout: 30m
  absolute_timeout: 12h
trusted_devices:
  signing_keys:
    - id: k1
      secret_file: device-key
trusted_proxies:
  - 10.0.0.0/8
notifiers:
  outbox: {{ path: outbox.jsonl, console: false }}
users: {{ file: users.yaml, reload_interval: 1s }}
storage: {{ sqlite: {{ path: nidan.db }} }}
routes:
  - name: public
    path_prefix: /public
    upstream: ["127.0.0.1:3000"]
    policy: bypass
  - name: app
    hosts: ["*"]
    path_prefix: /
    upstream: ["127.0.0.1:3000", "127.0.0.1:3001"]
    policy: login
"#
    )
}

#[test]
fn a_valid_config_passes() {
    let d = ConfigDir::new();
    let path = d.write(&valid_config(free_port()));
    let out = check_config(&path);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}: valid (2 routes)", path.display())
    );
}

/// `nidan` with no `NIDAN_*` variables set, as on a fresh machine.
fn fresh(args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(repo());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("NIDAN_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

#[test]
fn the_annotated_example_config_passes_and_explains() {
    let out = fresh(&["check-config", "--config", "config/nidan.yaml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("valid"), "{all}");
    let out = fresh(&[
        "explain",
        "--config",
        "config/nidan.yaml",
        "--url",
        "https://Wiki.Example.com./ADMIN/x",
        "--user",
        "taro",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    // The host is normalised and the stricter rule across letter case is shown.
    assert!(all.contains("host       wiki.example.com\n"), "{all}");
    assert!(all.contains("policy     two_factor"), "{all}");
    assert!(all.contains("letter case"), "{all}");
    // Wildcards cover every depth.
    let out = fresh(&[
        "explain",
        "--config",
        "config/nidan.yaml",
        "--url",
        "https://a.b.example.org/healthz",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("route      health"), "{all}");
    // The example's signing key is published: check-config warns, serve refuses to sign
    // trusted-device cookies with it.
    let out = fresh(&["check-config", "--config", "config/nidan.yaml"]);
    assert!(
        text(&out).contains("published placeholder"),
        "{}",
        text(&out)
    );
    let out = fresh(&["serve", "--config", "config/nidan.yaml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("anyone could forge"), "{all}");
    assert!(
        !all.contains("example-only-"),
        "the key is never printed: {all}"
    );
}

/// An https `portal.public_url` with cookies that would still go out without `Secure` (or
/// the other way round, or passkeys for another domain) is refused where it is written
/// (SECURITY 44).
#[test]
fn cookies_without_secure_behind_an_https_public_url_are_refused() {
    let d = ConfigDir::new();
    let base = valid_config(free_port());
    // (public_url, extra session line, extra passkeys section, marker, words)
    let cases = [
        (
            "https://login.example.com",
            "  secure_cookies: false\n",
            "",
            "false",
            "session.secure_cookies",
        ),
        (
            "http://login.example.com",
            "  secure_cookies: always\n",
            "",
            "always",
            "session.secure_cookies",
        ),
        (
            "https://login.example.com",
            "",
            "passkeys:\n  rp_id: other.example.org\n",
            "other.example.org",
            "passkeys.rp_id",
        ),
    ];
    for (url, session, passkeys, marker, words) in cases {
        let text_in =
            base.replace(
                "  default_language: en\n",
                &format!("  default_language: en\n  public_url: {url}\n"),
            )
            .replace(
                "  absolute_timeout: 12h\n",
                &format!("  absolute_timeout: 12h\n{session}"),
            ) + passkeys;
        let path = d.write(&text_in);
        let out = check_config(&path);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{marker}: {all}");
        let p = problems(&all, &path);
        assert_eq!(p.len(), 1, "{marker}: {all}");
        assert_eq!(
            (p[0].line, p[0].column),
            position(&text_in, marker),
            "{all}"
        );
        assert!(p[0].message.contains(words), "{:?}", p[0]);
        assert!(p[0].message.contains("public_url"), "{:?}", p[0]);
    }
    // The same keys where they fit pass.
    let text_in =
        base.replace(
            "  default_language: en\n",
            "  default_language: en\n  public_url: https://login.example.com\n",
        )
        .replace(
            "  absolute_timeout: 12h\n",
            "  absolute_timeout: 12h\n  secure_cookies: always\n",
        ) + "passkeys:\n  rp_id: example.com\n";
    let path = d.write(&text_in);
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn three_independent_mistakes_are_all_listed() {
    let d = ConfigDir::new();
    let text_in = valid_config(free_port())
        .replace("idle_timeout: 30m", "idle_timeout: thirty")
        .replace("  - 10.0.0.0/8", "  - 10.0.0.0/99")
        .replace(
            "[\"127.0.0.1:3000\", \"127.0.0.1:3001\"]",
            "[\"127.0.0.1:3000\", \"127.0.0.1\"]",
        );
    let path = d.write(&text_in);
    let out = check_config(&path);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let p = problems(&all, &path);
    let got: Vec<(usize, usize)> = p.iter().map(|p| (p.line, p.column)).collect();
    let (l3, c3) = position(&text_in, "\"127.0.0.1\"]");
    assert_eq!(
        got,
        vec![
            position(&text_in, "thirty"),
            position(&text_in, "10.0.0.0/99"),
            (l3, c3)
        ],
        "{all}"
    );
    assert!(p[0].message.contains("session.idle_timeout"), "{p:?}");
    assert!(p[1].message.contains("trusted_proxies[0]"), "{p:?}");
    assert!(p[2].message.contains("upstream[1]"), "{p:?}");
    assert!(all.contains("3 problem(s) found"), "{all}");
}

#[test]
fn a_secret_in_the_wrong_place_is_never_printed() {
    const SECRET: &str = "Xq9-s3cr3t-Hunter2-value";
    let d = ConfigDir::new();
    let base = valid_config(free_port());
    let placements = [
        ("idle_timeout: 30m", format!("idle_timeout: {SECRET}")),
        ("idle_timeout: 30m", format!("idle_timeout: \"{SECRET}\"")),
        (
            "default_language: en",
            format!("default_language: {SECRET}"),
        ),
        ("  - 10.0.0.0/8", format!("  - {SECRET}")),
        ("    policy: bypass", format!("    policy: {SECRET}")),
        ("threads: 1", format!("threads: {SECRET}")),
        ("listen: [\"127.0.0.1", format!("listen: [\"{SECRET}")),
        (
            "upstream: [\"127.0.0.1:3000\"]",
            format!("upstream: [\"{SECRET}\"]"),
        ),
        (
            "secret_file: device-key",
            format!("secret_env: \"{SECRET}\""),
        ),
        ("secret_file: device-key", format!("secret_file: {SECRET}")),
        (
            "secret_file: device-key",
            format!("secret_file: device-key\n      secret_env: {SECRET}"),
        ),
        ("path_prefix: /_nidan", format!("path_prefix: {SECRET}")),
        ("version: 1", format!("version: {SECRET}")),
    ];
    for (from, to) in &placements {
        assert!(base.contains(from), "{from}");
        let path = d.write(&base.replacen(from, to, 1));
        let out = check_config(&path);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{to}:\n{all}");
        assert!(!problems(&all, &path).is_empty(), "{to}:\n{all}");
        assert!(!all.contains(SECRET), "{to}: the value was printed:\n{all}");
        assert!(
            !all.contains("Hunter2"),
            "{to}: part of the value was printed:\n{all}"
        );
    }
}

#[test]
fn serve_refuses_a_broken_config_without_listening() {
    let d = ConfigDir::new();
    let port = free_port();
    let path =
        d.write(&valid_config(port).replace("absolute_timeout: 12h", "absolute_timeout: 12"));
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err(),
            "nidan listened with a broken configuration"
        );
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nidan serve kept running with a broken configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert_eq!(status.code(), Some(1), "{all}");
    let p = problems(&all, &path);
    assert_eq!(p.len(), 1, "{all}");
    assert_eq!(p[0].line, 11, "{all}");
    assert!(p[0].message.contains("session.absolute_timeout"), "{all}");
    assert!(all.contains("did not start"), "{all}");
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

// ---------------------------------------------------------------------------------------
// The users file, reloaded while the gateway runs.

const HANAKO_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$nls7kHX/479Qvvwb4taWVw$42Rra19jr9hKzbgDRq8Da6mcomTwImyJnMfHFhqDYVE";
const TARO_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$maqlVUD9hRdprGf3nOpDoQ$5IWLSYYkNbdnz2YaBmfIWBJc5yMMwtBer9cymLdYl/s";

async fn status_of(api: &Api<'_>, path: &str) -> u16 {
    api.http
        .get(api.gw.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `path` until it answers `want` (bounded).
async fn wait_status(api: &Api<'_>, path: &str, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = status_of(api, path).await;
        if s == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {s}, not {want}; log:\n{}",
            api.gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_password_change_in_the_users_file_ends_the_old_sessions() {
    let gw = Gateway::start();
    let taro = Api::new(&gw);
    taro.login("taro").await;
    let noah = Api::new(&gw);
    noah.login("noah").await;
    assert_eq!(status_of(&taro, "/app").await, 200);
    assert_eq!(status_of(&noah, "/app").await, 200);

    // A new hash for taro (another salt; the password stays the same).
    let users = gw.path("users.yaml");
    let before = std::fs::read_to_string(&users).unwrap();
    assert_eq!(before.matches(TARO_HASH).count(), 1);
    std::fs::write(&users, before.replace(TARO_HASH, HANAKO_HASH)).unwrap();
    wait_status(&taro, "/app", 401, Duration::from_secs(6)).await;
    // Other users keep their sessions.
    assert_eq!(status_of(&noah, "/app").await, 200);
    // The new hash is in force: taro logs in again (same password).
    let again = Api::new(&gw);
    again.login("taro").await;
    assert_eq!(status_of(&again, "/app").await, 200);
    // The old session stays ended.
    assert_eq!(status_of(&taro, "/app").await, 401);
}

#[tokio::test]
async fn a_broken_users_file_edit_keeps_the_previous_users() {
    let gw = Gateway::start();
    let taro = Api::new(&gw);
    taro.login("taro").await;
    assert_eq!(status_of(&taro, "/app").await, 200);
    let users = gw.path("users.yaml");
    let before = std::fs::read_to_string(&users).unwrap();
    // Invalid YAML, and taro's password changed in it: neither may take effect.
    let broken = before
        .replace(TARO_HASH, HANAKO_HASH)
        .replace("  - id: noah\n", "  - id: noah\n    groups: [unclosed\n");
    assert_ne!(broken, before);
    std::fs::write(&users, broken).unwrap();
    // Wait until the gateway has seen (and refused) the file.
    let deadline = Instant::now() + Duration::from_secs(6);
    while !gw.log().contains("users file not reloaded") {
        assert!(
            Instant::now() < deadline,
            "the broken users file was not reported; log:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let one more reload interval pass: nothing changes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(status_of(&taro, "/app").await, 200);
    let noah = Api::new(&gw);
    noah.login("noah").await;
    assert_eq!(status_of(&noah, "/app").await, 200);
    let taro2 = Api::new(&gw);
    taro2.login("taro").await;

    // Fixing the file applies it: the password change now ends taro's sessions.
    std::fs::write(&users, before.replace(TARO_HASH, HANAKO_HASH)).unwrap();
    wait_status(&taro, "/app", 401, Duration::from_secs(6)).await;
    assert_eq!(status_of(&taro2, "/app").await, 401);
    assert_eq!(status_of(&noah, "/app").await, 200);
}

#[tokio::test]
async fn a_user_removed_from_the_users_file_is_logged_out() {
    let gw = Gateway::start();
    let noah = Api::new(&gw);
    noah.login("noah").await;
    assert_eq!(status_of(&noah, "/app").await, 200);
    let users = gw.path("users.yaml");
    let before = std::fs::read_to_string(&users).unwrap();
    let start = before.find("  - id: noah\n").unwrap();
    let end = before[start..].find("  - id: mika\n").unwrap() + start;
    let mut after = before.clone();
    after.replace_range(start..end, "");
    std::fs::write(&users, after).unwrap();
    wait_status(&noah, "/app", 401, Duration::from_secs(6)).await;
    let (s, _) = Api::new(&gw).start("noah").await;
    // The ID step does not reveal that the account is gone (SECURITY 4) ...
    assert_eq!(s, 200);
    // ... but no login is possible.
    let api = Api::new(&gw);
    let (_, v) = api.start("noah").await;
    let flow = v["flow"].as_str().unwrap();
    let (s, _) = api
        .complete(flow, serde_json::json!({"password": PASSWORD}))
        .await;
    assert_ne!(s, 200);
}
