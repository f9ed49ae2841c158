//! Credential digests as durable facts (issue 22). One row per user holds the digest of the
//! credentials the users file gives them (`users::credential_digest`, or `users::REMOVED`)
//! and how many times it changed. Two rules make a change apply exactly once, whichever
//! replica reads it, however often:
//!
//! - a session (or trusted device) is inserted only if the stored digest is the one its
//!   login checked, in one transaction with reading it (`FOR SHARE` on PostgreSQL; SQLite
//!   serialises writers): a replica that has not read the new users file yet cannot mint a
//!   session with the old password;
//! - a change is one compare-and-set, and only the call that wrote it revokes, in the same
//!   transaction, what predates it: sessions of any other digest, trusted devices, app
//!   passwords. A replay finds the new digest already there and does nothing, so sessions
//!   made after the change are never touched.
//!
//! Also the phone states of the users file, so a phone change read by several replicas is
//! handled (audit, mail) by one.

use super::revocations::RevocationLog;
use super::{DbRow, DeviceRecord, Result, SessionRecord, Store};
use crate::proof::SecondFactor;

/// What a credential change revoked, in its own transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Sessions ended, by the hex SHA-256 the store keeps.
    pub sessions: Vec<String>,
    /// Trusted devices revoked, by ID.
    pub devices: Vec<String>,
    /// App passwords (API tokens) revoked.
    pub tokens: u64,
}

/// What a change's transaction writes to the revocation log, as encoded events, given what
/// it revoked (the caller knows the bus's format; the store does not). Empty in the
/// single-machine mode, where nobody reads the log.
pub type LogEvents<'a> = &'a (dyn Fn(&Revoked) -> Vec<String> + Sync);

/// What a compare-and-set of a user's credential digest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialChange {
    /// This call wrote the new digest and revoked what predates it.
    Applied(Revoked),
    /// The new digest was there already: applied before (by another replica, or a replay).
    Already,
    /// The stored digest is neither the expected nor the new one: whoever wrote it read
    /// another users file than this replica. Nothing changed.
    Differs(String),
}

/// What inserting a trusted device found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceInsert {
    Inserted,
    /// The user already has the maximum number of live devices.
    Full,
    /// The user's credentials changed since the login checked them.
    Stale,
}

/// The stored digest, read so that no change can commit before the caller's transaction
/// does: PostgreSQL locks the row for share (a concurrent change waits, or has committed
/// and is seen); SQLite's writers are serialised by `BEGIN IMMEDIATE`.
const CURRENT_PG: &str = "SELECT digest FROM credentials WHERE user_id = $1 FOR SHARE";
const CURRENT_SQLITE: &str = "SELECT digest FROM credentials WHERE user_id = $1";

/// Runs `$body` in a write transaction `$tx` (SQLite takes the write lock up front).
/// `$body` commits; returning early rolls back.
macro_rules! write_tx {
    ($db:expr, $tx:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            // Within the call's bound, as every PostgreSQL call (`Pg::call`): `$body`'s
            // value (or early `return`) is the call's result.
            $crate::store::Db::Pg(pg) => {
                pg.call(async {
                    let mut $tx = pg.pool.begin().await?;
                    $body
                })
                .await
            }
        }
    };
}

/// The user's stored digest inside `$tx`, made `$digest` first if the user has none yet
/// (the first login after the upgrade, or of a new user).
macro_rules! current_digest {
    ($tx:ident, $pg:expr, $user:expr, $digest:expr, $now:expr) => {{
        sqlx::query(
            "INSERT INTO credentials (user_id, digest, epoch, changed) VALUES ($1, $2, 0, $3)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind($user)
        .bind($digest)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(if $pg { CURRENT_PG } else { CURRENT_SQLITE })
            .bind($user)
            .fetch_one(&mut *$tx)
            .await?
            .text("digest")?
    }};
}

impl Store {
    /// Inserts a session if its credential digest is the user's stored one (stored first
    /// when the user has none); false, and nothing written, when it is not. A session
    /// without a digest is inserted as it is.
    pub async fn insert_session_if_current(&self, s: &SessionRecord) -> Result<bool> {
        let Some(credential) = s.credential.as_deref() else {
            self.insert_session(s).await?;
            return Ok(true);
        };
        let pg = self.is_postgres();
        write_tx!(&self.db, tx => {
            let current = current_digest!(tx, pg, &s.user_id, credential, s.last_seen);
            if current != credential {
                return Ok(false);
            }
            session_insert!(s)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Inserts a trusted device if `credential` is the user's stored digest and the user
    /// has fewer than `max` live devices (both read under the user's write lock).
    pub async fn insert_device_if_current(
        &self,
        d: &DeviceRecord,
        max: usize,
        now: i64,
        credential: &str,
    ) -> Result<DeviceInsert> {
        let pg = self.is_postgres();
        with_user_lock!(&self.db, &d.user_id, tx => {
            let current = current_digest!(tx, pg, &d.user_id, credential, now);
            if current != credential {
                return Ok(DeviceInsert::Stale);
            }
            let live = sqlx::query(
                "SELECT COUNT(*) AS n FROM devices
                 WHERE user_id = $1 AND revoked = FALSE AND expires > $2",
            )
            .bind(&d.user_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .int("n")?;
            if usize::try_from(live).unwrap_or(usize::MAX) >= max {
                return Ok(DeviceInsert::Full);
            }
            sqlx::query(
                "INSERT INTO devices (id, user_id, name, created, last_used, browser, ip, expires,
                 revoked) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,FALSE)",
            )
            .bind(&d.id)
            .bind(&d.user_id)
            .bind(&d.name)
            .bind(d.created)
            .bind(d.last_used)
            .bind(&d.browser)
            .bind(&d.ip)
            .bind(d.expires)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(DeviceInsert::Inserted)
        })
    }

    /// Changes a user's credential digest from `from` to `to` (a user with no row counts
    /// as changed: the row is made). Only when this call changed it, in the same
    /// transaction: the user's sessions of any other digest end, their trusted devices and
    /// app passwords are revoked, and the revocations are recorded durably.
    pub async fn change_credential(
        &self,
        user: &str,
        from: &str,
        to: &str,
        now: i64,
        log: LogEvents<'_>,
    ) -> Result<CredentialChange> {
        if from == to {
            return Ok(CredentialChange::Already);
        }
        write_tx!(&self.db, tx => {
            let update = || {
                sqlx::query(
                    "UPDATE credentials SET digest = $1, epoch = epoch + 1, changed = $2
                     WHERE user_id = $3 AND digest = $4",
                )
                .bind(to)
                .bind(now)
                .bind(user)
                .bind(from)
            };
            let mut changed = update().execute(&mut *tx).await?.rows_affected();
            if changed == 0 {
                changed = sqlx::query(
                    "INSERT INTO credentials (user_id, digest, epoch, changed)
                     VALUES ($1, $2, 1, $3) ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(user)
                .bind(to)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            if changed == 0 {
                // A login's row, inserted while this transaction looked: committed and
                // visible now (PostgreSQL reads the latest row at each statement).
                changed = update().execute(&mut *tx).await?.rows_affected();
            }
            if changed == 0 {
                let current = sqlx::query("SELECT digest FROM credentials WHERE user_id = $1")
                    .bind(user)
                    .fetch_one(&mut *tx)
                    .await?
                    .text("digest")?;
                return Ok(if current == to {
                    CredentialChange::Already
                } else {
                    CredentialChange::Differs(current)
                });
            }
            let revoked = revoke_predating!(tx, user, to);
            // Last before the commit: the log's lock serialises revocations until it.
            for event in log(&revoked) {
                tx.log_revocation(now, &event).await?;
            }
            tx.commit().await?;
            Ok(CredentialChange::Applied(revoked))
        })
    }

    /// Binds a live session of `user` to the credential digest `to` that a change the user is
    /// making from it is about to store: the change then ends every other session (their
    /// digest differs) and not this one. Harmless if the change does not happen: a session's
    /// digest is compared only by a later change, which ends it either way.
    pub async fn rebind_session(&self, id_hash: &str, user: &str, to: &str) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query(
            "UPDATE sessions SET credential = $1 WHERE id_hash = $2 AND user_id = $3",
        )
        .bind(to)
        .bind(id_hash)
        .bind(user)
        .execute(pool)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// A user's stored credential digest and how many changes it has seen.
    pub async fn credential(&self, user: &str) -> Result<Option<(String, i64)>> {
        on_db!(&self.db, pool => sqlx::query(
            "SELECT digest, epoch FROM credentials WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(pool)
        .await?
        .map(|r| Ok((r.text("digest")?, r.int("epoch")?)))
        .transpose())
    }

    /// Every stored credential digest, by user (compared with the users file at start).
    pub async fn credentials(&self) -> Result<Vec<(String, String)>> {
        on_db!(&self.db, pool => sqlx::query("SELECT user_id, digest FROM credentials")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.text("user_id")?, r.text("digest")?)))
            .collect())
    }

    /// Records the digest of a user's phone state in the users file; true when this call
    /// changed it (a user with no row counts as changed), so of several replicas reading
    /// one change, one handles it.
    pub async fn put_phone_state(&self, user: &str, digest: &str, now: i64) -> Result<bool> {
        let updated = on_db!(&self.db, pool => sqlx::query(
            "UPDATE phone_states SET digest = $1, changed = $2 WHERE user_id = $3 AND digest <> $1",
        )
        .bind(digest)
        .bind(now)
        .bind(user)
        .execute(pool)
        .await?
        .rows_affected());
        if updated > 0 {
            return Ok(true);
        }
        let inserted = on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO phone_states (user_id, digest, changed) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user)
        .bind(digest)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(inserted > 0)
    }
}
