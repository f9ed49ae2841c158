//! Phone changes made through the admin API, kept so they survive a restart. The user
//! directory applies them over the users file (`App::active_user`).

use sqlx::Row;

use super::{Result, Store};

pub(super) const SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS phone_overrides (
        user_id TEXT PRIMARY KEY, status TEXT NOT NULL, phone TEXT, updated INTEGER NOT NULL)"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneOverrideRecord {
    pub user_id: String,
    /// `active`, `kept` or `gone`.
    pub status: String,
    /// A new number; `None` keeps the one in the users file.
    pub phone: Option<String>,
    pub updated: i64,
}

impl Store {
    pub async fn put_phone_override(&self, p: &PhoneOverrideRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO phone_overrides (user_id, status, phone, updated) VALUES (?,?,?,?)
             ON CONFLICT(user_id) DO UPDATE SET status = excluded.status,
             phone = excluded.phone, updated = excluded.updated",
        )
        .bind(&p.user_id)
        .bind(&p.status)
        .bind(&p.phone)
        .bind(p.updated)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_phone_override(&self, user_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM phone_overrides WHERE user_id = ?")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn phone_overrides(&self) -> Result<Vec<PhoneOverrideRecord>> {
        let rows = sqlx::query("SELECT * FROM phone_overrides")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PhoneOverrideRecord {
                    user_id: r.try_get("user_id")?,
                    status: r.try_get("status")?,
                    phone: r.try_get("phone")?,
                    updated: r.try_get("updated")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// Revokes every phone-app enrollment of a user (the phone is gone); returns how many.
    pub async fn revoke_user_enrollments(&self, user_id: &str) -> Result<u64> {
        let done =
            sqlx::query("UPDATE app_enrollments SET revoked = 1 WHERE user_id = ? AND revoked = 0")
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}
