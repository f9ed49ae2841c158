//! Memory per cached entry: RSS with 100k live sessions and 100k trusted devices in the
//! in-memory caches. Not a criterion bench: `cargo bench --bench memory` prints the figures.
//!
//! The RSS growth also holds what the temp SQLite store keeps in memory (its page cache is
//! bounded at about 2 MiB per pooled connection, 4 connections), so it is an upper bound
//! for the caches themselves. This binary uses the system allocator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use nidan::config::{Secret, SigningKey};
use nidan::session::device::Devices;
use nidan::session::token::KeyRing;
use nidan::session::{NewSession, Sessions};
use nidan::store::Store;

/// Entries of each kind under `cargo bench`; `cargo test --benches` (no `--bench`
/// argument) runs a quick smoke pass instead, so CI stays fast.
const N: usize = 100_000;
const SMOKE_N: usize = 2_000;
/// Concurrent session inserters (the store pool has 4 connections).
const TASKS: usize = 8;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not.
    let n = if std::env::args().any(|a| a == "--bench") {
        N
    } else {
        SMOKE_N
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    rt.block_on(async {
        let store = Store::open(&dir.path().join("memory.db")).await.unwrap();
        let sessions = Arc::new(Sessions::new(
            store.clone(),
            Duration::from_secs(1800),
            Duration::from_secs(12 * 3600),
        ));
        let ring = KeyRing::new(&[SigningKey {
            id: "k1".into(),
            secret: Secret(b"bench-device-signing-key-0123456789abcdef".to_vec()),
        }]);
        let devices = Arc::new(Devices::new(
            store,
            ring,
            Duration::from_secs(30 * 86_400),
            10,
        ));
        let now = nidan::time::now();
        let base = rss_bytes();

        let mut handles = Vec::new();
        for t in 0..TASKS {
            let sessions = sessions.clone();
            handles.push(tokio::spawn(async move {
                let mut tokens = Vec::with_capacity(n / TASKS);
                for i in (t..n).step_by(TASKS) {
                    let user = format!("user{i:06}");
                    let (token, _) = sessions
                        .create(
                            NewSession {
                                user_id: &user,
                                proof: nidan::assurance::Proof {
                    first: nidan::assurance::FirstFactor::Password,
                    second: Some(nidan::assurance::SecondFactor::Sms),
                    exemption: None,
                    required: true,
                },
                                methods: "password+sms".into(),
                                device_id: None,
                                ip: "192.0.2.10",
                                user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                            },
                            "bench-credential",
                            now,
                        )
                        .await
                        .unwrap();
                    tokens.push(token);
                }
                tokens
            }));
        }
        let mut tokens = Vec::with_capacity(n);
        for h in handles {
            tokens.extend(h.await.unwrap());
        }
        // Every session must be a cache hit; checking also settles moka's bookkeeping.
        for tok in tokens.iter().step_by(1000) {
            assert!(matches!(sessions.check(tok, now).await, Ok(Some(_))));
        }
        let tokens_bytes = (tokens.capacity() * std::mem::size_of::<String>()
            + tokens.iter().map(String::capacity).sum::<usize>()) as u64;
        let after_sessions = rss_bytes();
        let session_growth = after_sessions.saturating_sub(base).saturating_sub(tokens_bytes);

        // One at a time: registering is a read-then-write transaction, and concurrent ones
        // on SQLite fail with "database is locked" instead of waiting.
        for i in 0..n {
            let user = format!("user{i:06}");
            devices
                .register(&user, "bench-credential", "Firefox on Linux", "Firefox on Linux", "192.0.2.10", now)
                .await
                .unwrap();
        }
        let after_devices = rss_bytes();
        let device_growth = after_devices.saturating_sub(after_sessions);

        println!("memory: {n} sessions and {n} trusted devices cached ({:.1} s)", started.elapsed().as_secs_f64());
        println!("  RSS before            {:>8.1} MiB", mib(base));
        println!(
            "  + {n} sessions      {:>8.1} MiB  ({} bytes per session; cached: {})",
            mib(session_growth),
            session_growth / n as u64,
            sessions.cached()
        );
        println!(
            "  + {n} devices       {:>8.1} MiB  ({} bytes per device; cached: {})",
            mib(device_growth),
            device_growth / n as u64,
            devices.cached()
        );
        println!("  RSS after             {:>8.1} MiB", mib(after_devices));
        drop(tokens);
    });
}
