-- cairn storage schema 0006 (SQLite): SHA-512 names of content. Kept in
-- lockstep with ../postgres.
--
-- Content is named by its SHA-256 everywhere (blob store, logs, every other
-- table). A SHA-512 digest is an alias, recorded only after the registry
-- hashed the same bytes both ways: a fact about the bytes, the same in every
-- repository, so written outside any push and never removed.
CREATE TABLE digest_aliases (
    sha512 BLOB PRIMARY KEY,
    sha256 BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX digest_aliases_by_sha256 ON digest_aliases (sha256);

-- The SHA-512 subject a referrer's bytes name, for referrers whose subject
-- was given as SHA-512: the referrers listing of that SHA-512 digest finds
-- them even when the subject is not known here. Derived from the
-- referrer's bytes (its SHA-256), so rewriting it changes nothing.
CREATE TABLE oci_sha512_subjects (
    repository TEXT NOT NULL,
    referrer BLOB NOT NULL,
    subject BLOB NOT NULL,
    PRIMARY KEY (repository, referrer)
) WITHOUT ROWID;
CREATE INDEX oci_sha512_subjects_by_subject ON oci_sha512_subjects (repository, subject);
