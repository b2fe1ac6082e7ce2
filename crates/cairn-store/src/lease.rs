//! [`LeaseStore`]: who may run the sequencer, and the fence that makes a
//! deposed one harmless.
//!
//! Several nodes may serve one PostgreSQL database; exactly one runs the
//! sequencer. It holds the **sequencer lease**, one row with an `epoch`, a
//! `holder` and an expiry, and renews it well before it expires. Another
//! node takes the lease only once it has expired, and every takeover
//! increments the epoch. The lease alone does not make a second writer
//! impossible — a leader can be paused or cut off past its expiry without
//! knowing — so every write of the sequencer carries a [`Fence`] (the epoch
//! and holder it was elected with), and the store checks it **in the
//! writing transaction**: a batch ([`crate::Batch::fence`]) or a checkpoint
//! ([`LeaseStore::store_checkpoint_fenced`]) of a deposed leader is refused
//! with [`crate::StoreError::Fenced`] and writes nothing.
//!
//! This module is not an election protocol: it holds no timer and decides
//! nothing; the service renews and steps down (`cairn_service::leader`).

use std::time::Duration;

use async_trait::async_trait;

use crate::{StoreResult, StoredCheckpoint};

/// The epoch and holder a leader was elected with; the proof it must show
/// with every write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// Incremented by every takeover; never reused.
    pub epoch: u64,
    /// The node that took the lease (unique per process).
    pub holder: String,
}

/// The lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// The epoch of the latest takeover (0: never taken).
    pub epoch: u64,
    /// Who took it (empty when never taken or released).
    pub holder: String,
    /// How long until it expires by the database's clock; `None` if it has
    /// expired (or was released), so that anyone may take it.
    pub remaining: Option<Duration>,
    /// The URL the holder is reached at by the other nodes (recorded when
    /// it took the lease; empty when unknown).
    pub address: String,
}

/// The sequencer lease.
///
/// # Contract
///
/// * **One clock.** Expiry is judged by the database's clock, never the
///   caller's, so nodes' clocks need not agree.
/// * [`LeaseStore::try_acquire_lease`] takes the lease only if it has
///   expired or was released, atomically with incrementing the epoch; of
///   any number of concurrent callers at most one gets `Some`. It never
///   takes a live lease, not even one held by the same holder name.
/// * [`LeaseStore::renew_lease`] extends the lease only while the stored
///   epoch and holder equal the fence's; otherwise it fails with
///   [`crate::StoreError::Fenced`] and changes nothing. A lease that has
///   expired but was not taken by anyone may still be renewed: no other
///   node has written.
/// * **Fencing.** A write carrying a fence (a batch with
///   [`crate::Batch::fence`], [`LeaseStore::store_checkpoint_fenced`])
///   MUST check, in its own transaction and before it is durable, that the
///   stored epoch and holder equal the fence's, holding the lease row
///   locked until it commits; if not it fails with
///   [`crate::StoreError::Fenced`] and stores nothing. A takeover therefore
///   happens either after such a write is committed (and sees it) or makes
///   it fail.
/// * [`LeaseStore::release_lease`] ends the lease at once if the fence
///   still holds it, so another node may take it without waiting; a fence
///   that no longer holds it changes nothing (and is not an error).
/// * Writes without a fence are not checked (a single-node registry, whose
///   writer is guarded by the exclusive writer lock instead).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the lease for `holder` for `duration` if it is free, recording
    /// no address.
    async fn try_acquire_lease(
        &self,
        holder: &str,
        duration: Duration,
    ) -> StoreResult<Option<Fence>> {
        self.try_acquire_lease_at(holder, "", duration).await
    }

    /// Takes the lease for `holder` for `duration` if it is free, recording
    /// `address` (where the other nodes reach the holder) in the same
    /// statement.
    async fn try_acquire_lease_at(
        &self,
        holder: &str,
        address: &str,
        duration: Duration,
    ) -> StoreResult<Option<Fence>>;

    /// Extends the lease held with `fence` to `duration` from now.
    async fn renew_lease(&self, fence: &Fence, duration: Duration) -> StoreResult<()>;

    /// Gives the lease up, if `fence` still holds it.
    async fn release_lease(&self, fence: &Fence) -> StoreResult<()>;

    /// The lease now.
    async fn lease(&self) -> StoreResult<LeaseState>;

    /// [`crate::CheckpointStore::store_checkpoint`], fenced: stored only
    /// while `fence` holds the lease, in the same transaction.
    async fn store_checkpoint_fenced(
        &self,
        checkpoint: &StoredCheckpoint,
        fence: &Fence,
    ) -> StoreResult<()>;
}
