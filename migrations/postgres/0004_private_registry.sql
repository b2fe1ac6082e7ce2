-- cairn storage schema 0004 (PostgreSQL): a private registry that keeps its
-- secrets. Kept in lockstep with ../sqlite.

-- Who opened each OCI upload session, so that each caller's open sessions
-- and their bytes can be limited.
ALTER TABLE oci_uploads ADD COLUMN identity TEXT NOT NULL DEFAULT '';
CREATE INDEX oci_uploads_by_identity ON oci_uploads (identity);

-- The OCI manifest derived from a release published over warg, stored the
-- first time it is asked for and served from here afterwards. Derived
-- deterministically from the logged release, so fsck can recompute it.
CREATE TABLE oci_derived (
    repository TEXT NOT NULL,
    version TEXT NOT NULL,
    digest BYTEA NOT NULL,
    PRIMARY KEY (repository, version)
);

-- Which repositories hold a blob: read scopes of content downloads are
-- checked against the namespaces that hold it.
CREATE INDEX oci_blobs_by_digest ON oci_blobs (digest);
