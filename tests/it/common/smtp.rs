//! A real SMTP server for tests: Python's aiosmtpd writing every message into a Maildir
//! (`dir/mail/new/*`). Killed on drop. The one copy: the integration tests use it as
//! `crate::common::smtp`, the unit tests in `src/notify` as `crate::notify::testing` (a
//! `#[path]` to this file), so it names only std and the crate's dependencies.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> Self {
        let check = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(check, Ok(s) if s.success()) {
            panic!(
                "the SMTP tests need Python's aiosmtpd: run `pip install aiosmtpd` (python3 -m pip install aiosmtpd)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        // A free port: bind :0, read it, release it for the server.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = dir.path().join("mail");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let sink = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sink
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Waits until `n` messages arrived and returns their raw text.
    pub fn wait_messages(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let msgs = read_maildir(&self.maildir().join("new"));
            if msgs.len() >= n {
                return msgs;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages arrived",
                msgs.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_maildir(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect()
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes a raw message (base64 or quoted-printable body, RFC 2047 subject) with Python's
/// email module: `{"to", "from", "subject", "body"}`.
pub fn parse_with_python(raw: &str) -> serde_json::Value {
    let script = r#"
import sys, json, email
from email import policy
m = email.message_from_string(sys.stdin.read(), policy=policy.default)
print(json.dumps({"to": str(m["To"]), "from": str(m["From"]), "subject": str(m["Subject"]),
                  "body": m.get_body().get_content()}))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(raw.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}
