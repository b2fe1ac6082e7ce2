-- cairn storage schema (SQLite). Kept in lockstep with ../postgres.

-- Singleton row: the sequenced tree (may be ahead of the latest checkpoint
-- after a crash between committing a batch and storing its checkpoint).
CREATE TABLE tree_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    log_root BLOB NOT NULL,
    map_root BLOB NOT NULL
);

-- Perfect-subtree hashes of the log; node = height << 56 | index. Append-only.
CREATE TABLE log_nodes (
    node INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
) WITHOUT ROWID;

-- Content-addressed sparse map nodes. Append-only.
CREATE TABLE map_nodes (
    hash BLOB PRIMARY KEY,
    node BLOB NOT NULL
) WITHOUT ROWID;

-- One row per log: its validated state and head.
CREATE TABLE logs (
    log_id BLOB PRIMARY KEY,
    kind INTEGER NOT NULL,
    name TEXT UNIQUE,
    state TEXT NOT NULL,
    head_index INTEGER NOT NULL,
    head_record BLOB NOT NULL,
    record_count INTEGER NOT NULL
) WITHOUT ROWID;

-- Sequenced records, by registry index. Append-only. A record id is only
-- unique within its log: package records do not contain the package name,
-- so identical records can exist in two logs.
CREATE TABLE records (
    registry_index INTEGER PRIMARY KEY,
    record_id BLOB NOT NULL,
    log_id BLOB NOT NULL,
    content_bytes BLOB NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE INDEX records_by_log ON records (log_id, registry_index);
CREATE UNIQUE INDEX records_by_id ON records (log_id, record_id);

-- Accepted records not yet sequenced (state 0 sourcing, 1 queued) and
-- recently rejected ones (2). At most one live record per log.
CREATE TABLE pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id BLOB NOT NULL,
    log_id BLOB NOT NULL,
    package_name TEXT,
    content_bytes BLOB NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    state INTEGER NOT NULL,
    missing TEXT NOT NULL,
    reason TEXT,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX pending_by_id ON pending (log_id, record_id);
CREATE UNIQUE INDEX pending_live_per_log ON pending (log_id) WHERE state < 2;
CREATE INDEX pending_by_state ON pending (state, seq);

-- Signed checkpoints, one per length. Never rewritten.
CREATE TABLE checkpoints (
    log_length INTEGER PRIMARY KEY,
    log_root BLOB NOT NULL,
    map_root BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- Uploaded content (bytes live in the blob store).
CREATE TABLE contents (
    digest BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    published INTEGER NOT NULL
) WITHOUT ROWID;

-- Registry facts fixed at initialisation (operator key id, ...).
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
