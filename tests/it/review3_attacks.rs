//! Attack review of issue 25 (operations without downtime), against the real binary: each
//! test is an attack found in the graceful upgrade, reload, upstreams or request ids.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use common::{Backend, yaml};

/// A process this test spawned: killed and waited for on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `nidan serve --upgrade` for `gw`'s configuration (`args` after it), its output in `log`.
fn upgrade(gw: &Gateway, args: &[&str], log: &std::path::Path) -> Reaped {
    let out = std::fs::File::create(log).unwrap();
    Reaped(
        Command::new(bin())
            .args(["serve", "--upgrade"])
            .args(args)
            .arg("--config")
            .arg(&gw.config)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    )
}

/// Waits up to `secs` for `child` to exit.
async fn exit_within(child: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Can a process of another local user (`nobody`) connect to the Unix socket `sock`? Only
/// answerable as root (which can become `nobody`) with `/usr/bin/python3`; `None` otherwise.
fn nobody_connects(sock: &std::path::Path) -> Option<bool> {
    let python = std::path::Path::new("/usr/bin/python3");
    let root = Command::new("id").arg("-u").output().ok()?.stdout == b"0\n";
    if !root || !python.exists() {
        return None;
    }
    let status = Command::new(python)
        .args([
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
        ])
        .arg(sock)
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    Some(status.success())
}

/// pingora makes the upgrade socket mode 0666: in a directory other users may enter (as
/// `/etc/nidan`, next to the configuration, usually is), any local user could connect while
/// `serve --upgrade` waits and hand it listening sockets of his own (or none: the real ones
/// are then closed by the old process). The socket is made in a 0700 directory of its own;
/// one that others can enter (made by someone else beforehand) refuses the upgrade.
#[tokio::test]
async fn an_upgrade_socket_other_users_can_reach_is_refused() {
    let gw = Gateway::start();
    std::fs::set_permissions(gw.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let configured = gw.path("nidan-upgrade.sock");
    let private = gw.path("nidan-upgrade.sock.d/sock");
    let log = gw.path("new.log");
    let mut new = upgrade(&gw, &[], &log);
    let deadline = Instant::now() + Duration::from_secs(15);
    let reached = loop {
        let sock = [&configured, &private].into_iter().find(|p| p.exists());
        if let Some(sock) = sock {
            break nobody_connects(sock);
        }
        assert!(new.0.try_wait().unwrap().is_none(), "{}", gw.log());
        assert!(Instant::now() < deadline, "no upgrade socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_ne!(
        reached,
        Some(true),
        "another user reached the upgrade socket:\n{text}"
    );
    drop(new);

    // The directory made by someone else, open to others: refused before anything starts.
    let dir = gw.path("nidan-upgrade.sock.d");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut new = upgrade(&gw, &[], &log);
    let exited = exit_within(&mut new.0, 10).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let exited = exited.unwrap_or_else(|| panic!("the upgrade waited on the socket:\n{text}"));
    assert!(!exited.success(), "{text}");
    assert!(
        text.contains("server.upgrade_sock") && text.contains("0700"),
        "{text}"
    );
    // The running process serves on.
    let r = client().get(gw.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// `--old-pid` naming a process that is not nidan (a typo, a reused PID): it must not be
/// sent SIGQUIT (the default action ends it, with a core dump); the upgrade is refused.
#[tokio::test]
async fn old_pid_of_a_process_that_is_not_nidan_gets_no_signal() {
    let gw = Gateway::start();
    let mut bystander = Reaped(Command::new("sleep").arg("60").spawn().unwrap());
    let pid = bystander.0.id().to_string();
    let log = gw.path("new.log");
    let mut new = upgrade(&gw, &["--old-pid", &pid], &log);
    let exited = exit_within(&mut new.0, 5).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        bystander.0.try_wait().unwrap(),
        None,
        "the bystander was signalled:\n{text}"
    );
    let exited = exited.unwrap_or_else(|| panic!("the upgrade went on:\n{text}"));
    assert!(!exited.success(), "{text}");
    assert!(text.contains(&pid) && text.contains("not nidan"), "{text}");
    let r = client().get(gw.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A peer found down by the active checks kept "down" across a reload that removes the
/// route's `health_check`: with no check left to bring it back, it was out for good (every
/// request to a single-peer route a 502 until a restart). Without checks, a reload takes
/// over only the passive exclusion, which ends by the clock.
#[tokio::test]
async fn a_reload_without_health_checks_does_not_keep_a_peer_out_for_good() {
    let a = Backend::start();
    let mut b = Gateway::builder().set("server.admin_listen", "\"127.0.0.1:1\"");
    b.doc()
        .get_mut("routes")
        .unwrap()
        .as_sequence_mut()
        .unwrap()
        .insert(
            0,
            yaml(&format!(
                "{{ name: pool, path_prefix: /pool, upstream: [\"{}\"], policy: bypass, \
                 health_check: {{ path: /__echo/status/503, interval: 200ms, timeout: 150ms, healthy: 1, unhealthy: 1 }} }}",
                a.addr
            )),
        );
    let gw = b.start();
    let deadline = Instant::now() + Duration::from_secs(5);
    while route_health(&gw, "pool").await.iter().any(|(_, up)| *up) {
        assert!(Instant::now() < deadline, "never taken out:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The operator turns the checks off.
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&gw.config).unwrap()).unwrap();
    doc["routes"][0]
        .as_mapping_mut()
        .unwrap()
        .remove("health_check");
    std::fs::write(&gw.config, serde_yaml::to_string(&doc).unwrap()).unwrap();
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = route_health(&gw, "pool").await;
        if health.iter().all(|(_, up)| *up) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still out after the reload: {health:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client().get(gw.url("/pool/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
