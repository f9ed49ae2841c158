//! Test helper: a fresh PostgreSQL database on the machine's server for one test, dropped
//! afterwards (unit tests cannot use `tests/common`). `NIDAN_TEST_POSTGRES` overrides the
//! admin URL (default `postgres://postgres@127.0.0.1:5432/postgres`, trust auth).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sqlx::Connection;

pub fn admin_url() -> String {
    std::env::var("NIDAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs one statement as the admin on a thread of its own (callers may be inside a
/// runtime, and `Drop` cannot await).
fn admin_exec(sql: String) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut c = sqlx::PgConnection::connect(&admin_url())
                    .await
                    .expect("PostgreSQL must run on 127.0.0.1:5432 (or set NIDAN_TEST_POSTGRES)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .unwrap();
            })
    })
    .join()
    .unwrap();
}

pub struct PgTestDb {
    pub name: String,
    pub url: String,
}

impl PgTestDb {
    pub fn create() -> Self {
        let name = format!(
            "nidan_unit_{}",
            crate::secret::random_token(9).to_lowercase()
        )
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
        admin_exec(format!("CREATE DATABASE {name}"));
        let base = admin_url();
        let root = base.rsplit_once('/').map_or(base.as_str(), |(r, _)| r);
        Self {
            url: format!("{root}/{name}"),
            name,
        }
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        admin_exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
