//! cairn's extension API over packages and namespaces: what a package's
//! logs say (versions, who published them, yanks and why), a namespace's
//! ownership and policy, and yanking with a reason.
//!
//! Everything here is read from (or written to) the transparency log; the
//! answers are conveniences an auditor can recompute from the records.

use bytes::Bytes;
use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::ExtEntry;
use cairn_protocol::ext::hold::Hold;
use cairn_protocol::ext::meta::{MetaState, YankEntry};
use cairn_protocol::ext::registry::NamespaceEntry;
use cairn_protocol::ext::signature::SignatureCheck;
use cairn_protocol::operator::NamespaceState;
use cairn_protocol::package::ReleaseState;
use cairn_protocol::record::{PackageEntry, PackagePermission};
use cairn_protocol::{LogId, PackageName, RecordId};
use cairn_store::{NewPending, OciManifestRow, StoreError};
use semver::Version;
use serde::Serialize;

use crate::identity::{Action, Caller};
use crate::oci::{IMAGE_MANIFEST, YANK_ARTIFACT_TYPE, derive::rfc3339};
use crate::{Registry, ServiceError};

/// A namespace as the registry knows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceInfo {
    /// The namespace.
    pub namespace: String,
    /// `defined` (this registry's own) or `imported`.
    pub state: &'static str,
    /// For imported namespaces, the registry the operator log names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    /// Its ownership record (absent for namespaces without owners).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ownership: Option<NamespaceEntry>,
}

/// One version of a package.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The version.
    pub version: Version,
    /// The warg record that released it (none for a release mirrored
    /// from an upstream registry, which only the metadata log records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordId>,
    /// When (the release record's timestamp, RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    /// Its content, unless yanked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Sha256Digest>,
    /// The identity that published it: the one an OCI push was attributed
    /// to, or the one the signing key is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_by: Option<String>,
    /// The key that signed the release record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Whether it was mirrored from the namespace's upstream registry.
    pub mirrored: bool,
    /// Whether it is yanked.
    pub yanked: bool,
    /// Why, and by whom, if a reason was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yank: Option<YankEntry>,
    /// The OCI manifest its version tag names, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Sha256Digest>,
    /// The signatures and attestations logged about that manifest, with
    /// their verdicts.
    pub signatures: Vec<VersionSignature>,
    /// Whether it is held until signed ([`crate::hold`]): its manifest and
    /// content are refused to all but the namespace's signers.
    pub held: bool,
    /// While held, what the doors answer (what it awaits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_reason: Option<String>,
    /// The hold logged for it, if it was ever held: what it required and,
    /// once released, the signature manifests that released it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
}

/// A signature or attestation of a version, as its metadata log entry
/// recorded it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionSignature {
    /// The manifest that carries it (the `.sig` / `.att` manifest or the
    /// referrer).
    pub manifest: Sha256Digest,
    /// The check, as logged.
    #[serde(flatten)]
    pub check: SignatureCheck,
}

/// A package as its logs describe it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageInfo {
    /// `namespace:name`.
    pub name: String,
    /// The package log's id.
    pub log_id: LogId,
    /// The metadata log's id.
    pub meta_log_id: LogId,
    /// Versions, oldest first.
    pub versions: Vec<VersionInfo>,
    /// OCI tags and the manifests they name.
    pub tags: std::collections::BTreeMap<String, Sha256Digest>,
}

/// What a yank did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct YankOutcome {
    /// The warg yank record, if the registry signed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordId>,
    /// The metadata record holding the reason.
    pub reason_record: RecordId,
    /// The referrer manifest attached to the release's OCI manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<Sha256Digest>,
}

fn parse_package(name: &str) -> Result<PackageName, ServiceError> {
    PackageName::new(name.to_owned()).map_err(|e| ServiceError::bad_request(e.to_string()))
}

impl Registry {
    /// `GET /api/v1/namespaces/{namespace}`.
    pub fn namespace_info(&self, namespace: &str) -> Result<NamespaceInfo, ServiceError> {
        let (state, imported_from) = match self.operator_state().namespace(namespace) {
            Some(NamespaceState::Defined) => ("defined", None),
            Some(NamespaceState::Imported { registry }) => ("imported", Some(registry.clone())),
            None => {
                return Err(ServiceError::not_found(format!(
                    "namespace `{namespace}` is not defined on this registry"
                )));
            }
        };
        Ok(NamespaceInfo {
            namespace: namespace.to_owned(),
            state,
            imported_from,
            ownership: self.registry_log().namespace(namespace).cloned(),
        })
    }

    /// `GET /api/v1/packages/{name}`.
    pub async fn package_info(&self, name: &str) -> Result<PackageInfo, ServiceError> {
        let package = parse_package(name)?;
        let (state, meta) = self.oci_states(&package).await?;
        if state.head().is_none() && meta.head().is_none() {
            return Err(ServiceError::not_found(format!("no package `{package}`")));
        }
        let registry = self.registry_log();
        let mut versions = Vec::new();
        for release in state.releases() {
            let published_by = meta
                .attributed(&release.record_id)
                .map(str::to_owned)
                .or_else(|| registry.key(&release.by).map(|(i, _)| i.to_owned()));
            versions.push(VersionInfo {
                version: release.version.clone(),
                record: Some(release.record_id),
                released: Some(rfc3339(&release.timestamp)),
                content: release.content().copied(),
                published_by,
                signed_by: Some(release.by.to_string()),
                mirrored: false,
                yanked: release.yanked(),
                yank: meta.yank(&release.version).cloned(),
                manifest: None,
                signatures: Vec::new(),
                held: false,
                held_reason: None,
                hold: meta.hold(&release.version).cloned(),
            });
        }
        // Releases mirrored from an upstream live in the metadata log only.
        for (tag, digest) in meta.tags() {
            if let Some(version) = cairn_protocol::ext::meta::version_tag(tag)
                && state.release(&version).is_none()
                && meta.manifest(digest).is_some_and(|m| m.release.is_some())
            {
                versions.push(VersionInfo {
                    version,
                    record: None,
                    released: None,
                    content: None,
                    published_by: None,
                    signed_by: None,
                    mirrored: true,
                    yanked: false,
                    yank: None,
                    manifest: None,
                    signatures: Vec::new(),
                    held: false,
                    held_reason: None,
                    hold: None,
                });
            }
        }
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        for version in &mut versions {
            let Some(manifest) = meta.tag(&version.version.to_string()).copied() else {
                continue;
            };
            version.manifest = Some(manifest);
            if let Some(refusal) = self.held_manifest_refusal(&package, &meta, &manifest) {
                version.held = true;
                version.held_reason = Some(refusal.to_string());
            }
            version.signatures = meta
                .signatures_of(&manifest)
                .map(|(carrier, check)| VersionSignature {
                    manifest: *carrier,
                    check: check.clone(),
                })
                .collect();
        }
        Ok(PackageInfo {
            name: package.to_string(),
            log_id: LogId::package(&package),
            meta_log_id: LogId::package_meta(&package),
            versions,
            tags: meta.tags().map(|(t, d)| (t.to_owned(), *d)).collect(),
        })
    }

    /// `POST /api/v1/packages/{name}/yank`: yanks `version` with a reason.
    ///
    /// When the registry's publisher key may yank in the package's log (the
    /// package was created by an OCI push), the registry signs the warg
    /// yank record itself; the reason goes in the metadata log, attributed
    /// to the caller, in the same batch. A package created with the warg
    /// CLI is yanked with the CLI (its keys hold the permission); the
    /// reason can then be recorded here. The release's OCI manifest gets a
    /// referrer of type `application/vnd.cairn.yank.v1+json` carrying the
    /// reason.
    pub async fn yank(
        &self,
        caller: Option<&Caller>,
        name: &str,
        version: &str,
        reason: &str,
    ) -> Result<YankOutcome, ServiceError> {
        let package = parse_package(name)?;
        let caller = caller
            .ok_or_else(|| ServiceError::unauthorized("yanking needs a token allowing `yank`"))?;
        self.require(caller, Action::Yank, Some(package.namespace()))?;
        let version: Version = version
            .parse()
            .map_err(|e| ServiceError::bad_request(format!("invalid version: {e}")))?;
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 1024 {
            return Err(ServiceError::bad_request(
                "a yank reason must have 1 to 1024 bytes",
            ));
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let gate = self.inner.commit_gate.read().await;
            let (state, meta) = self.oci_states(&package).await?;
            let release = state.release(&version).ok_or_else(|| {
                ServiceError::not_found(format!("{package} has no release {version}"))
            })?;
            if meta.yank(&version).is_some() {
                return Err(ServiceError::conflict(format!(
                    "{package}@{version} is already yanked with a reason"
                )));
            }
            let subject = match &release.state {
                ReleaseState::Released { content } => Some(
                    self.release_manifest(&package, &meta, &version, *content, release.timestamp)
                        .await?,
                ),
                ReleaseState::Yanked { .. } => {
                    meta.tag(&version.to_string()).copied().map(|d| (d, 0))
                }
            };
            let mut records: Vec<NewPending> = Vec::new();
            let mut yank_record = None;
            if !release.yanked() {
                let publisher = self.publisher_signer();
                let may = publisher.as_ref().is_some_and(|p| {
                    crate::keys::ecdsa_key_id(p.as_ref())
                        .is_ok_and(|id| state.has_permission(&id, PackagePermission::Yank))
                });
                let Some(publisher) = publisher.filter(|_| may) else {
                    return Err(ServiceError::conflict(format!(
                        "{package} was created with the warg CLI: yank it with `warg publish yank \
                         --name {package} {version}`, then record the reason here"
                    )));
                };
                let envelope = self
                    .sign_package_record(
                        &state,
                        publisher.as_ref(),
                        vec![PackageEntry::Yank {
                            version: version.clone(),
                        }],
                    )
                    .await
                    .map_err(|e| ServiceError::conflict(e.message))?;
                yank_record = Some(envelope.record_id());
                records.push(NewPending {
                    record_id: envelope.record_id(),
                    log_id: LogId::package(&package),
                    package_name: Some(package.to_string()),
                    content_bytes: envelope.content_bytes().to_vec(),
                    key_id: envelope.key_id().to_string(),
                    signature: envelope.signature().to_string(),
                    missing: Vec::new(),
                    created_at_ms: self.inner.clock.now_ms(),
                });
            }
            let entry = YankEntry {
                version: version.clone(),
                reason: reason.to_owned(),
                by: caller.attribution(),
                record: yank_record,
            };
            let meta_record = self
                .meta_record(&package, &meta, vec![ExtEntry::YankReason(entry.clone())])
                .await?;
            let reason_record = meta_record.record_id;
            records.insert(0, meta_record);
            let inserted = self.inner.store.insert_pending_many(&records).await;
            drop(gate);
            match inserted {
                Ok(_) => {
                    self.backlog()
                        .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    self.wake_sequencer();
                    for record in &records {
                        self.wait_sequenced(&record.log_id, &record.record_id, deadline)
                            .await
                            .map_err(|e| ServiceError::conflict(e.message))?;
                    }
                    let referrer = match subject {
                        Some((digest, size)) => Some(
                            self.yank_referrer(&package, digest, size, &entry, reason_record)
                                .await?,
                        ),
                        None => None,
                    };
                    return Ok(YankOutcome {
                        record: yank_record,
                        reason_record,
                        referrer,
                    });
                }
                Err(StoreError::Conflict(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(StoreError::Conflict(_)) => {
                    return Err(ServiceError::unavailable(
                        "another publish of this package is in progress; retry",
                    ));
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// The OCI manifest of a live release (pushed, or derived from a warg
    /// release) and its size.
    async fn release_manifest(
        &self,
        package: &PackageName,
        meta: &MetaState,
        version: &Version,
        content: Sha256Digest,
        created: cairn_protocol::Timestamp,
    ) -> Result<(Sha256Digest, u64), ServiceError> {
        let repository = crate::oci::Repository::parse(&crate::oci_repository(package))
            .map_err(|e| ServiceError::Internal(e.message))?;
        if let Some(digest) = meta.tag(&version.to_string()) {
            let size = self
                .inner
                .store
                .manifest(&repository.name, digest)
                .await?
                .map_or(0, |m| m.size);
            return Ok((*digest, size));
        }
        let size = self
            .published_content_size(&content)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("content {content} is missing")))?;
        let derived = self
            .derived_manifest(&repository, version, content, size, created)
            .await
            .map_err(|e| ServiceError::Internal(e.message))?;
        Ok((derived.digest, derived.bytes.len() as u64))
    }

    /// Stores the yank referrer of a release manifest: an artifact whose
    /// one layer is the logged yank entry, derived from the log like the
    /// manifests of warg releases.
    async fn yank_referrer(
        &self,
        package: &PackageName,
        subject: Sha256Digest,
        subject_size: u64,
        entry: &YankEntry,
        reason_record: RecordId,
    ) -> Result<Sha256Digest, ServiceError> {
        let repository = crate::oci_repository(package);
        let layer = serde_json::to_vec(&serde_json::json!({
            "version": entry.version.to_string(),
            "reason": entry.reason,
            "by": entry.by,
            "record": entry.record,
            "reasonRecord": reason_record,
        }))
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let config = b"{}".to_vec();
        let annotations = serde_json::json!({
            "dev.cairn.yank.reason": entry.reason,
            "dev.cairn.yank.by": entry.by.identity,
            "dev.cairn.yank.version": entry.version.to_string(),
        });
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST,
            "artifactType": YANK_ARTIFACT_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": Sha256Digest::of(&config).to_string(),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": YANK_ARTIFACT_TYPE,
                "digest": Sha256Digest::of(&layer).to_string(),
                "size": layer.len(),
            }],
            "subject": {
                "mediaType": IMAGE_MANIFEST,
                "digest": subject.to_string(),
                "size": subject_size,
            },
            "annotations": annotations,
        }))
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let digest = Sha256Digest::of(&manifest);
        for bytes in [&config, &layer, &manifest] {
            let info = self
                .inner
                .blobs
                .put_bytes(
                    Some(Sha256Digest::of(bytes)),
                    Bytes::from(bytes.clone()),
                    crate::oci::MAX_MANIFEST_BYTES as u64,
                )
                .await?;
            if !std::ptr::eq(bytes, &manifest) {
                self.inner
                    .store
                    .link_blob(&repository, &info.digest, info.size)
                    .await?;
            }
        }
        self.inner
            .store
            .insert_manifest(&OciManifestRow {
                repository,
                digest,
                media_type: IMAGE_MANIFEST.into(),
                artifact_type: Some(YANK_ARTIFACT_TYPE.into()),
                subject: Some(subject),
                size: manifest.len() as u64,
                annotations: annotations.to_string(),
                visible: true,
                created_at_ms: self.inner.clock.now_ms(),
            })
            .await?;
        Ok(digest)
    }
}
