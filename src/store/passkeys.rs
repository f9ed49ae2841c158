//! Passkeys (WebAuthn credentials): the credential ID, the user handle the authenticator
//! keeps, the COSE public key, the signature counter, name and times. Nothing secret is
//! stored: the private key never leaves the authenticator.

use super::{DbRow, Result, Store};

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

fn passkey_from_row<R: DbRow>(r: &R) -> Result<PasskeyRecord> {
    let count = r.int("sign_count")?;
    Ok(PasskeyRecord {
        id: r.text("id")?,
        user_id: r.text("user_id")?,
        name: r.text("name")?,
        credential_id: r.text("credential_id")?,
        user_handle: r.text("user_handle")?,
        public_key: r.bytes("public_key")?,
        alg: r.int("alg")?,
        sign_count: u32::try_from(count).unwrap_or(u32::MAX),
        created: r.int("created")?,
        last_used: r.opt_int("last_used")?,
    })
}

impl Store {
    /// Adds a passkey unless the user has `max` already or the credential is registered.
    /// The count and the insert hold the user's write lock (see `insert_device`).
    pub async fn insert_passkey(&self, p: &PasskeyRecord, max: usize) -> Result<PasskeyInsert> {
        with_user_lock!(&self.db, &p.user_id, tx => {
            let live = sqlx::query("SELECT COUNT(*) AS n FROM passkeys WHERE user_id = $1")
                .bind(&p.user_id)
                .fetch_one(&mut *tx)
                .await?
                .int("n")?;
            if usize::try_from(live).unwrap_or(usize::MAX) >= max {
                return Ok(PasskeyInsert::Full);
            }
            // The credential may be another user's (not under this lock): the unique
            // constraint decides, and a conflict is a duplicate, not an error.
            let added = sqlx::query(
                "INSERT INTO passkeys (id, user_id, name, credential_id, user_handle, public_key,
                 alg, sign_count, created, last_used)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,NULL)
                 ON CONFLICT (credential_id) DO NOTHING",
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
            .await?
            .rows_affected();
            if added == 0 {
                return Ok(PasskeyInsert::Duplicate);
            }
            tx.commit().await?;
            Ok(PasskeyInsert::Added)
        })
    }

    pub async fn passkey_by_credential(
        &self,
        credential_id: &str,
    ) -> Result<Option<PasskeyRecord>> {
        on_db!(&self.db, pool => sqlx::query("SELECT * FROM passkeys WHERE credential_id = $1")
            .bind(credential_id)
            .fetch_optional(pool)
            .await?
            .map(|r| passkey_from_row(&r))
            .transpose())
    }

    /// A user's passkeys, newest first.
    pub async fn user_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>> {
        on_db!(&self.db, pool => sqlx::query(
            "SELECT * FROM passkeys WHERE user_id = $1 ORDER BY created DESC, id",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(passkey_from_row)
        .collect())
    }

    /// Moves the counter from `old` to `new` and sets `last_used`; false when the stored
    /// counter was no longer `old` (another login used it meanwhile).
    pub async fn passkey_used(&self, id: &str, old: u32, new: u32, now: i64) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE passkeys SET sign_count = $1, last_used = $2 WHERE id = $3 AND sign_count = $4",
        )
        .bind(i64::from(new))
        .bind(now)
        .bind(id)
        .bind(i64::from(old))
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    pub async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE passkeys SET name = $1 WHERE id = $2 AND user_id = $3",
        )
        .bind(name)
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    pub async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "DELETE FROM passkeys WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }
}
