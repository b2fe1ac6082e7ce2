//! Imported namespaces: releases mirrored from the namespace's upstream OCI
//! registry. The HTTP layer fetches (the service never does I/O beyond its
//! store); here the fetched artifact is checked and recorded: its blobs
//! are verified against their digests as they stream in, the manifest must
//! be a wasm artifact whose layer is valid WebAssembly, and a `mirrored`
//! entry in the package's metadata log records what was copied from where
//! before anything is served.

use bytes::Bytes;
use cairn_blob::ByteStream;
use cairn_crypto::Sha256Digest;
use cairn_protocol::PackageName;
use cairn_protocol::ext::ExtEntry;
use cairn_protocol::ext::meta::MirrorEntry;
use cairn_protocol::ext::registry::Upstream;
use cairn_protocol::operator::NamespaceState;
use cairn_store::{OciManifestRow, StoreError};
use semver::Version;
use serde::Deserialize;

use super::{IMAGE_MANIFEST, MAX_MANIFEST_BYTES, OciCode, OciError, Repository};
use crate::{Registry, ServiceError};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WasmManifest {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// A manifest fetched from an upstream, checked: what to fetch next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamManifest {
    /// Its digest.
    pub digest: Sha256Digest,
    /// The config blob and its size.
    pub config: (Sha256Digest, u64),
    /// The wasm layer and its size.
    pub layer: (Sha256Digest, u64),
}

/// Checks the bytes of an upstream manifest: an OCI image manifest of a
/// wasm artifact (a wasm config and one wasm layer).
pub fn parse_upstream_manifest(bytes: &[u8]) -> Result<UpstreamManifest, String> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err("the manifest is too large".into());
    }
    let manifest: WasmManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not an image manifest: {e}"))?;
    if manifest.schema_version != 2
        || manifest
            .media_type
            .as_deref()
            .is_some_and(|m| m != IMAGE_MANIFEST)
    {
        return Err("not an OCI image manifest".into());
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err("a wasm artifact has exactly one layer".into());
    };
    if !super::manifests::is_wasm_config(&manifest.config.media_type)
        || !super::manifests::is_wasm_layer(&layer.media_type)
    {
        return Err("not a wasm artifact".into());
    }
    let digest = |d: &Descriptor| {
        d.digest
            .parse::<Sha256Digest>()
            .map(|digest| (digest, d.size))
            .map_err(|_| format!("unsupported digest `{}`", d.digest))
    };
    Ok(UpstreamManifest {
        digest: Sha256Digest::of(bytes),
        config: digest(&manifest.config)?,
        layer: digest(layer)?,
    })
}

impl Registry {
    /// The upstream of `package`'s namespace, if it is imported.
    pub fn upstream_of(&self, package: &PackageName) -> Option<Upstream> {
        match self.operator_state().namespace(package.namespace()) {
            Some(NamespaceState::Imported { .. }) => self
                .registry_log()
                .namespace(package.namespace())
                .and_then(|n| n.upstream.clone()),
            _ => None,
        }
    }

    /// Whether `version` of `package` is already mirrored.
    pub async fn is_mirrored(
        &self,
        package: &PackageName,
        version: &Version,
    ) -> Result<bool, ServiceError> {
        let (_, meta) = self.oci_states(package).await?;
        Ok(meta.tag(&version.to_string()).is_some())
    }

    /// Stores a blob fetched from upstream, verifying its digest, and links
    /// it to `package`'s repository.
    pub async fn store_mirrored_blob(
        &self,
        package: &PackageName,
        digest: Sha256Digest,
        body: ByteStream,
    ) -> Result<u64, OciError> {
        let info = self
            .inner
            .blobs
            .put(Some(digest), body, self.inner.config.max_content_bytes)
            .await?;
        self.inner
            .store
            .link_blob(&crate::oci_repository(package), &info.digest, info.size)
            .await?;
        Ok(info.size)
    }

    /// Records a mirrored release: `manifest` (already checked with
    /// [`parse_upstream_manifest`], its blobs stored with
    /// [`Registry::store_mirrored_blob`]) becomes `version` of `package`,
    /// copied from `upstream_ref`. Waits until the record is published.
    pub async fn record_mirror(
        &self,
        package: &PackageName,
        version: &Version,
        upstream_ref: String,
        manifest: Bytes,
    ) -> Result<(), OciError> {
        let parsed = parse_upstream_manifest(&manifest)
            .map_err(|e| OciError::new(OciCode::ManifestInvalid, e))?;
        let repository = Repository::parse(&crate::oci_repository(package))?;
        let store = &self.inner.store;
        for (blob, size) in [parsed.config, parsed.layer] {
            if store.repository_blob(&repository.name, &blob).await? != Some(size) {
                return Err(OciError::new(
                    OciCode::ManifestBlobUnknown,
                    format!("upstream blob {blob} was not fetched"),
                ));
            }
        }
        let valid = self.inspected(&parsed.layer.0).await?;
        if let Err(error) = valid {
            return Err(OciError::new(
                OciCode::ManifestInvalid,
                format!("the upstream release is not valid WebAssembly: {error}"),
            ));
        }
        self.inner
            .blobs
            .put_bytes(
                Some(parsed.digest),
                manifest.clone(),
                MAX_MANIFEST_BYTES as u64,
            )
            .await?;
        store
            .insert_manifest(&OciManifestRow {
                repository: repository.name.clone(),
                digest: parsed.digest,
                media_type: IMAGE_MANIFEST.into(),
                artifact_type: Some(super::WASM_CONFIG.into()),
                subject: None,
                size: manifest.len() as u64,
                annotations: serde_json::json!({
                    "org.opencontainers.image.version": version.to_string(),
                    "dev.cairn.mirrored-from": upstream_ref,
                })
                .to_string(),
                visible: false,
                created_at_ms: self.inner.clock.now_ms(),
            })
            .await?;
        store
            .insert_content(&parsed.layer.0, parsed.layer.1)
            .await?;
        let entry = MirrorEntry {
            version: version.clone(),
            upstream: upstream_ref,
            digest: parsed.digest,
            content: parsed.layer.0,
            blobs: vec![parsed.config.0, parsed.layer.0],
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            // Any node mirrors (on a read): the insert is refused if the
            // metadata log moved since it was read.
            let gate = self.inner.commit_gate.read().await;
            let (_, meta) = self.oci_states_to_write(package).await?;
            if meta.tag(&version.to_string()).is_some() {
                return Ok(());
            }
            let record = self
                .meta_record(package, &meta, vec![ExtEntry::Mirrored(entry.clone())])
                .await?;
            let decided_on = [cairn_store::ExpectedHead::new(
                record.log_id,
                meta.head().map(|h| h.record_id),
            )];
            let inserted = store
                .insert_pending_decided(std::slice::from_ref(&record), &decided_on)
                .await;
            drop(gate);
            match inserted {
                Ok(_) => {
                    self.record_queued();
                    return self
                        .wait_sequenced(&record.log_id, &record.record_id, deadline)
                        .await;
                }
                Err(StoreError::Conflict(_) | StoreError::Moved(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(StoreError::Conflict(_) | StoreError::Moved(_)) => {
                    return Err(ServiceError::unavailable("the package is busy; retry").into());
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
}
