-- Replicas: every revocation, durably and in order, so that each replica reads what the bus
-- may not have brought (its publisher cut off from Redis, killed before it published, or
-- this replica not listening). Written under a transaction-scoped advisory lock, so rows
-- become visible in `seq` order and `seq > last` never skips one that commits later. Kept
-- about ten minutes (the chores purge it). Replaces `revocation_count`, which is no longer
-- read or written (left in place for replicas of the previous version during an upgrade).
CREATE TABLE IF NOT EXISTS revocations (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    event TEXT NOT NULL
);
