//! [`IdentityStore`]: API, session and OIDC tokens, and the audit log of
//! administrative actions.
//!
//! Tokens are stored by the hash of their secret; the secret itself never
//! reaches storage. Which token may do what, and whether an expired or
//! revoked one is refused, is decided above storage from the row: this
//! trait only stores, revokes and forgets rows. Every node reads tokens on
//! every request (so a revocation at one node holds at every node at once)
//! and writes them (the OCI token endpoint issues session tokens wherever
//! it is asked).

use async_trait::async_trait;

use crate::{AuditEntry, StoreResult, TokenRow};

/// Tokens and the admin audit log.
///
/// # Contract
///
/// * **Durability and errors** as for [`crate::Store`]: a write that
///   returns `Ok` is durable. Each write is one statement, so it takes
///   effect completely or not at all.
/// * **Token ids are unique**: inserting an existing id fails with
///   [`crate::StoreError::Conflict`] and changes nothing.
/// * **Revocation is final and idempotent**: a revoked token keeps its
///   first revocation time; revoking it again changes nothing and reports
///   that it was not live.
/// * **Forgetting**: only short-lived tokens (session and OIDC kinds) are
///   ever deleted, by [`IdentityStore::delete_expired_tokens`]; API tokens
///   are kept, revoked or not, for the audit trail.
/// * **The audit log is append-only**: entries are never modified or
///   deleted. Their `seq` is allocated when the entry is written: on
///   PostgreSQL two entries appended at the same moment may become visible
///   in the other order than their `seq`s.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Stores a new token. [`crate::StoreError::Conflict`] if the id
    /// exists.
    async fn insert_token(&self, token: &TokenRow) -> StoreResult<()>;

    /// A token by id.
    async fn token(&self, id: &str) -> StoreResult<Option<TokenRow>>;

    /// Long-lived tokens (API and OIDC kinds), of one identity or of all,
    /// in creation order.
    async fn tokens(&self, identity: Option<&str>) -> StoreResult<Vec<TokenRow>>;

    /// A page of [`IdentityStore::tokens`]: in creation order, after the
    /// token `after` (exclusive; an unknown id gives an empty page), at most
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

    /// Deletes session and OIDC tokens that expired before `before_ms`;
    /// returns how many.
    async fn delete_expired_tokens(&self, before_ms: i64) -> StoreResult<u64>;

    /// Appends an administrative action to the audit log.
    async fn append_audit(
        &self,
        at_ms: i64,
        actor: &str,
        action: &str,
        details: &str,
    ) -> StoreResult<()>;

    /// Audit entries after `after` (a seq), at most `limit`, in seq order.
    async fn audit(&self, after: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>>;
}
