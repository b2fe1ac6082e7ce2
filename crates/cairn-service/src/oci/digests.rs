//! SHA-512 digests at the OCI door.
//!
//! The OCI spec registers two digest algorithms, SHA-256 and SHA-512.
//! cairn names every byte it stores by its SHA-256 — the blob store, the
//! OCI tables, the metadata log entries and the warg records all do — and
//! treats a SHA-512 digest as an **alias**: when a client uploads a blob or
//! pushes a manifest under `sha512:…`, the registry hashes the same bytes
//! with SHA-512 too, refuses them (`DIGEST_INVALID`, nothing stored or
//! logged) if that differs, and otherwise stores them under their SHA-256
//! as always and records `sha512 → sha256` ([`cairn_store::DigestAliases`]).
//!
//! Every read, `HEAD`, mount, manifest lookup and referrers listing named
//! by a SHA-512 resolves through the alias and then follows the SHA-256
//! path unchanged — repository membership, visibility, withholding — so a
//! SHA-512 name can never reach more than its SHA-256 does. Answers to a
//! request named by SHA-512 carry that name (`Docker-Content-Digest`,
//! `Location`). A SHA-512 never seen with its bytes is unknown.
//!
//! What this is not: a second identity. The metadata log records a push by
//! its SHA-256 (and the SHA-256 of each blob); the manifest bytes it
//! commits to hold the SHA-512 names, so the log still fixes them.

use std::collections::BTreeMap;

use cairn_crypto::{Sha256Digest, Sha512Digest};
use cairn_protocol::oci::{OciDigest, ResolvedManifest, parse_manifest};
use cairn_store::OciManifestRow;

use super::{OciCode, OciError};
use crate::Registry;

impl Registry {
    /// The SHA-256 of blob `digest` of a manifest being pushed:
    /// `MANIFEST_BLOB_UNKNOWN` for a SHA-512 without an alias.
    pub(crate) async fn oci_blob_named(
        &self,
        digest: &OciDigest,
    ) -> Result<Sha256Digest, OciError> {
        self.oci_sha256(digest).await?.ok_or_else(|| {
            OciError::new(
                OciCode::ManifestBlobUnknown,
                format!("{digest} is unknown here: push the content under that digest first"),
            )
        })
    }

    /// Records that `sha512` names the bytes of `sha256`. Callers MUST have
    /// hashed the same bytes both ways.
    pub(crate) async fn oci_record_alias(
        &self,
        sha512: &Sha512Digest,
        sha256: &Sha256Digest,
    ) -> Result<(), OciError> {
        Ok(self.inner.store.record_alias(sha512, sha256).await?)
    }

    /// The SHA-256 a blob digest of a request names, for the checks made
    /// on content (withholding): `None` for a malformed digest or a SHA-512
    /// without an alias (nothing is served for those).
    pub async fn oci_blob_sha256(&self, digest: &str) -> Result<Option<Sha256Digest>, OciError> {
        match super::parse_oci_digest(digest) {
            Ok(digest) => self.oci_sha256(&digest).await,
            Err(_) => Ok(None),
        }
    }

    /// Parses manifest bytes and resolves the SHA-512 names of their
    /// descriptors. A descriptor named by an unknown SHA-512 is
    /// `MANIFEST_BLOB_UNKNOWN`: its content was never pushed under that
    /// name.
    pub(crate) async fn oci_parse_manifest(
        &self,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<ResolvedManifest, OciError> {
        let parsed = parse_manifest(bytes, content_type)
            .map_err(|e| OciError::new(OciCode::ManifestInvalid, e.message))?;
        let mut aliases = BTreeMap::new();
        for name in parsed.sha512_names() {
            if let Some(sha256) = self.inner.store.alias(&name).await? {
                aliases.insert(name, sha256);
            }
        }
        parsed.resolve(&aliases).map_err(|unknown| {
            OciError::new(
                OciCode::ManifestBlobUnknown,
                format!("{unknown} is unknown here: push the content under that digest first"),
            )
        })
    }

    /// Whether manifest `referrer` of `repository` was recorded with the
    /// SHA-512 subject `subject` (for a referrer whose subject was not
    /// known when it was pushed).
    pub(crate) async fn oci_has_sha512_subject(
        &self,
        repository: &str,
        subject: &OciDigest,
        referrer: &Sha256Digest,
    ) -> Result<bool, OciError> {
        let OciDigest::Sha512(subject) = subject else {
            return Ok(false);
        };
        Ok(self
            .inner
            .store
            .sha512_subject(repository, referrer)
            .await?
            == Some(*subject))
    }

    /// A page of the visible referrers of `subject` in `repository` (see
    /// [`cairn_store::OciStore::referrers_page`]); for a SHA-512 subject,
    /// those of the content it is an alias of and those pushed naming it
    /// while it was unknown.
    pub(crate) async fn oci_referrer_rows(
        &self,
        repository: &str,
        subject: &OciDigest,
        artifact_type: Option<&str>,
        after: Option<(i64, &Sha256Digest)>,
        limit: u32,
    ) -> Result<Vec<OciManifestRow>, OciError> {
        let store = &self.inner.store;
        Ok(match subject {
            OciDigest::Sha256(subject) => {
                store
                    .referrers_page(repository, subject, artifact_type, after, limit)
                    .await?
            }
            OciDigest::Sha512(subject) => {
                store
                    .referrers_page_sha512(repository, subject, artifact_type, after, limit)
                    .await?
            }
        })
    }
}
