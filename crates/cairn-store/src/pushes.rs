//! [`PushStore`]: what OCI pushes need of the store besides the
//! sequencer's batch. Their records are built by the sequencer and
//! committed with its batch ([`crate::Batch::oci_manifests`],
//! [`crate::Batch::contents`]), never stored as pending records; they must
//! not be built on a log that has a pending record of another writer.

use async_trait::async_trait;
use cairn_protocol::LogId;

use crate::StoreResult;

/// Pending records, as OCI pushes see them.
///
/// # Contract
///
/// * [`PushStore::live_pending_logs`] returns exactly those of the given
///   logs that have a live (sourcing or queued) pending record at the time
///   of the call, each once, in no particular order.
/// * [`PushStore::pending_generation`] changes (increases) after every
///   committed write through this store value that makes a pending record
///   live or queued (an insert, or a sourcing record whose content
///   arrived). So a caller that read generation `g`, then found no live
///   pending record on some logs, knows that no such write happened through
///   this value since while it still reads `g`. Writes by other store
///   values sharing the database are counted once their notifications
///   arrive, while the store's [`crate::ChangeFeed`] is live (and it grows
///   whenever the feed listens again); otherwise they are not: callers
///   that rely on the generation look again now and then while the feed is
///   not live.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Which of `log_ids` have a live pending record now.
    async fn live_pending_logs(&self, log_ids: &[LogId]) -> StoreResult<Vec<LogId>>;

    /// The generation of this store value's pending records (see the
    /// contract).
    fn pending_generation(&self) -> u64;
}
