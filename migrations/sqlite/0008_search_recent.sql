-- cairn storage schema 0008 (SQLite): releases newest first, for the
-- web catalogue's "recently published" list. Kept in lockstep with
-- ../postgres.
CREATE INDEX search_releases_by_index ON search_releases (registry_index);
