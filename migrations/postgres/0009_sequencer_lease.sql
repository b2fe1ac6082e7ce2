-- cairn storage schema 0009 (PostgreSQL): the sequencer lease. Kept in
-- lockstep with ../sqlite.
--
-- One row. The node named by `holder` runs the sequencer until
-- `expires_at` (milliseconds since 1970 by the database's clock) unless it
-- renews. Every takeover increments `epoch`; every batch commit and every
-- stored checkpoint checks the committing node's epoch and holder against
-- this row in its own transaction, so a deposed leader can never write.
CREATE TABLE sequencer_lease (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
INSERT INTO sequencer_lease (id, epoch, holder, expires_at) VALUES (1, 0, '', 0);
