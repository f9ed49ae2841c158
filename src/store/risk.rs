//! What the risk engine remembers per user: browsers (hashes of their `nidan_seen` cookie),
//! network prefixes and user-agent families of successful logins, each with when it was
//! last seen. Failures are read from the audit trail.

use super::{DbRow, Result, Store};

/// One kind of thing remembered about a user's logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenKind {
    /// Hex SHA-256 of the browser's `nidan_seen` cookie.
    Browser,
    /// `/24` or `/48` network prefix.
    Network,
    /// Browser family, e.g. `Firefox on Linux`.
    Agent,
}

impl SeenKind {
    fn as_str(self) -> &'static str {
        match self {
            SeenKind::Browser => "browser",
            SeenKind::Network => "network",
            SeenKind::Agent => "agent",
        }
    }
}

impl Store {
    /// Records that `value` was seen for the user now.
    pub async fn remember_seen(
        &self,
        user_id: &str,
        kind: SeenKind,
        value: &str,
        now: i64,
    ) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO risk_seen (user_id, kind, value, first_seen, last_seen)
                 VALUES ($1,$2,$3,$4,$4)
                 ON CONFLICT(user_id, kind, value) DO UPDATE SET last_seen = excluded.last_seen",
            )
            .bind(user_id)
            .bind(kind.as_str())
            .bind(value)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Whether `value` was seen for the user at or after `since`.
    pub async fn seen_since(
        &self,
        user_id: &str,
        kind: SeenKind,
        value: &str,
        since: i64,
    ) -> Result<bool> {
        let row = on_db!(&self.db, pool => sqlx::query(
            "SELECT 1 FROM risk_seen
             WHERE user_id = $1 AND kind = $2 AND value = $3 AND last_seen >= $4",
        )
        .bind(user_id)
        .bind(kind.as_str())
        .bind(value)
        .bind(since)
        .fetch_optional(pool)
        .await?
        .is_some());
        Ok(row)
    }

    /// Whether anything at all is remembered for the user (a first login has nothing).
    pub async fn has_history(&self, user_id: &str) -> Result<bool> {
        let row = on_db!(&self.db, pool => sqlx::query(
            "SELECT 1 FROM risk_seen WHERE user_id = $1 LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(pool)
        .await?
        .is_some());
        Ok(row)
    }

    /// Failed logins recorded in the audit trail since `since`: (on the account, from the address).
    pub async fn recent_failures(&self, user_id: &str, ip: &str, since: i64) -> Result<(i64, i64)> {
        let account = on_db!(&self.db, pool => sqlx::query(
            "SELECT COUNT(*) AS n FROM audit
             WHERE user_id = $1 AND event = 'login_failed' AND ts >= $2",
        )
        .bind(user_id)
        .bind(since)
        .fetch_one(pool)
        .await?
        .int("n")?);
        let address = on_db!(&self.db, pool => sqlx::query(
            "SELECT COUNT(*) AS n FROM audit WHERE ip = $1 AND event = 'login_failed' AND ts >= $2",
        )
        .bind(ip)
        .bind(since)
        .fetch_one(pool)
        .await?
        .int("n")?);
        Ok((account, address))
    }
}
