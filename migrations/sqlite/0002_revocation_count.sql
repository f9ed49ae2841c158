-- Replicas: a durable count of revocations, so a replica whose broadcast was lost (its
-- Redis cut off, or it died before publishing) is still noticed by the others.
CREATE TABLE IF NOT EXISTS revocation_count (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
);
INSERT INTO revocation_count (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
