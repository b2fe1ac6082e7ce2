-- cairn storage schema 0008 (PostgreSQL): releases newest first, for the
-- web catalogue's "recently published" list. Kept in lockstep with
-- ../sqlite.
CREATE INDEX search_releases_by_index ON search_releases (registry_index);
