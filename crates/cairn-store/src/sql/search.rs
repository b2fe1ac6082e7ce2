//! [`SearchStore`] on SQL.
//!
//! Every read is driven by an index: interface filters by
//! `search_interfaces_by_name` (a name range from the literal prefix of
//! the glob, the glob itself checked on the index entries), dependents by
//! `search_interfaces_by_wit_package`, name prefixes and namespaces by the
//! primary key and `search_packages_by_namespace`. Only a substring of the
//! package name scans, and it scans package names only.
//!
//! Globs are the one dialect difference: SQLite's `GLOB` and PostgreSQL's
//! `LIKE` are both case-sensitive, and the characters a pattern may hold
//! (`A-Z a-z 0-9 : / @ . - + *`) mean nothing else to either.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};

mod known;
mod statement;

pub(super) use known::KnownFacts;
use statement::{Sql, Value};

use super::writes::Writes;
use super::{SqlStore, digest, i64_from, list, pair_keys, placeholders, u64_from, write_chunks};
use crate::search::{
    ContentFacts, Direction, IndexedRelease, InterfaceFilter, InterfaceName, PackageHit,
    ReleaseHit, SearchFilter, SearchStore, SearchUpdate,
};
use crate::{StoreError, StoreResult};

/// Most namespaces one read may be limited to.
const MAX_NAMESPACES: usize = 1024;
/// Most packages or releases one detail read may name.
const MAX_KEYS: usize = 1024;
/// Closes an `EXISTS` that must be checked row by row through an index:
/// PostgreSQL would otherwise turn it into a semi-join over every matching
/// entry (an `OFFSET` keeps the subquery as is; SQLite checks `EXISTS` row
/// by row anyway).
const FOR_EACH_ROW: &str = " LIMIT 1 OFFSET 0)";
/// Interface entries from which a search walks packages instead (see
/// [`SearchStore::search_packages`] on SQL).
const DENSE: i64 = 2000;

/// A release: (package, version).
type ReleaseKey = (String, String);
/// The interfaces of a release that matched.
type Matched = Vec<(Direction, InterfaceName)>;

fn namespaces_ok(namespaces: Option<&[String]>) -> StoreResult<()> {
    match namespaces {
        Some(list) if list.len() > MAX_NAMESPACES => Err(StoreError::Conflict(format!(
            "a search may be limited to at most {MAX_NAMESPACES} namespaces"
        ))),
        _ => Ok(()),
    }
}

fn keys_ok(count: usize) -> StoreResult<()> {
    if count > MAX_KEYS {
        return Err(StoreError::Conflict(format!(
            "at most {MAX_KEYS} packages or releases per read"
        )));
    }
    Ok(())
}

fn direction(row: &AnyRow, column: &str) -> StoreResult<Direction> {
    let value: i64 = row.try_get(column)?;
    Direction::from_db(value)
        .ok_or_else(|| StoreError::Corrupt(format!("bad interface direction {value}")))
}

fn interface_of(row: &AnyRow) -> StoreResult<(Direction, InterfaceName)> {
    Ok((
        direction(row, "direction")?,
        InterfaceName {
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            wit_package: row.try_get("wit_package")?,
        },
    ))
}

/// Writes `update` in `tx` (see [`SearchStore`]'s contract).
async fn write_in(
    tx: &mut Transaction<'_, Any>,
    update: &SearchUpdate,
    joined: bool,
) -> StoreResult<()> {
    let new_facts = insert_facts(tx, &update.facts).await?;
    let mut writes = Writes::new(joined);
    add_rows(&mut writes, update, &new_facts)?;
    writes.run(tx).await
}

/// Adds the rest of `update` to `writes`, once [`insert_facts`] has stored
/// its facts and said which are `new_facts`.
pub(super) fn add_rows(
    writes: &mut Writes,
    update: &SearchUpdate,
    new_facts: &[Sha256Digest],
) -> StoreResult<()> {
    for chunk in write_chunks(&update.releases) {
        let mut statement = writes.add(format!(
            "INSERT INTO search_releases (package, version, namespace, content, registry_index, yanked) \
             VALUES {} ON CONFLICT (package, version) DO NOTHING",
            placeholders(1, chunk.len(), 6)
        ));
        for r in chunk {
            statement
                .bind(r.package.clone())
                .bind(r.version.clone())
                .bind(r.namespace.clone())
                .bind(r.content.0.to_vec())
                .bind(i64_from(r.registry_index)?)
                .bind(0i64);
        }
    }
    // A release's interfaces are its content's, materialised when either
    // is new here (whichever came first): every release of content whose
    // facts are new, and every other release new here. Facts known before
    // came with their interfaces, so older releases of their content have
    // theirs.
    for chunk in write_chunks(new_facts) {
        let mut statement = writes.add(interfaces_sql(&format!(
            "r.content IN ({})",
            list(1, chunk.len())
        )));
        for d in chunk {
            statement.bind(d.0.to_vec());
        }
    }
    let releases: Vec<&IndexedRelease> = update
        .releases
        .iter()
        .filter(|r| !new_facts.contains(&r.content))
        .collect();
    for chunk in write_chunks(&releases) {
        let mut statement = writes.add(interfaces_sql(&pair_keys(
            1,
            chunk.len(),
            "r.package",
            "r.version",
        )));
        for r in chunk {
            statement.bind(r.package.clone()).bind(r.version.clone());
        }
    }
    for package in &update.packages {
        writes
            .add(
                "INSERT INTO search_packages (name, namespace, latest, head_index) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE \
                 SET latest = excluded.latest, head_index = excluded.head_index \
                 WHERE search_packages.head_index < excluded.head_index",
            )
            .bind(package.package.clone())
            .bind(package.namespace.clone())
            .bind(package.latest.clone())
            .bind(i64_from(package.head_index)?);
        for chunk in write_chunks(&package.yanked) {
            let mut statement = writes.add(format!(
                "UPDATE search_releases SET yanked = 1 WHERE package = $1 AND version IN ({})",
                list(2, chunk.len())
            ));
            statement.bind(package.package.clone());
            for version in chunk {
                statement.bind(version.clone());
            }
        }
    }
    Ok(())
}

/// The statement materialising the interfaces of the releases that
/// `releases` (a condition on `search_releases r`) selects.
pub(super) fn interfaces_sql(releases: &str) -> String {
    format!(
        "INSERT INTO search_interfaces \
         (package, release_version, direction, name, version, wit_package, namespace) \
         SELECT r.package, r.version, c.direction, c.name, c.version, c.wit_package, r.namespace \
         FROM search_releases r JOIN content_interfaces c ON c.content = r.content \
         WHERE {releases} \
         ON CONFLICT (package, release_version, direction, name, version) DO NOTHING"
    )
}

/// Stores `facts` (with their interfaces) unless known; returns the
/// contents whose facts were new.
pub(super) async fn insert_facts(
    tx: &mut Transaction<'_, Any>,
    facts: &[ContentFacts],
) -> StoreResult<Vec<Sha256Digest>> {
    let mut new = Vec::new();
    for chunk in write_chunks(facts) {
        let sql = format!(
            "INSERT INTO content_facts (content, kind) VALUES {} ON CONFLICT (content) DO NOTHING \
             RETURNING content",
            placeholders(1, chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for f in chunk {
            query = query.bind(f.content.0.to_vec()).bind(f.kind.clone());
        }
        for row in query.fetch_all(&mut **tx).await? {
            new.push(digest(&row.try_get::<Vec<u8>, _>(0)?, "content")?);
        }
    }
    // Only the new facts' interfaces: known facts came with theirs.
    let mut rows: Vec<(Sha256Digest, Direction, InterfaceName)> = Vec::new();
    for f in facts.iter().filter(|f| new.contains(&f.content)) {
        for (direction, names) in [
            (Direction::Import, &f.imports),
            (Direction::Export, &f.exports),
        ] {
            rows.extend(
                names
                    .iter()
                    .map(|n| (f.content, direction, InterfaceName::parse(n))),
            );
        }
    }
    rows.sort_unstable_by(|a, b| (a.0.0, a.1, &a.2).cmp(&(b.0.0, b.1, &b.2)));
    rows.dedup_by(|a, b| {
        a.0 == b.0 && a.1 == b.1 && a.2.name == b.2.name && a.2.version == b.2.version
    });
    for chunk in write_chunks(&rows) {
        let sql = format!(
            "INSERT INTO content_interfaces (content, direction, name, version, wit_package) \
             VALUES {} ON CONFLICT (content, direction, name, version) DO NOTHING",
            placeholders(1, chunk.len(), 5)
        );
        let mut query = sqlx::query(&sql);
        for (content, direction, name) in chunk {
            query = query
                .bind(content.0.to_vec())
                .bind(direction.to_db())
                .bind(name.name.clone())
                .bind(name.version.clone())
                .bind(name.wit_package.clone());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(new)
}

impl SqlStore {
    /// The statement listing the package names of a search page: from the
    /// matching interface entries (`sparse`), or from the packages, each
    /// with a matching release.
    fn page_names(
        &self,
        filter: &SearchFilter,
        after: Option<&str>,
        limit: u32,
        sparse: bool,
    ) -> StoreResult<Sql> {
        let backend = &self.backend;
        let column = if sparse { "i.package" } else { "p.name" };
        let mut sql = if sparse {
            Sql::new("SELECT DISTINCT i.package FROM search_interfaces i WHERE i.package > ")
        } else {
            Sql::new("SELECT p.name FROM search_packages p WHERE p.name > ")
        };
        sql.arg(after.unwrap_or(""));
        if let Some(first) = filter.interfaces.first() {
            if !sparse {
                sql.push(" AND EXISTS (SELECT 1 FROM search_interfaces i WHERE i.package = p.name");
            }
            if sparse && filter.namespaces.is_none() {
                sql.interface(backend, "i", first)?;
            } else {
                sql.interface_off_name_index(backend, "i", first)?;
            }
            for (n, other) in filter.interfaces.iter().enumerate().skip(1) {
                let alias = format!("j{n}");
                sql.push(&format!(
                    " AND EXISTS (SELECT 1 FROM search_interfaces {alias} WHERE \
                     {alias}.package = i.package AND {alias}.release_version = i.release_version"
                ));
                sql.interface_off_name_index(backend, &alias, other)?;
                sql.push(FOR_EACH_ROW);
            }
            if !sparse {
                sql.push(FOR_EACH_ROW);
            }
        }
        if let Some(namespaces) = &filter.namespaces {
            sql.any_of(
                if sparse { "i.namespace" } else { "p.namespace" },
                namespaces,
            );
        }
        if let Some(prefix) = &filter.prefix {
            sql.glob(backend, column, &format!("{prefix}*"))?;
        }
        if let Some(text) = &filter.contains {
            sql.glob(backend, column, &format!("*{text}*"))?;
        }
        sql.push(&format!(" ORDER BY {column} LIMIT "))
            .bind(Value::Int(i64::from(limit)));
        Ok(sql)
    }

    /// The release rows of `keys` (package, version), with `matched`
    /// attached, in the order of `keys`; unknown keys are absent.
    async fn releases_of(&self, keys: Vec<(ReleaseKey, Matched)>) -> StoreResult<Vec<ReleaseHit>> {
        keys_ok(keys.len())?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(
            "SELECT package, version, content, yanked, registry_index FROM search_releases \
             WHERE ",
        );
        // One `OR` term per key, so that SQLite looks each up by the
        // primary key (it scans the table for `(a, b) IN (VALUES …)`).
        for (i, ((package, version), _)) in keys.iter().enumerate() {
            sql.push(if i > 0 {
                " OR (package = "
            } else {
                "(package = "
            });
            sql.arg(package)
                .push(" AND version = ")
                .arg(version)
                .push(")");
        }
        let mut rows: BTreeMap<(String, String), AnyRow> = BTreeMap::new();
        for row in sql.query().fetch_all(&self.read).await? {
            rows.insert((row.try_get("package")?, row.try_get("version")?), row);
        }
        let mut out = Vec::with_capacity(keys.len());
        for (key, matched) in keys {
            let Some(row) = rows.get(&key) else { continue };
            out.push(ReleaseHit {
                content: digest(&row.try_get::<Vec<u8>, _>("content")?, "release content")?,
                yanked: row.try_get::<i64, _>("yanked")? != 0,
                registry_index: u64_from(row.try_get("registry_index")?, "registry index")?,
                package: key.0,
                version: key.1,
                matched,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl SearchStore for SqlStore {
    async fn record_content_facts(&self, facts: &[ContentFacts]) -> StoreResult<()> {
        // Through the same path as a batch: releases of this content that
        // are already sequenced get its interfaces now.
        let update = SearchUpdate {
            facts: facts.to_vec(),
            ..SearchUpdate::default()
        };
        self.index(&update).await
    }

    async fn contents_with_facts(
        &self,
        contents: &[Sha256Digest],
    ) -> StoreResult<Vec<Sha256Digest>> {
        let mut out = Vec::new();
        for chunk in super::read_chunks(contents) {
            let sql = format!(
                "SELECT content FROM content_facts WHERE content IN ({})",
                list(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for d in &chunk {
                query = query.bind(d.0.to_vec());
            }
            for row in query.fetch_all(&self.read).await? {
                out.push(digest(&row.try_get::<Vec<u8>, _>(0)?, "content")?);
            }
        }
        out.sort_unstable_by_key(|d| d.0);
        out.dedup();
        Ok(out)
    }

    async fn index(&self, update: &SearchUpdate) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        write_in(&mut tx, update, self.is_sqlite()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn index_is_empty(&self) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM search_releases LIMIT 1")
            .fetch_optional(&self.read)
            .await?
            .is_none())
    }

    async fn search_packages(
        &self,
        filter: &SearchFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<PackageHit>> {
        namespaces_ok(filter.namespaces.as_deref())?;
        if filter.namespaces.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        // Interface-driven when few index entries match (their packages are
        // sorted), package-driven otherwise (packages walked in name order,
        // each checked through the primary key, stopping at `limit`).
        let sparse = match filter.interfaces.first() {
            None => false,
            Some(first) => {
                let mut probe = Sql::new(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM search_interfaces i WHERE i.package > ",
                );
                probe.arg(after.unwrap_or(""));
                match &filter.namespaces {
                    Some(namespaces) => {
                        probe.interface_off_name_index(&self.backend, "i", first)?;
                        probe.any_of("i.namespace", namespaces);
                    }
                    None => {
                        probe.interface(&self.backend, "i", first)?;
                    }
                }
                probe.push(" LIMIT ").bind(Value::Int(DENSE)).push(") t");
                let row = probe.query().fetch_one(&self.read).await?;
                row.try_get::<i64, _>(0)? < DENSE
            }
        };
        let names: Vec<String> = self
            .page_names(filter, after, limit, sparse)?
            .query()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new("SELECT name, namespace, latest FROM search_packages WHERE 1 = 1");
        sql.any_of("name", &names).push(" ORDER BY name");
        sql.query()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| {
                Ok(PackageHit {
                    package: row.try_get("name")?,
                    namespace: row.try_get("namespace")?,
                    latest: row.try_get("latest")?,
                })
            })
            .collect()
    }

    async fn matching_releases(
        &self,
        packages: &[String],
        interfaces: &[InterfaceFilter],
        limit: u32,
    ) -> StoreResult<Vec<ReleaseHit>> {
        keys_ok(packages.len())?;
        if packages.is_empty() {
            return Ok(Vec::new());
        }
        let limit = Value::Int(i64::from(limit));
        if interfaces.is_empty() {
            let mut sql = Sql::new("SELECT package, version FROM search_releases WHERE 1 = 1");
            sql.any_of("package", packages)
                .push(" ORDER BY package, registry_index DESC LIMIT ")
                .bind(limit);
            let mut keys = Vec::new();
            for row in sql.query().fetch_all(&self.read).await? {
                keys.push((
                    (row.try_get("package")?, row.try_get("version")?),
                    Vec::new(),
                ));
            }
            return self.releases_of(keys).await;
        }
        // Each interface row, with which filters it matches.
        let mut sql =
            Sql::new("SELECT package, release_version, direction, name, version, wit_package");
        for (n, filter) in interfaces.iter().enumerate() {
            sql.push(", CASE WHEN 1 = 1");
            sql.interface(&self.backend, "i", filter)?;
            sql.push(&format!(" THEN 1 ELSE 0 END AS m{n}"));
        }
        sql.push(" FROM search_interfaces i WHERE 1 = 1");
        sql.any_of("i.package", packages).push(" AND (1 = 0");
        for filter in interfaces {
            sql.push(" OR (1 = 1");
            sql.interface(&self.backend, "i", filter)?;
            sql.push(")");
        }
        sql.push(") ORDER BY package, release_version, direction, name, version LIMIT ")
            .bind(limit);
        let mut releases: BTreeMap<(String, String), (Vec<bool>, Vec<_>)> = BTreeMap::new();
        for row in sql.query().fetch_all(&self.read).await? {
            let key = (row.try_get("package")?, row.try_get("release_version")?);
            let entry = releases
                .entry(key)
                .or_insert_with(|| (vec![false; interfaces.len()], Vec::new()));
            for (n, seen) in entry.0.iter_mut().enumerate() {
                *seen |= row.try_get::<i64, _>(format!("m{n}").as_str())? != 0;
            }
            entry.1.push(interface_of(&row)?);
        }
        let keys: Vec<_> = releases
            .into_iter()
            .filter(|(_, (seen, _))| seen.iter().all(|s| *s))
            .map(|(key, (_, matched))| (key, matched))
            .take(MAX_KEYS)
            .collect();
        self.releases_of(keys).await
    }

    async fn recent_releases(
        &self,
        namespaces: Option<&[String]>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseHit>> {
        namespaces_ok(namespaces)?;
        if namespaces.is_some_and(<[String]>::is_empty) {
            return Ok(Vec::new());
        }
        // Walks `search_releases_by_index` backwards.
        let mut sql = Sql::new(
            "SELECT package, version, content, yanked, registry_index FROM search_releases \
             WHERE 1 = 1",
        );
        if let Some(namespaces) = namespaces {
            sql.any_of("namespace", namespaces);
        }
        sql.push(" ORDER BY registry_index DESC, package, version LIMIT ")
            .bind(Value::Int(i64::from(limit).min(MAX_KEYS as i64)));
        sql.query()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| {
                Ok(ReleaseHit {
                    package: row.try_get("package")?,
                    version: row.try_get("version")?,
                    content: digest(&row.try_get::<Vec<u8>, _>("content")?, "release content")?,
                    yanked: row.try_get::<i64, _>("yanked")? != 0,
                    registry_index: u64_from(row.try_get("registry_index")?, "registry index")?,
                    matched: Vec::new(),
                })
            })
            .collect()
    }

    async fn dependents(
        &self,
        wit_package: &str,
        namespaces: Option<&[String]>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseHit>> {
        namespaces_ok(namespaces)?;
        if namespaces.is_some_and(<[String]>::is_empty) {
            return Ok(Vec::new());
        }
        let (after_package, after_version) = after.unwrap_or(("", ""));
        let mut sql = Sql::new(
            "SELECT DISTINCT package, release_version FROM search_interfaces \
             WHERE direction = 0 AND wit_package = ",
        );
        sql.arg(wit_package)
            .push(" AND (package, release_version) > (")
            .arg(after_package)
            .push(", ")
            .arg(after_version)
            .push(")");
        if let Some(namespaces) = namespaces {
            sql.any_of("namespace", namespaces);
        }
        sql.push(" ORDER BY package, release_version LIMIT ")
            .bind(Value::Int(i64::from(limit).min(MAX_KEYS as i64)));
        let page: Vec<(String, String)> = sql
            .query()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<StoreResult<_>>()?;
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(
            "SELECT package, release_version, direction, name, version, wit_package \
             FROM search_interfaces WHERE direction = 0 AND wit_package = ",
        );
        sql.arg(wit_package)
            .push(" AND (package, release_version) IN (VALUES ");
        for (i, (package, version)) in page.iter().enumerate() {
            sql.push(if i > 0 { ",(" } else { "(" });
            sql.arg(package).push(",").arg(version).push(")");
        }
        sql.push(") ORDER BY package, release_version, name, version");
        let mut matched: BTreeMap<(String, String), Vec<_>> = BTreeMap::new();
        for row in sql.query().fetch_all(&self.read).await? {
            matched
                .entry((row.try_get("package")?, row.try_get("release_version")?))
                .or_default()
                .push(interface_of(&row)?);
        }
        let keys = page
            .into_iter()
            .map(|key| {
                let interfaces = matched.remove(&key).unwrap_or_default();
                (key, interfaces)
            })
            .collect();
        self.releases_of(keys).await
    }
}
