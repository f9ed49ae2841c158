//! A fresh PostgreSQL database on the machine's server for one test, dropped on `Drop`
//! (`NIDAN_TEST_POSTGRES` overrides the admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, trust auth). The one copy: the integration
//! tests use it as `crate::common::pg` (re-exported by `stores`), the unit tests in `src/store`
//! as `crate::store::testing` (a `#[path]` to this file), so it names only std and the crate's
//! dependencies.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

/// Where the machine's PostgreSQL answers (trust auth). `NIDAN_TEST_POSTGRES` overrides it.
pub fn admin_url() -> String {
    std::env::var("NIDAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn admin_exec(sql: String) {
    // Run on a thread of its own: callers may be inside a tokio runtime already.
    std::thread::spawn(move || {
        block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&admin_url())
                .await
                .expect("PostgreSQL must run on 127.0.0.1:5432 (see README: the test command)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
        })
    })
    .join()
    .unwrap();
}

impl TestDb {
    pub fn create() -> Self {
        let name = format!("nidan_test_{}", hex_id());
        admin_exec(format!("CREATE DATABASE {name}"));
        let base = admin_url();
        let root = base.rsplit_once('/').map_or(base.as_str(), |(r, _)| r);
        Self {
            url: format!("{root}/{name}"),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        admin_exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn hex_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}
