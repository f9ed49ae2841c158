//! A real Caddy for tests (Debian's `caddy`): one foreground `caddy run` as the test's user,
//! its Caddyfile, data and log in a temp directory, one plain-HTTP site on a free
//! 127.0.0.1 port, no admin endpoint, no automatic HTTPS. Stopped on `Drop`.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::common::listening;

pub struct Caddy {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Caddy {
    /// Starts Caddy with one site, `http://127.0.0.1:{port}`, whose body is `site_body`.
    pub fn start(site_body: &str) -> Self {
        Self::start_sites(|port| format!("http://127.0.0.1:{port} {{\n{site_body}\n}}\n"))
    }

    /// Starts Caddy with `sites(port)` after the global options: the site blocks as a
    /// deployment writes them, one of them listening on `127.0.0.1:{port}`.
    pub fn start_sites(sites: impl Fn(u16) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("caddy.log");
        let (child, addr) = listening(
            "caddy",
            |port| {
                let conf = format!("{{\n    admin off\n    auto_https off\n}}\n{}", sites(port));
                let path = dir.path().join("Caddyfile");
                std::fs::write(&path, conf).unwrap();
                let log = std::fs::File::create(&log_path).unwrap();
                Command::new("caddy")
                    .args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(&path)
                    .env("HOME", dir.path())
                    .env("XDG_DATA_HOME", dir.path().join("data"))
                    .env("XDG_CONFIG_HOME", dir.path().join("config"))
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("caddy runs (Debian package `caddy`; .ci/run installs it)")
            },
            || std::fs::read_to_string(&log_path).unwrap_or_default(),
        );
        Self { child, addr, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
