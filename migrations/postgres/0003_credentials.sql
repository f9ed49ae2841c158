-- Credential changes as durable facts (issue 22). One row per user: the digest of the
-- credentials the users file gives them (password hash and disabled flag, or "removed"),
-- and how many times it changed. A session is inserted only while its login's digest is
-- the stored one; a change is one compare-and-set that revokes what predates it, so it
-- applies exactly once whichever replica reads it first, and replaying it does nothing.
CREATE TABLE IF NOT EXISTS credentials (
    user_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    changed BIGINT NOT NULL
);
-- The digest the login verified; NULL on sessions made before this column (accepted
-- until the user's next credential change ends them).
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS credential TEXT;
-- The phone and phone status the users file gave each user last, as a digest: a change
-- read by several replicas is applied (audit, override dropped, phone-gone handling and
-- its mail) by the one whose compare-and-set wrote it.
CREATE TABLE IF NOT EXISTS phone_states (
    user_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    changed BIGINT NOT NULL
);
