//! Submitting a push's records and waiting until a checkpoint covers them.

use std::time::Duration;

use cairn_protocol::ext::ExtEntry;
use cairn_protocol::ext::meta::{ManifestEntry, MetaState, ReleaseLink, TagEntry};
use cairn_protocol::package::PackageState;
use cairn_protocol::{LogId, RecordId};
use cairn_store::{NewPending, RecordStatus, StoreError};

use super::group::Grouped;
use super::*;
use crate::oci::OciError;
use crate::{Registry, ServiceError};

impl Registry {
    /// Builds and submits the records of a push, retrying while another
    /// record of the same logs is pending, and waits until they are
    /// published.
    pub(super) async fn submit_push(&self, push: Push<'_>) -> Result<(), OciError> {
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
            // Stored in the next group commit, under the commit gate, only
            // if the heads have not moved meanwhile.
            let grouped = self
                .store_push_grouped(
                    &push.repository.package,
                    heads(&package_state, &meta_state),
                    cairn_store::NewPush {
                        manifest: push.row.clone(),
                        content: push.layer,
                        records: records.clone(),
                    },
                )
                .await?;
            let inserted = match grouped {
                Grouped::Stored => Ok(()),
                Grouped::Failed(error) => Err(error),
                Grouped::Moved => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(ServiceError::unavailable(
                            "this package is changing too fast; retry",
                        )
                        .into());
                    }
                    continue;
                }
            };
            match inserted {
                Ok(()) => {
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

    pub(super) async fn wait_visible(&self, push: &Push<'_>) -> Result<(), OciError> {
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
    pub(super) async fn push_records(
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
}
