-- The schema as earlier versions created it at start, kept idempotent (IF NOT EXISTS) so a
-- database file made before migrations existed takes this step without change. Session
-- proof columns missing from such files are added by the store after the migrations.
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, created INTEGER NOT NULL,
    auth_time INTEGER NOT NULL, last_seen INTEGER NOT NULL, expires INTEGER NOT NULL,
    two_step INTEGER NOT NULL, methods TEXT NOT NULL, device_id TEXT,
    ip TEXT NOT NULL, user_agent TEXT NOT NULL,
    first_factor TEXT, second_factor TEXT, exemption TEXT, required INTEGER);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);

CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
    created INTEGER NOT NULL, last_used INTEGER NOT NULL, browser TEXT NOT NULL,
    ip TEXT NOT NULL, expires INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS devices_user ON devices(user_id);

CREATE TABLE IF NOT EXISTS user_settings (
    user_id TEXT PRIMARY KEY, enabled INTEGER NOT NULL, method TEXT NOT NULL,
    updated INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS failures (user_id TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS failures_user ON failures(user_id, ts);
-- Failures from browsers the account knows: a pool of their own (login::limits).
CREATE TABLE IF NOT EXISTS failures_known (user_id TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS failures_known_user ON failures_known(user_id, ts);

CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, event TEXT NOT NULL,
    user_id TEXT NOT NULL, ip TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_user ON audit(user_id, ts);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
CREATE INDEX IF NOT EXISTS audit_ip ON audit(ip, ts);

CREATE TABLE IF NOT EXISTS app_enrollments (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
    public_key TEXT NOT NULL, created INTEGER NOT NULL, last_used INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS app_enrollments_user ON app_enrollments(user_id);

CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE, created INTEGER NOT NULL, last_used INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS api_tokens_user ON api_tokens(user_id);

CREATE TABLE IF NOT EXISTS risk_seen (
    user_id TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
    PRIMARY KEY (user_id, kind, value));

CREATE TABLE IF NOT EXISTS phone_overrides (
    user_id TEXT PRIMARY KEY, status TEXT NOT NULL, phone TEXT, updated INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS passkeys (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
    credential_id TEXT NOT NULL UNIQUE, user_handle TEXT NOT NULL,
    public_key BLOB NOT NULL, alg INTEGER NOT NULL, sign_count INTEGER NOT NULL,
    created INTEGER NOT NULL, last_used INTEGER);
CREATE INDEX IF NOT EXISTS passkeys_user ON passkeys(user_id);
