//! cairn's storage.
//!
//! [`Store`] is the contract the sequencer and the API handlers rely on;
//! [`SqlStore`] implements it once for both SQLite (the embedded default) and
//! PostgreSQL, through sqlx's runtime-selected driver, with per-backend
//! migrations in `migrations/sqlite` and `migrations/postgres`.
//!
//! This crate holds **no policy**: it never validates records, checks
//! signatures or decides who may publish. It stores what it is given,
//! atomically, and answers reads.

mod aliases;
mod decided;
mod error;
mod lease;
mod oci;
mod pushes;
mod search;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod types;
mod uploads;

pub use aliases::DigestAliases;
pub use decided::{DecidedStore, ExpectedHead};
pub use error::StoreError;
pub use lease::{Fence, LeaseState, LeaseStore};
pub use oci::OciStore;
pub use pushes::PushStore;
pub use search::{
    ContentFacts, Direction, IndexedRelease, InterfaceFilter, InterfaceName, PackageHit,
    PackageSummary, ReleaseHit, SearchFilter, SearchStore, SearchUpdate,
};
pub use sql::{Backend, SqlStore, WriterLock};
pub use types::*;
pub use uploads::{UploadSession, UploadStore, UploadUsage};

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;
use cairn_log::Hash;
use cairn_log::map::MapNode;
use cairn_log::tree::NodeId;
use cairn_protocol::{LogId, RecordId};

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything cairn persists about its log.
///
/// # Contract (all implementations)
///
/// * **Durability.** A write that returns `Ok` is durable: it survives a
///   crash or power loss of the process and the machine (SQLite runs with
///   `synchronous=FULL` in WAL mode; PostgreSQL commits synchronously).
/// * **Atomicity.** Each method is one transaction: it takes effect
///   completely or not at all. In particular [`Store::commit_batch`] either
///   stores every record, node, log state and the new tree head of a batch,
///   or nothing.
/// * **Append-only history.** Records, log nodes, map nodes and checkpoints
///   are never modified or deleted by any method.
/// * **Reads** see only committed data. Reads never block on the sequencer.
/// * **Errors.** [`StoreError::Unavailable`] is transient (retry later);
///   [`StoreError::Conflict`] means a uniqueness rule refused the write;
///   [`StoreError::Corrupt`] means stored data breaks an invariant (stop and
///   run `cairn fsck`).
#[async_trait]
pub trait Store:
    OciStore
    + DigestAliases
    + DecidedStore
    + PushStore
    + SearchStore
    + UploadStore
    + LeaseStore
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

    // ----- checkpoints -----

    /// Stores a signed checkpoint.
    ///
    /// Idempotent for an identical checkpoint. If a checkpoint of the same
    /// length with **different roots** exists, fails with
    /// [`StoreError::Corrupt`] and changes nothing: one length never has two
    /// roots.
    async fn store_checkpoint(&self, checkpoint: &StoredCheckpoint) -> StoreResult<()>;

    /// The checkpoint with the greatest length.
    async fn latest_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>>;

    /// The checkpoint of exactly this length.
    async fn checkpoint(&self, log_length: u64) -> StoreResult<Option<StoredCheckpoint>>;

    /// All checkpoints, in length order (for fsck and audit).
    async fn checkpoints(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredCheckpoint>>;

    /// Stores witness cosignatures of the checkpoint of `log_length`.
    /// Idempotent: a cosignature already stored for the same length and
    /// witness key is kept and the new one ignored.
    async fn add_cosignatures(&self, cosignatures: &[StoredCosignature]) -> StoreResult<()>;

    /// The cosignatures of the checkpoint of `log_length`.
    async fn cosignatures(&self, log_length: u64) -> StoreResult<Vec<StoredCosignature>>;

    /// The lengths of the most recent checkpoints that have cosignatures,
    /// newest first, at most `limit`.
    async fn cosigned_lengths(&self, limit: u32) -> StoreResult<Vec<u64>>;

    // ----- logs and records -----

    /// A log's row.
    async fn log(&self, log_id: &LogId) -> StoreResult<Option<LogRow>>;

    /// The rows of these logs (unknown ones are absent), in one round trip.
    async fn logs(&self, log_ids: &[LogId]) -> StoreResult<Vec<LogRow>>;

    /// Records of one log with `after < registry_index < below`, in order,
    /// at most `limit`.
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

    // ----- pending records -----

    /// Stores a newly accepted record.
    ///
    /// MUST fail with [`StoreError::Conflict`] if the record is already
    /// pending in its log, or if its log already has a live (sourcing or
    /// queued) record. Ordered against batch commits like
    /// [`DecidedStore::insert_pending_decided`] (which also checks the heads
    /// the record was decided on).
    async fn insert_pending(&self, record: &NewPending) -> StoreResult<PendingRecord>;

    /// Stores several newly accepted records of different logs in one
    /// transaction, in this order (the sequencer takes them in this order):
    /// all or none. Fails like [`Store::insert_pending`] if any conflicts.
    async fn insert_pending_many(&self, records: &[NewPending]) -> StoreResult<Vec<PendingRecord>>;

    /// Where a record stands, in one consistent read: pending (sourcing,
    /// queued or rejected) or sequenced (with its registry index).
    async fn record_status(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
    ) -> StoreResult<Option<RecordStatus>>;

    /// A pending (or recently rejected) record of `log_id` by id.
    async fn pending(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
    ) -> StoreResult<Option<PendingRecord>>;

    /// The live pending record of a log, if any.
    async fn live_pending_for_log(&self, log_id: &LogId) -> StoreResult<Option<PendingRecord>>;

    /// Queued records in arrival order, at most `limit`.
    async fn queued(&self, limit: u32) -> StoreResult<Vec<PendingRecord>>;

    /// Records content of `size` bytes as stored, and removes `digest` from
    /// the missing content of the sourcing record `record_id` of `log_id`; a record with
    /// nothing missing becomes queued. Returns the record afterwards.
    /// Idempotent.
    async fn content_stored(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
        digest: &Sha256Digest,
        size: u64,
    ) -> StoreResult<Option<PendingRecord>>;

    /// Marks one record that is still waiting for content (sourcing) as
    /// rejected with `reason` (its content broke a publish rule). Returns
    /// whether it was sourcing.
    async fn reject_sourcing(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
        reason: &str,
    ) -> StoreResult<bool>;

    /// Marks records still waiting for content (sourcing) that were created
    /// before `before_ms` as rejected with `reason`, and deletes rejected
    /// records created before `forget_before_ms`. Queued records never
    /// expire: they only wait for the sequencer. Returns how many expired.
    async fn expire_pending(
        &self,
        before_ms: i64,
        reason: &str,
        forget_before_ms: i64,
    ) -> StoreResult<u64>;

    // ----- content -----

    /// Stored content by digest.
    async fn content(&self, digest: &Sha256Digest) -> StoreResult<Option<ContentRow>>;

    /// Records content as stored (not yet published). Idempotent.
    async fn insert_content(&self, digest: &Sha256Digest, size: u64) -> StoreResult<()>;

    // ----- meta -----

    /// A registry fact set at initialisation.
    async fn meta(&self, key: &str) -> StoreResult<Option<String>>;

    /// Sets a registry fact if it is not set yet; returns the stored value.
    async fn set_meta_once(&self, key: &str, value: &str) -> StoreResult<String>;

    /// Sets a registry fact, replacing any earlier value (for facts that may
    /// change, such as where a signing key lives).
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;

    /// Names of package logs (`None` for the operator log; unknown ids absent).
    async fn log_names(&self, log_ids: &[LogId]) -> StoreResult<Vec<(LogId, Option<String>)>>;

    // ----- tokens and the admin audit log -----

    /// Stores a new token. [`StoreError::Conflict`] if the id exists.
    async fn insert_token(&self, token: &TokenRow) -> StoreResult<()>;

    /// A token by id.
    async fn token(&self, id: &str) -> StoreResult<Option<TokenRow>>;

    /// Long-lived tokens (API and OIDC kinds), of one identity or of all.
    async fn tokens(&self, identity: Option<&str>) -> StoreResult<Vec<TokenRow>>;

    /// A page of [`Store::tokens`]: in creation order, after the token
    /// `after` (exclusive; an unknown id gives an empty page), at most
    /// `limit`.
    async fn tokens_page(
        &self,
        identity: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<TokenRow>>;

    /// Marks a token revoked at `at_ms`; returns whether it was live.
    async fn revoke_token(&self, id: &str, at_ms: i64) -> StoreResult<bool>;

    /// Revokes every live token of `identity`; returns how many.
    async fn revoke_identity_tokens(&self, identity: &str, at_ms: i64) -> StoreResult<u64>;

    /// Deletes session and OIDC tokens that expired before `before_ms`.
    async fn delete_expired_tokens(&self, before_ms: i64) -> StoreResult<u64>;

    /// Appends an administrative action to the audit log.
    async fn append_audit(
        &self,
        at_ms: i64,
        actor: &str,
        action: &str,
        details: &str,
    ) -> StoreResult<()>;

    /// Audit entries after `after` (a seq), at most `limit`, in order.
    async fn audit(&self, after: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>>;

    // ----- OCI -----

    /// Links a stored blob to a repository. Idempotent.
    async fn link_blob(
        &self,
        repository: &str,
        digest: &Sha256Digest,
        size: u64,
    ) -> StoreResult<()>;

    /// The size of a blob linked to `repository`.
    async fn repository_blob(
        &self,
        repository: &str,
        digest: &Sha256Digest,
    ) -> StoreResult<Option<u64>>;

    /// Stores a manifest (not visible until the sequencer marks it).
    /// Idempotent: an existing row is kept.
    async fn insert_manifest(&self, manifest: &OciManifestRow) -> StoreResult<()>;

    /// A manifest of `repository` by digest (visible or not).
    async fn manifest(
        &self,
        repository: &str,
        digest: &Sha256Digest,
    ) -> StoreResult<Option<OciManifestRow>>;

    /// The visible manifests of `repository` whose subject is `subject`.
    async fn referrers(
        &self,
        repository: &str,
        subject: &Sha256Digest,
    ) -> StoreResult<Vec<OciManifestRow>>;

    /// The manifest a tag names.
    async fn tag(&self, repository: &str, tag: &str) -> StoreResult<Option<Sha256Digest>>;

    /// Tags of `repository` in lexical order after `after`, at most `limit`.
    async fn tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, Sha256Digest)>>;
}
