//! The durable store: sessions, trusted devices, users' 2-step settings, failure counts
//! and the audit trail, in SQLite through sqlx.
//!
//! Everything a user was told succeeded is committed here before the answer goes out, so a
//! killed and restarted gateway forgets nothing acknowledged.

mod passkeys;
mod phones;
mod risk;
mod tokens;

pub use passkeys::{PasskeyInsert, PasskeyRecord};
pub use phones::PhoneOverrideRecord;
pub use risk::SeenKind;
pub use tokens::TokenRecord;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database could not be used: {0}")]
    Db(#[from] sqlx::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

use crate::assurance::{Exemption, FirstFactor, Proof, SecondFactor};

/// A stored session; the ID itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: String,
    pub created: i64,
    /// When the user last proved who they are (for "recent login" checks).
    pub auth_time: i64,
    pub last_seen: i64,
    /// Absolute expiry.
    pub expires: i64,
    /// What the login proved (factors, exemption, whether the second step was required).
    pub proof: Proof,
    /// How the user logged in, e.g. `password+sms`, `password+device` (for display).
    pub methods: String,
    pub device_id: Option<String>,
    pub ip: String,
    pub user_agent: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created: i64,
    pub last_used: i64,
    pub browser: String,
    pub ip: String,
    pub expires: i64,
    pub revoked: bool,
}

/// A phone-app installation enrolled for a user: its public key verifies its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// Ed25519 public key, 32 bytes, base64url.
    pub public_key: String,
    pub created: i64,
    pub last_used: i64,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingRecord {
    pub user_id: String,
    pub enabled: bool,
    pub method: String,
    pub updated: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub ts: i64,
    pub event: String,
    pub user_id: String,
    pub ip: String,
    pub detail: String,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sessions (
        id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, created INTEGER NOT NULL,
        auth_time INTEGER NOT NULL, last_seen INTEGER NOT NULL, expires INTEGER NOT NULL,
        two_step INTEGER NOT NULL, methods TEXT NOT NULL, device_id TEXT,
        ip TEXT NOT NULL, user_agent TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id)",
    "CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
        created INTEGER NOT NULL, last_used INTEGER NOT NULL, browser TEXT NOT NULL,
        ip TEXT NOT NULL, expires INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS devices_user ON devices(user_id)",
    "CREATE TABLE IF NOT EXISTS user_settings (
        user_id TEXT PRIMARY KEY, enabled INTEGER NOT NULL, method TEXT NOT NULL,
        updated INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failures (user_id TEXT NOT NULL, ts INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS failures_user ON failures(user_id, ts)",
    // Failures from browsers the account knows: a pool of their own (login::limits).
    "CREATE TABLE IF NOT EXISTS failures_known (user_id TEXT NOT NULL, ts INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS failures_known_user ON failures_known(user_id, ts)",
    "CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, event TEXT NOT NULL,
        user_id TEXT NOT NULL, ip TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_user ON audit(user_id, ts)",
    "CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts)",
    "CREATE TABLE IF NOT EXISTS app_enrollments (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
        public_key TEXT NOT NULL, created INTEGER NOT NULL, last_used INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS app_enrollments_user ON app_enrollments(user_id)",
];

/// Columns added when sessions started recording what they proved (SECURITY 35). Added
/// one by one to databases made before; rows from then read their proof from `methods`.
const SESSION_PROOF_COLUMNS: &[(&str, &str)] = &[
    (
        "first_factor",
        "ALTER TABLE sessions ADD COLUMN first_factor TEXT",
    ),
    (
        "second_factor",
        "ALTER TABLE sessions ADD COLUMN second_factor TEXT",
    ),
    (
        "exemption",
        "ALTER TABLE sessions ADD COLUMN exemption TEXT",
    ),
    (
        "required",
        "ALTER TABLE sessions ADD COLUMN required INTEGER",
    ),
];

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a killed process (not a power cut mid-commit).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        for stmt in SCHEMA
            .iter()
            .chain(tokens::SCHEMA)
            .chain(risk::SCHEMA)
            .chain(phones::SCHEMA)
            .chain(passkeys::SCHEMA)
        {
            sqlx::query(*stmt).execute(&pool).await?;
        }
        let have: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('sessions')")
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| r.try_get("name"))
            .collect::<std::result::Result<_, _>>()?;
        for (name, add) in SESSION_PROOF_COLUMNS {
            if !have.iter().any(|h| h == name) {
                sqlx::query(*add).execute(&pool).await?;
            }
        }
        Ok(Self { pool })
    }

    /// Opens an existing database without writing to it (for `nidan explain`).
    pub async fn open_read_only(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(2));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    // --- sessions -------------------------------------------------------------------

    pub async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, created, auth_time, last_seen, expires,
             two_step, methods, device_id, ip, user_agent, first_factor, second_factor,
             exemption, required) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        )
        .bind(&s.id_hash)
        .bind(&s.user_id)
        .bind(s.created)
        .bind(s.auth_time)
        .bind(s.last_seen)
        .bind(s.expires)
        .bind(s.proof.second.is_some())
        .bind(&s.methods)
        .bind(&s.device_id)
        .bind(&s.ip)
        .bind(&s.user_agent)
        .bind(s.proof.first.as_str())
        .bind(s.proof.second.map(SecondFactor::as_str))
        .bind(s.proof.exemption.map(|e| e.to_string()))
        .bind(s.proof.required)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| session_from_row(&r)).transpose()
    }

    pub async fn touch_session(&self, id_hash: &str, last_seen: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen = ? WHERE id_hash = ? AND last_seen < ?")
            .bind(last_seen)
            .bind(id_hash)
            .bind(last_seen)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes every session of a user; returns the hashes removed (to drop from caches).
    pub async fn delete_user_sessions(&self, user_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("DELETE FROM sessions WHERE user_id = ? RETURNING id_hash")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id_hash").map_err(StoreError::from))
            .collect()
    }

    pub async fn user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        let rows = sqlx::query("SELECT * FROM sessions WHERE user_id = ? ORDER BY created")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Removes sessions past their absolute expiry or idle for longer than `idle` seconds.
    pub async fn purge_sessions(&self, now: i64, idle: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires <= ? OR last_seen <= ?")
            .bind(now)
            .bind(now - idle)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    // --- trusted devices ------------------------------------------------------------

    /// Inserts a device unless the user already has `max` live ones; false when full.
    pub async fn insert_device(&self, d: &DeviceRecord, max: usize, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM devices WHERE user_id = ? AND revoked = 0 AND expires > ?",
        )
        .bind(&d.user_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if usize::try_from(live).unwrap_or(usize::MAX) >= max {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO devices (id, user_id, name, created, last_used, browser, ip, expires, revoked)
             VALUES (?,?,?,?,?,?,?,?,0)",
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
        Ok(true)
    }

    pub async fn device(&self, id: &str) -> Result<Option<DeviceRecord>> {
        let row = sqlx::query("SELECT * FROM devices WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| device_from_row(&r)).transpose()
    }

    /// The user's devices that are neither revoked nor expired, newest first.
    pub async fn live_devices(&self, user_id: &str, now: i64) -> Result<Vec<DeviceRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM devices WHERE user_id = ? AND revoked = 0 AND expires > ?
             ORDER BY created DESC",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    pub async fn rename_device(&self, user_id: &str, id: &str, name: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE devices SET name = ? WHERE id = ? AND user_id = ? AND revoked = 0")
                .bind(name)
                .bind(id)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn device_used(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE devices SET last_used = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes one device of a user; false when there was no such live device.
    pub async fn revoke_device(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE devices SET revoked = 1 WHERE id = ? AND user_id = ? AND revoked = 0",
        )
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes all of a user's devices; returns their IDs (to drop from caches).
    pub async fn revoke_user_devices(&self, user_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "UPDATE devices SET revoked = 1 WHERE user_id = ? AND revoked = 0 RETURNING id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(StoreError::from))
            .collect()
    }

    // --- phone-app enrollments --------------------------------------------------------

    pub async fn insert_enrollment(&self, e: &EnrollmentRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO app_enrollments (id, user_id, name, public_key, created, last_used, revoked)
             VALUES (?,?,?,?,?,?,0)",
        )
        .bind(&e.id)
        .bind(&e.user_id)
        .bind(&e.name)
        .bind(&e.public_key)
        .bind(e.created)
        .bind(e.last_used)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn enrollment(&self, id: &str) -> Result<Option<EnrollmentRecord>> {
        let row = sqlx::query("SELECT * FROM app_enrollments WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| enrollment_from_row(&r)).transpose()
    }

    /// The user's enrollments that are not revoked, newest first.
    pub async fn live_enrollments(&self, user_id: &str) -> Result<Vec<EnrollmentRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM app_enrollments WHERE user_id = ? AND revoked = 0 ORDER BY created DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(enrollment_from_row).collect()
    }

    pub async fn enrollment_used(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE app_enrollments SET last_used = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes one enrollment of a user (`None`: all of them); returns how many.
    pub async fn revoke_enrollments(&self, user_id: &str, id: Option<&str>) -> Result<u64> {
        let done = match id {
            Some(id) => {
                sqlx::query(
                    "UPDATE app_enrollments SET revoked = 1 WHERE user_id = ? AND id = ? AND revoked = 0",
                )
                .bind(user_id)
                .bind(id)
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query("UPDATE app_enrollments SET revoked = 1 WHERE user_id = ? AND revoked = 0")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    // --- 2-step settings ------------------------------------------------------------

    pub async fn setting(&self, user_id: &str) -> Result<Option<SettingRecord>> {
        let row = sqlx::query("SELECT * FROM user_settings WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(SettingRecord {
                user_id: r.try_get("user_id")?,
                enabled: r.try_get("enabled")?,
                method: r.try_get("method")?,
                updated: r.try_get("updated")?,
            })
        })
        .transpose()
    }

    pub async fn put_setting(&self, s: &SettingRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO user_settings (user_id, enabled, method, updated) VALUES (?,?,?,?)
             ON CONFLICT(user_id) DO UPDATE SET enabled = excluded.enabled,
             method = excluded.method, updated = excluded.updated",
        )
        .bind(&s.user_id)
        .bind(s.enabled)
        .bind(&s.method)
        .bind(s.updated)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // --- failure counts -------------------------------------------------------------

    pub async fn record_failure(&self, user_id: &str, known: bool, ts: i64) -> Result<()> {
        sqlx::query(if known {
            "INSERT INTO failures_known (user_id, ts) VALUES (?, ?)"
        } else {
            "INSERT INTO failures (user_id, ts) VALUES (?, ?)"
        })
        .bind(user_id)
        .bind(ts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Failure times for a user since `since` in one pool, oldest first.
    pub async fn failures_since(&self, user_id: &str, known: bool, since: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(if known {
            "SELECT ts FROM failures_known WHERE user_id = ? AND ts >= ? ORDER BY ts"
        } else {
            "SELECT ts FROM failures WHERE user_id = ? AND ts >= ? ORDER BY ts"
        })
        .bind(user_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("ts").map_err(StoreError::from))
            .collect()
    }

    pub async fn clear_failures(&self, user_id: &str, known: bool) -> Result<()> {
        sqlx::query(if known {
            "DELETE FROM failures_known WHERE user_id = ?"
        } else {
            "DELETE FROM failures WHERE user_id = ?"
        })
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn purge_failures(&self, before: i64) -> Result<()> {
        for table in [
            "DELETE FROM failures WHERE ts < ?",
            "DELETE FROM failures_known WHERE ts < ?",
        ] {
            sqlx::query(table).bind(before).execute(&self.pool).await?;
        }
        Ok(())
    }

    // --- audit trail ----------------------------------------------------------------

    pub async fn audit(&self, a: &AuditRecord) -> Result<()> {
        sqlx::query("INSERT INTO audit (ts, event, user_id, ip, detail) VALUES (?,?,?,?,?)")
            .bind(a.ts)
            .bind(&a.event)
            .bind(&a.user_id)
            .bind(&a.ip)
            .bind(&a.detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes audit rows older than `before`, then the oldest beyond `max_rows`: rows of
    /// the `first` events before any other, so a flood of events anyone can cause never
    /// pushes the record of real logins out.
    pub async fn purge_audit(&self, before: i64, max_rows: u64, first: &[&str]) -> Result<u64> {
        let mut removed = sqlx::query("DELETE FROM audit WHERE ts < ?")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let rows = u64::try_from(self.audit_rows().await?).unwrap_or(0);
        let mut excess = rows.saturating_sub(max_rows);
        if excess > 0 && !first.is_empty() {
            let events = serde_json::to_string(first).unwrap_or_else(|_| "[]".into());
            let n = sqlx::query(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit \
                 WHERE event IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?)",
            )
            .bind(events)
            .bind(i64::try_from(excess).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?
            .rows_affected();
            removed += n;
            excess = excess.saturating_sub(n);
        }
        if excess > 0 {
            removed += sqlx::query(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit ORDER BY id LIMIT ?)",
            )
            .bind(i64::try_from(excess).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(removed)
    }

    /// Number of rows in the audit trail.
    pub async fn audit_rows(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM audit")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// The newest `limit` audit records, optionally for one user, newest first.
    pub async fn audit_trail(&self, user_id: Option<&str>, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = match user_id {
            Some(u) => {
                sqlx::query("SELECT * FROM audit WHERE user_id = ? ORDER BY id DESC LIMIT ?")
                    .bind(u)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit ORDER BY id DESC LIMIT ?")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    ts: r.try_get("ts")?,
                    event: r.try_get("event")?,
                    user_id: r.try_get("user_id")?,
                    ip: r.try_get("ip")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn session_from_row(r: &SqliteRow) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id_hash: r.try_get("id_hash")?,
        user_id: r.try_get("user_id")?,
        created: r.try_get("created")?,
        auth_time: r.try_get("auth_time")?,
        last_seen: r.try_get("last_seen")?,
        expires: r.try_get("expires")?,
        proof: proof_from_row(r)?,
        methods: r.try_get("methods")?,
        device_id: r.try_get("device_id")?,
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
    })
}

/// A session's proof. Rows written before proofs were recorded carry only `methods`: their
/// factors are read from it, and the risk decision, not recorded then, counts as "the
/// second step was required" when one was done.
fn proof_from_row(r: &SqliteRow) -> Result<Proof> {
    let methods: String = r.try_get("methods")?;
    let first: Option<String> = r.try_get("first_factor")?;
    let Some(first) = first else {
        let second = match methods.as_str() {
            "password+sms" => Some(SecondFactor::Sms),
            "password+email" => Some(SecondFactor::Email),
            "password+app" => Some(SecondFactor::App),
            "password+device" => Some(SecondFactor::TrustedDevice),
            "passkey" => Some(SecondFactor::Passkey),
            _ => None,
        };
        let first = if methods == "passkey" {
            FirstFactor::Passkey
        } else {
            FirstFactor::Password
        };
        return Ok(Proof {
            first,
            second,
            exemption: None,
            required: second.is_some(),
        });
    };
    let second: Option<String> = r.try_get("second_factor")?;
    let exemption: Option<String> = r.try_get("exemption")?;
    let required: Option<bool> = r.try_get("required")?;
    // An unreadable value must not become a weaker proof: a bad first factor fails the
    // read; unreadable second factors or exemptions count as absent (less proved).
    let first = FirstFactor::parse(&first)
        .ok_or_else(|| StoreError::Db(sqlx::Error::Decode("unknown first factor".into())))?;
    Ok(Proof {
        first,
        second: second.as_deref().and_then(SecondFactor::parse),
        exemption: exemption.as_deref().and_then(Exemption::parse),
        required: required.unwrap_or(true),
    })
}

fn enrollment_from_row(r: &SqliteRow) -> Result<EnrollmentRecord> {
    Ok(EnrollmentRecord {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        public_key: r.try_get("public_key")?,
        created: r.try_get("created")?,
        last_used: r.try_get("last_used")?,
        revoked: r.try_get("revoked")?,
    })
}

fn device_from_row(r: &SqliteRow) -> Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        created: r.try_get("created")?,
        last_used: r.try_get("last_used")?,
        browser: r.try_get("browser")?,
        ip: r.try_get("ip")?,
        expires: r.try_get("expires")?,
        revoked: r.try_get("revoked")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn device(id: &str, user: &str) -> DeviceRecord {
        DeviceRecord {
            id: id.into(),
            user_id: user.into(),
            name: "laptop".into(),
            created: 10,
            last_used: 10,
            browser: "Firefox on Linux".into(),
            ip: "127.0.0.1".into(),
            expires: 1_000,
            revoked: false,
        }
    }

    #[tokio::test]
    async fn sessions_and_devices_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        {
            let store = Store::open(&path).await.unwrap();
            let s = SessionRecord {
                id_hash: "h1".into(),
                user_id: "taro".into(),
                created: 1,
                auth_time: 1,
                last_seen: 1,
                expires: 100,
                proof: Proof {
                    first: FirstFactor::Password,
                    second: None,
                    exemption: Some(Exemption::Network("10.0.0.0/8".parse().unwrap())),
                    required: true,
                },
                methods: "password".into(),
                device_id: None,
                ip: "127.0.0.1".into(),
                user_agent: "ua".into(),
            };
            store.insert_session(&s).await.unwrap();
            store.touch_session("h1", 5).await.unwrap();
            assert!(
                store
                    .insert_device(&device("d1", "taro"), 1, 20)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .insert_device(&device("d2", "taro"), 1, 20)
                    .await
                    .unwrap()
            );
        }
        let store = Store::open(&path).await.unwrap();
        let back = store.session("h1").await.unwrap().unwrap();
        assert_eq!(back.last_seen, 5);
        assert!(back.proof.required);
        assert_eq!(
            back.proof.exemption,
            Some(Exemption::Network("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(store.live_devices("taro", 20).await.unwrap().len(), 1);
        assert!(!store.revoke_device("hanako", "d1").await.unwrap());
        assert!(store.revoke_device("taro", "d1").await.unwrap());
        assert!(store.live_devices("taro", 20).await.unwrap().is_empty());
        assert_eq!(
            store.delete_user_sessions("taro").await.unwrap(),
            vec!["h1".to_string()]
        );
    }
}
