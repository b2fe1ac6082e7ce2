//! Content checks: a wasm layer or a warg release against the namespace's
//! publish policy, and a client's config against the binary.

use std::collections::BTreeSet;

use cairn_crypto::Sha256Digest;
use cairn_protocol::PackageName;
use cairn_protocol::ext::meta::WasmFacts;
use cairn_protocol::oci::{Descriptor, parse_wasm_config};
use cairn_protocol::record::{PackageEntry, PackageRecord};
use cairn_wasm::{WasmError, WasmInfo};
use semver::Version;

use super::*;
use crate::oci::{MAX_CONFIG_BYTES, OciError, Repository};
use crate::{Registry, ServiceError};

impl Registry {
    /// Checks content `digest` (`size` bytes, in the blob store) released
    /// by a warg record of `package` against the namespace's policy.
    pub(crate) async fn check_warg_content(
        &self,
        package: &PackageName,
        record: &PackageRecord,
        digest: &Sha256Digest,
        size: u64,
    ) -> Result<(), ServiceError> {
        let versions: Vec<Version> = record
            .entries
            .iter()
            .filter_map(|entry| match entry {
                PackageEntry::Release { version, content } if content == digest => {
                    Some(version.clone())
                }
                _ => None,
            })
            .collect();
        if versions.is_empty() {
            return Ok(());
        }
        let policy = self.namespace_policy(package.namespace());
        let info = self
            .inspected(digest)
            .await
            .map_err(|e| ServiceError::Internal(e.message))?;
        for version in &versions {
            crate::oci::check_content(&policy, package, Some(version), size, info.clone())
                .map_err(|reason| {
                    ServiceError::refused(format!("{package}@{version} is refused: {reason}"))
                })?;
        }
        Ok(())
    }

    /// Validates a wasm layer against the namespace's policy and the
    /// client's config; returns what the registry computed.
    pub(super) async fn check_wasm_layer(
        &self,
        repository: &Repository,
        version: Option<&Version>,
        config: &Descriptor,
        layer: &Descriptor,
    ) -> Result<Option<WasmFacts>, OciError> {
        // Named by SHA-256 or by a SHA-512 alias of it.
        let (layer_digest, config_digest) = tokio::try_join!(
            self.oci_blob_named(&layer.digest),
            self.oci_blob_named(&config.digest)
        )?;
        // The binary is inspected while the config is read.
        let (info, config_bytes) = tokio::try_join!(
            self.inspected(&layer_digest),
            self.read_blob(&config_digest, MAX_CONFIG_BYTES)
        )?;
        if let Err(error) = &info {
            return Err(invalid(format!(
                "the wasm layer is not valid WebAssembly: {error}"
            )));
        }
        let policy = self.namespace_policy(repository.package.namespace());
        let facts =
            crate::oci::check_content(&policy, &repository.package, version, layer.size, info)
                .map_err(denied)?;
        // Never trust the client's config: it must say what the binary is.
        let config = parse_wasm_config(&config_bytes).map_err(|e| invalid(e.message))?;
        if let Some(layers) = &config.layer_digests
            && !layers
                .iter()
                .any(|d| *d == layer_digest.to_string() || *d == layer.digest.to_string())
        {
            return Err(invalid(
                "the config's layerDigests do not name the wasm layer",
            ));
        }
        if let (Some(claimed), Some(facts)) = (&config.component, &facts) {
            let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
            if set(&claimed.imports) != set(&facts.imports) {
                return Err(invalid(format!(
                    "the config claims imports {:?}, but the component imports {:?}",
                    claimed.imports, facts.imports
                )));
            }
            if set(&claimed.exports) != set(&facts.exports) {
                return Err(invalid(format!(
                    "the config claims exports {:?}, but the component exports {:?}",
                    claimed.exports, facts.exports
                )));
            }
        }
        Ok(facts)
    }

    /// What the blob `digest` is as WebAssembly: valid and what it imports
    /// and exports, or why it is not. Inspection depends only on the bytes,
    /// so its answer is kept by digest: a binary pushed again (under
    /// another tag, as another release, or a retried push) is not read and
    /// parsed again.
    pub(crate) async fn inspected(
        &self,
        digest: &Sha256Digest,
    ) -> Result<Result<WasmInfo, WasmError>, OciError> {
        if let Some(info) = lock(&self.inner.inspected).get(digest) {
            return Ok(info);
        }
        let bytes = self
            .read_blob(digest, self.inner.config.max_content_bytes)
            .await?;
        let info = tokio::task::spawn_blocking(move || cairn_wasm::inspect(&bytes))
            .await
            .map_err(|e| ServiceError::Internal(format!("inspection task failed: {e}")))?;
        lock(&self.inner.inspected).insert(*digest, info.clone());
        Ok(info)
    }
}
