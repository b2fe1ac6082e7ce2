-- cairn storage schema 0010 (SQLite): the bytes of pushed manifests, stored
-- with the batch that logs them. Kept in lockstep with ../postgres.
--
-- A pushed manifest is answered `201` once the batch holding its records
-- is committed: that one durable commit holds its bytes too, so the copy in
-- the blob store is written without waiting for the disk. A copy that is
-- missing or fails its digest is restored from here when it is read.
-- Manifests are small (at most 4 MiB, typically a few KiB). Rows are never
-- removed: a deleted manifest's records, which name it, stay in the log.
CREATE TABLE manifest_bytes (
    digest BLOB PRIMARY KEY,
    bytes BLOB NOT NULL
) WITHOUT ROWID;
