//! Which log record a manifest read answers from: the record named by the
//! `Cairn-Record` header of `GET|HEAD /v2/<name>/manifests/<reference>`,
//! whose inclusion receipt is `GET /receipt/{logId}/{recordId}`.
//!
//! Everything here is read from the replayed logs (the package log and
//! metadata log states), never from the OCI tables: the answer says what
//! the signed log says made the manifest visible under the reference, so a
//! client that fetches the record and finds another digest than the one it
//! was served holds a signed contradiction.
//!
//! * A tag: the metadata record that last set it (a `manifest` entry pushed
//!   with the tag, a `tag` entry, or a `mirrored` entry). A version of a
//!   release published over warg, which no metadata record tags: the
//!   release record of the package log.
//! * A digest: the metadata record that recorded the manifest. A manifest
//!   derived from a release published over warg: the release record. A
//!   yank referrer: the warg yank record its logged reason names.
//!
//! It does not decide what is served; a manifest no record names (a state
//! stored before records were remembered) has no record, and the header is
//! left out.

use cairn_protocol::ext::meta::version_tag;
use cairn_protocol::{LogId, RecordId};
use semver::Version;

use super::ManifestBody;
use crate::Registry;
use crate::oci::{OciError, Repository, WASM_CONFIG, YANK_ARTIFACT_TYPE};

/// The annotation naming a derived manifest's version.
const VERSION_ANNOTATION: &str = "org.opencontainers.image.version";
/// The annotation naming a yank referrer's version.
const YANK_VERSION_ANNOTATION: &str = "dev.cairn.yank.version";

/// A log record: what a receipt is asked for by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The record's log (the package's metadata log or its package log).
    pub log_id: LogId,
    /// The record.
    pub record_id: RecordId,
}

impl Registry {
    /// The record that made `body` visible under `tag` (as resolved: a
    /// `latest` that names the newest release is that release's version),
    /// or under its digest when `tag` is `None`.
    pub(super) async fn manifest_record(
        &self,
        repository: &Repository,
        tag: Option<&str>,
        body: &ManifestBody,
    ) -> Result<Option<ManifestRecord>, OciError> {
        let package = &repository.package;
        let (state, meta) = self.oci_states(package).await?;
        let in_meta = |record_id: &RecordId| ManifestRecord {
            log_id: LogId::package_meta(package),
            record_id: *record_id,
        };
        let in_package = |record_id: RecordId| ManifestRecord {
            log_id: LogId::package(package),
            record_id,
        };
        let release_record = |version: &Version| state.release(version).map(|r| r.record_id);
        if let Some(tag) = tag {
            if meta.tag(tag).is_some() {
                return Ok(meta.tag_record(tag).map(in_meta));
            }
            return Ok(version_tag(tag)
                .as_ref()
                .and_then(release_record)
                .map(in_package));
        }
        if meta.manifest(&body.digest).is_some() {
            return Ok(meta.manifest_record(&body.digest).map(in_meta));
        }
        // Not recorded in the metadata log: derived from the package log.
        let Some(row) = self
            .inner
            .store
            .manifest(&repository.name, &body.digest)
            .await?
        else {
            return Ok(None);
        };
        let annotation = |key: &str| {
            serde_json::from_str::<serde_json::Value>(&row.annotations)
                .ok()?
                .get(key)?
                .as_str()?
                .parse::<Version>()
                .ok()
        };
        match row.artifact_type.as_deref() {
            Some(WASM_CONFIG) => {
                let Some(version) = annotation(VERSION_ANNOTATION) else {
                    return Ok(None);
                };
                // Only the manifest the store names as the derivation.
                let derived = self
                    .inner
                    .store
                    .derived(&repository.name, &version.to_string())
                    .await?;
                Ok((derived == Some(body.digest))
                    .then(|| release_record(&version))
                    .flatten()
                    .map(in_package))
            }
            Some(YANK_ARTIFACT_TYPE) => Ok(annotation(YANK_VERSION_ANNOTATION)
                .and_then(|version| meta.yank(&version)?.record)
                .map(in_package)),
            _ => Ok(None),
        }
    }
}
