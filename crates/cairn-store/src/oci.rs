//! [`OciStore`]: what the OCI front door keeps beside the log — which
//! repositories hold a blob, manifests (pushed, mirrored, or derived from
//! warg releases), tags, full listings of the OCI tables for `cairn fsck`,
//! and unlinking blobs for `cairn gc`.
//!
//! Nothing here is a fact of the registry: tags, manifests and their
//! visibility are projections of the metadata logs, derived manifests are
//! recomputed from the logged releases, so `fsck` compares every row with
//! what the logs say. A pushed manifest becomes visible, and a tag moves,
//! only in the batch that sequences the push ([`crate::Batch::oci_visible`],
//! [`crate::Batch::oci_tags`]); this trait's writes add rows that are not
//! visible yet, or links that only say a blob was uploaded to a repository.
//!
//! The per-request reads and writes of the registry's OCI API and the
//! maintenance listings are one trait: they touch the same tables under the
//! same contract, and every node uses both (any node serves `/v2` and runs
//! `fsck`).

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;

use crate::{OciManifestRow, StoreResult};

/// The OCI tables.
///
/// # Contract
///
/// * Durability, atomicity and errors as for [`crate::Store`]: each write
///   takes effect completely or not at all.
/// * Storing is idempotent: linking a blob again, or storing a manifest or
///   a derived manifest again, keeps the existing row.
/// * Reads of manifests by digest see invisible manifests too (a push not
///   sequenced yet); listings by subject ([`OciStore::referrers`],
///   [`OciStore::referrers_page`]) and by tag see only what a batch made
///   visible.
/// * Listings page in key order (`after` is exclusive) and return at most
///   `limit` rows.
#[async_trait]
pub trait OciStore: Send + Sync {
    /// Links a stored blob to a repository. Idempotent.
    async fn link_blob(
        &self,
        repository: &str,
        digest: &Sha256Digest,
        size: u64,
    ) -> StoreResult<()>;

    /// The size of a blob linked to `repository`.
    async fn repository_blob(
        &self,
        repository: &str,
        digest: &Sha256Digest,
    ) -> StoreResult<Option<u64>>;

    /// Stores a manifest (not visible until the sequencer marks it).
    /// Idempotent: an existing row is kept.
    async fn insert_manifest(&self, manifest: &OciManifestRow) -> StoreResult<()>;

    /// A manifest of `repository` by digest (visible or not).
    async fn manifest(
        &self,
        repository: &str,
        digest: &Sha256Digest,
    ) -> StoreResult<Option<OciManifestRow>>;

    /// The visible manifests of `repository` whose subject is `subject`, by
    /// creation time, then digest.
    async fn referrers(
        &self,
        repository: &str,
        subject: &Sha256Digest,
    ) -> StoreResult<Vec<OciManifestRow>>;

    /// The manifest a tag names.
    async fn tag(&self, repository: &str, tag: &str) -> StoreResult<Option<Sha256Digest>>;

    /// Tags of `repository` in lexical order after `after`, at most `limit`.
    async fn tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, Sha256Digest)>>;

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
    /// [`OciStore::referrers`] (creation time, then digest), strictly
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
    /// manifest stored before they were kept, or never pushed (derived and
    /// mirrored manifests are in the blob store).
    async fn manifest_bytes(&self, digest: &Sha256Digest) -> StoreResult<Option<Vec<u8>>>;
}
