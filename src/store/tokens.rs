//! API tokens (app passwords): only their SHA-256 is stored, with name, times and whether
//! they were revoked.

use super::{DbRow, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub created: i64,
    pub last_used: Option<i64>,
    pub revoked: bool,
}

fn token_from_row<R: DbRow>(r: &R) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.text("id")?,
        user_id: r.text("user_id")?,
        name: r.text("name")?,
        hash: r.text("hash")?,
        created: r.int("created")?,
        last_used: r.opt_int("last_used")?,
        revoked: r.flag("revoked")?,
    })
}

impl Store {
    /// Inserts a token unless the user already has `max` live ones; false when full.
    /// The count and the insert hold the user's write lock (see `insert_device`).
    pub async fn insert_token(&self, t: &TokenRecord, max: usize) -> Result<bool> {
        with_user_lock!(&self.db, &t.user_id, tx => {
            let live = sqlx::query(
                "SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = $1 AND revoked = FALSE",
            )
            .bind(&t.user_id)
            .fetch_one(&mut *tx)
            .await?
            .int("n")?;
            if usize::try_from(live).unwrap_or(usize::MAX) >= max {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO api_tokens (id, user_id, name, hash, created, last_used, revoked)
                 VALUES ($1,$2,$3,$4,$5,NULL,FALSE)",
            )
            .bind(&t.id)
            .bind(&t.user_id)
            .bind(&t.name)
            .bind(&t.hash)
            .bind(t.created)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The token with this hash, revoked or not.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        on_db!(&self.db, pool => sqlx::query("SELECT * FROM api_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(pool)
            .await?
            .map(|r| token_from_row(&r))
            .transpose())
    }

    /// A user's live tokens, newest first.
    pub async fn user_tokens(&self, user_id: &str) -> Result<Vec<TokenRecord>> {
        on_db!(&self.db, pool => sqlx::query(
            "SELECT * FROM api_tokens WHERE user_id = $1 AND revoked = FALSE
             ORDER BY created DESC, id",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(token_from_row)
        .collect())
    }

    /// Sets `last_used` when the stored value is older than `older_than`; true if it did
    /// (so callers write the audit trail at most that often).
    pub async fn token_used(&self, id: &str, now: i64, older_than: i64) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE api_tokens SET last_used = $1
             WHERE id = $2 AND (last_used IS NULL OR last_used < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(older_than)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Revokes one token of a user; false when there was no such live token.
    pub async fn revoke_token(&self, user_id: &str, id: &str) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE api_tokens SET revoked = TRUE WHERE id = $1 AND user_id = $2 AND revoked = FALSE",
        )
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Revokes every token of a user; returns how many.
    pub async fn revoke_user_tokens(&self, user_id: &str) -> Result<u64> {
        Ok(on_db!(&self.db, pool => sqlx::query(
            "UPDATE api_tokens SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE",
        )
        .bind(user_id)
        .execute(pool)
        .await?
        .rows_affected()))
    }
}
