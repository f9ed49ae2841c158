//! Graceful upgrade (`serve --upgrade`): under a steady load of kept-alive and new
//! connections, the systemd unit's `ExecReload` line from docs/operations.md, run as
//! written, hands the listening sockets (gateway and admin) to a new process; not one
//! request fails, the old process exits, the new one tells systemd it is the main process.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]
#![allow(clippy::too_many_lines)] // tests are exempt: a scenario reads top to bottom

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// The `ExecReload=` command of the documented unit, as systemd would run it: `$MAINPID`
/// in its environment, the binary and configuration paths of this test.
fn exec_reload(gw: &Gateway) -> String {
    let unit = doc_snippet("README.md", "systemd-unit");
    assert_eq!(
        unit,
        doc_snippet("docs/operations.md", "systemd-unit"),
        "the README and docs/operations.md give the same unit"
    );
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecReload="))
        .expect("the unit has an ExecReload line");
    substitute(
        line,
        &[
            ("/usr/local/bin/nidan", bin()),
            ("/etc/nidan/nidan.yaml", gw.config.to_str().unwrap()),
        ],
    )
}

/// A process the test did not spawn itself (the upgraded gateway): stopped on drop.
struct Adopted(u32);

impl Drop for Adopted {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.to_string()])
            .status();
    }
}

/// A process this test spawned: interrupted and waited for on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn count(&self, result: Result<u16, String>, what: &str) {
        match result {
            Ok(200) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                eprintln!("{what}: {other:?}");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One client loop at `per_second`: the same pooled (kept-alive) client, or a new
/// connection for every request.
fn load(
    url: String,
    http: reqwest::Client,
    per_second: u64,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / per_second));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let r = match http.get(&url).send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    match r.bytes().await {
                        Ok(_) => Ok(s),
                        Err(e) => Err(format!("body: {e}")),
                    }
                }
                Err(e) => Err(format!("{e:?}")),
            };
            tally.count(r, what);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_fails_no_request() {
    let mut gw = Gateway::builder()
        .set("server.grace_period", "3s")
        .set("server.admin_listen", "\"127.0.0.1:1\"")
        .start();
    let admin = gw.admin.unwrap();
    let notify_path = gw.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    pingora::tls::install_default_crypto_provider();
    let kept = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    // 4 × 50 kept-alive + 2 × 40 new connections + 20 admin = 300 requests a second.
    for _ in 0..4 {
        tasks.push(load(
            gw.url("/public/x"),
            kept.clone(),
            50,
            stop.clone(),
            tally.clone(),
            "kept-alive",
        ));
    }
    for _ in 0..2 {
        tasks.push(load(
            gw.url("/public/y"),
            fresh.clone(),
            40,
            stop.clone(),
            tally.clone(),
            "new connection",
        ));
    }
    tasks.push(load(
        format!("http://{admin}/healthz"),
        kept.clone(),
        20,
        stop.clone(),
        tally.clone(),
        "admin",
    ));
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // `systemctl reload nidan`: the unit's ExecReload, with $MAINPID in its environment.
    let old_pid = gw.pid().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(exec_reload(&gw))
        .env("MAINPID", old_pid.to_string())
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "info")
        .status()
        .unwrap();
    assert!(status.success(), "ExecReload failed: {status}");

    // The new process says it is the main process once it serves.
    let new_pid = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).expect("a systemd notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(new_pid.contains("READY=1"), "{new_pid}");
    let new_pid: u32 = new_pid
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .expect("MAINPID")
        .parse()
        .unwrap();
    let _adopted = Adopted(new_pid);
    assert_ne!(new_pid, old_pid);

    // The old process finishes within the handover (5 s) and the grace period, and exits.
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = gw.exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "the old process did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exited.success(), "the old process exited with {exited}");

    // The load goes on against the new process alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let secs = began.elapsed().as_secs_f64();
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    eprintln!(
        "{ok} requests in {secs:.1} s ({:.0}/s), {failed} failed",
        ok as f64 / secs
    );
    assert_eq!(failed, 0, "log:\n{}", gw.log());
    assert!(secs >= 10.0, "{secs}");
    assert!(ok as f64 / secs >= 200.0, "{ok} in {secs:.1} s");
    let log = gw.log();
    assert!(log.contains("listening sockets handed over"), "{log}");
}

#[tokio::test]
async fn an_upgrade_with_a_bad_configuration_leaves_the_running_process_serving() {
    let gw = Gateway::start();
    let good = std::fs::read_to_string(&gw.config).unwrap();
    let bad = gw.path("bad.yaml");
    std::fs::write(&bad, format!("{good}\nnot_a_key: 1\n")).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--upgrade", "--old-pid"])
        .arg(gw.pid().unwrap().to_string())
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not_a_key"), "{err}");
    // The running process got no signal and serves on.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = client().get(gw.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!gw.log().contains("SIGQUIT"), "{}", gw.log());
}

/// Every `nidan_…` name in `text` (histogram series named by their metric).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("nidan_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(name.to_owned());
        rest = &tail[end..];
    }
    out
}

fn source_text(dir: &std::path::Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_text(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// docs/monitoring.md lists the metrics; the alert set and the dashboard name only those,
/// and every one listed is registered by the code. Both files parse.
#[test]
fn the_monitoring_files_name_only_metrics_nidan_exports() {
    let page = std::fs::read_to_string(repo().join("docs/monitoring.md")).unwrap();
    let listed: std::collections::BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("| `nidan_"))
        .map(|l| format!("nidan_{}", l.split('`').next().unwrap()))
        .collect();
    assert!(listed.len() >= 10, "{listed:?}");
    let alerts = std::fs::read_to_string(repo().join("docs/monitoring/alerts.yml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&alerts).unwrap();
    assert!(rules["groups"][0]["rules"].as_sequence().unwrap().len() >= 5);
    let dashboard =
        std::fs::read_to_string(repo().join("docs/monitoring/grafana-dashboard.json")).unwrap();
    let board: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(board["panels"].as_array().unwrap().len() >= 5);
    for (file, text) in [
        ("alerts.yml", &alerts),
        ("grafana-dashboard.json", &dashboard),
    ] {
        for name in metric_names(text) {
            assert!(
                listed.contains(&name),
                "{file} names {name}, which docs/monitoring.md does not list"
            );
        }
    }
    let mut src = String::new();
    source_text(&repo().join("src"), &mut src);
    for name in &listed {
        assert!(
            src.contains(name.as_str()),
            "{name} is listed but nothing registers it"
        );
    }
}

/// pingora's own sequence, by hand: `serve --upgrade` without `--old-pid` waits for the
/// sockets, the operator sends `SIGQUIT`; the TLS listener and the admin listener move too
/// (same certificate served, `/healthz` answered by the new process).
#[tokio::test]
async fn sigquit_by_hand_hands_over_the_tls_and_admin_listeners() {
    let tls_port = free_port();
    let certs = repo().join("config/test/tls");
    let mut gw = Gateway::builder()
        .set("server.grace_period", "1s")
        .set("server.admin_listen", "\"127.0.0.1:1\"")
        .set(
            "server.tls",
            &format!(
                "{{ listen: [\"127.0.0.1:{tls_port}\"], cert: \"{}\", key: \"{}\" }}",
                certs.join("cert.pem").display(),
                certs.join("key.pem").display()
            ),
        )
        .start();
    let admin = gw.admin.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(Instant::now() < deadline, "no TLS listener:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pingora::tls::install_default_crypto_provider();
    let https = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let tls_url = format!("https://127.0.0.1:{tls_port}/public/x");
    assert_eq!(https.get(&tls_url).send().await.unwrap().status(), 200);

    let log = gw.path("new.log");
    let out = std::fs::File::create(&log).unwrap();
    let _new = Reaped(
        Command::new(bin())
            .args(["serve", "--upgrade", "--config"])
            .arg(&gw.config)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("send it SIGQUIT")
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.signal("QUIT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.exited().is_none() {
        // Served all along, by one process or the other.
        assert_eq!(https.get(&tls_url).send().await.unwrap().status(), 200);
        let r = plain()
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(Instant::now() < deadline, "the old process did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Only the new process is left to answer.
    assert_eq!(https.get(&tls_url).send().await.unwrap().status(), 200);
    assert_eq!(
        plain()
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        plain()
            .get(gw.url("/public/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("this process serves the listening sockets now"),
        "{said}"
    );
}
