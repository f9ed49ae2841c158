-- The database directory (`users: { database: {} }`, issue 24): one row per user, the same
-- fields as the users file. Looked up by ID (the primary key) and paged in ID order; never
-- loaded whole. A write that changes the password hash or the disabled flag changes the
-- user's row in `credentials` in the same transaction (the credential compare-and-set), so
-- it ends the sessions made with the old credentials on every replica.
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    -- active, kept or gone
    phone_status TEXT NOT NULL,
    -- JSON array of group names
    groups_json TEXT NOT NULL,
    disabled BOOLEAN NOT NULL,
    -- NULL: the configuration's default; else whether 2-step is on, and its method
    two_step_enabled BOOLEAN,
    two_step_method TEXT,
    updated BIGINT NOT NULL
);
