//! cairn's storage.
//!
//! The contract is split by concern, one trait per part of a node's state,
//! each with its own written guarantees:
//!
//! * [`Store`]: the sequenced log — tree head, log and map nodes, log rows,
//!   records, and [`Store::commit_batch`], the sequencer's one write. It
//!   lists every other trait as a supertrait, so `Arc<dyn Store>` reaches
//!   everything; a component that needs one concern takes that trait.
//! * [`CheckpointStore`]: signed checkpoints and witness cosignatures.
//! * [`PendingStore`]: accepted records waiting for content or for the
//!   sequencer, and the content rows they name; [`DecidedStore`] inserts
//!   them only if the logs they were decided on have not moved.
//! * [`OciStore`], [`DigestAliases`], [`UploadStore`], [`PushStore`]: the
//!   OCI front door's tables, SHA-512 aliases, upload sessions, and what
//!   pushes need to know of pending records.
//! * [`SearchStore`]: the search index, a projection of the logs.
//! * [`IdentityStore`]: tokens and the admin audit log.
//! * [`MetaStore`]: registry facts pinned at initialisation.
//! * [`LeaseStore`]: the sequencer lease and fenced writes.
//! * [`ChangeFeed`]: other processes' writes, told as they commit.
//!
//! [`SqlStore`] implements them once for both SQLite (the embedded default)
//! and PostgreSQL, through sqlx's runtime-selected driver, with per-backend
//! migrations in `migrations/sqlite` and `migrations/postgres`.
//!
//! This crate holds **no policy**: it never validates records, checks
//! signatures or decides who may publish. It stores what it is given,
//! atomically, and answers reads.

mod aliases;
mod changes;
mod checkpoints;
mod decided;
mod error;
mod identity;
mod lease;
mod meta;
mod oci;
mod pending;
mod pushes;
mod search;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod types;
mod uploads;

pub use aliases::DigestAliases;
pub use changes::{ChangeCounts, ChangeFeed, Changes};
pub use checkpoints::CheckpointStore;
pub use decided::{DecidedStore, ExpectedHead};
pub use error::StoreError;
pub use identity::IdentityStore;
pub use lease::{Fence, LeaseState, LeaseStore};
pub use meta::MetaStore;
pub use oci::OciStore;
pub use pending::PendingStore;
pub use pushes::PushStore;
pub use search::{
    ContentFacts, Direction, IndexedRelease, InterfaceFilter, InterfaceName, PackageHit,
    PackageSummary, ReleaseHit, SearchFilter, SearchStore, SearchUpdate,
};
pub use sql::{Backend, SqlStore, WriterLock};
pub use types::*;
pub use uploads::{UploadSession, UploadStore, UploadUsage};

use async_trait::async_trait;
use cairn_log::Hash;
use cairn_log::map::MapNode;
use cairn_log::tree::NodeId;
use cairn_protocol::{LogId, RecordId};

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The sequenced log, and (through its supertraits) everything else cairn
/// persists.
///
/// # Contract (all implementations)
///
/// Durability, reads and errors as below hold for every trait of this
/// crate; each narrow trait's contract says what else it guarantees
/// (atomicity, idempotency, what is never removed).
///
/// * **Durability.** A write that returns `Ok` is durable: it survives a
///   crash or power loss of the process and the machine (SQLite runs with
///   `synchronous=FULL` in WAL mode; PostgreSQL commits synchronously).
/// * **Atomicity.** Each method of this trait is one transaction: it takes
///   effect completely or not at all. In particular [`Store::commit_batch`]
///   either stores every record, node, log state and the new tree head of a
///   batch, or nothing.
/// * **Append-only history.** Records, log nodes and map nodes are never
///   modified or deleted by any method (nor are checkpoints:
///   [`CheckpointStore`]).
/// * **Reads** see only committed data. Reads never block on the sequencer.
/// * **Errors.** [`StoreError::Unavailable`] is transient (retry later);
///   [`StoreError::Conflict`] means a uniqueness rule refused the write;
///   [`StoreError::Corrupt`] means stored data breaks an invariant (stop and
///   run `cairn fsck`).
#[async_trait]
pub trait Store:
    CheckpointStore
    + PendingStore
    + OciStore
    + DigestAliases
    + DecidedStore
    + PushStore
    + SearchStore
    + UploadStore
    + LeaseStore
    + ChangeFeed
    + IdentityStore
    + MetaStore
    + Send
    + Sync
    + std::fmt::Debug
{
    // ----- tree -----

    /// The sequenced tree, or `None` before the first batch.
    async fn tree_head(&self) -> StoreResult<Option<TreeHead>>;

    /// Log node hashes, one per requested node, in order. A node that was
    /// never stored is [`StoreError::Corrupt`].
    async fn log_nodes(&self, nodes: &[NodeId]) -> StoreResult<Vec<Hash>>;

    /// Log node hashes of one height in `[start, end)`, in index order (for
    /// tiles). Returns fewer than requested if the range is not complete.
    async fn log_node_range(&self, height: u8, start: u64, end: u64) -> StoreResult<Vec<Hash>>;

    /// Map nodes by hash. Missing nodes are absent from the result.
    async fn map_nodes(&self, hashes: &[Hash]) -> StoreResult<Vec<(Hash, MapNode)>>;

    /// Atomically stores a sequenced batch.
    ///
    /// Each row of [`Batch::logs`] replaces its log's head; its snapshot,
    /// when given, replaces the log's stored snapshot in the same
    /// transaction (so a snapshot never covers records that are not
    /// stored), and when `None` the stored snapshot is kept unchanged. A
    /// snapshot that covers no record or more than its row's records is
    /// [`StoreError::Corrupt`].
    ///
    /// MUST fail with [`StoreError::Conflict`] (and store nothing) unless the
    /// stored tree size equals `batch.old_size` — a second writer, or a
    /// replayed batch, can never extend the log twice. Deletes the sequenced
    /// and rejected records' pending rows in the same transaction (rejected
    /// ones are kept, marked rejected, for status queries). With
    /// [`Batch::fence`], MUST fail with [`StoreError::Fenced`] (and store
    /// nothing) unless the fence holds the sequencer lease ([`LeaseStore`]).
    /// MUST be ordered against pending inserts and fail with
    /// [`StoreError::Moved`] (and store nothing) when a record it did not
    /// take from the pending table meets a live pending record of its log
    /// ([`DecidedStore`]).
    async fn commit_batch(&self, batch: &Batch) -> StoreResult<()>;

    // ----- logs and records -----

    /// A log's row: its head and its latest state snapshot.
    ///
    /// The snapshot is the state as of the last batch that stored one, not
    /// necessarily the current state: the current state is the snapshot
    /// with the log's records after [`LogSnapshot::index`] (up to the head)
    /// replayed, which [`Store::log_records`] reads. Row and snapshot are
    /// read in one statement, so they are of the same committed batch.
    async fn log(&self, log_id: &LogId) -> StoreResult<Option<LogRow>>;

    /// The rows of these logs (unknown ones are absent), in one round trip,
    /// each with its latest snapshot as [`Store::log`] returns it.
    async fn logs(&self, log_ids: &[LogId]) -> StoreResult<Vec<LogRow>>;

    /// Records of one log with `after < registry_index < below`, in order,
    /// at most `limit`. With `after` a snapshot's index and `below` the
    /// head's index plus one, the records to replay on the snapshot.
    async fn log_records(
        &self,
        log_id: &LogId,
        after: Option<u64>,
        below: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredRecord>>;

    /// The record of `log_id` with this id, if sequenced. (Record ids are
    /// unique only within a log.)
    async fn record_by_id(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
    ) -> StoreResult<Option<StoredRecord>>;

    /// Records with registry indices in `[start, end)`, in order.
    async fn records_range(&self, start: u64, end: u64) -> StoreResult<Vec<StoredRecord>>;

    /// Records at these registry indices (missing ones are absent).
    async fn records_at(&self, indices: &[u64]) -> StoreResult<Vec<StoredRecord>>;

    /// Names of package logs (`None` for the operator log; unknown ids absent).
    async fn log_names(&self, log_ids: &[LogId]) -> StoreResult<Vec<(LogId, Option<String>)>>;
}
