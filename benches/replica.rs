//! What a session check costs on one machine (SQLite) and on a replica (PostgreSQL): the
//! cache hit every request normally takes, and the miss (a store read) after a revocation
//! broadcast or a restart emptied the cache. Needs the machine's PostgreSQL on
//! 127.0.0.1:5432 (trust auth; `NIDAN_TEST_POSTGRES` overrides the admin URL); a database is
//! made for the run and dropped after it.
//!
//! `cargo bench --bench replica` (recipe and figures: docs/replicas.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nidan::assurance::{FirstFactor, Proof, SecondFactor};
use nidan::session::{NewSession, Sessions};
use nidan::store::Store;
use sqlx::Connection;

fn admin_url() -> String {
    std::env::var("NIDAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn admin(sql: String) {
    let mut c = sqlx::PgConnection::connect(&admin_url())
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap();
}

fn bench_store(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, store: Store) {
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
                proof: Proof {
                    first: FirstFactor::Password,
                    second: Some(SecondFactor::Sms),
                    exemption: None,
                    required: true,
                },
                methods: "password+sms".into(),
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
    let mut g = c.benchmark_group(format!("session_{name}"));
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("check_cache_hit", |b| {
        b.iter(|| rt.block_on(sessions.check(black_box(&token), now)))
    });
    g.bench_function("check_cache_miss", |b| {
        b.iter(|| {
            sessions.flush();
            rt.block_on(sessions.check(black_box(&token), now))
        })
    });
    g.finish();
}

fn replica(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(Store::open(&dir.path().join("bench.db")))
        .unwrap();
    bench_store(c, &rt, "sqlite", sqlite);

    let name = format!("nidan_bench_{}", std::process::id());
    rt.block_on(admin(format!("DROP DATABASE IF EXISTS {name}")));
    rt.block_on(admin(format!("CREATE DATABASE {name}")));
    let base = admin_url();
    let root = base.rsplit_once('/').map_or(base.as_str(), |(r, _)| r);
    let url = format!("{root}/{name}");
    let pg = rt.block_on(Store::open_postgres(&url, 4, false)).unwrap();
    bench_store(c, &rt, "postgres", pg);
    rt.block_on(admin(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )));
}

criterion_group!(benches, replica);
criterion_main!(benches);
