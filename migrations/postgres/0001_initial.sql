-- The durable state of the replica mode. Times are Unix seconds (BIGINT), flags BOOLEAN;
-- the same statements run here and on SQLite.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, created BIGINT NOT NULL,
    auth_time BIGINT NOT NULL, last_seen BIGINT NOT NULL, expires BIGINT NOT NULL,
    two_step BOOLEAN NOT NULL, methods TEXT NOT NULL, device_id TEXT,
    ip TEXT NOT NULL, user_agent TEXT NOT NULL,
    first_factor TEXT, second_factor TEXT, exemption TEXT, required BOOLEAN);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expires ON sessions(expires);
CREATE INDEX sessions_last_seen ON sessions(last_seen);

CREATE TABLE devices (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
    created BIGINT NOT NULL, last_used BIGINT NOT NULL, browser TEXT NOT NULL,
    ip TEXT NOT NULL, expires BIGINT NOT NULL, revoked BOOLEAN NOT NULL DEFAULT FALSE);
CREATE INDEX devices_user ON devices(user_id);

CREATE TABLE user_settings (
    user_id TEXT PRIMARY KEY, enabled BOOLEAN NOT NULL, method TEXT NOT NULL,
    updated BIGINT NOT NULL);

CREATE TABLE failures (user_id TEXT NOT NULL, ts BIGINT NOT NULL);
CREATE INDEX failures_user ON failures(user_id, ts);
CREATE INDEX failures_ts ON failures(ts);
CREATE TABLE failures_known (user_id TEXT NOT NULL, ts BIGINT NOT NULL);
CREATE INDEX failures_known_user ON failures_known(user_id, ts);
CREATE INDEX failures_known_ts ON failures_known(ts);

CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ts BIGINT NOT NULL,
    event TEXT NOT NULL, user_id TEXT NOT NULL, ip TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX audit_user ON audit(user_id, ts);
CREATE INDEX audit_ts ON audit(ts);
CREATE INDEX audit_ip ON audit(ip, ts);
CREATE INDEX audit_event ON audit(event, id);

CREATE TABLE app_enrollments (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
    public_key TEXT NOT NULL, created BIGINT NOT NULL, last_used BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE);
CREATE INDEX app_enrollments_user ON app_enrollments(user_id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE, created BIGINT NOT NULL, last_used BIGINT,
    revoked BOOLEAN NOT NULL DEFAULT FALSE);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE risk_seen (
    user_id TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL,
    PRIMARY KEY (user_id, kind, value));

CREATE TABLE phone_overrides (
    user_id TEXT PRIMARY KEY, status TEXT NOT NULL, phone TEXT, updated BIGINT NOT NULL);

CREATE TABLE passkeys (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
    credential_id TEXT NOT NULL UNIQUE, user_handle TEXT NOT NULL,
    public_key BYTEA NOT NULL, alg BIGINT NOT NULL, sign_count BIGINT NOT NULL,
    created BIGINT NOT NULL, last_used BIGINT);
CREATE INDEX passkeys_user ON passkeys(user_id);
