-- cairn storage schema 0012 (SQLite): log states as snapshots. Kept in
-- lockstep with ../postgres.
--
-- A log's validation state is no longer rewritten whole by every batch that
-- touches the log: the sequencer stores a snapshot every so many records,
-- with the number of records it covers and the registry index of the last
-- of them, and a log's state is the snapshot with the log's later records
-- replayed. One row per log (the latest snapshot), written in the same
-- transaction as the records it covers. A log without a row has no
-- snapshot: its state is replayed from its first record.
CREATE TABLE log_snapshots (
    log_id BLOB PRIMARY KEY,
    records INTEGER NOT NULL,
    head_index INTEGER NOT NULL,
    state TEXT NOT NULL
);

-- The states stored before this version cover every record of their log.
INSERT INTO log_snapshots (log_id, records, head_index, state)
    SELECT log_id, record_count, head_index, state FROM logs;

ALTER TABLE logs DROP COLUMN state;
