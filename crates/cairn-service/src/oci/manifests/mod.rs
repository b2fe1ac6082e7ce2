//! Manifests, tags and referrers.
//!
//! A manifest push is validated completely — its JSON, its digest, that
//! every blob it references is in the repository, that a wasm layer is
//! valid WebAssembly and passes the namespace's publish policy, that the
//! client's config tells the truth about the binary, that a version tag is
//! new — before anything is written. Then its records are submitted (the
//! package's metadata log entry, and for a release the warg release record
//! signed by the publisher key), and the manifest becomes visible in the
//! transaction that sequences them. The push answers once a checkpoint
//! covers them.

mod check;
mod delete;
mod get;
pub(crate) mod group;
mod known;
mod provenance;
mod put;
mod records;
mod submit;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::meta::{MetaState, WasmFacts};
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_protocol::package::PackageState;
use cairn_protocol::{LogId, PackageName};
use cairn_store::OciManifestRow;
use semver::Version;

use super::{
    LEGACY_WASM_CONFIGS, LEGACY_WASM_LAYERS, MAX_MANIFEST_BYTES, OciCode, OciError, Repository,
    WASM_CONFIG, WASM_LAYER,
};
use crate::identity::Caller;
use crate::{Registry, ServiceError};

pub use provenance::ManifestRecord;

/// How long a push waits for its records to be published.
const PUBLISH_WAIT: Duration = Duration::from_secs(30);

/// A stored or derived manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestBody {
    /// Its digest.
    pub digest: Sha256Digest,
    /// Its media type.
    pub media_type: String,
    /// Its exact bytes.
    pub bytes: Bytes,
    /// The log record that made it visible under the reference it was
    /// read by (`None` when no record names it).
    pub record: Option<ManifestRecord>,
}

/// What a manifest push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedManifest {
    /// The manifest's digest.
    pub digest: Sha256Digest,
    /// Its subject, if it refers to another manifest.
    pub subject: Option<Sha256Digest>,
}

/// A page of tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagPage {
    /// `namespace/name`.
    pub name: String,
    /// Tags in lexical (byte) order.
    pub tags: Vec<String>,
    /// The last tag of the page, when more follow.
    pub next: Option<String>,
}

fn invalid(message: impl Into<String>) -> OciError {
    OciError::new(OciCode::ManifestInvalid, message)
}

fn denied(message: impl Into<String>) -> OciError {
    OciError::new(OciCode::Denied, message)
}

pub(super) fn is_wasm_config(media_type: &str) -> bool {
    media_type == WASM_CONFIG || LEGACY_WASM_CONFIGS.contains(&media_type)
}

pub(super) fn is_wasm_layer(media_type: &str) -> bool {
    media_type == WASM_LAYER || LEGACY_WASM_LAYERS.contains(&media_type)
}

impl Registry {
    /// The package log and metadata log states of `package`.
    pub(crate) async fn oci_states(
        &self,
        package: &PackageName,
    ) -> Result<(PackageState, MetaState), ServiceError> {
        self.oci_states_from(package, true).await
    }

    /// [`Registry::oci_states`] for a write decided on them: on a node
    /// that does not sequence, read from the store (its cached copies may
    /// be behind by a poll interval).
    pub(crate) async fn oci_states_to_write(
        &self,
        package: &PackageName,
    ) -> Result<(PackageState, MetaState), ServiceError> {
        self.oci_states_from(package, !self.is_standby()).await
    }

    async fn oci_states_from(
        &self,
        package: &PackageName,
        use_cache: bool,
    ) -> Result<(PackageState, MetaState), ServiceError> {
        let mut out = (PackageState::default(), MetaState::default());
        for log_id in [LogId::package(package), LogId::package_meta(package)] {
            let cached = match self.cached_log(&log_id).filter(|_| use_cache) {
                Some(cached) => Some(cached),
                None => match self.inner.store.log(&log_id).await? {
                    Some(row) => {
                        let store = self.inner.store.as_ref();
                        let operator = self.operator_state();
                        let cached = Arc::new(crate::CachedLog::load(store, row, &operator).await?);
                        if use_cache {
                            self.cache_log(cached.clone());
                        }
                        Some(cached)
                    }
                    None => None,
                },
            };
            if let Some(cached) = cached {
                if let Some(state) = cached.package() {
                    out.0 = state.clone();
                }
                if let Some(state) = cached.meta() {
                    out.1 = state.clone();
                }
            }
        }
        Ok(out)
    }

    /// Reads a manifest's bytes: the copy stored with the records that
    /// logged its push, or, for a manifest without one (derived from a warg
    /// release, mirrored, or pushed before pushes stored their bytes with
    /// their records), the blob store's, which is verified as it is read.
    pub(crate) async fn read_manifest_bytes(
        &self,
        digest: &Sha256Digest,
    ) -> Result<Vec<u8>, OciError> {
        match self.inner.store.manifest_bytes(digest).await? {
            Some(bytes) => Ok(bytes),
            None => self.read_blob(digest, MAX_MANIFEST_BYTES as u64).await,
        }
    }

    /// Reads a whole blob (bounded by `limit`).
    pub(crate) async fn read_blob(
        &self,
        digest: &Sha256Digest,
        limit: u64,
    ) -> Result<Vec<u8>, OciError> {
        match self.inner.blobs.read_all(digest, limit).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(OciError::new(
                OciCode::BlobUnknown,
                format!("blob {digest} is missing"),
            )),
            Err(cairn_blob::BlobError::TooLarge { limit }) => Err(OciError::new(
                OciCode::SizeInvalid,
                format!("blob {digest} has more than {limit} bytes"),
            )),
            Err(other) => Err(other.into()),
        }
    }

    /// What a namespace accepts: its policy if it has an ownership record;
    /// otherwise (a namespace defined with `serve --namespace`, without
    /// owners) anything, as long as what claims to be WebAssembly is valid.
    pub(crate) fn namespace_policy(&self, namespace: &str) -> PublishPolicy {
        match self.registry_log().namespace(namespace) {
            Some(entry) => entry.policy.clone(),
            None => PublishPolicy {
                allow_modules: true,
                allow_other: true,
                name_must_match: false,
                ..PublishPolicy::default()
            },
        }
    }
}

/// Everything a push records.
pub(super) struct Push {
    row: OciManifestRow,
    /// The manifest's bytes (stored durably with the push's records).
    body: Bytes,
    repository: Repository,
    caller: Caller,
    digest: Sha256Digest,
    media_type: String,
    artifact_type: Option<String>,
    subject: Option<Sha256Digest>,
    size: u64,
    blobs: Vec<Sha256Digest>,
    tag: Option<String>,
    version: Option<Version>,
    layer: Option<(Sha256Digest, u64)>,
    facts: Option<WasmFacts>,
    /// Its signature layers as checked (`oci::signatures`).
    signatures: Vec<cairn_protocol::ext::signature::SignatureCheck>,
}

impl Push {
    /// The release it makes, if any: version, content, content size.
    fn release(&self) -> Option<(Version, Sha256Digest, u64)> {
        let version = self.version.clone()?;
        let (content, size) = self.layer?;
        Some((version, content, size))
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (queues and caches).
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
