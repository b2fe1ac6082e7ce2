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
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Which of `log_ids` have a live pending record now.
    async fn live_pending_logs(&self, log_ids: &[LogId]) -> StoreResult<Vec<LogId>>;
}
