//! [`DigestAliases`]: SHA-512 names of content known by its SHA-256.
//!
//! cairn names every byte it stores by its SHA-256. OCI clients may name
//! blobs and manifests by SHA-512 (the spec's second registered algorithm);
//! the registry then hashes the bytes both ways and records the SHA-512 as
//! an alias of the SHA-256 here. What is *not* here: the bytes (stored once,
//! under their SHA-256), and any decision — whether a client's SHA-512
//! matches its bytes is checked above storage, before an alias is written.

use async_trait::async_trait;
use cairn_crypto::{Sha256Digest, Sha512Digest};

use crate::{OciManifestRow, StoreResult};

/// SHA-512 aliases, and the SHA-512 subjects of referrers.
///
/// # Contract
///
/// * Durability, atomicity and errors as for [`crate::Store`]: every write
///   is durable when it returns.
/// * An alias is a fact about bytes: callers MUST record one only after
///   hashing the same bytes with both algorithms. Recording is idempotent
///   and the first alias of a SHA-512 wins (a second, different SHA-256 for
///   the same SHA-512 would be a SHA-512 collision; it is ignored).
/// * Aliases and SHA-512 subjects are never removed: they are derived from
///   bytes, so they stay true whether or not the bytes are still stored.
///   Readers MUST still check that what an alias names is in the
///   repository (and visible) before serving it.
#[async_trait]
pub trait DigestAliases: Send + Sync {
    /// Records that the bytes of SHA-512 `sha512` have SHA-256 `sha256`.
    async fn record_alias(&self, sha512: &Sha512Digest, sha256: &Sha256Digest) -> StoreResult<()>;

    /// The SHA-256 of the bytes named `sha512`, if an alias was recorded.
    async fn alias(&self, sha512: &Sha512Digest) -> StoreResult<Option<Sha256Digest>>;

    /// Records that manifest `referrer` of `repository` names the subject
    /// `subject` by SHA-512 (written before the push that stores the
    /// manifest; it only matters once that manifest is visible).
    /// Idempotent.
    async fn record_sha512_subject(
        &self,
        repository: &str,
        referrer: &Sha256Digest,
        subject: &Sha512Digest,
    ) -> StoreResult<()>;

    /// The SHA-512 subject recorded for manifest `referrer` of
    /// `repository`, if any.
    async fn sha512_subject(
        &self,
        repository: &str,
        referrer: &Sha256Digest,
    ) -> StoreResult<Option<Sha512Digest>>;

    /// A page of the visible manifests of `repository` that refer to the
    /// content named `subject`: those whose subject is the SHA-256 it is an
    /// alias of, and those recorded with the SHA-512 subject `subject`
    /// (of `artifact_type` only, if given), in the order of
    /// [`crate::OciStore::referrers_page`] (creation time, then digest),
    /// strictly after `after`, at most `limit`.
    async fn referrers_page_sha512(
        &self,
        repository: &str,
        subject: &Sha512Digest,
        artifact_type: Option<&str>,
        after: Option<(i64, &Sha256Digest)>,
        limit: u32,
    ) -> StoreResult<Vec<OciManifestRow>>;
}
