//! [`OciStore`]: what the OCI front door keeps beside the log — manifests
//! derived from warg releases, which repositories hold a blob, full
//! listings of the OCI tables for `cairn fsck`, and unlinking blobs for
//! `cairn gc`.
//!
//! Nothing here is a fact of the registry: tags, manifests and their
//! visibility are projections of the metadata logs, derived manifests are
//! recomputed from the logged releases, so `fsck` compares every row with
//! what the logs say.

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;

use crate::{OciManifestRow, StoreResult};

/// The OCI tables beyond the per-request reads of [`crate::Store`].
///
/// # Contract
///
/// Durability, atomicity and errors as for [`crate::Store`]. Listings page
/// in key order (`after` is exclusive) and return at most `limit` rows.
#[async_trait]
pub trait OciStore: Send + Sync {
    /// The manifest derived for release `version` of `repository`, if one
    /// was stored.
    async fn derived(&self, repository: &str, version: &str) -> StoreResult<Option<Sha256Digest>>;

    /// Stores the derived manifest of a release. The first one stored wins
    /// (derivation is deterministic, so a second is the same); returns the
    /// stored digest.
    async fn insert_derived(
        &self,
        repository: &str,
        version: &str,
        digest: &Sha256Digest,
    ) -> StoreResult<Sha256Digest>;

    /// Repositories holding blob `digest`, in order, at most `limit`.
    async fn blob_repositories(
        &self,
        digest: &Sha256Digest,
        limit: u32,
    ) -> StoreResult<Vec<String>>;

    /// Every tag row `(repository, tag, manifest)`, in key order.
    async fn all_tags(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, Sha256Digest)>>;

    /// Every manifest row, in key order.
    async fn all_manifests(
        &self,
        after: Option<(&str, &Sha256Digest)>,
        limit: u32,
    ) -> StoreResult<Vec<OciManifestRow>>;

    /// Every blob link `(repository, blob, size)`, in key order.
    async fn all_blob_links(
        &self,
        after: Option<(&str, &Sha256Digest)>,
        limit: u32,
    ) -> StoreResult<Vec<(String, Sha256Digest, u64)>>;

    /// Links released content to the repositories of the packages that
    /// release it, with its stored size (content not stored is skipped).
    /// Idempotent.
    async fn link_released_content(&self, links: &[(String, Sha256Digest)]) -> StoreResult<()>;

    /// Every derived manifest `(repository, version, manifest)`, in key
    /// order.
    async fn all_derived(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, Sha256Digest)>>;

    /// Every stored content row (digest, size, published), in digest
    /// order, after `after`.
    async fn all_contents(
        &self,
        after: Option<&Sha256Digest>,
        limit: u32,
    ) -> StoreResult<Vec<crate::ContentRow>>;

    /// The versions of `repository` whose derived manifest is `digest`
    /// (a manifest derived from a release), in order.
    async fn derived_versions(
        &self,
        repository: &str,
        digest: &Sha256Digest,
    ) -> StoreResult<Vec<String>>;

    /// Removes every repository link of blob `digest` and returns the
    /// links removed `(repository, size)` — or `None`, removing nothing,
    /// when a `contents` row records it (content that warg records may
    /// name is never unlinked). One transaction: the check and the removal
    /// see the same rows. Afterwards no push can reference the blob until
    /// it is uploaded (linked) again. Used by `cairn gc`, which links the
    /// blob again if a manifest turns out to reference it.
    async fn unlink_blob(&self, digest: &Sha256Digest) -> StoreResult<Option<Vec<(String, u64)>>>;

    /// A page of the visible manifests of `repository` whose subject is
    /// `subject` (of `artifact_type` only, if given), in the order of
    /// [`crate::Store::referrers`] (creation time, then digest), strictly
    /// after the manifest `after` (its creation time and digest), at most
    /// `limit`.
    async fn referrers_page(
        &self,
        repository: &str,
        subject: &Sha256Digest,
        artifact_type: Option<&str>,
        after: Option<(i64, &Sha256Digest)>,
        limit: u32,
    ) -> StoreResult<Vec<OciManifestRow>>;

    /// The bytes of the manifest `digest` as the batch that logged its push
    /// stored them (see [`crate::Batch::manifest_bytes`]), or `None` for a
    /// manifest stored before they were kept, or never pushed.
    async fn manifest_bytes(&self, digest: &Sha256Digest) -> StoreResult<Option<Vec<u8>>>;
}
