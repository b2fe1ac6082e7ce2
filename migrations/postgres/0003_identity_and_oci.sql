-- cairn storage schema 0003 (PostgreSQL): API tokens, the admin audit log, and
-- the OCI Distribution front door. Kept in lockstep with ../sqlite.

-- API tokens. The secret is never stored: only its SHA-256. Scope: JSON
-- lists of namespaces (or ["*"]) and actions (read, publish, yank, admin).
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    secret_hash BYTEA NOT NULL,
    identity TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    actions TEXT NOT NULL,
    description TEXT NOT NULL,
    kind BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    -- For session tokens: the token they were exchanged for (a session
    -- stops working when its parent does).
    parent TEXT,
    -- For OIDC tokens: the claims recorded with what they publish (JSON).
    claims TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX tokens_by_identity ON tokens (identity);

-- Every administrative action, in order. Never holds a secret.
CREATE TABLE admin_audit (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    details TEXT NOT NULL
);

-- OCI upload sessions (bytes live in the blob store's upload area).
CREATE TABLE oci_uploads (
    id TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Blobs uploaded to (or mounted into) a repository.
CREATE TABLE oci_blobs (
    repository TEXT NOT NULL,
    digest BYTEA NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (repository, digest)
);

-- Manifests of a repository: visible once the record that logs them is
-- sequenced (the sequencer sets visible in the same transaction).
CREATE TABLE oci_manifests (
    repository TEXT NOT NULL,
    digest BYTEA NOT NULL,
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    subject BYTEA,
    size BIGINT NOT NULL,
    annotations TEXT NOT NULL,
    visible BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX oci_manifests_by_subject ON oci_manifests (repository, subject);

-- Tags, written by the sequencer from sequenced metadata records.
CREATE TABLE oci_tags (
    repository TEXT NOT NULL,
    -- Byte order, like SQLite's: tag lists page by `tag > last`.
    tag TEXT COLLATE "C" NOT NULL,
    digest BYTEA NOT NULL,
    PRIMARY KEY (repository, tag)
);
