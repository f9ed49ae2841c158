//! The durable store: sessions, trusted devices, users' 2-step settings, failure counts
//! and the audit trail, in SQLite (one machine) or PostgreSQL (replicas) through sqlx.
//!
//! Everything a user was told succeeded is committed here before the answer goes out, so a
//! killed and restarted gateway forgets nothing acknowledged.
//!
//! One code base for both: every statement is written once with `$n` placeholders (both
//! drivers accept them), flags are compared with `TRUE`/`FALSE` (SQLite reads them as 1/0),
//! and `on_db!` expands a statement for whichever pool the store holds.

/// Runs `$body` with `$pool` bound to the store's concrete pool (SQLite or PostgreSQL): the
/// same text is compiled once per backend, so rows and results keep their own types.
///
/// Every store call passes through here (or [`with_user_lock!`]): on PostgreSQL the call is
/// bounded by `storage.postgres.timeout` (see [`Pg::call`]); `$body`'s `?` stays the
/// caller's, its value is the macro's.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Pg(pg) => {
                pg.call(async {
                    let $pool = &pg.pool;
                    Ok::<_, $crate::store::StoreError>($body)
                })
                .await?
            }
        }
    };
}

/// Runs `$body` in a transaction `$tx` that holds the per-user write lock: SQLite takes
/// the database's write lock up front (`BEGIN IMMEDIATE`), PostgreSQL a transaction-scoped
/// advisory lock on the user, so a count-then-insert cannot be raced by another replica.
/// `$body` commits; returning early rolls back. On PostgreSQL the whole transaction is one
/// bounded call, like [`on_db!`]'s.
macro_rules! with_user_lock {
    ($db:expr, $user:expr, $tx:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            $crate::store::Db::Pg(pg) => {
                pg.call(async {
                    let mut $tx = pg.pool.begin().await?;
                    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                        .bind($user)
                        .execute(&mut *$tx)
                        .await?;
                    $body
                })
                .await
            }
        }
    };
}

/// In the transaction `$tx` of a credential change that this call wrote (the user's digest
/// is now `$to`): ends the user's sessions of any other digest, revokes their trusted
/// devices and app passwords, and is the [`Revoked`] of it. Both backends.
macro_rules! revoke_predating {
    ($tx:ident, $user:expr, $to:expr) => {{
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1
             AND (credential IS NULL OR credential <> $2) RETURNING id_hash",
        )
        .bind($user)
        .bind($to)
        .fetch_all(&mut *$tx)
        .await?
        .iter()
        .map(|r| r.text("id_hash"))
        .collect::<Result<Vec<_>>>()?;
        let devices = sqlx::query(
            "UPDATE devices SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE
             RETURNING id",
        )
        .bind($user)
        .fetch_all(&mut *$tx)
        .await?
        .iter()
        .map(|r| r.text("id"))
        .collect::<Result<Vec<_>>>()?;
        let tokens = sqlx::query(
            "UPDATE api_tokens SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE",
        )
        .bind($user)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        $crate::store::Revoked {
            sessions,
            devices,
            tokens,
        }
    }};
}

/// The `INSERT` of one session row, with the credential digest its login verified (NULL
/// for none); both backends, any executor.
macro_rules! session_insert {
    ($s:expr) => {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, created, auth_time, last_seen, expires,
             two_step, methods, device_id, ip, user_agent, first_factor, second_factor,
             exemption, required, credential)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
        )
        .bind(&$s.id_hash)
        .bind(&$s.user_id)
        .bind($s.created)
        .bind($s.auth_time)
        .bind($s.last_seen)
        .bind($s.expires)
        .bind($s.proof.second.is_some())
        .bind(&$s.methods)
        .bind(&$s.device_id)
        .bind(&$s.ip)
        .bind(&$s.user_agent)
        .bind($s.proof.first.as_str())
        .bind($s.proof.second.map(SecondFactor::as_str))
        .bind($s.proof.exemption.map(|e| e.to_string()))
        .bind($s.proof.required)
        .bind($s.credential.as_deref())
    };
}

mod credentials;
mod passkeys;
mod phones;
pub(crate) mod revocations;
mod risk;
mod tokens;
mod users;

pub use credentials::{CredentialChange, DeviceInsert, LogEvents, Revoked};
pub use passkeys::{PasskeyInsert, PasskeyRecord};
pub use phones::PhoneOverrideRecord;
pub use risk::SeenKind;
pub use tokens::TokenRecord;
pub use users::{ImportCounts, UserRecord};

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database could not be used: {0}")]
    Db(#[from] sqlx::Error),
    /// Opening the database failed; the text never holds the URL or its password.
    #[error("{0}")]
    Connect(String),
    #[error("the database schema could not be brought up to date: {0}")]
    Migrate(String),
    /// PostgreSQL did not answer within `storage.postgres.timeout`: the call was given up.
    #[error("the database did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// A call moments ago found PostgreSQL unreachable: this one failed at once.
    #[error("the database is unreachable (a call moments ago found it so)")]
    Unreachable,
}

impl StoreError {
    /// Whether the error says the database cannot be reached or does not answer (rather
    /// than that a statement was wrong): such an error makes the next calls fail at once for
    /// a moment (see [`Pg::call`]).
    fn means_unreachable(&self) -> bool {
        match self {
            StoreError::TimedOut(_) | StoreError::Unreachable | StoreError::Connect(_) => true,
            StoreError::Db(e) => match e {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_) => true,
                // Connection exceptions, insufficient resources, a server shutting down or
                // cancelling (statement_timeout): classes 08, 53, 57.
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| ["08", "53", "57"].iter().any(|k| c.starts_with(k))),
                _ => false,
            },
            StoreError::Migrate(_) => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

use crate::proof::{Exemption, FirstFactor, Proof, SecondFactor};

/// How long opening PostgreSQL at start may take before it is an error (a database that
/// starts a little after the gateway is waited for; one that is not there is reported).
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `storage.postgres.timeout`'s default: the longest one call on PostgreSQL may take —
/// taking a pooled connection (or opening one), the statement (`statement_timeout`, so the
/// server gives up too) and the answer (a client-side timeout: a link that swallows every
/// byte never answers, and no server-side limit notices that).
pub const PG_TIMEOUT: Duration = Duration::from_secs(1);
/// The most audit rows one purge statement deletes (a backlog goes over several rounds, each
/// statement well within the timeout).
const PURGE_BATCH: u64 = 10_000;
/// After a call finds PostgreSQL unreachable, calls fail at once for this long (or for the
/// timeout, when shorter): a request that needs several calls waits for one timeout, not
/// for one per call, while the database is still tried again twice a second (a slow
/// moment under load pauses little, and a restored database is used at once).
const PG_PAUSE: Duration = Duration::from_millis(500);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The pool of one backend.
#[derive(Clone)]
pub(crate) enum Db {
    /// A local file: its only wait is another writer's lock (`busy_timeout`, 5 s), which no
    /// network fault causes; `storage.postgres.timeout` does not apply.
    Sqlite(SqlitePool),
    Pg(Pg),
}

/// PostgreSQL's pool, and the bound every call on it keeps (see [`Pg::call`]).
#[derive(Clone)]
pub(crate) struct Pg {
    pub(crate) pool: PgPool,
    bound: std::sync::Arc<Bound>,
}

struct Bound {
    timeout: Duration,
    /// The process clock the pause is read on.
    epoch: std::time::Instant,
    /// Until when (milliseconds since `epoch`) calls fail at once; 0: they are tried.
    paused_until: std::sync::atomic::AtomicU64,
}

impl Pg {
    fn new(pool: PgPool, timeout: Duration) -> Self {
        Self {
            pool,
            bound: std::sync::Arc::new(Bound {
                timeout,
                epoch: std::time::Instant::now(),
                paused_until: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Runs one store call within the timeout. A call that times out or finds the database
    /// unreachable pauses the calls after it (they fail at once, [`StoreError::Unreachable`])
    /// for [`PG_PAUSE`]; any call that succeeds ends the pause. Callers answer 503 either
    /// way (SECURITY 47).
    pub(crate) async fn call<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        use std::sync::atomic::Ordering;
        let b = &*self.bound;
        let now = || u64::try_from(b.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now() < b.paused_until.load(Ordering::Relaxed) {
            return Err(StoreError::Unreachable);
        }
        let pause = || {
            let ms = u64::try_from(PG_PAUSE.min(b.timeout).as_millis()).unwrap_or(1000);
            b.paused_until
                .store(now().saturating_add(ms), Ordering::Relaxed);
        };
        match tokio::time::timeout(b.timeout, call).await {
            Ok(Ok(v)) => {
                // Written only when there is a pause to end (most calls only read it).
                if b.paused_until.load(Ordering::Relaxed) != 0 {
                    b.paused_until.store(0, Ordering::Relaxed);
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                if e.means_unreachable() {
                    pause();
                }
                Err(e)
            }
            Err(_) => {
                pause();
                Err(StoreError::TimedOut(b.timeout))
            }
        }
    }
}

/// Reading a column the same way from either backend's rows.
pub(crate) trait DbRow {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn flag(&self, col: &str) -> Result<bool>;
    fn opt_flag(&self, col: &str) -> Result<Option<bool>>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;
}

macro_rules! impl_db_row {
    ($row:ty) => {
        impl DbRow for $row {
            fn text(&self, col: &str) -> Result<String> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
            fn int(&self, col: &str) -> Result<i64> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
            fn flag(&self, col: &str) -> Result<bool> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
            fn opt_flag(&self, col: &str) -> Result<Option<bool>> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
        }
    };
}
impl_db_row!(SqliteRow);
impl_db_row!(PgRow);

/// Columns added when sessions started recording what they proved (SECURITY 35). SQLite
/// files made before migrations may lack them; they are added one by one after the
/// migrations (SQLite has no `ADD COLUMN IF NOT EXISTS`). Rows from then read their proof
/// from `methods`.
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

/// Removes the URL and its password from an error text (drivers may quote what they
/// were given).
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "<database URL>");
    if let Some(password) = url_password(url)
        && !password.is_empty()
    {
        out = out.replace(password, "***");
    }
    out
}

/// How a PostgreSQL pool is opened.
#[derive(Debug, Clone)]
pub struct PgPoolSettings {
    pub max_connections: u32,
    /// `default_transaction_read_only` (for `nidan explain`); no migrations.
    pub read_only: bool,
    /// The bound of one call (`storage.postgres.timeout`).
    pub timeout: Duration,
}

/// Takes the pool's first connection, trying again for up to [`PG_CONNECT_TIMEOUT`] while
/// the database cannot be reached (it may be starting too). The error's text may quote the
/// URL: the caller scrubs it.
async fn first_connection(pool: &PgPool) -> std::result::Result<(), String> {
    let started = std::time::Instant::now();
    loop {
        let e = match pool.acquire().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let waiting = matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_));
        if !waiting {
            return Err(e.to_string());
        }
        if started.elapsed() >= PG_CONNECT_TIMEOUT {
            return Err(format!(
                "no connection within {}s (is it running and reachable?)",
                PG_CONNECT_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Brings the schema up to date on a connection of its own (under sqlx's advisory lock, so
/// replicas starting together migrate once).
async fn migrate(options: &PgConnectOptions) -> std::result::Result<(), String> {
    use sqlx::Connection;
    let mut conn = tokio::time::timeout(
        PG_CONNECT_TIMEOUT,
        sqlx::PgConnection::connect_with(options),
    )
    .await
    .map_err(|_| "no connection for the migrations".to_owned())?
    .map_err(|e| e.to_string())?;
    PG_MIGRATIONS
        .run(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    conn.close().await.map_err(|e| e.to_string())
}

/// The password part of `scheme://user:password@host/...`, if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let (userinfo, _) = authority.rsplit_once('@')?;
    userinfo.split_once(':').map(|(_, p)| p)
}

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
    /// The credential digest the login checked (`users::credential_digest`); `None` on
    /// sessions from before credential digests, accepted until the user's next change.
    pub credential: Option<String>,
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

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Opens the durable store the configuration names: PostgreSQL in the replica mode,
    /// else the SQLite file; brings its schema up to date.
    pub async fn connect(storage: &crate::config::Storage) -> Result<Self> {
        match &storage.replicated {
            None => Self::open(&storage.sqlite_path).await,
            Some(r) => {
                let url = r.postgres_url.expose_str().ok_or_else(|| {
                    StoreError::Connect("the PostgreSQL URL is not valid UTF-8".into())
                })?;
                let pool = PgPoolSettings {
                    max_connections: r.postgres_max_connections,
                    read_only: false,
                    timeout: storage.postgres_timeout,
                };
                Self::open_postgres_with(url, &pool).await
            }
        }
    }

    /// Opens the configured store without writing to it and without migrating (for
    /// `nidan explain`). A SQLite file must exist.
    pub async fn connect_read_only(storage: &crate::config::Storage) -> Result<Self> {
        match &storage.replicated {
            None => Self::open_read_only(&storage.sqlite_path).await,
            Some(r) => {
                let url = r.postgres_url.expose_str().ok_or_else(|| {
                    StoreError::Connect("the PostgreSQL URL is not valid UTF-8".into())
                })?;
                let pool = PgPoolSettings {
                    max_connections: 1,
                    read_only: true,
                    timeout: storage.postgres_timeout,
                };
                Self::open_postgres_with(url, &pool).await
            }
        }
    }

    /// Connects to PostgreSQL at `url` with the default timeout ([`PG_TIMEOUT`]) and
    /// (unless read-only) runs its migrations. Errors name the host, never the URL or
    /// password.
    pub async fn open_postgres(url: &str, max_connections: u32, read_only: bool) -> Result<Self> {
        let pool = PgPoolSettings {
            max_connections,
            read_only,
            timeout: PG_TIMEOUT,
        };
        Self::open_postgres_with(url, &pool).await
    }

    /// Connects to PostgreSQL at `url` as `pool` says and (unless read-only) runs its
    /// migrations. Every later call is bounded by `pool.timeout` ([`Pg::call`]); opening
    /// waits up to 5 s for a database that is starting.
    pub async fn open_postgres_with(url: &str, pool: &PgPoolSettings) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Connect(format!(
                "the PostgreSQL URL is not valid: {}",
                scrub(&e.to_string(), url)
            ))
        })?;
        let place = format!(
            "PostgreSQL at {}:{} (database {})",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("default")
        );
        // The server gives up on a statement when the client does (0 would mean never).
        let mut settings = vec![(
            "statement_timeout",
            format!("{}ms", pool.timeout.as_millis().max(1)),
        )];
        if pool.read_only {
            settings.push(("default_transaction_read_only", "on".into()));
        }
        let pooled = PgPoolOptions::new()
            .max_connections(pool.max_connections.max(1))
            .acquire_timeout(pool.timeout)
            .connect_lazy_with(options.clone().options(settings));
        first_connection(&pooled).await.map_err(|why| {
            StoreError::Connect(format!("{place} could not be opened: {}", scrub(&why, url)))
        })?;
        if !pool.read_only {
            // On a connection of its own, without the statement timeout: a migration (or the
            // wait for another replica's) may take longer than one request's query.
            migrate(&options)
                .await
                .map_err(|e| StoreError::Migrate(format!("{place}: {}", scrub(&e, url))))?;
        }
        Ok(Self {
            db: Db::Pg(Pg::new(pooled, pool.timeout)),
        })
    }

    /// Whether this store is PostgreSQL (the replica mode).
    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Pg(_))
    }

    /// Opens (creating if needed) the SQLite database file and brings its schema up to date.
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
        // Schema changes run on one connection of their own, before the pool opens: a
        // pooled connection that saw the old schema could read rows with stale columns.
        {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            SQLITE_MIGRATIONS
                .run(&mut conn)
                .await
                .map_err(|e| StoreError::Migrate(e.to_string()))?;
            // Files made before the proof columns existed: the first migration found the
            // table there and left it as it was.
            let have: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('sessions')")
                .fetch_all(&mut conn)
                .await?
                .iter()
                .map(|r| r.text("name"))
                .collect::<Result<_>>()?;
            for (name, add) in SESSION_PROOF_COLUMNS {
                if !have.iter().any(|h| h == name) {
                    sqlx::query(*add).execute(&mut conn).await?;
                }
            }
            conn.close().await?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Ok(Self {
            db: Db::Sqlite(pool),
        })
    }

    /// Opens an existing SQLite database without writing to it (for `nidan explain`).
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
        Ok(Self {
            db: Db::Sqlite(pool),
        })
    }

    // --- sessions -------------------------------------------------------------------

    pub async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        on_db!(&self.db, pool => {
            session_insert!(s)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
        on_db!(&self.db, pool => sqlx::query("SELECT * FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .fetch_optional(pool)
            .await?
            .map(|r| session_from_row(&r))
            .transpose())
    }

    pub async fn touch_session(&self, id_hash: &str, last_seen: i64) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2 AND last_seen < $1")
                .bind(last_seen)
                .bind(id_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Deletes every session of a user; returns the hashes removed (to drop from caches).
    pub async fn delete_user_sessions(&self, user_id: &str) -> Result<Vec<String>> {
        on_db!(&self.db, pool => sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1 RETURNING id_hash",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.text("id_hash"))
        .collect())
    }

    pub async fn user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        on_db!(&self.db, pool => sqlx::query(
            "SELECT * FROM sessions WHERE user_id = $1 ORDER BY created",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(session_from_row)
        .collect())
    }

    /// Removes sessions past their absolute expiry or idle for longer than `idle` seconds.
    pub async fn purge_sessions(&self, now: i64, idle: i64) -> Result<u64> {
        Ok(on_db!(&self.db, pool => sqlx::query(
            "DELETE FROM sessions WHERE expires <= $1 OR last_seen <= $2",
        )
        .bind(now)
        .bind(now - idle)
        .execute(pool)
        .await?
        .rows_affected()))
    }

    // --- trusted devices ------------------------------------------------------------

    /// Inserts a device unless the user already has `max` live ones; false when full.
    /// The count and the insert hold the user's write lock, so concurrent inserts (other
    /// replicas included) never exceed `max`.
    pub async fn insert_device(&self, d: &DeviceRecord, max: usize, now: i64) -> Result<bool> {
        with_user_lock!(&self.db, &d.user_id, tx => {
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
                return Ok(false);
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
            Ok(true)
        })
    }

    pub async fn device(&self, id: &str) -> Result<Option<DeviceRecord>> {
        on_db!(&self.db, pool => sqlx::query("SELECT * FROM devices WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|r| device_from_row(&r))
            .transpose())
    }

    /// The user's devices that are neither revoked nor expired, newest first.
    pub async fn live_devices(&self, user_id: &str, now: i64) -> Result<Vec<DeviceRecord>> {
        on_db!(&self.db, pool => sqlx::query(
            "SELECT * FROM devices WHERE user_id = $1 AND revoked = FALSE AND expires > $2
             ORDER BY created DESC",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(pool)
        .await?
        .iter()
        .map(device_from_row)
        .collect())
    }

    pub async fn rename_device(&self, user_id: &str, id: &str, name: &str) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE devices SET name = $1 WHERE id = $2 AND user_id = $3 AND revoked = FALSE",
        )
        .bind(name)
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    pub async fn device_used(&self, id: &str, now: i64) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query("UPDATE devices SET last_used = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Revokes one device of a user; false when there was no such live device.
    pub async fn revoke_device(&self, user_id: &str, id: &str) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE devices SET revoked = TRUE WHERE id = $1 AND user_id = $2 AND revoked = FALSE",
        )
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Revokes all of a user's devices; returns their IDs (to drop from caches).
    pub async fn revoke_user_devices(&self, user_id: &str) -> Result<Vec<String>> {
        on_db!(&self.db, pool => sqlx::query(
            "UPDATE devices SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE RETURNING id",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.text("id"))
        .collect())
    }

    // --- phone-app enrollments --------------------------------------------------------

    pub async fn insert_enrollment(&self, e: &EnrollmentRecord) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO app_enrollments (id, user_id, name, public_key, created, last_used,
                 revoked) VALUES ($1,$2,$3,$4,$5,$6,FALSE)",
            )
            .bind(&e.id)
            .bind(&e.user_id)
            .bind(&e.name)
            .bind(&e.public_key)
            .bind(e.created)
            .bind(e.last_used)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn enrollment(&self, id: &str) -> Result<Option<EnrollmentRecord>> {
        on_db!(&self.db, pool => sqlx::query("SELECT * FROM app_enrollments WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|r| enrollment_from_row(&r))
            .transpose())
    }

    /// The user's enrollments that are not revoked, newest first.
    pub async fn live_enrollments(&self, user_id: &str) -> Result<Vec<EnrollmentRecord>> {
        on_db!(&self.db, pool => sqlx::query(
            "SELECT * FROM app_enrollments WHERE user_id = $1 AND revoked = FALSE
             ORDER BY created DESC",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(enrollment_from_row)
        .collect())
    }

    pub async fn enrollment_used(&self, id: &str, now: i64) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query("UPDATE app_enrollments SET last_used = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Revokes one enrollment of a user (`None`: all of them); returns how many.
    pub async fn revoke_enrollments(&self, user_id: &str, id: Option<&str>) -> Result<u64> {
        Ok(match id {
            Some(id) => on_db!(&self.db, pool => sqlx::query(
                "UPDATE app_enrollments SET revoked = TRUE
                 WHERE user_id = $1 AND id = $2 AND revoked = FALSE",
            )
            .bind(user_id)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()),
            None => on_db!(&self.db, pool => sqlx::query(
                "UPDATE app_enrollments SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE",
            )
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()),
        })
    }

    // --- 2-step settings ------------------------------------------------------------

    pub async fn setting(&self, user_id: &str) -> Result<Option<SettingRecord>> {
        on_db!(&self.db, pool => sqlx::query("SELECT * FROM user_settings WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?
            .map(|r| {
                Ok(SettingRecord {
                    user_id: r.text("user_id")?,
                    enabled: r.flag("enabled")?,
                    method: r.text("method")?,
                    updated: r.int("updated")?,
                })
            })
            .transpose())
    }

    pub async fn put_setting(&self, s: &SettingRecord) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO user_settings (user_id, enabled, method, updated)
                 VALUES ($1,$2,$3,$4)
                 ON CONFLICT(user_id) DO UPDATE SET enabled = excluded.enabled,
                 method = excluded.method, updated = excluded.updated",
            )
            .bind(&s.user_id)
            .bind(s.enabled)
            .bind(&s.method)
            .bind(s.updated)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    // --- failure counts -------------------------------------------------------------

    pub async fn record_failure(&self, user_id: &str, known: bool, ts: i64) -> Result<()> {
        let sql = if known {
            "INSERT INTO failures_known (user_id, ts) VALUES ($1, $2)"
        } else {
            "INSERT INTO failures (user_id, ts) VALUES ($1, $2)"
        };
        on_db!(&self.db, pool => {
            sqlx::query(sql).bind(user_id).bind(ts).execute(pool).await?;
        });
        Ok(())
    }

    /// Failure times for a user since `since` in one pool, oldest first.
    pub async fn failures_since(&self, user_id: &str, known: bool, since: i64) -> Result<Vec<i64>> {
        let sql = if known {
            "SELECT ts FROM failures_known WHERE user_id = $1 AND ts >= $2 ORDER BY ts"
        } else {
            "SELECT ts FROM failures WHERE user_id = $1 AND ts >= $2 ORDER BY ts"
        };
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(user_id)
            .bind(since)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.int("ts"))
            .collect())
    }

    pub async fn clear_failures(&self, user_id: &str, known: bool) -> Result<()> {
        let sql = if known {
            "DELETE FROM failures_known WHERE user_id = $1"
        } else {
            "DELETE FROM failures WHERE user_id = $1"
        };
        on_db!(&self.db, pool => {
            sqlx::query(sql).bind(user_id).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn purge_failures(&self, before: i64) -> Result<()> {
        for sql in [
            "DELETE FROM failures WHERE ts < $1",
            "DELETE FROM failures_known WHERE ts < $1",
        ] {
            on_db!(&self.db, pool => {
                sqlx::query(sql).bind(before).execute(pool).await?;
            });
        }
        Ok(())
    }

    // --- audit trail ----------------------------------------------------------------

    pub async fn audit(&self, a: &AuditRecord) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO audit (ts, event, user_id, ip, detail) VALUES ($1,$2,$3,$4,$5)",
            )
            .bind(a.ts)
            .bind(&a.event)
            .bind(&a.user_id)
            .bind(&a.ip)
            .bind(&a.detail)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deletes audit rows older than `before`, then the oldest beyond `max_rows`: rows of
    /// the `first` events before any other, so a flood of events anyone can cause never
    /// pushes the record of real logins out. At most [`PURGE_BATCH`] rows per statement
    /// (each statement must fit in `storage.postgres.timeout`): a large backlog goes over
    /// several calls.
    pub async fn purge_audit(&self, before: i64, max_rows: u64, first: &[&str]) -> Result<u64> {
        let batch = i64::try_from(PURGE_BATCH).unwrap_or(i64::MAX);
        let mut removed = on_db!(&self.db, pool => sqlx::query(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE ts < $1 ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected());
        let rows = u64::try_from(self.audit_rows().await?).unwrap_or(0);
        let mut excess = rows.saturating_sub(max_rows);
        if excess > 0 && !first.is_empty() {
            // One placeholder per event name: the names are bound, never spliced in.
            let list = (2..first.len() + 2)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(",");
            let sql = format!(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit \
                 WHERE event IN ({list}) ORDER BY id LIMIT $1)"
            );
            let limit = i64::try_from(excess.min(PURGE_BATCH)).unwrap_or(i64::MAX);
            let n = on_db!(&self.db, pool => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(limit);
                for event in first {
                    q = q.bind(*event);
                }
                q.execute(pool).await?.rows_affected()
            });
            removed += n;
            excess = excess.saturating_sub(n);
            if n >= PURGE_BATCH {
                // More of the `first` events may be left: they go before any other, next time.
                return Ok(removed);
            }
        }
        if excess > 0 {
            let limit = i64::try_from(excess.min(PURGE_BATCH)).unwrap_or(i64::MAX);
            removed += on_db!(&self.db, pool => sqlx::query(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit ORDER BY id LIMIT $1)",
            )
            .bind(limit)
            .execute(pool)
            .await?
            .rows_affected());
        }
        Ok(removed)
    }

    /// Number of rows in the audit trail.
    pub async fn audit_rows(&self) -> Result<i64> {
        on_db!(&self.db, pool => sqlx::query("SELECT COUNT(*) AS n FROM audit")
            .fetch_one(pool)
            .await?
            .int("n"))
    }

    /// The newest `limit` audit records, optionally for one user, newest first.
    pub async fn audit_trail(&self, user_id: Option<&str>, limit: i64) -> Result<Vec<AuditRecord>> {
        match user_id {
            Some(u) => on_db!(&self.db, pool => sqlx::query(
                "SELECT * FROM audit WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(u)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()),
            None => on_db!(&self.db, pool => sqlx::query(
                "SELECT * FROM audit ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()),
        }
    }

    pub async fn ping(&self) -> Result<()> {
        on_db!(&self.db, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }
}

fn audit_from_row<R: DbRow>(r: &R) -> Result<AuditRecord> {
    Ok(AuditRecord {
        ts: r.int("ts")?,
        event: r.text("event")?,
        user_id: r.text("user_id")?,
        ip: r.text("ip")?,
        detail: r.text("detail")?,
    })
}

fn session_from_row<R: DbRow>(r: &R) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id_hash: r.text("id_hash")?,
        user_id: r.text("user_id")?,
        created: r.int("created")?,
        auth_time: r.int("auth_time")?,
        last_seen: r.int("last_seen")?,
        expires: r.int("expires")?,
        proof: proof_from_row(r)?,
        methods: r.text("methods")?,
        device_id: r.opt_text("device_id")?,
        ip: r.text("ip")?,
        user_agent: r.text("user_agent")?,
        credential: r.opt_text("credential")?,
    })
}

/// A session's proof. Rows written before proofs were recorded carry only `methods`: their
/// factors are read from it, and the risk decision, not recorded then, counts as "the
/// second step was required" when one was done.
fn proof_from_row<R: DbRow>(r: &R) -> Result<Proof> {
    let methods = r.text("methods")?;
    let Some(first) = r.opt_text("first_factor")? else {
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
    let second = r.opt_text("second_factor")?;
    let exemption = r.opt_text("exemption")?;
    let required = r.opt_flag("required")?;
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

fn enrollment_from_row<R: DbRow>(r: &R) -> Result<EnrollmentRecord> {
    Ok(EnrollmentRecord {
        id: r.text("id")?,
        user_id: r.text("user_id")?,
        name: r.text("name")?,
        public_key: r.text("public_key")?,
        created: r.int("created")?,
        last_used: r.int("last_used")?,
        revoked: r.flag("revoked")?,
    })
}

fn device_from_row<R: DbRow>(r: &R) -> Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: r.text("id")?,
        user_id: r.text("user_id")?,
        name: r.text("name")?,
        created: r.int("created")?,
        last_used: r.int("last_used")?,
        browser: r.text("browser")?,
        ip: r.text("ip")?,
        expires: r.int("expires")?,
        revoked: r.flag("revoked")?,
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

    /// A PostgreSQL call is given up after the timeout, the calls right after it fail at
    /// once (the pause), and the next ones go through again.
    #[tokio::test]
    async fn a_slow_postgres_call_is_given_up_and_pauses_the_next_ones_briefly() {
        let db = testing::TestDb::create();
        let pool = PgPoolSettings {
            max_connections: 2,
            read_only: false,
            timeout: Duration::from_millis(300),
        };
        let store = Store::open_postgres_with(&db.url, &pool).await.unwrap();
        let pg = match &store.db {
            Db::Pg(pg) => pg,
            Db::Sqlite(_) => unreachable!(),
        };
        let started = std::time::Instant::now();
        let slow = pg
            .call(async {
                sqlx::query("SELECT pg_sleep(5)").execute(&pg.pool).await?;
                Ok(())
            })
            .await;
        assert!(slow.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(store.ping().await, Err(StoreError::Unreachable)));
        tokio::time::sleep(Duration::from_millis(400)).await;
        store.ping().await.unwrap();
        // A statement that is merely wrong is no outage: nothing pauses.
        let wrong = pg
            .call(async {
                sqlx::query("SELECT * FROM no_such_table")
                    .execute(&pg.pool)
                    .await?;
                Ok(())
            })
            .await;
        assert!(wrong.is_err());
        store.ping().await.unwrap();
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
                credential: None,
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

#[cfg(test)]
mod contract;
/// A PostgreSQL database per test, one copy shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/it/common/pg.rs"]
pub(crate) mod testing;
