//! `DELETE /v2/<name>/manifests/<reference>`: deleting a mutable tag, or a
//! manifest that is not a release.
//!
//! The life of a delete:
//!
//! 1. Push rights, before anything else: the same rule as moving a tag
//!    (`publish` in the namespace, as an owner or publisher; on a package
//!    managed with the warg CLI, a bound key that holds `release`).
//! 2. Under the commit gate, the decision against the logs' current state
//!    (so it is exactly the state the record is sequenced on): a version
//!    tag, a manifest that is a release, and a manifest derived from the
//!    log are refused with `405 UNSUPPORTED` — releases are never deleted,
//!    they are yanked; a tag the namespace's policy makes immutable is
//!    refused the same way; an unknown tag or manifest is
//!    `404 MANIFEST_UNKNOWN`.
//! 3. One metadata record says what goes and who asked: an `untag` entry
//!    per tag, then (deleting by digest) `manifestDeleted`. It is submitted
//!    like a push's records; the sequencer removes the tag and manifest rows
//!    in the transaction that sequences it, and the delete answers `202`
//!    once a checkpoint covers it.
//!
//! Not here: erasing anything. The records that pushed a deleted manifest
//! stay in the log and keep verifying, and its bytes stay in the blob store
//! until `cairn gc` finds that nothing references them. Blobs are never
//! deleted over HTTP.

use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::ExtEntry;
use cairn_protocol::ext::meta::{ManifestDeletedEntry, MetaState, UntagEntry, version_tag};
use cairn_protocol::package::PackageState;
use cairn_store::{ExpectedHead, StoreError};

use super::*;
use crate::identity::Caller;
use crate::oci::access::PushKind;
use crate::oci::{OciCode, OciError, Reference, Repository};
use crate::{Registry, ServiceError};

fn unknown(message: String) -> OciError {
    OciError::new(OciCode::ManifestUnknown, message)
}

fn refused(message: String) -> OciError {
    OciError::new(OciCode::Unsupported, message)
}

/// How to take a release out of use, for refusals.
fn yank_hint(package: &PackageName) -> String {
    format!(
        "releases are never deleted; yank the version instead (`warg publish yank --name \
         {package} <version>`, POST /api/v1/packages/{package}/yank, or push the OCI yank \
         artifact)"
    )
}

impl Registry {
    /// `DELETE /v2/<name>/manifests/<reference>`: deletes a mutable tag, or
    /// a manifest that is not a release (and the mutable tags naming it).
    /// Returns once a checkpoint covers the record that logs it.
    pub async fn oci_delete_manifest(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        reference: &str,
    ) -> Result<(), OciError> {
        let repository = Repository::parse(repository)?;
        let caller = self.oci_may_push(caller, &repository)?;
        let (package_state, _) = self.oci_states(&repository.package).await?;
        self.oci_may_push_manifest(caller, &repository, &package_state, PushKind::MutableTag)?;
        let reference = match Reference::parse(reference)? {
            // A SHA-512 name is an alias of the manifest's SHA-256.
            Reference::Sha512(name) => match self.inner.store.alias(&name).await? {
                Some(digest) => Reference::Digest(digest),
                None => {
                    return Err(unknown(format!(
                        "manifest {name} is not in {}",
                        repository.name
                    )));
                }
            },
            other => other,
        };
        let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
        loop {
            // Decided and stored under the gate: the sequencer cannot move
            // the logs in between, and another record of the metadata log
            // still pending makes the insert conflict (then: again, on the
            // state it leaves).
            let gate = self.inner.commit_gate.read().await;
            let (package_state, meta) = self.oci_states_to_write(&repository.package).await?;
            let entries = self
                .deletion(&repository, &package_state, &meta, &reference, caller)
                .await?;
            let record = self
                .meta_record(&repository.package, &meta, entries)
                .await?;
            // Checked in the inserting transaction too (this node may have
            // stopped leading since it read the states).
            let package = &repository.package;
            let decided_on = [
                ExpectedHead::new(
                    LogId::package(package),
                    package_state.head().map(|h| h.record_id),
                ),
                ExpectedHead::new(
                    LogId::package_meta(package),
                    meta.head().map(|h| h.record_id),
                ),
            ];
            let inserted = self
                .inner
                .store
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
                    let mut published = self.inner.published.subscribe();
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_millis(100),
                        published.changed(),
                    )
                    .await;
                }
                Err(StoreError::Conflict(_) | StoreError::Moved(_)) => {
                    return Err(ServiceError::unavailable(
                        "another publish of this package is in progress; retry",
                    )
                    .into());
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// The entries that delete `reference`, or why it may not be deleted.
    async fn deletion(
        &self,
        repository: &Repository,
        package_state: &PackageState,
        meta: &MetaState,
        reference: &Reference,
        caller: &Caller,
    ) -> Result<Vec<ExtEntry>, OciError> {
        let package = &repository.package;
        let policy = self.namespace_policy(package.namespace());
        let immutable = |tag: &str| {
            refused(format!(
                "tag {tag} of {package} is immutable: the policy of namespace `{}` says so",
                package.namespace()
            ))
        };
        let untag = |tag: &str, digest: Sha256Digest| {
            ExtEntry::Untag(UntagEntry {
                tag: tag.to_owned(),
                digest,
                by: caller.attribution(),
            })
        };
        match reference {
            Reference::Sha512(name) => Err(unknown(format!(
                "manifest {name} is not in {}",
                repository.name
            ))),
            Reference::Tag(tag) => {
                if let Some(version) = version_tag(tag) {
                    if package_state.release(&version).is_some() || meta.tag(tag).is_some() {
                        return Err(refused(format!(
                            "{tag} is a release of {package}: {}",
                            yank_hint(package)
                        )));
                    }
                    return Err(unknown(format!("tag {tag} is not in {}", repository.name)));
                }
                let Some(digest) = meta.tag(tag) else {
                    return Err(unknown(format!("tag {tag} is not in {}", repository.name)));
                };
                if policy.tag_is_immutable(tag) {
                    return Err(immutable(tag));
                }
                Ok(vec![untag(tag, *digest)])
            }
            Reference::Digest(digest) => {
                let Some(manifest) = meta.manifest(digest) else {
                    return Err(self.unrecorded(repository, digest).await?);
                };
                if let Some(version) = &manifest.release {
                    return Err(refused(format!(
                        "manifest {digest} is release {version} of {package}: {}",
                        yank_hint(package)
                    )));
                }
                let tags: Vec<&str> = meta.tags_of(digest).collect();
                if let Some(tag) = tags.iter().find(|t| version_tag(t).is_some()) {
                    return Err(refused(format!(
                        "manifest {digest} is {tag} of {package}: {}",
                        yank_hint(package)
                    )));
                }
                if let Some(tag) = tags.iter().find(|t| policy.tag_is_immutable(t)) {
                    return Err(immutable(tag));
                }
                let mut entries: Vec<ExtEntry> =
                    tags.iter().map(|tag| untag(tag, *digest)).collect();
                entries.push(ExtEntry::ManifestDeleted(ManifestDeletedEntry {
                    digest: *digest,
                    by: caller.attribution(),
                }));
                Ok(entries)
            }
        }
    }

    /// Why a manifest no metadata record names cannot be deleted: it is
    /// derived from the log (a release published over warg, a yank
    /// referrer), or it is unknown.
    async fn unrecorded(
        &self,
        repository: &Repository,
        digest: &Sha256Digest,
    ) -> Result<OciError, OciError> {
        let store = &self.inner.store;
        if let Some(version) = store
            .derived_versions(&repository.name, digest)
            .await?
            .first()
        {
            return Ok(refused(format!(
                "manifest {digest} is release {version} of {}: {}",
                repository.package,
                yank_hint(&repository.package)
            )));
        }
        if store
            .manifest(&repository.name, digest)
            .await?
            .is_some_and(|m| m.visible)
        {
            return Ok(refused(format!(
                "manifest {digest} of {} is derived from the log (a release or a yank); it \
                 goes when what it was derived from does",
                repository.name
            )));
        }
        Ok(unknown(format!(
            "manifest {digest} is not in {}",
            repository.name
        )))
    }
}
