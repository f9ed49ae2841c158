-- The revocation log (see the PostgreSQL migration of the same name). The single-machine
-- mode has no other replica and never writes it; the table exists so both schemas match.
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    event TEXT NOT NULL
);
