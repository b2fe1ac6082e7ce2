-- cairn storage schema 0011 (PostgreSQL): where the leader of a cluster is
-- reached. Kept in lockstep with ../sqlite.
--
-- The node that takes the sequencer lease records its internal URL with
-- it, in the same statement; the other nodes forward to it the writes that
-- need the sequencer's memory (OCI manifest pushes and deletes, records
-- the registry builds and signs itself). Empty when unknown.
ALTER TABLE sequencer_lease ADD COLUMN address TEXT NOT NULL DEFAULT '';
