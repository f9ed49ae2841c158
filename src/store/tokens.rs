//! API tokens (app passwords): only their SHA-256 is stored, with name, times and whether
//! they were revoked.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store};

pub(super) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS api_tokens (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE, created INTEGER NOT NULL, last_used INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS api_tokens_user ON api_tokens(user_id)",
];

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

fn token_from_row(r: &SqliteRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        hash: r.try_get("hash")?,
        created: r.try_get("created")?,
        last_used: r.try_get("last_used")?,
        revoked: r.try_get("revoked")?,
    })
}

impl Store {
    /// Inserts a token unless the user already has `max` live ones; false when full.
    pub async fn insert_token(&self, t: &TokenRecord, max: usize) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let live: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = ? AND revoked = 0")
                .bind(&t.user_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if usize::try_from(live).unwrap_or(usize::MAX) >= max {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, hash, created, last_used, revoked)
             VALUES (?,?,?,?,?,NULL,0)",
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
    }

    /// The token with this hash, revoked or not.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    /// A user's live tokens, newest first.
    pub async fn user_tokens(&self, user_id: &str) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM api_tokens WHERE user_id = ? AND revoked = 0 ORDER BY created DESC, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Sets `last_used` when the stored value is older than `older_than`; true if it did
    /// (so callers write the audit trail at most that often).
    pub async fn token_used(&self, id: &str, now: i64, older_than: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET last_used = ? WHERE id = ? AND (last_used IS NULL OR last_used < ?)",
        )
        .bind(now)
        .bind(id)
        .bind(older_than)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes one token of a user; false when there was no such live token.
    pub async fn revoke_token(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked = 1 WHERE id = ? AND user_id = ? AND revoked = 0",
        )
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes every token of a user; returns how many.
    pub async fn revoke_user_tokens(&self, user_id: &str) -> Result<u64> {
        let done =
            sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE user_id = ? AND revoked = 0")
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}
