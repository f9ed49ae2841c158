//! Passkeys (WebAuthn credentials): the credential ID, the user handle the authenticator
//! keeps, the COSE public key, the signature counter, name and times. Nothing secret is
//! stored: the private key never leaves the authenticator.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store};

pub(super) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS passkeys (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
        credential_id TEXT NOT NULL UNIQUE, user_handle TEXT NOT NULL,
        public_key BLOB NOT NULL, alg INTEGER NOT NULL, sign_count INTEGER NOT NULL,
        created INTEGER NOT NULL, last_used INTEGER)",
    "CREATE INDEX IF NOT EXISTS passkeys_user ON passkeys(user_id)",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// base64url of the credential ID.
    pub credential_id: String,
    /// base64url of the WebAuthn user handle (random, the same for all of a user's passkeys).
    pub user_handle: String,
    /// The COSE_Key as the authenticator encoded it.
    pub public_key: Vec<u8>,
    /// COSE algorithm (-7 ES256, -8 EdDSA).
    pub alg: i64,
    pub sign_count: u32,
    pub created: i64,
    pub last_used: Option<i64>,
}

/// The outcome of adding a passkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyInsert {
    Added,
    /// The user has the maximum number already.
    Full,
    /// This credential is registered already (to anyone).
    Duplicate,
}

fn passkey_from_row(r: &SqliteRow) -> Result<PasskeyRecord> {
    let count: i64 = r.try_get("sign_count")?;
    Ok(PasskeyRecord {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        credential_id: r.try_get("credential_id")?,
        user_handle: r.try_get("user_handle")?,
        public_key: r.try_get("public_key")?,
        alg: r.try_get("alg")?,
        sign_count: u32::try_from(count).unwrap_or(u32::MAX),
        created: r.try_get("created")?,
        last_used: r.try_get("last_used")?,
    })
}

impl Store {
    pub async fn insert_passkey(&self, p: &PasskeyRecord, max: usize) -> Result<PasskeyInsert> {
        let mut tx = self.pool.begin().await?;
        let live: i64 = sqlx::query("SELECT COUNT(*) AS n FROM passkeys WHERE user_id = ?")
            .bind(&p.user_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if usize::try_from(live).unwrap_or(usize::MAX) >= max {
            return Ok(PasskeyInsert::Full);
        }
        let taken = sqlx::query("SELECT 1 FROM passkeys WHERE credential_id = ?")
            .bind(&p.credential_id)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Ok(PasskeyInsert::Duplicate);
        }
        sqlx::query(
            "INSERT INTO passkeys (id, user_id, name, credential_id, user_handle, public_key,
             alg, sign_count, created, last_used) VALUES (?,?,?,?,?,?,?,?,?,NULL)",
        )
        .bind(&p.id)
        .bind(&p.user_id)
        .bind(&p.name)
        .bind(&p.credential_id)
        .bind(&p.user_handle)
        .bind(&p.public_key)
        .bind(p.alg)
        .bind(i64::from(p.sign_count))
        .bind(p.created)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PasskeyInsert::Added)
    }

    pub async fn passkey_by_credential(
        &self,
        credential_id: &str,
    ) -> Result<Option<PasskeyRecord>> {
        let row = sqlx::query("SELECT * FROM passkeys WHERE credential_id = ?")
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| passkey_from_row(&r)).transpose()
    }

    /// A user's passkeys, newest first.
    pub async fn user_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>> {
        let rows =
            sqlx::query("SELECT * FROM passkeys WHERE user_id = ? ORDER BY created DESC, id")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(passkey_from_row).collect()
    }

    /// Moves the counter from `old` to `new` and sets `last_used`; false when the stored
    /// counter was no longer `old` (another login used it meanwhile).
    pub async fn passkey_used(&self, id: &str, old: u32, new: u32, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE passkeys SET sign_count = ?, last_used = ? WHERE id = ? AND sign_count = ?",
        )
        .bind(i64::from(new))
        .bind(now)
        .bind(id)
        .bind(i64::from(old))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE passkeys SET name = ? WHERE id = ? AND user_id = ?")
            .bind(name)
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM passkeys WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
