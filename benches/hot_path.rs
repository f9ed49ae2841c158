//! Micro-benchmarks of what every proxied request pays before it reaches the backend:
//! canonicalising the path and finding the route, the session check on a cache hit, the
//! decision for a bypass route, the header hygiene and the access log line.
//! `cargo bench --bench hot_path` (the whole request: benches/callgrind.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nidan::auth::gate::{self, Caller};
use nidan::proxy::path::canonicalize_parts;
use nidan::proxy::route::RouteTable;
use nidan::session::{NewSession, Sessions};
use nidan::store::Store;
use nidan::users::{FileDirectory, Source};

/// Ten routes, the request matching the last one (the catch-all), as in a typical file.
/// Built through the real configuration loader so the bench follows the config types.
const CONFIG: &str = r#"
version: 1
server: { listen: ["127.0.0.1:18080"] }
trusted_devices:
  signing_keys: [{ id: k1, secret_file: device-key }]
users: { file: users.yaml }
storage: { sqlite: { path: nidan.db } }
routes:
  - { name: public, path_prefix: /public, upstream: ["127.0.0.1:8081"], policy: bypass }
  - { name: assets, path_prefix: /assets, upstream: ["127.0.0.1:8081"], policy: bypass }
  - { name: admin, path_prefix: /admin, upstream: ["127.0.0.1:8081"], policy: two_factor }
  - { name: api, path_prefix: /api/v1, upstream: ["127.0.0.1:8081"], policy: login }
  - { name: wiki, hosts: [wiki.example.com], path_prefix: /, upstream: ["127.0.0.1:8081"], policy: login }
  - { name: git, hosts: [git.example.com], path_prefix: /, upstream: ["127.0.0.1:8081"], policy: login }
  - { name: tenant, hosts: ["*.apps.example.com"], path_prefix: /, upstream: ["127.0.0.1:8081"], policy: login }
  - { name: closed, path_prefix: /internal, upstream: ["127.0.0.1:8081"], policy: deny }
  - { name: metrics, path_prefix: /metrics, upstream: ["127.0.0.1:8081"], policy: deny }
  - { name: app, path_prefix: /, upstream: ["127.0.0.1:8081"], policy: login }
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    table: RouteTable,
    users: FileDirectory,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let repo = std::path::Path::new(&manifest);
    std::fs::copy(
        repo.join("config/test/users.yaml"),
        dir.path().join("users.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("device-key"),
        "bench-device-signing-key-0123456789abcdef",
    )
    .unwrap();
    let path = dir.path().join("nidan.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    let cfg = nidan::config::load(&path).unwrap_or_else(|e| panic!("bench config: {e}"));
    assert_eq!(cfg.routes.len(), 10);
    let users = FileDirectory::load(&cfg.users.file).unwrap();
    Fixture {
        table: RouteTable::new(cfg.routes.clone()),
        users,
        _dir: dir,
    }
}

fn path_and_route(c: &mut Criterion) {
    let f = fixture();
    let t = &f.table;
    let mut g = c.benchmark_group("path_and_route");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("canonicalize_plain", |b| {
        b.iter(|| {
            canonicalize_parts(
                black_box("/app/projects/42/issues"),
                black_box(Some("page=2")),
            )
        })
    });
    g.bench_function("canonicalize_escaped", |b| {
        b.iter(|| {
            canonicalize_parts(
                black_box("/app/./projects//%7Euser/%E3%81%82/../issues"),
                black_box(None),
            )
        })
    });
    g.bench_function("find_last_of_10", |b| {
        b.iter(|| {
            t.find(
                black_box("app.example.com"),
                black_box("/app/projects/42/issues"),
            )
        })
    });
    g.bench_function("canonicalize_and_find", |b| {
        b.iter(|| {
            let c =
                canonicalize_parts(black_box("/app/projects/42/issues"), black_box(None)).unwrap();
            t.find(black_box("app.example.com"), &c.path)
        })
    });
    g.finish();
}

fn session_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(Store::open(&dir.path().join("bench.db")))
        .unwrap();
    let sessions = Sessions::new(
        store,
        Duration::from_secs(1800),
        Duration::from_secs(12 * 3600),
    );
    let now = nidan::time::now();
    let (token, _) = rt
        .block_on(sessions.create(
            NewSession {
                user_id: "taro",
                proof: nidan::assurance::Proof {
                    first: nidan::assurance::FirstFactor::Password,
                    second: Some(nidan::assurance::SecondFactor::Sms),
                    exemption: None,
                    required: true,
                },
                methods: "password".into(),
                device_id: None,
                ip: "127.0.0.1",
                user_agent: "bench",
            },
            "bench-credential",
            now,
        ))
        .unwrap();
    assert!(matches!(
        rt.block_on(sessions.check(&token, now)),
        Ok(Some(_))
    ));
    let mut g = c.benchmark_group("session");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("check_cache_hit", |b| {
        b.iter(|| rt.block_on(sessions.check(black_box(&token), now)))
    });
    g.bench_function("cookie_sha256", |b| {
        // The cache key of a session cookie (natively with SHA-NI where the CPU has it; under
        // valgrind, which hides SHA-NI, the same digest counts ~3.6k instructions).
        use sha2::{Digest, Sha256};
        b.iter(|| Sha256::digest(black_box(token.as_bytes())))
    });
    g.bench_function("check_unknown_token", |b| {
        // Same length as a real token, so it is hashed and looked up (cache, then store).
        let unknown = "A".repeat(43);
        b.iter(|| rt.block_on(sessions.check(black_box(&unknown), now)))
    });
    g.finish();
}

fn decision(c: &mut Criterion) {
    let f = fixture();
    let bypass = f.table.get(0).unwrap();
    let login = f.table.get(9).unwrap();
    let u = f.users.loaded().unwrap().get("taro").cloned().unwrap();
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    let proof = nidan::assurance::Proof {
        first: nidan::assurance::FirstFactor::Password,
        second: Some(nidan::assurance::SecondFactor::Sms),
        exemption: None,
        required: true,
    };
    let mut g = c.benchmark_group("decide");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("bypass", |b| {
        b.iter(|| gate::decide(black_box(Some(bypass)), None, client, &[]))
    });
    g.bench_function("login_with_session", |b| {
        b.iter(|| {
            gate::decide(
                black_box(Some(login)),
                Some(Caller {
                    user: &u,
                    proof: &proof,
                    two_step_on: true,
                }),
                client,
                &[],
            )
        })
    });
    g.finish();
}

fn headers_and_log(c: &mut Criterion) {
    use nidan::proxy::access::{self, Entry, Format};
    use nidan::proxy::upstream;
    let mut h = http::HeaderMap::new();
    for (k, v) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-language", "ja,en;q=0.8"),
        (
            "cookie",
            "nidan_session=0123456789abcdef0123456789abcdef0123456789a",
        ),
    ] {
        h.insert(
            http::HeaderName::from_static(k),
            http::HeaderValue::from_static(v),
        );
    }
    let identity: Vec<String> = [
        "remote-user",
        "remote-name",
        "remote-email",
        "remote-groups",
    ]
    .map(String::from)
    .to_vec();
    let entry = Entry {
        method: "GET",
        path: "/app/projects/42/issues",
        status: 200,
        route: "app",
        user: "taro",
        client: Some(std::net::IpAddr::from([203, 0, 113, 7])),
        micros: 1234,
        error: None,
    };
    let now = std::time::SystemTime::now();
    let mut g = c.benchmark_group("headers_and_log");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("request_removals_typical", |b| {
        b.iter(|| upstream::request_removals(black_box(&h), &identity, false))
    });
    g.bench_function("x_forwarded_for_value", |b| {
        b.iter(|| upstream::ip_value(black_box(std::net::IpAddr::from([203, 0, 113, 7]))))
    });
    let mut out = Vec::with_capacity(256);
    g.bench_function("access_line_text", |b| {
        b.iter(|| {
            out.clear();
            access::line(&mut out, Format::Text, now, black_box(&entry));
        })
    });
    g.bench_function("access_line_json", |b| {
        b.iter(|| {
            out.clear();
            access::line(&mut out, Format::Json, now, black_box(&entry));
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    path_and_route,
    session_hit,
    decision,
    headers_and_log
);
criterion_main!(benches);
