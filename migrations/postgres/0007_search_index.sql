-- cairn storage schema 0007 (PostgreSQL): the search index. Kept in lockstep
-- with ../sqlite.
--
-- A projection of the package logs, written by the sequencer in the
-- transaction that sequences a release (and rebuilt by the start-up
-- backfill): nothing here is a fact of the registry. Names are compared in
-- byte order (SQLite's BINARY collation, PostgreSQL's "C"), so keyset pages
-- and name ranges are the same on both.

-- What the registry found in content when it checked it against a
-- namespace's publish policy: facts about bytes, keyed by their digest,
-- the same whichever release names them. direction: 0 import, 1 export;
-- names are split as in search_interfaces.
CREATE TABLE content_facts (
    content BYTEA PRIMARY KEY,
    kind TEXT NOT NULL
);
CREATE TABLE content_interfaces (
    content BYTEA NOT NULL,
    direction BIGINT NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    wit_package TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (content, direction, name, version)
);

-- One row per package with a sequenced release: its namespace and its
-- newest non-yanked version (NULL when every release is yanked), as of
-- the package log's record at head_index.
CREATE TABLE search_packages (
    name TEXT COLLATE "C" PRIMARY KEY,
    namespace TEXT COLLATE "C" NOT NULL,
    latest TEXT COLLATE "C",
    head_index BIGINT NOT NULL
);
CREATE INDEX search_packages_by_namespace ON search_packages (namespace, name);

-- One row per sequenced release.
CREATE TABLE search_releases (
    package TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    content BYTEA NOT NULL,
    registry_index BIGINT NOT NULL,
    yanked BIGINT NOT NULL,
    PRIMARY KEY (package, version)
);
CREATE INDEX search_releases_by_content ON search_releases (content);

-- One row per interface a release imports or exports: `name` without its
-- version (`wasi:cli/environment`), `version` ('' when unversioned) and
-- the WIT package that defines it (`wasi:cli`, '' for plain names).
CREATE TABLE search_interfaces (
    package TEXT COLLATE "C" NOT NULL,
    release_version TEXT COLLATE "C" NOT NULL,
    direction BIGINT NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    wit_package TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (package, release_version, direction, name, version)
);
CREATE INDEX search_interfaces_by_name
    ON search_interfaces (direction, name, version, package, release_version, namespace);
-- A reader limited to some namespaces: the same, per namespace.
CREATE INDEX search_interfaces_by_namespace
    ON search_interfaces (namespace, name, version, direction, package, release_version);
CREATE INDEX search_interfaces_by_wit_package
    ON search_interfaces (direction, wit_package, package, release_version, namespace);
