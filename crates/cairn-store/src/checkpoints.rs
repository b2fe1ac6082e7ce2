//! [`CheckpointStore`]: the signed checkpoints of the log and the witness
//! cosignatures collected for them.
//!
//! Only the sequencer writes here (a checkpoint usually comes with its
//! batch, [`crate::Batch::checkpoint`]; one stored on its own by a leader
//! goes through [`crate::LeaseStore::store_checkpoint_fenced`]); every node
//! reads the latest checkpoint to serve it and to notice that the log grew.
//! What is *not* here: signing, and checking signatures or cosignatures —
//! both happen above storage, before anything is stored.

use async_trait::async_trait;

use crate::{StoreResult, StoredCheckpoint, StoredCosignature};

/// Checkpoints and their cosignatures.
///
/// # Contract
///
/// * **Durability and errors** as for [`crate::Store`]: a write that
///   returns `Ok` is durable.
/// * **One root per length.** A checkpoint is stored at most once per log
///   length and never modified or deleted. Storing one again is a no-op;
///   storing one of a stored length with **different roots** fails with
///   [`crate::StoreError::Corrupt`] and changes nothing, whichever way it
///   arrives (here, in a batch, or fenced).
/// * **Cosignatures** are never modified or deleted either; storing one is
///   idempotent per `(log length, witness, key id)` and the first stored
///   wins. [`CheckpointStore::add_cosignatures`] is not all-or-none: a call
///   that fails may have stored some of its cosignatures, and retrying the
///   whole call completes it.
/// * **Reads** see only committed rows.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Stores a signed checkpoint, in one transaction.
    ///
    /// Idempotent for an identical checkpoint. If a checkpoint of the same
    /// length with **different roots** exists, fails with
    /// [`crate::StoreError::Corrupt`] and changes nothing: one length never
    /// has two roots.
    async fn store_checkpoint(&self, checkpoint: &StoredCheckpoint) -> StoreResult<()>;

    /// The checkpoint with the greatest length.
    async fn latest_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>>;

    /// The checkpoint of exactly this length.
    async fn checkpoint(&self, log_length: u64) -> StoreResult<Option<StoredCheckpoint>>;

    /// Checkpoints with a length greater than `after`, in length order, at
    /// most `limit` (for fsck and audit).
    async fn checkpoints(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredCheckpoint>>;

    /// Stores witness cosignatures of the checkpoints of their
    /// `log_length`s. Idempotent: a cosignature already stored for the same
    /// length, witness and key id is kept and the new one ignored.
    async fn add_cosignatures(&self, cosignatures: &[StoredCosignature]) -> StoreResult<()>;

    /// The cosignatures of the checkpoint of `log_length`, by witness and
    /// key id.
    async fn cosignatures(&self, log_length: u64) -> StoreResult<Vec<StoredCosignature>>;

    /// The lengths of the most recent checkpoints that have cosignatures,
    /// newest first, at most `limit`.
    async fn cosigned_lengths(&self, limit: u32) -> StoreResult<Vec<u64>>;
}
