//! The revocation log (replica mode): every revocation, written after its own durable
//! write (or in the same transaction), as the event the bus carries — encoded by the
//! caller, the store knows nothing of the bus. Every replica reads what is new four times a
//! second (`replica::start`), so a revocation whose message never arrives still counts.
//!
//! Rows become visible in `seq` order: every PostgreSQL write takes one transaction-scoped
//! advisory lock before its insert, so a row with a lower `seq` cannot commit after a
//! reader has seen a higher one, and `seq > last` never skips anything. (SQLite has one
//! writer at a time anyway.)

use super::{Db, DbRow, Result, Store};

/// The advisory lock every log write holds until its transaction ends. One 64-bit key,
/// beyond the 32-bit range of `hashtext`, which the per-user locks use: no collision.
const LOG_LOCK: i64 = 0x006e_6964_616e_524c;

/// Writes one revocation to the log inside a transaction the caller holds (its own
/// durable write in the same transaction, then this, then commit): with
/// `use crate::store::revocations::RevocationLog`, `tx.log_revocation(now, &event.text())
/// .await?` in a `with_user_lock!` body compiles for both backends. Call it
/// last before the commit: on PostgreSQL it takes the log's lock, which serializes every
/// revocation until this transaction ends. Returns the row's `seq`. After the commit, hand
/// the event to `Bus::publish_logged` (what `replica::announce` does for a log write of
/// its own): the revocation is acknowledged only once that returns.
pub(crate) trait RevocationLog {
    async fn log_revocation(&mut self, at: i64, event: &str) -> Result<i64>;
}

impl RevocationLog for sqlx::PgConnection {
    async fn log_revocation(&mut self, at: i64, event: &str) -> Result<i64> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOG_LOCK)
            .execute(&mut *self)
            .await?;
        sqlx::query("INSERT INTO revocations (at, event) VALUES ($1, $2) RETURNING seq")
            .bind(at)
            .bind(event)
            .fetch_one(&mut *self)
            .await?
            .int("seq")
    }
}

impl RevocationLog for sqlx::SqliteConnection {
    async fn log_revocation(&mut self, at: i64, event: &str) -> Result<i64> {
        sqlx::query("INSERT INTO revocations (at, event) VALUES ($1, $2) RETURNING seq")
            .bind(at)
            .bind(event)
            .fetch_one(&mut *self)
            .await?
            .int("seq")
    }
}

impl Store {
    /// Logs one revocation (an encoded bus event) in a transaction of its own, after the
    /// revocation's durable write. Returns its `seq`.
    pub async fn log_revocation(&self, event: &str) -> Result<i64> {
        let at = crate::time::now();
        match &self.db {
            Db::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                conn.log_revocation(at, event).await
            }
            // Within the call's bound, as every PostgreSQL call (`Pg::call`).
            Db::Pg(pg) => {
                pg.call(async {
                    let mut tx = pg.pool.begin().await?;
                    let seq = tx.log_revocation(at, event).await?;
                    tx.commit().await?;
                    Ok(seq)
                })
                .await
            }
        }
    }

    /// The revocations logged after `seq`, oldest first, at most `limit`: `(seq, event)`.
    pub async fn revocations_after(&self, seq: i64, limit: i64) -> Result<Vec<(i64, String)>> {
        on_db!(&self.db, pool => sqlx::query(
            "SELECT seq, event FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok((r.int("seq")?, r.text("event")?)))
        .collect())
    }

    /// The highest `seq` logged so far (0 when the log is empty).
    pub async fn latest_revocation(&self) -> Result<i64> {
        on_db!(&self.db, pool => sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) AS seq FROM revocations",
        )
        .fetch_one(pool)
        .await?
        .int("seq"))
    }

    /// Deletes the log rows written before `before` (unix seconds); returns how many.
    pub async fn purge_revocations(&self, before: i64) -> Result<u64> {
        Ok(
            on_db!(&self.db, pool => sqlx::query("DELETE FROM revocations WHERE at < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected()),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::super::testing::TestDb;
    use super::*;

    async fn log_in_order(store: Store) {
        assert_eq!(store.latest_revocation().await.unwrap(), 0);
        assert!(store.revocations_after(0, 10).await.unwrap().is_empty());
        let a = store.log_revocation("a").await.unwrap();
        let b = store.log_revocation("b").await.unwrap();
        assert!(b > a);
        assert_eq!(store.latest_revocation().await.unwrap(), b);
        assert_eq!(
            store.revocations_after(0, 10).await.unwrap(),
            vec![(a, "a".to_owned()), (b, "b".to_owned())]
        );
        assert_eq!(
            store.revocations_after(a, 10).await.unwrap(),
            vec![(b, "b".to_owned())]
        );
        assert_eq!(store.revocations_after(0, 1).await.unwrap().len(), 1);
        // Nothing is older than a second ago yet; everything is older than the future.
        let now = crate::time::now();
        assert_eq!(store.purge_revocations(now - 60).await.unwrap(), 0);
        assert_eq!(store.purge_revocations(now + 60).await.unwrap(), 2);
        // The sequence goes on after a purge: a reader's `last` stays valid.
        let c = store.log_revocation("c").await.unwrap();
        assert!(c > b);
        assert_eq!(
            store.revocations_after(b, 10).await.unwrap(),
            vec![(c, "c".to_owned())]
        );
    }

    #[tokio::test]
    async fn the_log_keeps_order_and_purges_by_age_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        log_in_order(Store::open(&dir.path().join("r.db")).await.unwrap()).await;
    }

    #[tokio::test]
    async fn the_log_keeps_order_and_purges_by_age_postgres() {
        let pg = TestDb::create();
        log_in_order(Store::open_postgres(&pg.url, 4, false).await.unwrap()).await;
    }

    /// Writers racing in transactions that commit late: a reader that saw `seq` n never
    /// finds, later, a row below n it had not seen (rows are visible in `seq` order).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_reader_never_skips_a_row_that_commits_late_postgres() {
        let pg = TestDb::create();
        let store = Arc::new(Store::open_postgres(&pg.url, 12, false).await.unwrap());
        let Db::Pg(pool) = &store.db else {
            unreachable!()
        };
        let mut writers = Vec::new();
        for w in 0..8u64 {
            let pool = pool.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..20u64 {
                    let mut tx = pool.pool.begin().await.unwrap();
                    tx.log_revocation(0, &format!("{w}-{i}")).await.unwrap();
                    // Hold the transaction open a little after the insert.
                    tokio::time::sleep(std::time::Duration::from_millis((w + i) % 3)).await;
                    tx.commit().await.unwrap();
                }
            }));
        }
        let mut last = 0;
        let mut seen = std::collections::BTreeSet::new();
        let start = std::time::Instant::now();
        while seen.len() < 160 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the cursor skipped a row: {} of 160 read",
                seen.len()
            );
            for (seq, event) in store.revocations_after(last, 1000).await.unwrap() {
                assert!(seq > last);
                last = seq;
                assert!(seen.insert(event));
            }
            tokio::task::yield_now().await;
        }
        for w in writers {
            w.await.unwrap();
        }
        // Every row was read by the cursor, none below it arrived later.
        let all = store.revocations_after(0, 1000).await.unwrap();
        assert_eq!(all.len(), 160);
    }
}
