//! [`PendingStore`]: records accepted but not yet sequenced, and the
//! content they wait for.
//!
//! A record accepted by any node is stored here as *pending*: **sourcing**
//! while content it names is missing, **queued** once everything it names
//! is stored, **rejected** (with a reason, kept for status queries until it
//! is forgotten) if its content broke a publish rule or never arrived. The
//! sequencer takes queued records in arrival order and its batch removes
//! them ([`crate::Store::commit_batch`]). Content rows say which blobs are
//! stored and whether a sequenced record has published them; the bytes
//! live in the blob store.
//!
//! What is *not* here: deciding whether a record is valid (above storage,
//! before the insert) and the check that the logs it was decided on have
//! not moved ([`crate::DecidedStore`], which this trait's inserts share
//! their ordering with).

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;
use cairn_protocol::{LogId, RecordId};

use crate::{ContentRow, NewPending, PendingRecord, RecordStatus, StoreResult};

/// Pending records and stored content.
///
/// # Contract
///
/// * **Durability, atomicity and errors** as for [`crate::Store`]: each
///   method is one transaction (or one statement) and a write that returns
///   `Ok` is durable.
/// * **One live record per log.** A log has at most one live (sourcing or
///   queued) pending record; an insert that would add a second, or store a
///   record already pending in its log, fails with
///   [`crate::StoreError::Conflict`] and stores nothing.
/// * **Ordering.** Inserts are ordered against batch commits like
///   [`crate::DecidedStore::insert_pending_decided`]: a batch either sees
///   an inserted record or committed before the insert began.
/// * **States only move forward**: sourcing → queued, or sourcing →
///   rejected (here); a queued record leaves only through a batch, which
///   deletes its row (sequenced) or marks it rejected. Rejected rows are
///   deleted only by [`PendingStore::expire_pending`].
/// * **Content rows** are created unpublished and idempotently; only a
///   batch commit publishes them.
/// * A write that makes a record live (an insert) or queued (the last
///   missing content stored) advances
///   [`crate::PushStore::pending_generation`] once it has committed.
#[async_trait]
pub trait PendingStore: Send + Sync {
    /// Stores a newly accepted record.
    ///
    /// MUST fail with [`crate::StoreError::Conflict`] if the record is
    /// already pending in its log, or if its log already has a live
    /// (sourcing or queued) record. Ordered against batch commits like
    /// [`crate::DecidedStore::insert_pending_decided`] (which also checks
    /// the heads the record was decided on).
    async fn insert_pending(&self, record: &NewPending) -> StoreResult<PendingRecord>;

    /// Stores several newly accepted records of different logs in one
    /// transaction, in this order (the sequencer takes them in this order):
    /// all or none. Fails like [`PendingStore::insert_pending`] if any
    /// conflicts.
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
    /// the missing content of the sourcing record `record_id` of `log_id`;
    /// a record with nothing missing becomes queued. Returns the record
    /// afterwards. One transaction; idempotent.
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
    /// records created before `forget_before_ms`, in one transaction.
    /// Queued records never expire: they only wait for the sequencer.
    /// Returns how many expired.
    async fn expire_pending(
        &self,
        before_ms: i64,
        reason: &str,
        forget_before_ms: i64,
    ) -> StoreResult<u64>;

    /// Stored content by digest.
    async fn content(&self, digest: &Sha256Digest) -> StoreResult<Option<ContentRow>>;

    /// Records content as stored (not yet published). Idempotent.
    async fn insert_content(&self, digest: &Sha256Digest, size: u64) -> StoreResult<()>;
}
