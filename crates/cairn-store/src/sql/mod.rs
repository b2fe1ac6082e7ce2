//! [`SqlStore`]: the [`Store`] on SQLite or PostgreSQL through sqlx's
//! runtime-selected (`Any`) driver. One implementation serves both, so the
//! two backends cannot drift apart; only the DDL (in `migrations/`) and the
//! writer lock differ.
//!
//! SQL conventions: `$N` placeholders numbered in order of first appearance
//! (valid in both dialects), 64-bit integers, `BLOB`/`BYTEA` for digests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;
use cairn_log::Hash;
use cairn_log::checkpoint::{Checkpoint, TimestampedCheckpoint};
use cairn_log::map::MapNode;
use cairn_log::tree::NodeId;
use cairn_protocol::{LogId, RecordId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor as _, Row as _, Transaction};

use crate::types::*;
use crate::{DecidedStore as _, Store, StoreError, StoreResult};

mod aliases;
mod decided;
mod lease;
mod oci;
mod pushes;
mod search;
mod uploads;

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

/// The PostgreSQL advisory lock key of the writer lock.
const WRITER_LOCK_KEY: i64 = 6_360_812_773_657_829_742;

/// A held exclusive writer lock (see [`SqlStore::lock_writer`]).
pub struct WriterLock {
    _file: Option<std::fs::File>,
    _connection: Option<sqlx::AnyConnection>,
}

impl WriterLock {
    /// Releases the lock now. Dropping it releases it too, but PostgreSQL
    /// only notices a dropped connection a moment later; a server that
    /// stops and restarts in one process must not race its own lock.
    pub async fn release(mut self) {
        if let Some(mut connection) = self._connection.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(WRITER_LOCK_KEY)
                .execute(&mut connection)
                .await;
            if let Err(error) = unlocked {
                tracing::warn!(%error, "releasing the writer lock");
            }
            let _ = sqlx::Connection::close(connection).await;
        }
    }
}

impl std::fmt::Debug for WriterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterLock")
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
            let options = || {
                AnyPoolOptions::new().after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        Ok(())
                    })
                })
            };
            let write = options().max_connections(1).connect(&url).await?;
            let read = options()
                .max_connections(max_connections.max(1))
                .connect(&url)
                .await?;
            return Ok(Self::new(Backend::Sqlite { path }, read, write));
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
            return Ok(Self::new(Backend::Postgres, pool.clone(), pool));
        }
        Err(StoreError::Config(
            "database URL must start with sqlite:// or postgres://".into(),
        ))
    }

    fn new(backend: Backend, read: AnyPool, write: AnyPool) -> Self {
        Self {
            backend,
            read,
            write,
            pending_generation: std::sync::atomic::AtomicU64::new(0),
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

    /// Takes the exclusive writer lock: only one sequencer may ever write a
    /// database. SQLite: an OS lock on `<db>.lock`; PostgreSQL: a
    /// session-level advisory lock held on a dedicated connection.
    pub async fn lock_writer(&self) -> StoreResult<WriterLock> {
        match &self.backend {
            Backend::Sqlite { path } => {
                let mut lock_path = path.clone().into_os_string();
                lock_path.push(".lock");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(|e| StoreError::Config(format!("cannot open lock file: {e}")))?;
                file.try_lock().map_err(|_| {
                    StoreError::Config(
                        "another cairn process is writing this database (its lock file is held)"
                            .into(),
                    )
                })?;
                Ok(WriterLock {
                    _file: Some(file),
                    _connection: None,
                })
            }
            Backend::Postgres => {
                let mut connection = self.write.acquire().await?.detach();
                let row = sqlx::query("SELECT pg_try_advisory_lock($1)")
                    .bind(WRITER_LOCK_KEY)
                    .fetch_one(&mut connection)
                    .await?;
                if !row.try_get::<bool, _>(0)? {
                    return Err(StoreError::Config(
                        "another cairn server is writing this database (advisory lock held)".into(),
                    ));
                }
                Ok(WriterLock {
                    _file: None,
                    _connection: Some(connection),
                })
            }
        }
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

    async fn check_tree_size(tx: &mut Transaction<'_, Any>, expected: u64) -> StoreResult<()> {
        let stored = sqlx::query("SELECT size FROM tree_head WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?
            .map(|size| u64_from(size, "tree size"))
            .transpose()?
            .unwrap_or(0);
        if stored != expected {
            return Err(StoreError::Conflict(format!(
                "batch extends tree size {expected} but the stored size is {stored}"
            )));
        }
        Ok(())
    }

    async fn insert_records(
        tx: &mut Transaction<'_, Any>,
        records: &[StoredRecord],
    ) -> StoreResult<()> {
        for chunk in write_chunks(records) {
            let sql = format!(
                "INSERT INTO records (registry_index, record_id, log_id, content_bytes, key_id, signature) VALUES {}",
                placeholders(1, chunk.len(), 6)
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(i64_from(r.registry_index)?)
                    .bind(r.record_id.0.0.to_vec())
                    .bind(r.log_id.0.0.to_vec())
                    .bind(r.content_bytes.clone())
                    .bind(r.key_id.clone())
                    .bind(r.signature.clone());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn upsert_logs(tx: &mut Transaction<'_, Any>, logs: &[LogRow]) -> StoreResult<()> {
        for chunk in write_chunks(logs) {
            let sql = format!(
                "INSERT INTO logs (log_id, kind, name, state, head_index, head_record, record_count) VALUES {} \
                 ON CONFLICT (log_id) DO UPDATE SET state = excluded.state, head_index = excluded.head_index, \
                 head_record = excluded.head_record, record_count = excluded.record_count",
                placeholders(1, chunk.len(), 7)
            );
            let mut query = sqlx::query(&sql);
            for l in chunk {
                query = query
                    .bind(l.log_id.0.0.to_vec())
                    .bind(l.kind.to_db())
                    .bind(l.name.clone())
                    .bind(l.state.clone())
                    .bind(i64_from(l.head_index)?)
                    .bind(l.head_record.0.0.to_vec())
                    .bind(i64_from(l.record_count)?);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_log_nodes(
        tx: &mut Transaction<'_, Any>,
        nodes: &[(NodeId, Hash)],
    ) -> StoreResult<()> {
        for chunk in write_chunks(nodes) {
            let sql = format!(
                "INSERT INTO log_nodes (node, hash) VALUES {}",
                placeholders(1, chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (node, hash) in chunk {
                query = query.bind(node_key(*node)?).bind(hash.0.to_vec());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_map_nodes(
        tx: &mut Transaction<'_, Any>,
        nodes: &[(Hash, MapNode)],
    ) -> StoreResult<()> {
        for chunk in write_chunks(nodes) {
            let sql = format!(
                "INSERT INTO map_nodes (hash, node) VALUES {} ON CONFLICT (hash) DO NOTHING",
                placeholders(1, chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (hash, node) in chunk {
                query = query.bind(hash.0.to_vec()).bind(node.encode());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn set_tree_head(tx: &mut Transaction<'_, Any>, head: &TreeHead) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tree_head (id, size, log_root, map_root) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET size = excluded.size, log_root = excluded.log_root, \
             map_root = excluded.map_root",
        )
        .bind(i64_from(head.size)?)
        .bind(head.log_root.0.to_vec())
        .bind(head.map_root.0.to_vec())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn delete_pending(
        tx: &mut Transaction<'_, Any>,
        ids: &[(LogId, RecordId)],
    ) -> StoreResult<()> {
        for chunk in write_chunks(ids) {
            let sql = format!(
                "DELETE FROM pending WHERE (log_id, record_id) IN (VALUES {})",
                placeholders(1, chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (log_id, record_id) in chunk {
                query = query.bind(log_id.0.0.to_vec()).bind(record_id.0.0.to_vec());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn reject_pending(
        tx: &mut Transaction<'_, Any>,
        rejected: &[(LogId, RecordId, String)],
    ) -> StoreResult<()> {
        for (log_id, record_id, reason) in rejected {
            sqlx::query(
                "UPDATE pending SET state = 2, reason = $1 WHERE log_id = $2 AND record_id = $3",
            )
            .bind(reason.clone())
            .bind(log_id.0.0.to_vec())
            .bind(record_id.0.0.to_vec())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    async fn publish_contents(
        tx: &mut Transaction<'_, Any>,
        digests: &[Sha256Digest],
    ) -> StoreResult<()> {
        for chunk in write_chunks(digests) {
            let sql = format!(
                "UPDATE contents SET published = 1 WHERE digest IN ({})",
                list(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for d in chunk {
                query = query.bind(d.0.to_vec());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

impl SqlStore {
    async fn publish_oci(
        tx: &mut Transaction<'_, Any>,
        visible: &[(String, Sha256Digest)],
        tags: &[(String, String, Sha256Digest)],
    ) -> StoreResult<()> {
        for chunk in write_chunks(visible) {
            let sql = format!(
                "UPDATE oci_manifests SET visible = 1 WHERE (repository, digest) IN (VALUES {})",
                placeholders(1, chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (repository, digest) in chunk {
                query = query.bind(repository.clone()).bind(digest.0.to_vec());
            }
            query.execute(&mut **tx).await?;
        }
        // One row per tag (the last move wins): a statement may not update
        // a row twice.
        let mut seen = std::collections::HashSet::with_capacity(tags.len());
        let mut last: Vec<&(String, String, Sha256Digest)> = Vec::with_capacity(tags.len());
        for tag in tags.iter().rev() {
            if seen.insert((tag.0.as_str(), tag.1.as_str())) {
                last.push(tag);
            }
        }
        last.reverse();
        for chunk in write_chunks(&last) {
            let sql = format!(
                "INSERT INTO oci_tags (repository, tag, digest) VALUES {} \
                 ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest",
                placeholders(1, chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for (repository, tag, digest) in chunk.iter().copied() {
                query = query
                    .bind(repository.clone())
                    .bind(tag.clone())
                    .bind(digest.0.to_vec());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Stores a checkpoint in `tx`; a second checkpoint for the same length
    /// is accepted only if it has the same roots (and is then not stored).
    async fn store_checkpoint_in(
        tx: &mut Transaction<'_, Any>,
        stored: &StoredCheckpoint,
    ) -> StoreResult<()> {
        let cp = &stored.checkpoint.checkpoint;
        let existing = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE log_length = $1"
        ))
        .bind(i64_from(cp.log_length)?)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = existing {
            let existing = checkpoint_from_row(&row)?;
            if existing.checkpoint.checkpoint != *cp {
                return Err(StoreError::Corrupt(format!(
                    "refusing a second checkpoint for length {} with different roots",
                    cp.log_length
                )));
            }
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(i64_from(cp.log_length)?)
        .bind(cp.log_root.0.to_vec())
        .bind(cp.map_root.0.to_vec())
        .bind(i64_from(stored.checkpoint.timestamp)?)
        .bind(stored.key_id.clone())
        .bind(stored.signature.clone())
        .bind(stored.note.clone())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub(super) async fn insert_manifest_in(
        tx: &mut Transaction<'_, Any>,
        manifest: &OciManifestRow,
    ) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO oci_manifests ({MANIFEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (repository, digest) DO NOTHING"
        ))
        .bind(manifest.repository.clone())
        .bind(manifest.digest.0.to_vec())
        .bind(manifest.media_type.clone())
        .bind(manifest.artifact_type.clone())
        .bind(manifest.subject.map(|s| s.0.to_vec()))
        .bind(i64_from(manifest.size)?)
        .bind(manifest.annotations.clone())
        .bind(i64::from(manifest.visible))
        .bind(manifest.created_at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// [`Self::insert_manifest_in`] for many manifests, in few statements.
    async fn insert_manifests_in(
        tx: &mut Transaction<'_, Any>,
        manifests: &[OciManifestRow],
    ) -> StoreResult<()> {
        for chunk in write_chunks(manifests) {
            let sql = format!(
                "INSERT INTO oci_manifests ({MANIFEST_COLUMNS}) VALUES {} \
                 ON CONFLICT (repository, digest) DO NOTHING",
                placeholders(1, chunk.len(), 9)
            );
            let mut query = sqlx::query(&sql);
            for manifest in chunk {
                query = query
                    .bind(manifest.repository.clone())
                    .bind(manifest.digest.0.to_vec())
                    .bind(manifest.media_type.clone())
                    .bind(manifest.artifact_type.clone())
                    .bind(manifest.subject.map(|s| s.0.to_vec()))
                    .bind(i64_from(manifest.size)?)
                    .bind(manifest.annotations.clone())
                    .bind(i64::from(manifest.visible))
                    .bind(manifest.created_at_ms);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_manifest_bytes_in(
        tx: &mut Transaction<'_, Any>,
        manifests: &[(Sha256Digest, Vec<u8>)],
    ) -> StoreResult<()> {
        for chunk in write_chunks(manifests) {
            let sql = format!(
                "INSERT INTO manifest_bytes (digest, bytes) VALUES {} \
                 ON CONFLICT (digest) DO NOTHING",
                placeholders(1, chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (digest, bytes) in chunk {
                query = query.bind(digest.0.to_vec()).bind(bytes.clone());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// [`Self::insert_content_in`] for many contents, in few statements.
    async fn insert_contents_in(
        tx: &mut Transaction<'_, Any>,
        contents: &[(Sha256Digest, u64)],
    ) -> StoreResult<()> {
        for chunk in write_chunks(contents) {
            let sql = format!(
                "INSERT INTO contents (digest, size, published) VALUES {} \
                 ON CONFLICT (digest) DO NOTHING",
                (0..chunk.len())
                    .map(|row| format!("(${}, ${}, 0)", 2 * row + 1, 2 * row + 2))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let mut query = sqlx::query(&sql);
            for (digest, size) in chunk {
                query = query.bind(digest.0.to_vec()).bind(i64_from(*size)?);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub(super) async fn insert_content_in(
        tx: &mut Transaction<'_, Any>,
        digest_value: &Sha256Digest,
        size: u64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO contents (digest, size, published) VALUES ($1, $2, 0) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest_value.0.to_vec())
        .bind(i64_from(size)?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub(super) async fn insert_pending_in(
        conn: &mut sqlx::AnyConnection,
        record: &NewPending,
    ) -> StoreResult<PendingRecord> {
        let state = if record.missing.is_empty() {
            PendingState::Queued
        } else {
            PendingState::Sourcing
        };
        let row = sqlx::query(
            "INSERT INTO pending (record_id, log_id, package_name, content_bytes, key_id, signature, \
             state, missing, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
        )
        .bind(record.record_id.0.0.to_vec())
        .bind(record.log_id.0.0.to_vec())
        .bind(record.package_name.clone())
        .bind(record.content_bytes.clone())
        .bind(record.key_id.clone())
        .bind(record.signature.clone())
        .bind(state.to_db())
        .bind(missing_json(&record.missing))
        .bind(record.created_at_ms)
        .fetch_one(conn)
        .await?;
        Ok(PendingRecord {
            seq: row.try_get(0)?,
            record: record.clone(),
            state,
            reason: None,
        })
    }
}

fn json_list(text: &str, what: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn token_from_row(row: &AnyRow) -> StoreResult<TokenRow> {
    let kind: i64 = row.try_get("kind")?;
    Ok(TokenRow {
        id: row.try_get("id")?,
        secret_hash: digest(&row.try_get::<Vec<u8>, _>("secret_hash")?, "token hash")?,
        identity: row.try_get("identity")?,
        namespaces: json_list(&row.try_get::<String, _>("namespaces")?, "token namespaces")?,
        actions: json_list(&row.try_get::<String, _>("actions")?, "token actions")?,
        description: row.try_get("description")?,
        kind: TokenKind::from_db(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("bad token kind {kind}")))?,
        created_at_ms: row.try_get("created_at")?,
        expires_at_ms: row.try_get("expires_at")?,
        revoked_at_ms: row.try_get("revoked_at")?,
        parent: row.try_get("parent")?,
        claims: serde_json::from_str(&row.try_get::<String, _>("claims")?)
            .map_err(|e| StoreError::Corrupt(format!("token claims: {e}")))?,
    })
}

const TOKEN_COLUMNS: &str = "id, secret_hash, identity, namespaces, actions, description, kind, created_at, expires_at, revoked_at, parent, claims";

const MANIFEST_COLUMNS: &str = "repository, digest, media_type, artifact_type, subject, size, annotations, visible, created_at";

fn manifest_from_row(row: &AnyRow) -> StoreResult<OciManifestRow> {
    let subject: Option<Vec<u8>> = row.try_get("subject")?;
    let visible: i64 = row.try_get("visible")?;
    Ok(OciManifestRow {
        repository: row.try_get("repository")?,
        digest: digest(&row.try_get::<Vec<u8>, _>("digest")?, "manifest")?,
        media_type: row.try_get("media_type")?,
        artifact_type: row.try_get("artifact_type")?,
        subject: subject.map(|s| digest(&s, "subject")).transpose()?,
        size: u64_from(row.try_get("size")?, "manifest size")?,
        annotations: row.try_get("annotations")?,
        visible: visible != 0,
        created_at_ms: row.try_get("created_at")?,
    })
}

fn checkpoint_from_row(row: &AnyRow) -> StoreResult<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        checkpoint: TimestampedCheckpoint {
            checkpoint: Checkpoint {
                log_length: u64_from(row.try_get("log_length")?, "log length")?,
                log_root: digest(&row.try_get::<Vec<u8>, _>("log_root")?, "log root")?,
                map_root: digest(&row.try_get::<Vec<u8>, _>("map_root")?, "map root")?,
            },
            timestamp: u64_from(row.try_get("timestamp")?, "timestamp")?,
        },
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
        note: row.try_get("note")?,
    })
}

fn cosignature_from_row(row: &AnyRow) -> StoreResult<StoredCosignature> {
    let key_id: i64 = row.try_get("key_id")?;
    Ok(StoredCosignature {
        log_length: u64_from(row.try_get("log_length")?, "log length")?,
        witness: row.try_get("witness")?,
        key_id: u32::try_from(key_id)
            .map_err(|_| StoreError::Corrupt(format!("bad witness key id {key_id}")))?,
        timestamp: u64_from(row.try_get("timestamp")?, "timestamp")?,
        line: row.try_get("line")?,
    })
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

fn parse_missing(text: &str) -> StoreResult<Vec<Sha256Digest>> {
    let missing: Vec<String> = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("pending missing list: {e}")))?;
    missing
        .iter()
        .map(|d| Sha256Digest::from_str(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(format!("pending missing digest: {e}")))
}

fn pending_from_row(row: &AnyRow) -> StoreResult<PendingRecord> {
    let missing = parse_missing(&row.try_get::<String, _>("missing")?)?;
    let state: i64 = row.try_get("state")?;
    Ok(PendingRecord {
        seq: row.try_get("seq")?,
        record: NewPending {
            record_id: RecordId(digest(
                &row.try_get::<Vec<u8>, _>("record_id")?,
                "record id",
            )?),
            log_id: LogId(digest(&row.try_get::<Vec<u8>, _>("log_id")?, "log id")?),
            package_name: row.try_get("package_name")?,
            content_bytes: row.try_get("content_bytes")?,
            key_id: row.try_get("key_id")?,
            signature: row.try_get("signature")?,
            missing,
            created_at_ms: row.try_get("created_at")?,
        },
        state: PendingState::from_db(state)
            .ok_or_else(|| StoreError::Corrupt(format!("pending state {state}")))?,
        reason: row.try_get("reason")?,
    })
}

fn log_from_row(row: &AnyRow) -> StoreResult<LogRow> {
    let kind: i64 = row.try_get("kind")?;
    Ok(LogRow {
        log_id: LogId(digest(&row.try_get::<Vec<u8>, _>("log_id")?, "log id")?),
        kind: LogKind::from_db(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("log kind {kind}")))?,
        name: row.try_get("name")?,
        state: row.try_get("state")?,
        head_index: u64_from(row.try_get("head_index")?, "head index")?,
        head_record: RecordId(digest(
            &row.try_get::<Vec<u8>, _>("head_record")?,
            "head record",
        )?),
        record_count: u64_from(row.try_get("record_count")?, "record count")?,
    })
}

fn missing_json(missing: &[Sha256Digest]) -> String {
    serde_json::Value::Array(
        missing
            .iter()
            .map(|d| serde_json::Value::String(d.to_string()))
            .collect(),
    )
    .to_string()
}

const RECORD_COLUMNS: &str = "registry_index, record_id, log_id, content_bytes, key_id, signature";
const PENDING_COLUMNS: &str = "seq, record_id, log_id, package_name, content_bytes, key_id, signature, state, missing, reason, created_at";
const CHECKPOINT_COLUMNS: &str =
    "log_length, log_root, map_root, timestamp, key_id, signature, note";

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
        let t = std::time::Instant::now();
        let mut marks = Vec::new();
        let mut tx = self.write.begin().await?;
        // The fence first: it locks the lease row, so a takeover either
        // waits for this commit or makes it fail.
        if let Some(fence) = &batch.fence {
            lease::check_fence(&mut tx, fence).await?;
        }
        // Then the commit gate, exclusively: pending inserts (of any node)
        // wait for this commit, or this commit for them (and then sees
        // their rows in the next check).
        decided::take_gate(&mut tx, &self.backend, true).await?;
        decided::check_built_records(&mut tx, batch).await?;
        Self::check_tree_size(&mut tx, batch.old_size).await?;
        marks.push(("check", t.elapsed()));
        Self::insert_manifests_in(&mut tx, &batch.oci_manifests).await?;
        Self::insert_manifest_bytes_in(&mut tx, &batch.manifest_bytes).await?;
        Self::insert_contents_in(&mut tx, &batch.contents).await?;
        Self::insert_records(&mut tx, &batch.records).await?;
        marks.push(("records", t.elapsed()));
        self.check_fault("records")?;
        Self::upsert_logs(&mut tx, &batch.logs).await?;
        marks.push(("logs", t.elapsed()));
        Self::insert_log_nodes(&mut tx, &batch.log_nodes).await?;
        marks.push(("log_nodes", t.elapsed()));
        self.check_fault("log_nodes")?;
        Self::insert_map_nodes(&mut tx, &batch.map_nodes).await?;
        marks.push(("map_nodes", t.elapsed()));
        if let Some(head) = &batch.head {
            Self::set_tree_head(&mut tx, head).await?;
        }
        self.check_fault("tree_head")?;
        Self::delete_pending(&mut tx, &batch.sequenced).await?;
        marks.push(("pending", t.elapsed()));
        Self::reject_pending(&mut tx, &batch.rejected).await?;
        Self::publish_contents(&mut tx, &batch.published_contents).await?;
        oci::unpublish(&mut tx, &batch.oci_untagged, &batch.oci_deleted).await?;
        Self::publish_oci(&mut tx, &batch.oci_visible, &batch.oci_tags).await?;
        oci::link_released(&mut tx, &batch.blob_links).await?;
        search::write_in(&mut tx, &batch.search).await?;
        if let Some(checkpoint) = &batch.checkpoint {
            if batch.head.as_ref().map(|h| h.size)
                != Some(checkpoint.checkpoint.checkpoint.log_length)
            {
                return Err(StoreError::Corrupt(
                    "a batch's checkpoint must cover exactly the batch's tree".into(),
                ));
            }
            self.check_fault("store_checkpoint")?;
            Self::store_checkpoint_in(&mut tx, checkpoint).await?;
        }
        self.check_fault("before_commit")?;
        tx.commit().await?;
        marks.push(("commit", t.elapsed()));
        tracing::debug!(?marks, "commit_batch");
        Ok(())
    }

    async fn store_checkpoint(&self, stored: &StoredCheckpoint) -> StoreResult<()> {
        self.check_fault("store_checkpoint")?;
        let mut tx = self.write.begin().await?;
        Self::store_checkpoint_in(&mut tx, stored).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>> {
        sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY log_length DESC LIMIT 1"
        ))
        .fetch_optional(&self.read)
        .await?
        .map(|row| checkpoint_from_row(&row))
        .transpose()
    }

    async fn checkpoint(&self, log_length: u64) -> StoreResult<Option<StoredCheckpoint>> {
        sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE log_length = $1"
        ))
        .bind(i64_from(log_length)?)
        .fetch_optional(&self.read)
        .await?
        .map(|row| checkpoint_from_row(&row))
        .transpose()
    }

    async fn checkpoints(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredCheckpoint>> {
        let after = after.map(i64_from).transpose()?.unwrap_or(-1);
        sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE log_length > $1 ORDER BY log_length LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(checkpoint_from_row)
        .collect()
    }

    async fn add_cosignatures(&self, cosignatures: &[StoredCosignature]) -> StoreResult<()> {
        for chunk in write_chunks(cosignatures) {
            let sql = format!(
                "INSERT INTO cosignatures (log_length, witness, key_id, timestamp, line) VALUES {} \
                 ON CONFLICT (log_length, witness, key_id) DO NOTHING",
                placeholders(1, chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for c in chunk {
                query = query
                    .bind(i64_from(c.log_length)?)
                    .bind(c.witness.clone())
                    .bind(i64::from(c.key_id))
                    .bind(i64_from(c.timestamp)?)
                    .bind(c.line.clone());
            }
            query.execute(&self.write).await?;
        }
        Ok(())
    }

    async fn cosignatures(&self, log_length: u64) -> StoreResult<Vec<StoredCosignature>> {
        sqlx::query(
            "SELECT log_length, witness, key_id, timestamp, line FROM cosignatures \
             WHERE log_length = $1 ORDER BY witness, key_id",
        )
        .bind(i64_from(log_length)?)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(cosignature_from_row)
        .collect()
    }

    async fn cosigned_lengths(&self, limit: u32) -> StoreResult<Vec<u64>> {
        sqlx::query(
            "SELECT DISTINCT log_length FROM cosignatures ORDER BY log_length DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| u64_from(row.try_get(0)?, "log length"))
        .collect()
    }

    async fn log(&self, log_id: &LogId) -> StoreResult<Option<LogRow>> {
        sqlx::query(
            "SELECT log_id, kind, name, state, head_index, head_record, record_count FROM logs WHERE log_id = $1",
        )
        .bind(log_id.0.0.to_vec())
        .fetch_optional(&self.read)
        .await?
        .map(|row| log_from_row(&row))
        .transpose()
    }

    async fn logs(&self, log_ids: &[LogId]) -> StoreResult<Vec<LogRow>> {
        let mut out = Vec::with_capacity(log_ids.len());
        for chunk in read_chunks(log_ids) {
            let sql = format!(
                "SELECT log_id, kind, name, state, head_index, head_record, record_count FROM logs \
                 WHERE log_id IN ({})",
                list(1, chunk.len())
            );
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

    async fn insert_pending(&self, record: &NewPending) -> StoreResult<PendingRecord> {
        let inserted = self
            .insert_pending_decided(std::slice::from_ref(record), &[])
            .await?;
        inserted
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("an insert returned no row".into()))
    }

    async fn insert_pending_many(&self, records: &[NewPending]) -> StoreResult<Vec<PendingRecord>> {
        self.insert_pending_decided(records, &[]).await
    }

    async fn record_status(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
    ) -> StoreResult<Option<RecordStatus>> {
        // One statement, so one snapshot: a record moving from pending to
        // sequenced is seen in at least one of the two. A sequenced row wins
        // over a pending one (a stale duplicate submission, later rejected).
        let row = sqlx::query(
            "SELECT state, missing, reason, -1 AS registry_index FROM pending \
             WHERE log_id = $1 AND record_id = $2 \
             UNION ALL SELECT -1, '[]', NULL, registry_index FROM records \
             WHERE log_id = $3 AND record_id = $4 \
             ORDER BY registry_index DESC LIMIT 1",
        )
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let index: i64 = row.try_get("registry_index")?;
        if index >= 0 {
            return Ok(Some(RecordStatus::Sequenced {
                registry_index: u64_from(index, "registry index")?,
            }));
        }
        let state: i64 = row.try_get("state")?;
        Ok(Some(RecordStatus::Pending {
            state: PendingState::from_db(state)
                .ok_or_else(|| StoreError::Corrupt(format!("pending state {state}")))?,
            missing: parse_missing(&row.try_get::<String, _>("missing")?)?,
            reason: row.try_get("reason")?,
        }))
    }

    async fn pending(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
    ) -> StoreResult<Option<PendingRecord>> {
        sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending WHERE log_id = $1 AND record_id = $2"
        ))
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .fetch_optional(&self.read)
        .await?
        .map(|row| pending_from_row(&row))
        .transpose()
    }

    async fn live_pending_for_log(&self, log_id: &LogId) -> StoreResult<Option<PendingRecord>> {
        sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending WHERE log_id = $1 AND state < 2"
        ))
        .bind(log_id.0.0.to_vec())
        .fetch_optional(&self.read)
        .await?
        .map(|row| pending_from_row(&row))
        .transpose()
    }

    async fn queued(&self, limit: u32) -> StoreResult<Vec<PendingRecord>> {
        sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending WHERE state = 1 ORDER BY seq LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(pending_from_row)
        .collect()
    }

    async fn content_stored(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
        digest_value: &Sha256Digest,
        size: u64,
    ) -> StoreResult<Option<PendingRecord>> {
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO contents (digest, size, published) VALUES ($1, $2, 0) ON CONFLICT (digest) DO NOTHING")
            .bind(digest_value.0.to_vec())
            .bind(i64_from(size)?)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending WHERE log_id = $1 AND record_id = $2"
        ))
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let mut pending = pending_from_row(&row)?;
        if pending.state == PendingState::Sourcing {
            pending.record.missing.retain(|d| d != digest_value);
            if pending.record.missing.is_empty() {
                pending.state = PendingState::Queued;
            }
            sqlx::query(
                "UPDATE pending SET missing = $1, state = $2 WHERE log_id = $3 AND record_id = $4",
            )
            .bind(missing_json(&pending.record.missing))
            .bind(pending.state.to_db())
            .bind(log_id.0.0.to_vec())
            .bind(record_id.0.0.to_vec())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if pending.state == PendingState::Queued {
            self.pending_changed();
        }
        Ok(Some(pending))
    }

    async fn reject_sourcing(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
        reason: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE pending SET state = 2, reason = $1 WHERE log_id = $2 AND record_id = $3 AND state = 0",
        )
        .bind(reason.to_owned())
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_pending(
        &self,
        before_ms: i64,
        reason: &str,
        forget_before_ms: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.write.begin().await?;
        let expired = sqlx::query(
            "UPDATE pending SET state = 2, reason = $1 WHERE state = 0 AND created_at < $2",
        )
        .bind(reason.to_owned())
        .bind(before_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM pending WHERE state = 2 AND created_at < $1")
            .bind(forget_before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(expired)
    }

    async fn content(&self, digest_value: &Sha256Digest) -> StoreResult<Option<ContentRow>> {
        sqlx::query("SELECT size, published FROM contents WHERE digest = $1")
            .bind(digest_value.0.to_vec())
            .fetch_optional(&self.read)
            .await?
            .map(|row| {
                Ok(ContentRow {
                    digest: *digest_value,
                    size: u64_from(row.try_get("size")?, "content size")?,
                    published: row.try_get::<i64, _>("published")? != 0,
                })
            })
            .transpose()
    }

    async fn insert_content(&self, digest_value: &Sha256Digest, size: u64) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        Self::insert_content_in(&mut tx, digest_value, size).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn meta(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key.to_owned())
            .fetch_optional(&self.read)
            .await?
            .map(|row| Ok(row.try_get(0)?))
            .transpose()
    }

    async fn set_meta_once(&self, key: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key.to_owned())
            .bind(value.to_owned())
            .execute(&self.write)
            .await?;
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key.to_owned())
            .fetch_one(&self.write)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key.to_owned())
        .bind(value.to_owned())
        .execute(&self.write)
        .await?;
        Ok(())
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

    async fn insert_token(&self, token: &TokenRow) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(token.id.clone())
        .bind(token.secret_hash.0.to_vec())
        .bind(token.identity.clone())
        .bind(serde_json::to_string(&token.namespaces).unwrap_or_default())
        .bind(serde_json::to_string(&token.actions).unwrap_or_default())
        .bind(token.description.clone())
        .bind(token.kind.to_db())
        .bind(token.created_at_ms)
        .bind(token.expires_at_ms)
        .bind(token.revoked_at_ms)
        .bind(token.parent.clone())
        .bind(serde_json::to_string(&token.claims).unwrap_or_else(|_| "{}".into()))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn token(&self, id: &str) -> StoreResult<Option<TokenRow>> {
        sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id.to_owned())
            .fetch_optional(&self.read)
            .await?
            .map(|row| token_from_row(&row))
            .transpose()
    }

    async fn tokens(&self, identity: Option<&str>) -> StoreResult<Vec<TokenRow>> {
        let rows = match identity {
            Some(identity) => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE identity = $1 AND kind <> 1 ORDER BY created_at, id"
                ))
                .bind(identity.to_owned())
                .fetch_all(&self.read)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind <> 1 ORDER BY created_at, id"
                ))
                .fetch_all(&self.read)
                .await?
            }
        };
        rows.iter().map(token_from_row).collect()
    }

    async fn tokens_page(
        &self,
        identity: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<TokenRow>> {
        // Keyset paging on (created_at, id): the page starts after the
        // named token's position.
        let (created, id) = match after {
            Some(after) => {
                let row = sqlx::query("SELECT created_at FROM tokens WHERE id = $1")
                    .bind(after.to_owned())
                    .fetch_optional(&self.read)
                    .await?;
                match row {
                    Some(row) => (row.try_get::<i64, _>(0)?, after.to_owned()),
                    None => return Ok(Vec::new()),
                }
            }
            None => (i64::MIN, String::new()),
        };
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind <> 1 \
             AND ($1 = '' OR identity = $1) \
             AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
             ORDER BY created_at, id LIMIT $4"
        ))
        .bind(identity.unwrap_or("").to_owned())
        .bind(created)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn revoke_token(&self, id: &str, at_ms: i64) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at_ms)
                .bind(id.to_owned())
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_identity_tokens(&self, identity: &str, at_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE identity = $2 AND revoked_at IS NULL",
        )
        .bind(at_ms)
        .bind(identity.to_owned())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn delete_expired_tokens(&self, before_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM tokens WHERE kind <> 0 AND expires_at IS NOT NULL AND expires_at < $1",
        )
        .bind(before_ms)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn append_audit(
        &self,
        at_ms: i64,
        actor: &str,
        action: &str,
        details: &str,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO admin_audit (at, actor, action, details) VALUES ($1, $2, $3, $4)")
            .bind(at_ms)
            .bind(actor.to_owned())
            .bind(action.to_owned())
            .bind(details.to_owned())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn audit(&self, after: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        sqlx::query(
            "SELECT seq, at, actor, action, details FROM admin_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditEntry {
                seq: row.try_get("seq")?,
                at_ms: row.try_get("at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                details: row.try_get("details")?,
            })
        })
        .collect()
    }

    async fn link_blob(
        &self,
        repository: &str,
        digest_value: &Sha256Digest,
        size: u64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO oci_blobs (repository, digest, size) VALUES ($1, $2, $3) \
             ON CONFLICT (repository, digest) DO NOTHING",
        )
        .bind(repository.to_owned())
        .bind(digest_value.0.to_vec())
        .bind(i64_from(size)?)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn repository_blob(
        &self,
        repository: &str,
        digest_value: &Sha256Digest,
    ) -> StoreResult<Option<u64>> {
        sqlx::query("SELECT size FROM oci_blobs WHERE repository = $1 AND digest = $2")
            .bind(repository.to_owned())
            .bind(digest_value.0.to_vec())
            .fetch_optional(&self.read)
            .await?
            .map(|row| u64_from(row.try_get(0)?, "blob size"))
            .transpose()
    }

    async fn insert_manifest(&self, manifest: &OciManifestRow) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        Self::insert_manifest_in(&mut tx, manifest).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn manifest(
        &self,
        repository: &str,
        digest_value: &Sha256Digest,
    ) -> StoreResult<Option<OciManifestRow>> {
        sqlx::query(&format!(
            "SELECT {MANIFEST_COLUMNS} FROM oci_manifests WHERE repository = $1 AND digest = $2"
        ))
        .bind(repository.to_owned())
        .bind(digest_value.0.to_vec())
        .fetch_optional(&self.read)
        .await?
        .map(|row| manifest_from_row(&row))
        .transpose()
    }

    async fn referrers(
        &self,
        repository: &str,
        subject: &Sha256Digest,
    ) -> StoreResult<Vec<OciManifestRow>> {
        sqlx::query(&format!(
            "SELECT {MANIFEST_COLUMNS} FROM oci_manifests WHERE repository = $1 AND subject = $2 \
             AND visible = 1 ORDER BY created_at, digest"
        ))
        .bind(repository.to_owned())
        .bind(subject.0.to_vec())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(manifest_from_row)
        .collect()
    }

    async fn tag(&self, repository: &str, tag: &str) -> StoreResult<Option<Sha256Digest>> {
        sqlx::query("SELECT digest FROM oci_tags WHERE repository = $1 AND tag = $2")
            .bind(repository.to_owned())
            .bind(tag.to_owned())
            .fetch_optional(&self.read)
            .await?
            .map(|row| digest(&row.try_get::<Vec<u8>, _>(0)?, "tag"))
            .transpose()
    }

    async fn tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, Sha256Digest)>> {
        sqlx::query(
            "SELECT tag, digest FROM oci_tags WHERE repository = $1 AND tag > $2 ORDER BY tag LIMIT $3",
        )
        .bind(repository.to_owned())
        .bind(after.unwrap_or("").to_owned())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                digest(&row.try_get::<Vec<u8>, _>(1)?, "tag")?,
            ))
        })
        .collect()
    }
}
