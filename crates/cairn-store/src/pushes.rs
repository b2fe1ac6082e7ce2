//! [`PushStore`]: storing OCI pushes — each a manifest row (not yet
//! visible), the content its wasm layer releases, and its pending records —
//! many at once, so that pushes arriving together share one durable commit.

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;

use crate::{NewPending, OciManifestRow, PendingRecord, StoreResult};

/// One push to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPush {
    /// Its manifest, stored invisible (the sequencer makes it visible with
    /// its records).
    pub manifest: OciManifestRow,
    /// The content its wasm layer releases (digest, size), if any.
    pub content: Option<(Sha256Digest, u64)>,
    /// Its records, as in [`crate::Store::insert_pending_many`].
    pub records: Vec<NewPending>,
}

/// Storing OCI pushes.
///
/// # Contract
///
/// * [`PushStore::insert_pushes`] is **one durable transaction**: when it
///   returns `Ok`, every push whose own result is `Ok` is stored (and
///   survives a crash) and every push whose result is an error left nothing.
/// * Each push is **all or none**: its manifest row, content row and records
///   are stored together or not at all. A push that breaks a uniqueness rule
///   (another live pending record of one of its logs: [`crate::StoreError::Conflict`])
///   fails alone; the others are unaffected.
/// * Results are in the order of the pushes given.
/// * An `Err` of the whole call (the store is unavailable) means nothing of
///   any push was stored.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Stores `pushes` in one transaction; one result per push.
    async fn insert_pushes(
        &self,
        pushes: &[NewPush],
    ) -> StoreResult<Vec<StoreResult<Vec<PendingRecord>>>>;
}
