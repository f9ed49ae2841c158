//! A real nginx for tests: one foreground process (`daemon off`, `master_process off`) as
//! the test's user, its configuration, pid, logs and temp files in a temp directory, listening
//! on a free 127.0.0.1 port. Stopped on `Drop`.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::common::listening;

pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// The nginx binary: on `PATH`, else Debian's `/usr/sbin/nginx` (`.ci/run` installs it).
fn binary() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

impl Nginx {
    /// Starts nginx with one `server` whose body is `server_body` (its `listen` is added).
    pub fn start(server_body: &str) -> Self {
        Self::start_http(|port| {
            format!("server {{\n    listen 127.0.0.1:{port};\n{server_body}\n  }}\n")
        })
    }

    /// Starts nginx with `site(port)` as the contents of its `http` block (`upstream` and
    /// `server` blocks, as a deployment writes them), listening on `127.0.0.1:{port}`.
    pub fn start_http(site: impl Fn(u16) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let error_log = dir.path().join("error.log");
        let (child, addr) = listening(
            "nginx",
            |port| {
                let conf = format!(
                    "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                     error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
                     http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
                     proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
                     uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{}\n}}\n",
                    site(port)
                );
                let path = dir.path().join("nginx.conf");
                std::fs::write(&path, conf).unwrap();
                Command::new(binary())
                    .arg("-p")
                    .arg(dir.path())
                    .arg("-c")
                    .arg(&path)
                    .arg("-e")
                    .arg(&error_log)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nginx runs (Debian package `nginx`; .ci/run installs it)")
            },
            || std::fs::read_to_string(&error_log).unwrap_or_default(),
        );
        Self { child, addr, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throw-away self-signed certificate for `name` (Ed25519, one day) written into `dir`
/// by `openssl req -x509`: `(cert, key)` paths for nginx's `ssl_certificate(_key)`.
pub fn throwaway_cert(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "1"])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name},IP:127.0.0.1"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
