//! The database directory's rows (`users: { database: {} }`, issue 24): one per user,
//! looked up by ID and paged in ID order, never loaded whole. Every write that changes what
//! a user signs in with (password hash, disabled flag, removal) changes the user's
//! credential digest in the same transaction, with the compare-and-set of
//! [`Store::change_credential`]: sessions, trusted devices and app passwords of the old
//! credentials end in that transaction, on every replica.

use std::collections::HashMap;

use super::revocations::RevocationLog;
use super::{CredentialChange, DbRow, LogEvents, Result, Revoked, Store};

/// One user as the database keeps it (the users file's fields; validated before it is
/// written, by `users::check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub password_hash: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// `active`, `kept` or `gone`.
    pub phone_status: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// Whether 2-step is on, and its method; `None`: the configuration's default.
    pub two_step: Option<(bool, String)>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// The columns every read and write names, in this order.
macro_rules! columns {
    () => {
        "id, password_hash, name, email, phone, phone_status, groups_json, disabled, two_step_enabled, two_step_method"
    };
}

const UPSERT_TAIL: &str = " ON CONFLICT (id) DO UPDATE SET password_hash = EXCLUDED.password_hash,
 name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone,
 phone_status = EXCLUDED.phone_status, groups_json = EXCLUDED.groups_json,
 disabled = EXCLUDED.disabled, two_step_enabled = EXCLUDED.two_step_enabled,
 two_step_method = EXCLUDED.two_step_method, updated = EXCLUDED.updated";

fn from_row<R: DbRow>(r: &R) -> Result<UserRecord> {
    let groups: Vec<String> = serde_json::from_str(&r.text("groups_json")?).unwrap_or_default();
    let two_step = match (
        r.opt_flag("two_step_enabled")?,
        r.opt_text("two_step_method")?,
    ) {
        (Some(on), Some(m)) => Some((on, m)),
        _ => None,
    };
    Ok(UserRecord {
        id: r.text("id")?,
        password_hash: r.text("password_hash")?,
        name: r.text("name")?,
        email: r.opt_text("email")?,
        phone: r.opt_text("phone")?,
        phone_status: r.text("phone_status")?,
        groups,
        disabled: r.flag("disabled")?,
        two_step,
    })
}

fn groups_json(groups: &[String]) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "[]".to_owned())
}

/// Binds one record's columns (in `columns!()` order) and `updated` on a `push_values` row.
macro_rules! bind_user {
    ($b:ident, $u:expr, $now:expr) => {{
        let u = $u;
        $b.push_bind(u.id.clone())
            .push_bind(u.password_hash.clone())
            .push_bind(u.name.clone())
            .push_bind(u.email.clone())
            .push_bind(u.phone.clone())
            .push_bind(u.phone_status.clone())
            .push_bind(groups_json(&u.groups))
            .push_bind(u.disabled)
            .push_bind(u.two_step.as_ref().map(|t| t.0))
            .push_bind(u.two_step.as_ref().map(|t| t.1.clone()))
            .push_bind($now);
    }};
}

/// In `$tx`: the user's digest becomes `$to` if it was another (a compare-and-set; a user
/// with no row gets one and nothing to revoke), revoking what predates it and logging the
/// revocations. `Some(Applied)` when this call changed it.
macro_rules! credential_cas {
    ($tx:ident, $user:expr, $to:expr, $now:expr, $log:expr) => {{
        let changed = sqlx::query(
            "UPDATE credentials SET digest = $1, epoch = epoch + 1, changed = $2
             WHERE user_id = $3 AND digest <> $1",
        )
        .bind($to)
        .bind($now)
        .bind($user)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if changed > 0 {
            let revoked = revoke_predating!($tx, $user, $to);
            for event in ($log)(&revoked) {
                $tx.log_revocation($now, &event).await?;
            }
            Some(CredentialChange::Applied(revoked))
        } else {
            sqlx::query(
                "INSERT INTO credentials (user_id, digest, epoch, changed) VALUES ($1, $2, 0, $3)
                 ON CONFLICT (user_id) DO NOTHING",
            )
            .bind($user)
            .bind($to)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
            None
        }
    }};
}

/// Upserts `$rows` (records) in one statement inside `$tx`.
macro_rules! upsert_rows {
    ($tx:ident, $rows:expr, $now:expr) => {{
        let mut q =
            sqlx::QueryBuilder::new(concat!("INSERT INTO users (", columns!(), ", updated) "));
        q.push_values($rows, |mut b, u: &UserRecord| bind_user!(b, u, $now));
        q.push(UPSERT_TAIL);
        q.build().execute(&mut *$tx).await?;
    }};
}

/// Reads the rows of `$ids` inside `$tx`, by ID.
macro_rules! rows_of {
    ($tx:ident, $ids:expr) => {{
        let mut q =
            sqlx::QueryBuilder::new(concat!("SELECT ", columns!(), " FROM users WHERE id IN ("));
        let mut sep = q.separated(", ");
        for id in $ids {
            sep.push_bind(id.clone());
        }
        q.push(")");
        let mut found = HashMap::new();
        for r in q.build().fetch_all(&mut *$tx).await? {
            let u = from_row(&r)?;
            found.insert(u.id.clone(), u);
        }
        found
    }};
}

/// The stored credential digests of `$ids` inside `$tx`, by user.
macro_rules! digests_of {
    ($tx:ident, $ids:expr) => {{
        let mut found: HashMap<String, String> = HashMap::new();
        let ids: Vec<&str> = $ids.collect();
        if !ids.is_empty() {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT user_id, digest FROM credentials WHERE user_id IN (",
            );
            let mut sep = q.separated(", ");
            for id in ids {
                sep.push_bind(id.to_owned());
            }
            q.push(")");
            for r in q.build().fetch_all(&mut *$tx).await? {
                found.insert(r.text("user_id")?, r.text("digest")?);
            }
        }
        found
    }};
}

/// One import batch inside `$tx`: compared with what is stored, only the new and changed
/// rows written, and the credential compare-and-set made for each changed credential.
macro_rules! import_batch {
    ($tx:ident, $batch:expr, $now:expr, $log:expr) => {{
        let batch: &[(UserRecord, String)] = $batch;
        let stored = rows_of!($tx, batch.iter().map(|(u, _)| &u.id));
        let mut counts = ImportCounts::default();
        let mut write: Vec<&UserRecord> = Vec::new();
        let mut digests: Vec<(&str, &str)> = Vec::new();
        for (u, digest) in batch {
            match stored.get(&u.id) {
                Some(old) if old == u => counts.unchanged += 1,
                Some(old) => {
                    counts.updated += 1;
                    write.push(u);
                    if old.password_hash != u.password_hash || old.disabled != u.disabled {
                        digests.push((&u.id, digest));
                    }
                }
                None => {
                    counts.created += 1;
                    write.push(u);
                    digests.push((&u.id, digest));
                }
            }
        }
        if !write.is_empty() {
            upsert_rows!($tx, write.iter().copied(), $now);
        }
        // Only users with a stored digest can hold anything to revoke (a digest is stored
        // at a user's first session): one read for the batch, a compare-and-set for each
        // whose digest differs.
        let stored_digests = digests_of!($tx, digests.iter().map(|(id, _)| *id));
        let mut applied = Vec::new();
        for (id, digest) in digests {
            if stored_digests.get(id).is_none_or(|d| d == digest) {
                continue;
            }
            if let Some(CredentialChange::Applied(r)) = credential_cas!($tx, id, digest, $now, $log)
            {
                applied.push((id.to_owned(), r));
            }
        }
        $tx.commit().await?;
        (counts, applied)
    }};
}

impl Store {
    /// The user with this ID.
    pub async fn user(&self, id: &str) -> Result<Option<UserRecord>> {
        on_db!(&self.db, pool => sqlx::query(concat!("SELECT ", columns!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|r| from_row(&r))
            .transpose())
    }

    /// Up to `limit` users with IDs after `after`, in ID order.
    pub async fn users_after(&self, after: &str, limit: i64) -> Result<Vec<UserRecord>> {
        on_db!(&self.db, pool => sqlx::query(concat!(
            "SELECT ", columns!(), " FROM users WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(from_row)
        .collect())
    }

    /// Creates or replaces a user; `digest` is the new record's credential digest. In the
    /// same transaction, when the digest differs from the stored one, the compare-and-set
    /// that revokes what predates it, and the log of it. `always` are events logged by every
    /// write (the other replicas drop what they cached of users). Returns whether the user
    /// is new, and the credential change.
    pub async fn put_user(
        &self,
        u: &UserRecord,
        digest: &str,
        now: i64,
        log: LogEvents<'_>,
        always: &[String],
    ) -> Result<(bool, Option<CredentialChange>)> {
        with_user_lock!(&self.db, &u.id, tx => {
            let existed = sqlx::query("SELECT 1 AS one FROM users WHERE id = $1")
                .bind(&u.id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            upsert_rows!(tx, std::iter::once(u), now);
            let change = credential_cas!(tx, &u.id, digest, now, log);
            for event in always {
                tx.log_revocation(now, event).await?;
            }
            tx.commit().await?;
            Ok((!existed, change))
        })
    }

    /// Removes a user: in the same transaction, their digest becomes `removed` (the
    /// compare-and-set that ends what they held) and the log of it. `None`: no such user.
    pub async fn delete_user(
        &self,
        id: &str,
        removed: &str,
        now: i64,
        log: LogEvents<'_>,
        always: &[String],
    ) -> Result<Option<Option<CredentialChange>>> {
        with_user_lock!(&self.db, id, tx => {
            let gone = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if gone == 0 {
                return Ok(None);
            }
            let change = credential_cas!(tx, id, removed, now, log);
            for event in always {
                tx.log_revocation(now, event).await?;
            }
            tx.commit().await?;
            Ok(Some(change))
        })
    }

    /// Imports one batch of users (each with its credential digest) in one transaction:
    /// unchanged rows are not written; new and changed ones are, with the credential
    /// compare-and-set of each changed credential. Returns the counts and what each
    /// applied change revoked.
    pub async fn import_users(
        &self,
        batch: &[(UserRecord, String)],
        now: i64,
        log: LogEvents<'_>,
    ) -> Result<(ImportCounts, Vec<(String, Revoked)>)> {
        match &self.db {
            super::Db::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(import_batch!(tx, batch, now, log))
            }
            super::Db::Pg(pg) => {
                pg.call(async {
                    let mut tx = pg.pool.begin().await?;
                    Ok(import_batch!(tx, batch, now, log))
                })
                .await
            }
        }
    }
}
