//! [`SqlStore`]: the [`Store`] on SQLite or PostgreSQL through sqlx's
//! runtime-selected (`Any`) driver. One implementation serves both, so the
//! two backends cannot drift apart; only the DDL (in `migrations/`) and the
//! writer lock differ.
//!
//! SQL conventions: `$N` placeholders numbered in order of first appearance
//! (valid in both dialects), 64-bit integers, `BLOB`/`BYTEA` for digests.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;
use cairn_log::Hash;
use cairn_log::map::MapNode;
use cairn_log::tree::NodeId;
use cairn_protocol::{LogId, RecordId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor as _, Row as _, Transaction};

use crate::types::*;
use crate::{Store, StoreError, StoreResult};

mod aliases;
mod checkpoints;
mod commit;
mod decided;
mod identity;
mod lease;
mod meta;
mod notify;
mod oci;
mod pending;
#[cfg(all(test, feature = "testing"))]
mod plans;
mod pushes;
mod search;
mod uploads;
mod wal;
mod writer_lock;
mod writes;

pub use writer_lock::WriterLock;

/// Which database a [`SqlStore`] talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres,
}

/// Most rows per multi-row statement (keeps bind counts far below both
/// limits).
const MAX_ROWS: usize = 256;

/// Splits `n` rows into statement sizes that are powers of two (at most
/// [`MAX_ROWS`]), so each table sees at most nine statement shapes and the
/// prepared statements are reused instead of re-planned for every batch.
fn write_chunks<T>(items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let size = MAX_ROWS.min(1 << (usize::BITS - 1 - rest.len().leading_zeros()));
        let (chunk, tail) = rest.split_at(size);
        out.push(chunk);
        rest = tail;
    }
    out
}

/// Splits lookup keys into `IN` lists of power-of-two sizes (at most
/// [`MAX_ROWS`]), padding the last list by repeating its last key, for the
/// same reason as [`write_chunks`].
fn read_chunks<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    items
        .chunks(MAX_ROWS)
        .map(|chunk| {
            let mut chunk = chunk.to_vec();
            if let Some(last) = chunk.last().cloned() {
                chunk.resize(chunk.len().next_power_of_two(), last);
            }
            chunk
        })
        .collect()
}

/// The [`Store`] over SQLite or PostgreSQL.
pub struct SqlStore {
    backend: Backend,
    read: AnyPool,
    /// SQLite: a single connection, so writers never contend; PostgreSQL:
    /// the same pool as `read`.
    write: AnyPool,
    /// See [`crate::PushStore::pending_generation`].
    pending_generation: std::sync::atomic::AtomicU64,
    /// See [`crate::ChangeFeed`].
    notifier: notify::Notifier,
    /// SQLite: checkpoints the WAL off the commit path.
    checkpointer: Option<wal::Checkpointer>,
    /// Contents whose facts are stored (batches skip offering them again).
    known_facts: search::KnownFacts,
    #[cfg(feature = "fault-injection")]
    fault: std::sync::Mutex<Option<&'static str>>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn u64_from(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}: {value}")))
}

fn i64_from(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Conflict(format!("value {value} out of range")))
}

fn digest(bytes: &[u8], what: &str) -> StoreResult<Sha256Digest> {
    Sha256Digest::from_slice(bytes).map_err(|_| StoreError::Corrupt(format!("bad {what} digest")))
}

fn node_key(node: NodeId) -> StoreResult<i64> {
    if node.index >= 1 << 56 {
        return Err(StoreError::Conflict(format!("{node:?} out of range")));
    }
    i64_from((u64::from(node.height) << 56) | node.index)
}

fn placeholders(first: usize, rows: usize, columns: usize) -> String {
    let mut out = String::new();
    for row in 0..rows {
        if row > 0 {
            out.push(',');
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push(',');
            }
            out.push_str(&format!("${}", first + row * columns + column));
        }
        out.push(')');
    }
    out
}

/// `(a = $n AND b = $n+1) OR …` for `rows` pairs of key columns, from
/// placeholder `first`: a lookup of many rows by a two-column key that
/// both databases answer through the key's index. (SQLite plans
/// `(a, b) IN (VALUES …)` as a scan of the whole table.)
fn pair_keys(first: usize, rows: usize, a: &str, b: &str) -> String {
    (0..rows)
        .map(|row| {
            let n = first + 2 * row;
            format!("({a} = ${n} AND {b} = ${})", n + 1)
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn list(first: usize, count: usize) -> String {
    (0..count)
        .map(|i| format!("${}", first + i))
        .collect::<Vec<_>>()
        .join(",")
}

/// How long a PostgreSQL session may sit idle inside a transaction before
/// the server ends it: below the shortest sensible sequencer lease, far
/// above any pause between the statements of a healthy transaction.
pub const IDLE_IN_TRANSACTION: std::time::Duration = std::time::Duration::from_secs(4);

impl SqlStore {
    /// Connects to `url`: `sqlite://PATH` (created if missing) or
    /// `postgres://…`. Does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = PathBuf::from(path.split('?').next().unwrap_or(path));
            let url = format!("sqlite://{}?mode=rwc", path.display());
            // The write connection leaves checkpoints to the store's
            // checkpoint task (`wal.rs`). A connection to a local file does
            // not go stale: it is not pinged each time it is taken from
            // the pool (a round trip to its thread per transaction).
            let options = |writer: bool| {
                AnyPoolOptions::new()
                    .test_before_acquire(false)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            if writer {
                                conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                            }
                            Ok(())
                        })
                    })
            };
            let write = options(true).max_connections(1).connect(&url).await?;
            let read = options(false)
                .max_connections(max_connections.max(1))
                .connect(&url)
                .await?;
            let mut store = Self::new(Backend::Sqlite { path }, read, write);
            store.checkpointer = Some(wal::Checkpointer::start(url));
            return Ok(store);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(std::time::Duration::from_secs(10))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // A process paused or stuck inside a transaction
                        // (a leader stopped mid-batch) must not hold its
                        // locks — the lease row, the commit gate — for
                        // longer than a lease: the server ends such a
                        // session and rolls its transaction back.
                        conn.execute(
                            format!(
                                "SET idle_in_transaction_session_timeout = {}",
                                IDLE_IN_TRANSACTION.as_millis()
                            )
                            .as_str(),
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await?;
            let mut store = Self::new(Backend::Postgres, pool.clone(), pool);
            store.notifier = notify::Notifier::postgres(url);
            return Ok(store);
        }
        Err(StoreError::Config(
            "database URL must start with sqlite:// or postgres://".into(),
        ))
    }

    /// Begins a write transaction. On SQLite it takes the database's write
    /// lock at once (`BEGIN IMMEDIATE`): a transaction that reads first and
    /// upgrades later could be refused (`SQLITE_BUSY`) instead of waiting,
    /// and the commit gate ([`decided::take_gate`]) is this lock.
    pub(super) async fn begin_write(&self) -> StoreResult<Transaction<'_, Any>> {
        Ok(match self.backend {
            Backend::Sqlite { .. } => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }

    /// Whether this store is on SQLite (where [`writes::Writes`] joins a
    /// transaction's statements into one query).
    fn is_sqlite(&self) -> bool {
        matches!(self.backend, Backend::Sqlite { .. })
    }

    fn new(backend: Backend, read: AnyPool, write: AnyPool) -> Self {
        Self {
            backend,
            read,
            write,
            pending_generation: std::sync::atomic::AtomicU64::new(0),
            notifier: notify::Notifier::none(),
            checkpointer: None,
            known_facts: search::KnownFacts::default(),
            #[cfg(feature = "fault-injection")]
            fault: std::sync::Mutex::new(None),
        }
    }

    /// A pending record became live or queued (committed): see
    /// [`crate::PushStore::pending_generation`].
    fn pending_changed(&self) {
        self.pending_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The backend in use.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Applies pending migrations of this backend.
    pub async fn migrate(&self) -> StoreResult<()> {
        let result = match self.backend {
            Backend::Sqlite { .. } => {
                sqlx::migrate!("../../migrations/sqlite")
                    .run(&self.write)
                    .await
            }
            Backend::Postgres => {
                sqlx::migrate!("../../migrations/postgres")
                    .run(&self.write)
                    .await
            }
        };
        result.map_err(|e| StoreError::Config(format!("migration failed: {e}")))
    }

    /// Applies this backend's migrations up to `version` and no further:
    /// tests build a database as an earlier release left it, then
    /// [`SqlStore::migrate`] it.
    #[cfg(feature = "testing")]
    pub async fn migrate_until(&self, version: i64) -> StoreResult<()> {
        let mut migrator = match self.backend {
            Backend::Sqlite { .. } => sqlx::migrate!("../../migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("../../migrations/postgres"),
        };
        let kept: Vec<sqlx::migrate::Migration> = migrator
            .migrations
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect();
        migrator.migrations = kept.into();
        migrator
            .run(&self.write)
            .await
            .map_err(|e| StoreError::Config(format!("migration failed: {e}")))
    }

    /// Runs one SQL statement on the write pool: tests store rows as an
    /// earlier release wrote them, or damage one.
    #[cfg(feature = "testing")]
    pub async fn execute_raw(&self, sql: &str) -> StoreResult<u64> {
        Ok(sqlx::query(sql).execute(&self.write).await?.rows_affected())
    }

    /// Versions of this binary's migrations that the database lacks.
    pub async fn pending_migrations(&self) -> StoreResult<Vec<i64>> {
        let migrator = match self.backend {
            Backend::Sqlite { .. } => sqlx::migrate!("../../migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("../../migrations/postgres"),
        };
        let applied: Vec<i64> =
            match sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.read)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<_, _>>()?,
                Err(_) => Vec::new(),
            };
        if let Some(newer) = applied
            .iter()
            .find(|v| !migrator.iter().any(|m| m.version == **v))
        {
            return Err(StoreError::Config(format!(
                "the database has migration {newer}, which this cairn binary does not know; \
                 upgrade cairn before starting it on this database"
            )));
        }
        Ok(migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// Makes the next batch commit fail after `step` (fault-injection builds).
    #[cfg(feature = "fault-injection")]
    pub fn set_fault(&self, step: Option<&'static str>) {
        if let Ok(mut fault) = self.fault.lock() {
            *fault = step;
        }
    }

    fn check_fault(&self, _step: &'static str) -> StoreResult<()> {
        #[cfg(feature = "fault-injection")]
        if let Ok(mut fault) = self.fault.lock()
            && *fault == Some(_step)
        {
            *fault = None;
            return Err(StoreError::Unavailable(format!(
                "injected fault after {_step}"
            )));
        }
        Ok(())
    }
}

fn record_from_row(row: &AnyRow) -> StoreResult<StoredRecord> {
    Ok(StoredRecord {
        registry_index: u64_from(row.try_get("registry_index")?, "registry index")?,
        record_id: RecordId(digest(
            &row.try_get::<Vec<u8>, _>("record_id")?,
            "record id",
        )?),
        log_id: LogId(digest(&row.try_get::<Vec<u8>, _>("log_id")?, "log id")?),
        content_bytes: row.try_get("content_bytes")?,
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
    })
}

fn log_from_row(row: &AnyRow) -> StoreResult<LogRow> {
    let kind: i64 = row.try_get("kind")?;
    Ok(LogRow {
        log_id: LogId(digest(&row.try_get::<Vec<u8>, _>("log_id")?, "log id")?),
        kind: LogKind::from_db(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("log kind {kind}")))?,
        name: row.try_get("name")?,
        head_index: u64_from(row.try_get("head_index")?, "head index")?,
        head_record: RecordId(digest(
            &row.try_get::<Vec<u8>, _>("head_record")?,
            "head record",
        )?),
        record_count: u64_from(row.try_get("record_count")?, "record count")?,
        snapshot: match row.try_get::<Option<String>, _>("snapshot_state")? {
            Some(state) => Some(LogSnapshot {
                records: u64_from(row.try_get("snapshot_records")?, "snapshot records")?,
                index: u64_from(row.try_get("snapshot_index")?, "snapshot index")?,
                state,
            }),
            None => None,
        },
    })
}

/// A log's row with its snapshot (`log_from_row` reads it).
const LOG_SELECT: &str = "SELECT l.log_id, l.kind, l.name, l.head_index, l.head_record, l.record_count, \
     s.records AS snapshot_records, s.head_index AS snapshot_index, s.state AS snapshot_state \
     FROM logs l LEFT JOIN log_snapshots s ON s.log_id = l.log_id";

const RECORD_COLUMNS: &str = "registry_index, record_id, log_id, content_bytes, key_id, signature";

#[async_trait]
impl Store for SqlStore {
    async fn tree_head(&self) -> StoreResult<Option<TreeHead>> {
        let row = sqlx::query("SELECT size, log_root, map_root FROM tree_head WHERE id = 1")
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| {
            Ok(TreeHead {
                size: u64_from(row.try_get("size")?, "tree size")?,
                log_root: digest(&row.try_get::<Vec<u8>, _>("log_root")?, "log root")?,
                map_root: digest(&row.try_get::<Vec<u8>, _>("map_root")?, "map root")?,
            })
        })
        .transpose()
    }

    async fn log_nodes(&self, nodes: &[NodeId]) -> StoreResult<Vec<Hash>> {
        let mut found: HashMap<i64, Hash> = HashMap::with_capacity(nodes.len());
        let keys = nodes
            .iter()
            .map(|n| node_key(*n))
            .collect::<StoreResult<Vec<_>>>()?;
        for chunk in read_chunks(&keys) {
            let sql = format!(
                "SELECT node, hash FROM log_nodes WHERE node IN ({})",
                list(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for key in chunk {
                query = query.bind(key);
            }
            for row in query.fetch_all(&self.read).await? {
                found.insert(
                    row.try_get(0)?,
                    digest(&row.try_get::<Vec<u8>, _>(1)?, "log node")?,
                );
            }
        }
        nodes
            .iter()
            .zip(&keys)
            .map(|(node, key)| {
                found
                    .get(key)
                    .copied()
                    .ok_or_else(|| StoreError::Corrupt(format!("log node {node:?} is missing")))
            })
            .collect()
    }

    async fn log_node_range(&self, height: u8, start: u64, end: u64) -> StoreResult<Vec<Hash>> {
        let first = node_key(NodeId {
            height,
            index: start,
        })?;
        let last = node_key(NodeId { height, index: end })?;
        let rows =
            sqlx::query("SELECT hash FROM log_nodes WHERE node >= $1 AND node < $2 ORDER BY node")
                .bind(first)
                .bind(last)
                .fetch_all(&self.read)
                .await?;
        rows.iter()
            .map(|row| digest(&row.try_get::<Vec<u8>, _>(0)?, "log node"))
            .collect()
    }

    async fn map_nodes(&self, hashes: &[Hash]) -> StoreResult<Vec<(Hash, MapNode)>> {
        let mut out = Vec::with_capacity(hashes.len());
        for chunk in read_chunks(hashes) {
            let sql = format!(
                "SELECT hash, node FROM map_nodes WHERE hash IN ({})",
                list(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for hash in chunk {
                query = query.bind(hash.0.to_vec());
            }
            for row in query.fetch_all(&self.read).await? {
                let hash = digest(&row.try_get::<Vec<u8>, _>(0)?, "map node")?;
                let node = MapNode::decode(&row.try_get::<Vec<u8>, _>(1)?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                out.push((hash, node));
            }
        }
        Ok(out)
    }

    async fn commit_batch(&self, batch: &Batch) -> StoreResult<()> {
        self.commit_in_one_transaction(batch).await
    }

    async fn log(&self, log_id: &LogId) -> StoreResult<Option<LogRow>> {
        sqlx::query(&format!("{LOG_SELECT} WHERE l.log_id = $1"))
            .bind(log_id.0.0.to_vec())
            .fetch_optional(&self.read)
            .await?
            .map(|row| log_from_row(&row))
            .transpose()
    }

    async fn logs(&self, log_ids: &[LogId]) -> StoreResult<Vec<LogRow>> {
        let mut out = Vec::with_capacity(log_ids.len());
        for chunk in read_chunks(log_ids) {
            let sql = format!("{LOG_SELECT} WHERE l.log_id IN ({})", list(1, chunk.len()));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.0.0.to_vec());
            }
            for row in query.fetch_all(&self.read).await? {
                out.push(log_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn log_records(
        &self,
        log_id: &LogId,
        after: Option<u64>,
        below: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredRecord>> {
        let after = after.map(i64_from).transpose()?.unwrap_or(-1);
        sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE log_id = $1 AND registry_index > $2 \
             AND registry_index < $3 ORDER BY registry_index LIMIT $4"
        ))
        .bind(log_id.0.0.to_vec())
        .bind(after)
        .bind(i64_from(below)?)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(record_from_row)
        .collect()
    }

    async fn record_by_id(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
    ) -> StoreResult<Option<StoredRecord>> {
        sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE log_id = $1 AND record_id = $2"
        ))
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .fetch_optional(&self.read)
        .await?
        .map(|row| record_from_row(&row))
        .transpose()
    }

    async fn records_range(&self, start: u64, end: u64) -> StoreResult<Vec<StoredRecord>> {
        sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE registry_index >= $1 AND registry_index < $2 \
             ORDER BY registry_index"
        ))
        .bind(i64_from(start)?)
        .bind(i64_from(end)?)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(record_from_row)
        .collect()
    }

    async fn records_at(&self, indices: &[u64]) -> StoreResult<Vec<StoredRecord>> {
        let mut out = Vec::with_capacity(indices.len());
        for chunk in read_chunks(indices) {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE registry_index IN ({})",
                list(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for index in chunk {
                query = query.bind(i64_from(index)?);
            }
            for row in query.fetch_all(&self.read).await? {
                out.push(record_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn log_names(&self, log_ids: &[LogId]) -> StoreResult<Vec<(LogId, Option<String>)>> {
        let mut out = Vec::with_capacity(log_ids.len());
        for chunk in read_chunks(log_ids) {
            let sql = format!(
                "SELECT log_id, name FROM logs WHERE log_id IN ({})",
                list(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.0.0.to_vec());
            }
            for row in query.fetch_all(&self.read).await? {
                out.push((
                    LogId(digest(&row.try_get::<Vec<u8>, _>(0)?, "log id")?),
                    row.try_get(1)?,
                ));
            }
        }
        Ok(out)
    }
}
