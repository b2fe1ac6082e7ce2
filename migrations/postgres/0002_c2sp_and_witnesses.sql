-- cairn storage schema 0002 (PostgreSQL): C2SP views and witnesses. Kept in
-- lockstep with ../sqlite.

-- The C2SP signed note (tlog-checkpoint) for the same tree as the warg
-- checkpoint, with the operator's Ed25519 signature. NULL only for
-- checkpoints signed before this migration.
ALTER TABLE checkpoints ADD COLUMN note TEXT;

-- Witness cosignatures (c2sp.org/tlog-cosignature) collected for a
-- checkpoint. Append-only; one per witness key per checkpoint.
CREATE TABLE cosignatures (
    log_length BIGINT NOT NULL,
    witness TEXT NOT NULL,
    key_id BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (log_length, witness, key_id)
);
