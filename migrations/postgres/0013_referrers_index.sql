-- cairn storage schema 0013 (PostgreSQL): the referrers of a manifest are
-- listed through an index in the order they are served. Kept in lockstep
-- with ../sqlite.
--
-- A repository's referrers of a subject are served in (created_at, digest)
-- order, a page at a time. With the index on (repository, subject) alone,
-- the planner may read every manifest of the repository through the
-- primary key and sort them; with the order in the index, a page is a
-- range of it.
DROP INDEX oci_manifests_by_subject;
CREATE INDEX oci_manifests_by_subject ON oci_manifests (repository, subject, created_at, digest);
