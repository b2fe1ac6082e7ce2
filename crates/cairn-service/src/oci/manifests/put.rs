//! `PUT /v2/<name>/manifests/<reference>`: validation of a push, before
//! anything is written.
//!
//! Signatures and attestations arrive in three layouts, all accepted in any
//! defined namespace, also one whose policy takes WebAssembly only
//! (`allowOther` off), because they are about the artifacts, not artifacts
//! themselves:
//!
//! * a referrer: a manifest with a `subject` (notation, cosign 3's Sigstore
//!   bundles, `oras attach`, cosign's OCI 1.1 mode);
//! * cosign's tag scheme: a manifest tagged `sha256-<hex>.<suffix>` (`.sig`,
//!   `.att`, `.sbom`, …) is attached to the manifest `sha256:<hex>`. Its
//!   `manifest` entry in the metadata log records that manifest as its
//!   `subject` (as if the client had written one), so the referrers API
//!   lists it; a manifest already recorded gets a `tag` entry, whose tag
//!   names the relation;
//! * the referrers tag schema: an image index tagged `sha256-<hex>` listing
//!   the referrers of `sha256:<hex>`, for clients without the referrers
//!   API. Every manifest it lists must be in the repository with that
//!   subject; clients rewrite it, so it moves like any mutable tag.
//!
//! Every wasm layer of any manifest still passes the namespace's policy.
//! Who may push what ([`PushKind`]) is decided as soon as the manifest is
//! parsed, before any blob is read.

use bytes::Bytes;
use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::meta::version_tag;
use cairn_protocol::oci::{Descriptor, OciDigest, is_nondistributable_layer, parse_manifest};
use cairn_store::OciManifestRow;
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::*;
use crate::identity::Caller;
use crate::oci::access::{AttachmentTag, PushKind};
use crate::oci::signatures::Attached;
use crate::oci::{
    IMAGE_INDEX, IMAGE_MANIFEST, MAX_MANIFEST_BYTES, OciCode, OciError, Reference, Repository,
};
use crate::{Registry, ServiceError};

/// The first bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

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
        let caller = self.oci_may_upload(caller, &repository)?;
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
            Reference::Sha512(expected) => {
                let found = cairn_crypto::Sha512Digest::of(&body);
                if found != *expected {
                    return Err(OciError::new(
                        OciCode::DigestInvalid,
                        format!("the manifest hashes to {found}, not {expected}"),
                    ));
                }
                // The bytes were hashed both ways: the SHA-512 names them.
                self.inner.store.record_alias(expected, &digest).await?;
                None
            }
            // Any tag of the spec's grammar (checked by `Reference::parse`):
            // a semantic version is a release, anything else a pointer.
            Reference::Tag(tag) => Some(tag.clone()),
        };
        let version = tag.as_deref().and_then(version_tag);
        // What it attaches to (its own subject, or cosign's tag scheme), and
        // so what kind of push it is.
        let attachment = tag.as_deref().and_then(AttachmentTag::parse);
        // The subject field, by the SHA-256 cairn names manifests with (a
        // SHA-512 subject is resolved through its alias when the registry
        // has seen its bytes).
        let (own_subject, sha512_subject) = match manifest.subject {
            Some(OciDigest::Sha256(subject)) => (Some(subject), None),
            Some(OciDigest::Sha512(subject)) => {
                (self.inner.store.alias(&subject).await?, Some(subject))
            }
            None => (None, None),
        };
        let subject = attach_subject(manifest.subject, own_subject, attachment)?;
        let refers = subject.is_some() || manifest.subject.is_some();
        let referrers_index = match attachment {
            Some(AttachmentTag::Referrers(target)) if media_type == IMAGE_INDEX => Some(target),
            _ => None,
        };
        let kind = if version.is_some() {
            PushKind::Release
        } else if matches!(attachment, Some(AttachmentTag::Cosign(_))) || referrers_index.is_some()
        {
            PushKind::Attachment
        } else if tag.is_some() {
            PushKind::MutableTag
        } else if refers {
            PushKind::Attachment
        } else {
            PushKind::Untagged
        };
        let (package_state, _) = self.oci_states(&repository.package).await?;
        self.oci_may_push_manifest(caller, &repository, &package_state, kind)?;

        // Every referenced blob (or manifest, for an index) is here; each
        // is known by its SHA-256 (`None`: a non-distributable layer that
        // is not).
        let mut blobs = Vec::new();
        let mut stored: Vec<Option<Sha256Digest>> = Vec::new();
        if media_type == IMAGE_MANIFEST {
            let descriptors: Vec<&Descriptor> =
                manifest.config.iter().chain(&manifest.layers).collect();
            // Looked up a few at a time, answers in order.
            let named: Vec<OciDigest> = descriptors.iter().map(|d| d.digest).collect();
            let name = &repository.name;
            let found: Vec<Option<(Sha256Digest, u64)>> = futures_util::stream::iter(named)
                .map(|blob| async move { self.repository_blob_named(name, &blob).await })
                .buffered(BLOB_LOOKUPS_IN_FLIGHT)
                .try_collect()
                .await?;
            for (descriptor, found) in descriptors.into_iter().zip(found) {
                let blob = descriptor.digest;
                match found {
                    Some((sha256, size)) if size == descriptor.size => {
                        blobs.push(sha256);
                        stored.push(Some(sha256));
                    }
                    Some((_, size)) => {
                        return Err(invalid(format!(
                            "blob {blob} has {size} bytes, the manifest says {}",
                            descriptor.size
                        )));
                    }
                    // SPEC: OCI image-spec — the bytes of a non-distributable
                    // layer live at its `urls`; the registry need not have them.
                    None if is_nondistributable_layer(&descriptor.media_type) => {
                        stored.push(None);
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
                let named = child.digest;
                let row = match self.oci_sha256(&named).await? {
                    Some(sha256) => self.inner.store.manifest(&repository.name, &sha256).await?,
                    None => None,
                };
                let Some(row) = row.filter(|m| m.visible) else {
                    return Err(OciError::new(
                        OciCode::ManifestBlobUnknown,
                        format!("manifest {named} is not in {}", repository.name),
                    ));
                };
                let child = row.digest;
                // SPEC: OCI distribution-spec 1.1 "Referrers Tag Schema" —
                // the index lists the manifests whose subject is the digest.
                if let Some(target) = referrers_index
                    && row.subject != Some(target)
                {
                    return Err(invalid(format!(
                        "the tag sha256-{} names the index of the referrers of {target}, \
                         but manifest {child} does not refer to it",
                        target.to_hex()
                    )));
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
        if version.is_some() && wasm_parts.is_none() {
            return Err(denied(
                "version tags name WebAssembly releases; push a wasm artifact (one application/wasm layer)",
            ));
        }
        if wasm_parts.is_none() && !refers && media_type == IMAGE_MANIFEST {
            let policy = self.namespace_policy(repository.package.namespace());
            if !policy.allow_other {
                return Err(invalid(
                    "this registry stores WebAssembly artifacts (one application/wasm layer) and artifacts \
                     that refer to them (with a subject, or tagged sha256-<hex>.<suffix>)",
                ));
            }
        }
        let facts = match &wasm_parts {
            Some((config, layer)) => {
                self.check_wasm_layer(&repository, version.as_ref(), config, layer)
                    .await?
            }
            None => {
                // Signatures, attestations and other artifacts carry no
                // wasm past the policy either.
                for (descriptor, sha256) in
                    manifest.config.iter().chain(&manifest.layers).zip(&stored)
                {
                    if let Some(sha256) = sha256 {
                        self.check_embedded_wasm(&repository, descriptor, sha256)
                            .await?;
                    }
                }
                None
            }
        };

        // Signatures are judged against the namespace's trust rules before
        // anything is stored or logged.
        let signatures = if wasm_parts.is_none() && media_type == IMAGE_MANIFEST {
            self.check_signatures(
                &repository,
                Attached {
                    body: &body,
                    layers: &manifest.layers,
                    stored: stored.get(1..).unwrap_or_default(),
                    subject,
                    unresolved_subject: manifest.subject.is_some() && own_subject.is_none(),
                },
            )
            .await?
        } else {
            Vec::new()
        };

        // The bytes are stored with the push's records, by the batch that
        // logs it (table `manifest_bytes`): that copy is the one reads use,
        // so a push writes nothing to the blob store.
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

        let size = body.len() as u64;
        let push = Push {
            row,
            body,
            repository: repository.clone(),
            caller: caller.clone(),
            digest,
            media_type,
            artifact_type: manifest.artifact_type.clone(),
            subject,
            size,
            blobs,
            tag,
            version,
            // The wasm layer follows the config.
            layer: wasm_parts
                .as_ref()
                .and_then(|(_, layer)| Some((stored.get(1).copied().flatten()?, layer.size))),
            facts,
            signatures,
        };
        if let Some(sha512) = sha512_subject {
            // Before the push: it matters only once the manifest is visible.
            self.inner
                .store
                .record_sha512_subject(&repository.name, &digest, &sha512)
                .await?;
        }
        self.submit_push(push).await?;
        // SPEC: OCI distribution-spec 1.1 — `OCI-Subject` answers a
        // manifest's own `subject` field, not cosign's tag scheme.
        Ok(PushedManifest {
            digest,
            subject: own_subject,
        })
    }

    /// Refuses a blob of a manifest other than a wasm artifact that is
    /// WebAssembly (by media type or by its first bytes) and does not pass
    /// the namespace's policy.
    async fn check_embedded_wasm(
        &self,
        repository: &Repository,
        descriptor: &Descriptor,
        sha256: &Sha256Digest,
    ) -> Result<(), OciError> {
        let labelled = is_wasm_layer(&descriptor.media_type);
        if !labelled {
            if descriptor.size < WASM_MAGIC.len() as u64 {
                return Ok(());
            }
            let Some(mut stream) = self
                .inner
                .blobs
                .read(sha256, 0, WASM_MAGIC.len() as u64)
                .await?
            else {
                return Ok(());
            };
            let mut head = Vec::with_capacity(WASM_MAGIC.len());
            while let Some(chunk) = stream.next().await {
                head.extend_from_slice(&chunk.map_err(|e| ServiceError::Internal(e.to_string()))?);
            }
            if !head.starts_with(WASM_MAGIC) {
                return Ok(());
            }
        }
        let info = self.inspected(sha256).await?;
        // A layer whose media type says WebAssembly must be WebAssembly,
        // even where other content is allowed.
        if labelled && let Err(error) = &info {
            return Err(invalid(format!(
                "layer {} is not valid WebAssembly: {error}",
                descriptor.digest
            )));
        }
        let policy = self.namespace_policy(repository.package.namespace());
        crate::oci::check_content(&policy, &repository.package, None, descriptor.size, info)
            .map(|_| ())
            .map_err(|reason| denied(format!("blob {} is refused: {reason}", descriptor.digest)))
    }
}

/// The manifest a push attaches to: its own `subject` field (`written`,
/// `resolved` to its SHA-256 when known), or the one a cosign tag names
/// (they must agree when both are there).
fn attach_subject(
    written: Option<OciDigest>,
    resolved: Option<Sha256Digest>,
    attachment: Option<AttachmentTag>,
) -> Result<Option<Sha256Digest>, OciError> {
    match (attachment, written) {
        (Some(AttachmentTag::Cosign(named)), Some(subject)) if resolved != Some(named) => {
            Err(invalid(format!(
                "the tag attaches this manifest to {named}, but its subject is {subject}"
            )))
        }
        (Some(AttachmentTag::Cosign(named)), _) => Ok(Some(named)),
        _ => Ok(resolved),
    }
}

/// How many of a manifest's blobs are looked up at once.
const BLOB_LOOKUPS_IN_FLIGHT: usize = 8;

impl Registry {
    /// The SHA-256 and size of blob `blob` in `repository`, if it is there
    /// (named by its SHA-256 or a SHA-512 alias of it).
    async fn repository_blob_named(
        &self,
        repository: &str,
        blob: &OciDigest,
    ) -> Result<Option<(Sha256Digest, u64)>, OciError> {
        let Some(sha256) = self.oci_sha256(blob).await? else {
            return Ok(None);
        };
        Ok(self
            .inner
            .store
            .repository_blob(repository, &sha256)
            .await?
            .map(|size| (sha256, size)))
    }

    /// The SHA-256 cairn names the content `digest` by: itself, or the
    /// alias recorded for a SHA-512 (`None`: no content of that SHA-512 is
    /// known).
    pub(crate) async fn oci_sha256(
        &self,
        digest: &OciDigest,
    ) -> Result<Option<Sha256Digest>, OciError> {
        match digest {
            OciDigest::Sha256(digest) => Ok(Some(*digest)),
            OciDigest::Sha512(digest) => Ok(self.inner.store.alias(digest).await?),
        }
    }
}
