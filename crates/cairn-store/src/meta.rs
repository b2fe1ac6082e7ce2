//! [`MetaStore`]: registry facts — small named values fixed when a
//! registry is initialised (its origin, the keys it was created with, the
//! key that encrypts private content) or recorded once a one-off job is
//! done (a backfill), and a few that may change (where a signing key
//! lives).
//!
//! Storage does not know what any key means; the callers that pin a fact
//! compare the stored value with their own and refuse to start on a
//! mismatch.

use async_trait::async_trait;

use crate::StoreResult;

/// Registry facts by name.
///
/// # Contract
///
/// * **Durability and errors** as for [`crate::Store`]: a write that
///   returns `Ok` is durable. Each write is one statement.
/// * [`MetaStore::set_meta_once`] never replaces a value: of concurrent
///   callers (on any node), the first to commit wins and every caller gets
///   the value that won (or a later one, if [`MetaStore::set_meta`]
///   replaced it in between). Idempotent.
/// * [`MetaStore::set_meta`] replaces the value (last write wins). Facts
///   are never deleted.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// A registry fact, if set.
    async fn meta(&self, key: &str) -> StoreResult<Option<String>>;

    /// Sets a registry fact if it is not set yet; returns the stored value.
    async fn set_meta_once(&self, key: &str, value: &str) -> StoreResult<String>;

    /// Sets a registry fact, replacing any earlier value (for facts that may
    /// change, such as where a signing key lives).
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;
}
