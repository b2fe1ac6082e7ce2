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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_crypto::{KeyId, PublicKey, Sha256Digest, Signature};
use cairn_protocol::ext::meta::{
    ManifestEntry, MetaState, ReleaseLink, TagEntry, WasmFacts, version_tag,
};
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_protocol::ext::{ExtEntry, meta_log_name};
use cairn_protocol::oci::{Descriptor, parse_manifest, parse_wasm_config};
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{
    PackageEntry, PackagePermission, PackageRecord, Record, RecordKind as _,
};
use cairn_protocol::{Envelope, LogId, PackageName, RecordId, Timestamp};
use cairn_store::{NewPending, OciManifestRow, RecordStatus, StoreError};
use semver::Version;

use super::derive::derive;
use super::{
    IMAGE_MANIFEST, LEGACY_WASM_CONFIGS, LEGACY_WASM_LAYERS, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES,
    OciCode, OciError, Reference, Repository, WASM_CONFIG, WASM_LAYER,
};
use crate::identity::Caller;
use crate::{Registry, ServiceError};

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
        let mut out = (PackageState::default(), MetaState::default());
        for log_id in [LogId::package(package), LogId::package_meta(package)] {
            let cached = match self.cached_log(&log_id) {
                Some(cached) => Some(cached),
                None => match self.inner.store.log(&log_id).await? {
                    Some(row) => {
                        let cached = Arc::new(crate::CachedLog::from_row(row)?);
                        self.cache_log(cached.clone());
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
        let bytes = self
            .read_blob(digest, self.inner.config.max_content_bytes)
            .await
            .map_err(|e| ServiceError::Internal(e.message))?;
        let info = tokio::task::spawn_blocking(move || cairn_wasm::inspect(&bytes))
            .await
            .map_err(|e| ServiceError::Internal(format!("inspection task failed: {e}")))?;
        for version in &versions {
            super::check_content(&policy, package, Some(version), size, info.clone()).map_err(
                |reason| ServiceError::refused(format!("{package}@{version} is refused: {reason}")),
            )?;
        }
        Ok(())
    }

    /// Validates a wasm layer against the namespace's policy and the
    /// client's config; returns what the registry computed.
    async fn check_wasm_layer(
        &self,
        repository: &Repository,
        version: Option<&Version>,
        config: &Descriptor,
        layer: &Descriptor,
    ) -> Result<Option<WasmFacts>, OciError> {
        let layer_digest = layer.digest;
        let bytes = self
            .read_blob(&layer_digest, self.inner.config.max_content_bytes)
            .await?;
        let info = tokio::task::spawn_blocking(move || cairn_wasm::inspect(&bytes))
            .await
            .map_err(|e| ServiceError::Internal(format!("inspection task failed: {e}")))?;
        if let Err(error) = &info {
            return Err(invalid(format!(
                "the wasm layer is not valid WebAssembly: {error}"
            )));
        }
        let policy = self.namespace_policy(repository.package.namespace());
        let facts = super::check_content(&policy, &repository.package, version, layer.size, info)
            .map_err(denied)?;
        // Never trust the client's config: it must say what the binary is.
        let config = parse_wasm_config(&self.read_blob(&config.digest, MAX_CONFIG_BYTES).await?)
            .map_err(|e| invalid(e.message))?;
        if let Some(layers) = &config.layer_digests
            && !layers.iter().any(|d| *d == layer_digest.to_string())
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

    /// Builds and submits the records of a push, retrying while another
    /// record of the same logs is pending, and waits until they are
    /// published.
    async fn submit_push(&self, push: Push<'_>) -> Result<(), OciError> {
        let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
        let heads = |package: &PackageState, meta: &MetaState| {
            (
                package.head().map(|h| h.record_id),
                meta.head().map(|h| h.record_id),
            )
        };
        loop {
            // Built and signed on the current heads without holding the
            // commit gate (signing is the slow part); stored under the gate
            // only if the heads have not moved meanwhile.
            let (package_state, meta_state) = self.oci_states(&push.repository.package).await?;
            let Some(records) = self
                .push_records(&push, &package_state, &meta_state)
                .await?
            else {
                // Already recorded (a retried push): nothing to do.
                return self.wait_visible(&push).await;
            };
            let gate = self.inner.commit_gate.read().await;
            let (package_now, meta_now) = self.oci_states(&push.repository.package).await?;
            if heads(&package_now, &meta_now) != heads(&package_state, &meta_state) {
                drop(gate);
                if tokio::time::Instant::now() > deadline {
                    return Err(ServiceError::unavailable(
                        "this package is changing too fast; retry",
                    )
                    .into());
                }
                continue;
            }
            let inserted = self
                .inner
                .store
                .insert_push(&push.row, push.layer, &records)
                .await;
            drop(gate);
            match inserted {
                Ok(_) => {
                    self.backlog()
                        .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    self.wake_sequencer();
                    // The sequencer takes records in arrival order: once the
                    // last is published, the others have been judged too.
                    for record in records.iter().rev() {
                        self.wait_sequenced(&record.log_id, &record.record_id, deadline)
                            .await?;
                    }
                    return Ok(());
                }
                Err(StoreError::Conflict(_)) => {
                    // Another record of one of these logs is pending: wait
                    // for it, then build on the new heads.
                    if tokio::time::Instant::now() > deadline {
                        return Err(ServiceError::unavailable(
                            "another publish of this package is in progress; retry",
                        )
                        .into());
                    }
                    // The next checkpoint is when it can have moved on.
                    let mut published = self.inner.published.subscribe();
                    let _ =
                        tokio::time::timeout(Duration::from_millis(100), published.changed()).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// Waits until a record is sequenced and covered by a checkpoint.
    pub(crate) async fn wait_sequenced(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
        deadline: tokio::time::Instant,
    ) -> Result<(), OciError> {
        let mut published = self.inner.published.subscribe();
        // Once sequenced, only the checkpoint is awaited (no more queries).
        // While pending, this process's sequencer says what became of the
        // record; the store is asked first, and whenever nothing happened
        // for a while (another process may be sequencing).
        let mut sequenced_at: Option<u64> = None;
        let mut ask_store = true;
        loop {
            let known = self
                .inner
                .outcomes
                .lock()
                .ok()
                .and_then(|mut o| o.get(&(*log_id, *record_id)));
            let status = match (sequenced_at, known) {
                (Some(registry_index), _) | (None, Some(Ok(registry_index))) => {
                    Some(RecordStatus::Sequenced { registry_index })
                }
                (None, Some(Err(reason))) => Some(RecordStatus::Pending {
                    state: cairn_store::PendingState::Rejected,
                    missing: Vec::new(),
                    reason: Some(reason),
                }),
                (None, None) if ask_store => {
                    self.inner.store.record_status(log_id, record_id).await?
                }
                (None, None) => Some(RecordStatus::Pending {
                    state: cairn_store::PendingState::Queued,
                    missing: Vec::new(),
                    reason: None,
                }),
            };
            match status {
                Some(RecordStatus::Sequenced { registry_index })
                    if registry_index < self.latest_length() =>
                {
                    return Ok(());
                }
                Some(RecordStatus::Sequenced { registry_index }) => {
                    sequenced_at = Some(registry_index);
                }
                Some(RecordStatus::Pending {
                    state: cairn_store::PendingState::Rejected,
                    reason,
                    ..
                }) => {
                    return Err(denied(format!(
                        "the push was refused: {}",
                        reason.unwrap_or_default()
                    )));
                }
                None => {
                    return Err(
                        ServiceError::Internal(format!("record {record_id} vanished")).into(),
                    );
                }
                _ => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ServiceError::unavailable(
                    "the push is accepted but not yet published; retry shortly",
                )
                .into());
            }
            ask_store = tokio::time::timeout(
                (deadline - now).min(Duration::from_millis(200)),
                published.changed(),
            )
            .await
            .is_err();
        }
    }

    async fn wait_visible(&self, push: &Push<'_>) -> Result<(), OciError> {
        // A retry of a push whose records are pending or published.
        let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
        loop {
            if self
                .inner
                .store
                .manifest(&push.repository.name, &push.digest)
                .await?
                .is_some_and(|m| m.visible)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(
                    ServiceError::unavailable("the push is not yet published; retry").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The pending records of a push on the current heads, or `None` if
    /// the push is already recorded.
    async fn push_records(
        &self,
        push: &Push<'_>,
        package_state: &PackageState,
        meta_state: &MetaState,
    ) -> Result<Option<Vec<NewPending>>, OciError> {
        let package = &push.repository.package;
        let recorded = meta_state.manifest(&push.digest).is_some();
        if let Some(tag) = &push.tag
            && let Some(existing) = meta_state.tag(tag)
        {
            if *existing == push.digest {
                return Ok(None);
            }
            if push.version.is_some() {
                return Err(denied(format!(
                    "version {tag} of {package} is {existing}; versions are immutable"
                )));
            }
            if self
                .namespace_policy(package.namespace())
                .tag_is_immutable(tag)
            {
                return Err(denied(format!(
                    "tag {tag} of {package} is {existing}, and the policy of namespace `{}` \
                     makes it immutable",
                    package.namespace()
                )));
            }
        }
        if recorded && push.tag.is_none() {
            return Ok(None);
        }
        if let Some(version) = &push.version
            && package_state.release(version).is_some()
        {
            return Err(denied(format!(
                "version {version} of {package} is already released; versions are immutable"
            )));
        }
        let mut records = Vec::new();
        // The warg release, signed by the publisher key.
        let release = match (&push.version, push.layer) {
            (Some(version), Some((content, _))) => {
                let envelope = self
                    .publisher_release(package, package_state, push.caller, version, content)
                    .await?;
                let record = envelope.record_id();
                records.push(NewPending {
                    record_id: record,
                    log_id: LogId::package(package),
                    package_name: Some(package.to_string()),
                    content_bytes: envelope.content_bytes().to_vec(),
                    key_id: envelope.key_id().to_string(),
                    signature: envelope.signature().to_string(),
                    missing: Vec::new(),
                    created_at_ms: self.inner.clock.now_ms(),
                });
                Some(ReleaseLink {
                    version: version.clone(),
                    record,
                    content,
                })
            }
            _ => None,
        };
        let entry = if recorded {
            ExtEntry::Tag(TagEntry {
                tag: push.tag.clone().unwrap_or_default(),
                digest: push.digest,
                release,
                by: push.caller.attribution(),
            })
        } else {
            ExtEntry::Manifest(ManifestEntry {
                digest: push.digest,
                media_type: push.media_type.clone(),
                artifact_type: push.artifact_type.clone(),
                subject: push.subject,
                size: push.size,
                blobs: push.blobs.clone(),
                tags: push.tag.iter().cloned().collect(),
                release,
                wasm: push.facts.clone(),
                by: push.caller.attribution(),
            })
        };
        let meta = self.meta_record(package, meta_state, vec![entry]).await?;
        // The metadata record first: it attributes the release to the
        // identity that pushed before the release itself is sequenced.
        records.insert(0, meta);
        Ok(Some(records))
    }

    /// Builds, signs (operator key) and validates a metadata log record.
    pub(crate) async fn meta_record(
        &self,
        package: &PackageName,
        state: &MetaState,
        entries: Vec<ExtEntry>,
    ) -> Result<NewPending, ServiceError> {
        let keys = self.keys();
        let envelope = crate::admin::build_ext_record(
            state.head(),
            keys.operator.as_ref(),
            self.inner.clock.as_ref(),
            entries,
        )
        .await?;
        state
            .clone()
            .validate(&envelope, &self.operator_state())
            .map_err(|e| {
                ServiceError::conflict(format!("refused by the metadata log's rules: {e}"))
            })?;
        Ok(crate::admin::ext_pending(
            &envelope,
            LogId::package_meta(package),
            meta_log_name(package),
            self.inner.clock.as_ref(),
        ))
    }

    /// A warg package record releasing `version` with `content`, signed by
    /// the publisher key. A new package log is initialised by the publisher
    /// key, which grants `release` and `yank` to the warg keys bound to the
    /// pushing identity (so it can also publish with the warg CLI).
    async fn publisher_release(
        &self,
        package: &PackageName,
        state: &PackageState,
        caller: &Caller,
        version: &Version,
        content: Sha256Digest,
    ) -> Result<Envelope<PackageRecord>, OciError> {
        let publisher = self.publisher_signer().ok_or_else(|| {
            OciError::new(OciCode::Unsupported, "this registry has no publisher key")
        })?;
        let PublicKey::EcdsaP256(publisher_key) = publisher.public_key().clone() else {
            return Err(
                ServiceError::Internal("the publisher key must be ECDSA P-256".into()).into(),
            );
        };
        let mut entries = Vec::new();
        if state.head().is_none() {
            entries.push(PackageEntry::Init {
                key: publisher_key.clone(),
            });
            let registry = self.registry_log();
            if let Some(identity) = registry.identity(&caller.identity) {
                for key_id in &identity.keys {
                    if let Some((_, key)) = registry.key(key_id) {
                        entries.push(PackageEntry::GrantFlat {
                            key: key.clone(),
                            permissions: vec![PackagePermission::Release, PackagePermission::Yank],
                        });
                    }
                }
            }
        } else if !state.has_permission(&publisher_key.key_id(), PackagePermission::Release) {
            return Err(denied(format!(
                "{package} was created with the warg CLI; to publish over OCI, grant the registry's \
                 publisher key the release permission: `warg publish grant --name {package} {publisher_key}`"
            )));
        }
        entries.push(PackageEntry::Release {
            version: version.clone(),
            content,
        });
        self.sign_package_record(state, publisher.as_ref(), entries)
            .await
    }

    /// Builds and signs a package record with `signer` on `state`'s head,
    /// and validates it.
    pub(crate) async fn sign_package_record(
        &self,
        state: &PackageState,
        signer: &dyn cairn_crypto::Signer,
        entries: Vec<PackageEntry>,
    ) -> Result<Envelope<PackageRecord>, OciError> {
        let key_id: KeyId = crate::keys::ecdsa_key_id(signer)?;
        let now = self
            .inner
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| ServiceError::Internal("the clock is before 1970".into()))?;
        let mut timestamp = Timestamp::from_unix(now.as_secs(), now.subsec_nanos())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        if let Some(head) = state.head()
            && head.timestamp > timestamp
        {
            timestamp = head.timestamp;
        }
        let record: PackageRecord = Record {
            prev: state.head().map(|h| h.record_id),
            version: 0,
            timestamp,
            entries,
        };
        let bytes = record.encode();
        let message = Envelope::<PackageRecord>::signing_message(&bytes);
        let signature = match signer.sign(&message).await {
            Ok(Signature::EcdsaP256(signature)) => signature,
            Ok(Signature::Ed25519(_)) => {
                return Err(
                    ServiceError::Internal("the publisher key must be ECDSA P-256".into()).into(),
                );
            }
            Err(e) => {
                return Err(ServiceError::Unavailable {
                    retry_after: 5,
                    reason: format!("cannot sign with the publisher key: {e}"),
                }
                .into());
            }
        };
        let envelope = Envelope::from_signed(record, bytes, key_id, signature);
        state
            .clone()
            .validate(&envelope)
            .map_err(|e| denied(format!("the release would be invalid: {e}")))?;
        Ok(envelope)
    }

    /// Whether the repository has anything at all (a package or metadata
    /// log, or tags).
    pub(super) async fn repository_exists(
        &self,
        repository: &Repository,
    ) -> Result<bool, OciError> {
        let (package, meta) = self.oci_states(&repository.package).await?;
        Ok(package.head().is_some() || meta.head().is_some())
    }

    /// The release `version` of a package, if it is released and not
    /// yanked, with its content, size and record timestamp.
    async fn live_release(
        &self,
        package: &PackageName,
        state: &PackageState,
        version: &Version,
    ) -> Result<Option<(Sha256Digest, u64, Timestamp)>, OciError> {
        let Some(release) = state.release(version) else {
            return Ok(None);
        };
        let Some(content) = release.content() else {
            return Ok(None);
        };
        let Some(size) = self.published_content_size(content).await? else {
            return Ok(None);
        };
        let _ = package;
        Ok(Some((*content, size, release.timestamp)))
    }

    /// The manifest of a release published over warg: derived from the
    /// logged release the first time it is asked for (one derivation at a
    /// time per release, however many readers arrive together), stored
    /// (content-addressed, and named in `oci_derived`), and served from the
    /// store afterwards.
    pub(crate) async fn derived_manifest(
        &self,
        repository: &Repository,
        version: &Version,
        content: Sha256Digest,
        size: u64,
        created: Timestamp,
    ) -> Result<ManifestBody, OciError> {
        let store = &self.inner.store;
        let version_text = version.to_string();
        if let Some(body) = self.stored_derived(repository, &version_text).await? {
            return Ok(body);
        }
        let _turn = self
            .inner
            .derivations
            .lock((repository.name.clone(), version_text.clone()))
            .await;
        // Someone else may have derived it while this caller waited.
        if let Some(body) = self.stored_derived(repository, &version_text).await? {
            return Ok(body);
        }
        let bytes = self
            .read_blob(&content, self.inner.config.max_content_bytes)
            .await?;
        let info = tokio::task::spawn_blocking(move || cairn_wasm::inspect(&bytes).ok())
            .await
            .map_err(|e| ServiceError::Internal(format!("inspection task failed: {e}")))?;
        let derived = derive(
            &repository.package,
            version,
            &content,
            size,
            &created,
            info.as_ref(),
        );
        self.inner.metrics.oci_derivations.add(1);
        for (digest, bytes) in [
            (derived.config_digest, &derived.config),
            (derived.manifest_digest, &derived.manifest),
        ] {
            self.inner
                .blobs
                .put_bytes(
                    Some(digest),
                    Bytes::from(bytes.clone()),
                    MAX_MANIFEST_BYTES as u64,
                )
                .await?;
        }
        store
            .link_blob(
                &repository.name,
                &derived.config_digest,
                derived.config.len() as u64,
            )
            .await?;
        store.link_blob(&repository.name, &content, size).await?;
        store
            .insert_manifest(&OciManifestRow {
                repository: repository.name.clone(),
                digest: derived.manifest_digest,
                media_type: IMAGE_MANIFEST.into(),
                artifact_type: Some(WASM_CONFIG.into()),
                subject: None,
                size: derived.manifest.len() as u64,
                annotations: serde_json::json!({"org.opencontainers.image.version": version_text})
                    .to_string(),
                // Derived from a logged release: visible at once.
                visible: true,
                created_at_ms: self.inner.clock.now_ms(),
            })
            .await?;
        // Named last: a crash before this leaves only content-addressed
        // rows, and the next reader derives the same bytes again.
        store
            .insert_derived(&repository.name, &version_text, &derived.manifest_digest)
            .await?;
        Ok(ManifestBody {
            digest: derived.manifest_digest,
            media_type: IMAGE_MANIFEST.into(),
            bytes: Bytes::from(derived.manifest),
        })
    }

    /// The stored derived manifest of a release, if any.
    async fn stored_derived(
        &self,
        repository: &Repository,
        version: &str,
    ) -> Result<Option<ManifestBody>, OciError> {
        match self.inner.store.derived(&repository.name, version).await? {
            Some(digest) => self.stored_manifest(repository, &digest).await,
            None => Ok(None),
        }
    }

    async fn stored_manifest(
        &self,
        repository: &Repository,
        digest: &Sha256Digest,
    ) -> Result<Option<ManifestBody>, OciError> {
        let Some(row) = self
            .inner
            .store
            .manifest(&repository.name, digest)
            .await?
            .filter(|m| m.visible)
        else {
            return Ok(None);
        };
        let bytes = self.read_blob(digest, MAX_MANIFEST_BYTES as u64).await?;
        Ok(Some(ManifestBody {
            digest: *digest,
            media_type: row.media_type,
            bytes: Bytes::from(bytes),
        }))
    }

    /// `GET|HEAD /v2/<name>/manifests/<reference>`.
    pub async fn oci_get_manifest(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        reference: &str,
    ) -> Result<ManifestBody, OciError> {
        let repository = Repository::parse(repository)?;
        self.oci_may_read(caller, &repository)?;
        let reference = Reference::parse(reference)?;
        let unknown = |what: String| OciError::new(OciCode::ManifestUnknown, what);
        let found = match &reference {
            Reference::Digest(digest) => self.stored_manifest(&repository, digest).await?,
            Reference::Tag(tag) => {
                let (state, _) = self.oci_states(&repository.package).await?;
                let mut tag = tag.clone();
                if tag == "latest"
                    && self
                        .inner
                        .store
                        .tag(&repository.name, "latest")
                        .await?
                        .is_none()
                {
                    // Without a pushed `latest`, the newest live release.
                    if let Some(newest) = state
                        .releases()
                        .filter(|r| !r.yanked())
                        .map(|r| r.version.clone())
                        .max()
                    {
                        tag = newest.to_string();
                    }
                }
                let version = version_tag(&tag);
                if let Some(version) = &version
                    && state.release(version).is_some_and(|r| r.yanked())
                {
                    let reason = self
                        .oci_states(&repository.package)
                        .await?
                        .1
                        .yank(version)
                        .map(|y| format!(": {}", y.reason))
                        .unwrap_or_default();
                    return Err(unknown(format!(
                        "version {version} of {} is yanked{reason}",
                        repository.package
                    )));
                }
                match self.inner.store.tag(&repository.name, &tag).await? {
                    Some(digest) => self.stored_manifest(&repository, &digest).await?,
                    None => match &version {
                        Some(version) => {
                            match self
                                .live_release(&repository.package, &state, version)
                                .await?
                            {
                                Some((content, size, created)) => Some(
                                    self.derived_manifest(
                                        &repository,
                                        version,
                                        content,
                                        size,
                                        created,
                                    )
                                    .await?,
                                ),
                                None => None,
                            }
                        }
                        None => None,
                    },
                }
            }
        };
        match found {
            Some(body) => {
                // A release whose content is withheld is not pulled: its
                // manifest answers 451 with the reason, like its blobs
                // (parsed only while anything is withheld at all).
                if self.registry_log().withheld_all().next().is_some()
                    && let Ok(parsed) =
                        cairn_protocol::oci::parse_manifest(&body.bytes, Some(&body.media_type))
                {
                    for layer in &parsed.layers {
                        self.refuse_withheld(&layer.digest)?;
                    }
                }
                Ok(body)
            }
            None if !self.repository_exists(&repository).await? => Err(OciError::new(
                OciCode::NameUnknown,
                format!("repository {} is unknown", repository.name),
            )),
            None => Err(unknown(format!("manifest unknown in {}", repository.name))),
        }
    }
}

/// Everything a push records.
struct Push<'a> {
    row: OciManifestRow,
    repository: &'a Repository,
    caller: &'a Caller,
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
}
