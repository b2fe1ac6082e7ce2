//! [`UploadStore`]: OCI upload sessions — who opened them, for which
//! repository, and how many bytes they hold (the bytes themselves live in
//! the blob store's upload area). The per-caller limits on open sessions and
//! their bytes are decided above storage, from [`UploadStore::upload_usage`].

use async_trait::async_trait;

use crate::StoreResult;

/// An open upload session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSession {
    /// The repository it uploads to (`namespace/name`).
    pub repository: String,
    /// The identity that opened it.
    pub identity: String,
    /// The bytes it held after its last recorded chunk.
    pub size: u64,
}

/// What one identity's open upload sessions hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadUsage {
    /// Open sessions.
    pub sessions: u64,
    /// Their recorded bytes, summed.
    pub bytes: u64,
}

/// OCI upload sessions.
///
/// # Contract
///
/// Durability, atomicity and errors as for [`crate::Store`]: every write is
/// durable when it returns. Ids are unique (a fresh random id per session).
#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Records a new, empty session `id` of `repository`, opened by
    /// `identity` at `at_ms`. Inserting an existing id is an error.
    async fn insert_upload(
        &self,
        id: &str,
        repository: &str,
        identity: &str,
        at_ms: i64,
    ) -> StoreResult<()>;

    /// Session `id`, if it exists.
    async fn upload(&self, id: &str) -> StoreResult<Option<UploadSession>>;

    /// Records that session `id` holds `size` bytes as of `at_ms`. The
    /// recorded size never shrinks (updates of concurrent chunks may arrive
    /// out of order; a session only grows). A missing session is ignored.
    async fn set_upload_size(&self, id: &str, size: u64, at_ms: i64) -> StoreResult<()>;

    /// Forgets session `id` (idempotent).
    async fn delete_upload(&self, id: &str) -> StoreResult<()>;

    /// Sessions not touched (opened or grown) since `before_ms`
    /// (abandoned), oldest first, at most `limit`.
    async fn stale_uploads(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>>;

    /// The open sessions of `identity` and their recorded bytes.
    async fn upload_usage(&self, identity: &str) -> StoreResult<UploadUsage>;
}
