//! The replica mode's stores for tests: a fresh PostgreSQL database on the machine's
//! server (dropped on `Drop`), and a `redis-server` of the test's own on a free port (so a
//! test may stop and restart it). Use with `use crate::common::stores;`.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::pg::{TestDb, admin_url};

/// A `redis-server` of the test's own, on a free loopback port, keeping nothing on disk.
pub struct TestRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl TestRedis {
    pub fn start() -> Self {
        let mut r = Self {
            port: 0,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        for _ in 0..5 {
            r.port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if r.spawn() {
                return r;
            }
        }
        panic!("redis-server did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new(redis_server())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see README: the test command)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops the server (as an outage would); `restart` brings it back on the same port,
    /// empty.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server did not restart");
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_server() -> PathBuf {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// A TCP forwarder a test can cut (every connection closed, new ones refused), blackhole
/// (connections stay open and nothing moves, as a partition that drops packets) and
/// restore, as a network fault between a replica and PostgreSQL or Redis would.
pub struct Cut {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

/// Copies `from` to `to` until either closes; while `held`, what was read waits (a
/// blackholed link: the bytes arrive when it is restored, as retransmissions would).
fn pump(mut from: TcpStream, mut to: TcpStream, held: &std::sync::atomic::AtomicBool) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while held.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Cut {
    pub fn start(target: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (o, h, cs) = (open.clone(), held.clone(), conns.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(target) else {
                    continue;
                };
                {
                    let mut g = cs.lock().unwrap();
                    g.push(inbound.try_clone().unwrap());
                    g.push(outbound.try_clone().unwrap());
                }
                for (from, to) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    let h = h.clone();
                    std::thread::spawn(move || pump(from, to, &h));
                }
            }
        });
        Self {
            port,
            open,
            held,
            conns,
        }
    }

    /// Nothing moves either way until [`Cut::restore`]; connections stay open and new ones
    /// are accepted (no reset tells the client anything is wrong).
    pub fn blackhole(&self) {
        self.held.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.held.store(false, std::sync::atomic::Ordering::SeqCst);
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
