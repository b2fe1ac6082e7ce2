//! Submitting a push's records and waiting until a checkpoint covers them.

use std::time::Duration;

use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::ExtEntry;
use cairn_protocol::ext::meta::{ManifestEntry, MetaState, ReleaseLink, TagEntry};
use cairn_protocol::package::PackageState;
use cairn_protocol::{LogId, RecordId};
use cairn_store::RecordStatus;
use semver::Version;

use super::group::Outcome;
use super::*;
use crate::oci::OciError;
use crate::{Registry, ServiceError};

impl Registry {
    /// Submits a push to the next group commit (which builds and stores its
    /// records) and waits until they are published.
    pub(super) async fn submit_push(&self, push: Push) -> Result<(), OciError> {
        let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
        let (repository, digest) = (push.repository.name.clone(), push.digest);
        match self.push_grouped(push, deadline).await? {
            Outcome::Stored(records) => {
                // The sequencer takes records in arrival order: once the
                // last is published, the others have been judged too.
                for (log_id, record_id) in records.iter().rev() {
                    self.wait_sequenced(log_id, record_id, deadline).await?;
                }
                Ok(())
            }
            Outcome::Recorded => self.wait_visible(&repository, &digest, deadline).await,
            Outcome::Refused(error) => Err(error),
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

    /// Waits until a manifest recorded by an earlier push is visible (a
    /// retry of a push whose records are pending or published).
    async fn wait_visible(
        &self,
        repository: &str,
        digest: &Sha256Digest,
        deadline: tokio::time::Instant,
    ) -> Result<(), OciError> {
        loop {
            if self
                .inner
                .store
                .manifest(repository, digest)
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

    /// The metadata log entry of a push on `meta` (the package's metadata
    /// log as the pushes before it in its group leave it), or `None` if the
    /// push is already recorded. `released` are the group's releases so
    /// far; `refusal` is why the publisher key may not release here, for a
    /// push that releases. A release entry links a placeholder record: the
    /// group's release record, built once its entries are known.
    pub(super) fn push_entry(
        &self,
        push: &Push,
        package_state: &PackageState,
        meta: &MetaState,
        released: &[(Version, Sha256Digest)],
        refusal: Option<&OciError>,
    ) -> Result<Option<ExtEntry>, OciError> {
        let package = &push.repository.package;
        let recorded = meta.manifest(&push.digest).is_some();
        if let Some(tag) = &push.tag
            && let Some(existing) = meta.tag(tag)
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
            && (package_state.release(version).is_some()
                || released.iter().any(|(v, _)| v == version))
        {
            return Err(denied(format!(
                "version {version} of {package} is already released; versions are immutable"
            )));
        }
        let release = match (push.release(), refusal) {
            (Some(_), Some(refusal)) => return Err(refusal.clone()),
            (Some((version, content, _)), None) => Some(ReleaseLink {
                version,
                record: RecordId(Sha256Digest([0; 32])),
                content,
            }),
            (None, _) => None,
        };
        Ok(Some(if recorded {
            ExtEntry::Tag(TagEntry {
                tag: push.tag.clone().unwrap_or_default(),
                digest: push.digest,
                release,
                signatures: push.signatures.clone(),
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
                signatures: push.signatures.clone(),
                by: push.caller.attribution(),
            })
        }))
    }
}
