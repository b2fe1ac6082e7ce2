//! `PUT /v2/<name>/manifests/<reference>`: validation of a push, before
//! anything is written.

use bytes::Bytes;
use cairn_protocol::ext::meta::version_tag;
use cairn_protocol::oci::parse_manifest;
use cairn_store::OciManifestRow;

use super::*;
use crate::identity::Caller;
use crate::oci::{IMAGE_MANIFEST, MAX_MANIFEST_BYTES, OciCode, OciError, Reference, Repository};
use crate::{Registry, ServiceError};

impl Registry {
    /// `PUT /v2/<name>/manifests/<reference>`.
    pub async fn oci_put_manifest(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        reference: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushedManifest, OciError> {
        let repository = Repository::parse(repository)?;
        let caller = self.oci_may_push(caller, &repository)?;
        let reference = Reference::parse(reference)?;
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(OciError::new(
                OciCode::SizeInvalid,
                format!("manifests are limited to {MAX_MANIFEST_BYTES} bytes"),
            )
            .with_status(413));
        }
        let manifest = parse_manifest(&body, content_type).map_err(|e| invalid(e.message))?;
        let media_type = manifest.media_type.clone();
        let digest = manifest.digest;
        let tag = match &reference {
            Reference::Digest(expected) if *expected != digest => {
                return Err(OciError::new(
                    OciCode::DigestInvalid,
                    format!("the manifest hashes to {digest}, not {expected}"),
                ));
            }
            Reference::Digest(_) => None,
            // Any tag of the spec's grammar (checked by `Reference::parse`):
            // a semantic version is a release, anything else a pointer.
            Reference::Tag(tag) => Some(tag.clone()),
        };
        let subject = manifest.subject;

        // Every referenced blob (or manifest, for an index) is here.
        let mut blobs = Vec::new();
        if media_type == IMAGE_MANIFEST {
            for descriptor in manifest.config.iter().chain(&manifest.layers) {
                let blob = descriptor.digest;
                match self
                    .inner
                    .store
                    .repository_blob(&repository.name, &blob)
                    .await?
                {
                    Some(size) if size == descriptor.size => blobs.push(blob),
                    Some(size) => {
                        return Err(invalid(format!(
                            "blob {blob} has {size} bytes, the manifest says {}",
                            descriptor.size
                        )));
                    }
                    None => {
                        return Err(OciError::new(
                            OciCode::ManifestBlobUnknown,
                            format!("blob {blob} is not in {}", repository.name),
                        ));
                    }
                }
            }
        } else {
            for child in &manifest.manifests {
                let child = child.digest;
                if !self
                    .inner
                    .store
                    .manifest(&repository.name, &child)
                    .await?
                    .is_some_and(|m| m.visible)
                {
                    return Err(OciError::new(
                        OciCode::ManifestBlobUnknown,
                        format!("manifest {child} is not in {}", repository.name),
                    ));
                }
                blobs.push(child);
            }
        }

        // What is it: a wasm artifact, a referrer, or neither.
        let wasm_parts = match (&manifest.config, manifest.layers.as_slice()) {
            (Some(config), [layer])
                if media_type == IMAGE_MANIFEST
                    && is_wasm_config(&config.media_type)
                    && is_wasm_layer(&layer.media_type) =>
            {
                Some((config.clone(), layer.clone()))
            }
            _ => None,
        };
        let version = tag.as_deref().and_then(version_tag);
        if version.is_some() && wasm_parts.is_none() {
            return Err(denied(
                "version tags name WebAssembly releases; push a wasm artifact (one application/wasm layer)",
            ));
        }
        if wasm_parts.is_none() && subject.is_none() && media_type == IMAGE_MANIFEST {
            let policy = self.namespace_policy(repository.package.namespace());
            if !policy.allow_other {
                return Err(invalid(
                    "this registry stores WebAssembly artifacts (one application/wasm layer) and artifacts that refer to them (with a subject)",
                ));
            }
        }
        let facts = match &wasm_parts {
            Some((config, layer)) => {
                self.check_wasm_layer(&repository, version.as_ref(), config, layer)
                    .await?
            }
            None => None,
        };

        // The bytes go to the blob store first (content-addressed, so a
        // retry or a crash leaves nothing that is visible).
        self.inner
            .blobs
            .put_bytes(Some(digest), body.clone(), MAX_MANIFEST_BYTES as u64)
            .await?;
        let annotations = serde_json::to_string(&manifest.annotations)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        // Stored (invisible) with the push's records, in one transaction.
        let row = OciManifestRow {
            repository: repository.name.clone(),
            digest,
            media_type: media_type.clone(),
            artifact_type: manifest
                .artifact_type
                .clone()
                .or_else(|| manifest.config_media_type.clone()),
            subject,
            size: body.len() as u64,
            annotations,
            visible: false,
            created_at_ms: self.inner.clock.now_ms(),
        };

        let push = Push {
            row,
            repository: &repository,
            caller,
            digest,
            media_type,
            artifact_type: manifest.artifact_type.clone(),
            subject,
            size: body.len() as u64,
            blobs,
            tag,
            version,
            layer: wasm_parts
                .as_ref()
                .map(|(_, layer)| (layer.digest, layer.size)),
            facts,
        };
        self.submit_push(push).await?;
        Ok(PushedManifest { digest, subject })
    }
}
