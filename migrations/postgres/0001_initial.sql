-- cairn storage schema (PostgreSQL). Kept in lockstep with ../sqlite.

-- Singleton row: the sequenced tree (may be ahead of the latest checkpoint
-- after a crash between committing a batch and storing its checkpoint).
CREATE TABLE tree_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    log_root BYTEA NOT NULL,
    map_root BYTEA NOT NULL
);

-- Perfect-subtree hashes of the log; node = height << 56 | index. Append-only.
CREATE TABLE log_nodes (
    node BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

-- Content-addressed sparse map nodes. Append-only.
CREATE TABLE map_nodes (
    hash BYTEA PRIMARY KEY,
    node BYTEA NOT NULL
);

-- One row per log: its validated state and head.
CREATE TABLE logs (
    log_id BYTEA PRIMARY KEY,
    kind BIGINT NOT NULL,
    name TEXT UNIQUE,
    state TEXT NOT NULL,
    head_index BIGINT NOT NULL,
    head_record BYTEA NOT NULL,
    record_count BIGINT NOT NULL
);

-- Sequenced records, by registry index. Append-only. A record id is only
-- unique within its log: package records do not contain the package name,
-- so identical records can exist in two logs.
CREATE TABLE records (
    registry_index BIGINT PRIMARY KEY,
    record_id BYTEA NOT NULL,
    log_id BYTEA NOT NULL,
    content_bytes BYTEA NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE INDEX records_by_log ON records (log_id, registry_index);
CREATE UNIQUE INDEX records_by_id ON records (log_id, record_id);

-- Accepted records not yet sequenced (state 0 sourcing, 1 queued) and
-- recently rejected ones (2). At most one live record per log.
CREATE TABLE pending (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_id BYTEA NOT NULL,
    log_id BYTEA NOT NULL,
    package_name TEXT,
    content_bytes BYTEA NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    state BIGINT NOT NULL,
    missing TEXT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX pending_by_id ON pending (log_id, record_id);
CREATE UNIQUE INDEX pending_live_per_log ON pending (log_id) WHERE state < 2;
CREATE INDEX pending_by_state ON pending (state, seq);

-- Signed checkpoints, one per length. Never rewritten.
CREATE TABLE checkpoints (
    log_length BIGINT PRIMARY KEY,
    log_root BYTEA NOT NULL,
    map_root BYTEA NOT NULL,
    timestamp BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- Uploaded content (bytes live in the blob store).
CREATE TABLE contents (
    digest BYTEA PRIMARY KEY,
    size BIGINT NOT NULL,
    published BIGINT NOT NULL
);

-- Registry facts fixed at initialisation (operator key id, ...).
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
