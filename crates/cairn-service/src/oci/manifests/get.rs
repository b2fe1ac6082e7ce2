//! `GET|HEAD /v2/<name>/manifests/<reference>`: stored manifests, tags, and
//! manifests derived from releases published over warg.

use bytes::Bytes;
use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::meta::version_tag;
use cairn_protocol::package::PackageState;
use cairn_protocol::{PackageName, Timestamp};
use cairn_store::OciManifestRow;
use semver::Version;

use super::*;
use crate::Registry;
use crate::identity::Caller;
use crate::oci::derive::derive;
use crate::oci::{
    IMAGE_MANIFEST, MAX_MANIFEST_BYTES, OciCode, OciError, Reference, Repository, WASM_CONFIG,
};

impl Registry {
    /// Whether the repository has anything at all (a package or metadata
    /// log, or tags).
    pub(crate) async fn repository_exists(
        &self,
        repository: &Repository,
    ) -> Result<bool, OciError> {
        let (package, meta) = self.oci_states(&repository.package).await?;
        Ok(package.head().is_some() || meta.head().is_some())
    }

    /// The release `version` of a package, if it is released and not
    /// yanked, with its content, size and record timestamp.
    pub(super) async fn live_release(
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
        let info = self.inspected(&content).await?.ok();
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
            record: None,
        })
    }

    /// The stored derived manifest of a release, if any.
    pub(super) async fn stored_derived(
        &self,
        repository: &Repository,
        version: &str,
    ) -> Result<Option<ManifestBody>, OciError> {
        match self.inner.store.derived(&repository.name, version).await? {
            Some(digest) => self.stored_manifest(repository, &digest).await,
            None => Ok(None),
        }
    }

    pub(super) async fn stored_manifest(
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
        let bytes = self.read_manifest_bytes(digest).await?;
        Ok(Some(ManifestBody {
            digest: *digest,
            media_type: row.media_type,
            bytes: Bytes::from(bytes),
            record: None,
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
        // The tag as resolved, for the record that set it.
        let mut resolved: Option<String> = None;
        let found = match &reference {
            Reference::Digest(digest) => self.stored_manifest(&repository, digest).await?,
            // An alias recorded when the manifest (or the same bytes) was
            // pushed under it; then exactly what its SHA-256 finds.
            Reference::Sha512(name) => match self.inner.store.alias(name).await? {
                Some(digest) => self.stored_manifest(&repository, &digest).await?,
                None => None,
            },
            Reference::Tag(tag) => {
                let (state, meta) = self.oci_states(&repository.package).await?;
                let mut tag = tag.clone();
                if tag == "latest"
                    && self
                        .inner
                        .store
                        .tag(&repository.name, "latest")
                        .await?
                        .is_none()
                {
                    // Without a pushed `latest`, the newest live release
                    // (not held, unless the caller may sign it).
                    let held = if self.sees_held(caller, &repository) {
                        Default::default()
                    } else {
                        self.held_versions(&repository.package, &meta)
                    };
                    if let Some(newest) = state
                        .releases()
                        .filter(|r| !r.yanked() && !held.contains(&r.version))
                        .map(|r| r.version.clone())
                        .max()
                    {
                        tag = newest.to_string();
                    }
                }
                resolved = Some(tag.clone());
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
            Some(mut body) => {
                // A release held until signed: refused by tag and by digest,
                // except to those who sign it.
                self.oci_refuse_held_manifest(caller, &repository, &body.digest)
                    .await?;
                body.record = self
                    .manifest_record(&repository, resolved.as_deref(), &body)
                    .await?;
                // A release whose content is withheld is not pulled: its
                // manifest answers 451 with the reason, like its blobs
                // (parsed only while anything is withheld at all; layers
                // named by SHA-512 are checked by their SHA-256).
                if self.registry_log().withheld_all().next().is_some()
                    && let Ok(parsed) = self
                        .oci_parse_manifest(&body.bytes, Some(&body.media_type))
                        .await
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
