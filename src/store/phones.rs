//! Phone changes made through the admin API, kept so they survive a restart. The user
//! directory applies them over the users file (`App::active_user`).

use super::{DbRow, Result, Store};

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
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO phone_overrides (user_id, status, phone, updated)
                 VALUES ($1,$2,$3,$4)
                 ON CONFLICT(user_id) DO UPDATE SET status = excluded.status,
                 phone = excluded.phone, updated = excluded.updated",
            )
            .bind(&p.user_id)
            .bind(&p.status)
            .bind(&p.phone)
            .bind(p.updated)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn delete_phone_override(&self, user_id: &str) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM phone_overrides WHERE user_id = $1")
                .bind(user_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn phone_overrides(&self) -> Result<Vec<PhoneOverrideRecord>> {
        on_db!(&self.db, pool => sqlx::query("SELECT * FROM phone_overrides")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                Ok(PhoneOverrideRecord {
                    user_id: r.text("user_id")?,
                    status: r.text("status")?,
                    phone: r.opt_text("phone")?,
                    updated: r.int("updated")?,
                })
            })
            .collect())
    }

    /// Revokes every phone-app enrollment of a user (the phone is gone); returns how many.
    pub async fn revoke_user_enrollments(&self, user_id: &str) -> Result<u64> {
        Ok(on_db!(&self.db, pool => sqlx::query(
            "UPDATE app_enrollments SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE",
        )
        .bind(user_id)
        .execute(pool)
        .await?
        .rows_affected()))
    }
}
