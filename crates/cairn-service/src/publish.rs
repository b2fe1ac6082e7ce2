//! Publishing: accepting a record, reporting its state, receiving content.
//!
//! A record is validated completely before anything is stored. Accepted
//! records wait in the store (durably) until their content has arrived and
//! the sequencer has sequenced them. At most one record per log waits at a
//! time; a second publish to the same log gets `409 record` with the
//! waiting record's id, and the warg client waits for it and retries on the
//! new head.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use cairn_blob::ByteStream;
use cairn_crypto::Sha256Digest;
use cairn_protocol::record::{PackageEntry, PackageRecord, RecordKind as _};
use cairn_protocol::wire::{
    MissingContent, PackageRecordResponse, PackageRecordState, PublishRecordRequest,
    UploadEndpoint, WargError,
};
use cairn_protocol::{Envelope, LogId, PackageName, RecordId, ValidationError};
use cairn_store::{NewPending, PendingState, RecordStatus, StoreError};

use crate::identity::{Action, Caller};
use crate::{Registry, ServiceError};

mod decide;

use decide::Decided;

pub(crate) fn parse_log_id(text: &str) -> Result<LogId, ServiceError> {
    text.parse()
        .map_err(|e| ServiceError::bad_request(format!("invalid log id `{}`: {e}", excerpt(text))))
}

pub(crate) fn parse_record_id(text: &str) -> Result<RecordId, ServiceError> {
    text.parse().map_err(|e| {
        ServiceError::bad_request(format!("invalid record id `{}`: {e}", excerpt(text)))
    })
}

pub(crate) fn parse_digest(text: &str) -> Result<Sha256Digest, ServiceError> {
    text.parse()
        .map_err(|e| ServiceError::bad_request(format!("invalid digest `{}`: {e}", excerpt(text))))
}

fn excerpt(text: &str) -> String {
    text.chars().take(100).collect()
}

impl Registry {
    fn upload_url(&self, log_id: &LogId, record_id: &RecordId, digest: &Sha256Digest) -> String {
        format!(
            "{}/v1/package/{log_id}/record/{record_id}/content/{digest}",
            self.inner.config.public_url
        )
    }

    /// The state of a pending record. `sourcing` (with upload instructions)
    /// is only ever reported to the publisher, in the publish response:
    /// status queries report `processing` instead, because the warg client
    /// that waits on *another* publisher's record treats `sourcing` as fatal
    /// (warg-wire §7.6; the reference does the same).
    fn pending_response(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
        state: PendingState,
        missing: &[Sha256Digest],
        reason: Option<String>,
        for_publisher: bool,
    ) -> PackageRecordResponse {
        let state = match state {
            PendingState::Sourcing if !for_publisher => PackageRecordState::Processing,
            PendingState::Sourcing => PackageRecordState::Sourcing {
                missing_content: missing
                    .iter()
                    .map(|digest| {
                        (
                            *digest,
                            MissingContent {
                                upload: vec![UploadEndpoint::Http {
                                    method: "POST".into(),
                                    url: self.upload_url(log_id, record_id, digest),
                                    headers: BTreeMap::new(),
                                }],
                            },
                        )
                    })
                    .collect(),
            },
            PendingState::Queued => PackageRecordState::Processing,
            PendingState::Rejected => PackageRecordState::Rejected {
                reason: reason.unwrap_or_default(),
            },
        };
        PackageRecordResponse {
            record_id: *record_id,
            state,
        }
    }

    /// The state of a record: pending, sequenced or unknown.
    ///
    /// Pending is read first: a record moves from pending to sequenced in one
    /// transaction, so reading in this order always finds it in one of the
    /// two (the other order can miss a record committed in between).
    async fn record_state(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
        for_publisher: bool,
    ) -> Result<Option<PackageRecordResponse>, ServiceError> {
        let Some(status) = self.inner.store.record_status(log_id, record_id).await? else {
            return Ok(None);
        };
        let state = match status {
            RecordStatus::Pending {
                state,
                missing,
                reason,
            } => {
                return Ok(Some(self.pending_response(
                    log_id,
                    record_id,
                    state,
                    &missing,
                    reason,
                    for_publisher,
                )));
            }
            // SPEC: warg-wire §7.6 — `published` only once the latest
            // checkpoint covers the record.
            RecordStatus::Sequenced { registry_index } if registry_index < self.latest_length() => {
                PackageRecordState::Published { registry_index }
            }
            RecordStatus::Sequenced { .. } => PackageRecordState::Processing,
        };
        Ok(Some(PackageRecordResponse {
            record_id: *record_id,
            state,
        }))
    }

    /// The log's head record, when `error` is a `prev` mismatch because the
    /// record was built on an earlier record of this log: another publish
    /// got there first. Clients treat the answer like a pending-publish
    /// conflict (wait for that record, fetch, rebuild), which is what it is.
    async fn stale_prev(
        &self,
        log_id: &LogId,
        envelope: &Envelope<PackageRecord>,
        error: &ValidationError,
    ) -> Result<Option<RecordId>, ServiceError> {
        let (ValidationError::RecordHashDoesNotMatch, Some(prev)) = (error, envelope.record().prev)
        else {
            return Ok(None);
        };
        let earlier = matches!(
            self.inner.store.record_status(log_id, &prev).await?,
            Some(RecordStatus::Sequenced { .. })
        );
        if !earlier {
            return Ok(None);
        }
        Ok(self
            .inner
            .store
            .log(log_id)
            .await?
            .map(|row| row.head_record))
    }

    /// Who may publish this record: the signing key must be bound to an
    /// identity allowed in the namespace (when it is claimed, or when the
    /// registry requires owners), and a bearer token, if any, must allow
    /// the record's actions there and act as that identity.
    fn check_warg_signer(
        &self,
        registry: &cairn_protocol::ext::registry::RegistryState,
        name: &PackageName,
        envelope: &Envelope<PackageRecord>,
        record_id: &RecordId,
        caller: Option<&Caller>,
    ) -> Result<(), ServiceError> {
        let namespace = name.namespace();
        let identity = crate::identity::check_publisher(
            registry,
            None,
            name,
            envelope.key_id(),
            record_id,
            self.inner.config.require_owners,
        )
        .map_err(WargError::Unauthorized)?;
        if let Some(caller) = caller {
            let yank_only = envelope
                .record()
                .entries
                .iter()
                .all(|e| matches!(e, PackageEntry::Yank { .. }));
            let action = if yank_only {
                Action::Yank
            } else {
                Action::Publish
            };
            if !caller.allows(action, Some(namespace)) {
                return Err(WargError::Unauthorized(format!(
                    "token {} does not allow `{}` in `{namespace}`",
                    caller.token_id,
                    action.as_str()
                ))
                .into());
            }
            let key_identity = identity.or_else(|| {
                registry
                    .key(envelope.key_id())
                    .map(|(identity, _)| identity.to_owned())
            });
            if key_identity.as_deref() != Some(caller.identity.as_str()) {
                return Err(WargError::Unauthorized(format!(
                    "the token acts as `{}` but key {} is bound to {}",
                    caller.identity,
                    envelope.key_id(),
                    key_identity.map_or_else(|| "no identity".to_owned(), |i| format!("`{i}`"))
                ))
                .into());
            }
        }
        Ok(())
    }

    /// `POST v1/package/{logId}/record`. `caller` is the bearer token the
    /// request carried, if any: it must allow publishing in the namespace
    /// and act as the identity the signing key is bound to.
    pub async fn publish(
        &self,
        log_id: &str,
        request: PublishRecordRequest,
        caller: Option<&Caller>,
    ) -> Result<PackageRecordResponse, ServiceError> {
        let log_id = parse_log_id(log_id)?;
        let name = PackageName::new(request.package_name.clone())
            .map_err(|e| ServiceError::bad_request(e.to_string()))?;
        if LogId::package(&name) != log_id {
            return Err(ServiceError::bad_request(format!(
                "log id {log_id} is not the log of package `{name}`"
            )));
        }
        if !request.content_sources.is_empty() {
            return Err(WargError::NotSupported(
                "specifying content sources is not supported".into(),
            )
            .into());
        }
        let envelope = Envelope::<PackageRecord>::from_body(&request.record)
            .map_err(|e| ServiceError::bad_request(format!("invalid record: {e}")))?;
        if envelope.content_bytes().len() > self.inner.config.max_record_bytes {
            return Err(ServiceError::too_large(format!(
                "record exceeds {} bytes",
                self.inner.config.max_record_bytes
            )));
        }
        self.refuse_warg_release_in_holding_namespace(&name, envelope.record())?;
        let record_id = envelope.record_id();
        let mut attempt = 0;
        let pending = loop {
            attempt += 1;
            match self
                .decide_and_insert(&log_id, &name, &envelope, &request, caller)
                .await?
            {
                Decided::Stored(pending) => break pending,
                Decided::Answer(state) => return Ok(state),
                // A log the record was decided on moved before the insert
                // (a batch committed in between, or this node's copy of
                // the logs was behind): decide again on the stored state.
                Decided::Moved if attempt < 4 => self.reload_log_states().await?,
                Decided::Moved => {
                    return Err(ServiceError::unavailable(
                        "the package's log is moving; retry",
                    ));
                }
            }
        };
        if pending.state == PendingState::Queued {
            self.record_queued();
        }
        Ok(self.pending_response(
            &log_id,
            &record_id,
            pending.state,
            &pending.record.missing,
            None,
            true,
        ))
    }

    /// `GET v1/package/{logId}/record/{recordId}`.
    pub async fn get_record(
        &self,
        log_id: &str,
        record_id: &str,
    ) -> Result<PackageRecordResponse, ServiceError> {
        let log_id = parse_log_id(log_id)?;
        let record_id = parse_record_id(record_id)?;
        if let Some(state) = self.record_state(&log_id, &record_id, false).await? {
            return Ok(state);
        }
        let log_known = self.inner.store.log(&log_id).await?.is_some()
            || self
                .inner
                .store
                .live_pending_for_log(&log_id)
                .await?
                .is_some();
        if log_known {
            Err(WargError::RecordNotFound(record_id).into())
        } else {
            Err(WargError::LogNotFound(log_id).into())
        }
    }

    /// The upload route of a sourcing record:
    /// `POST v1/package/{logId}/record/{recordId}/content/{digest}`.
    ///
    /// Needs no credentials: the bytes must hash to a digest the record is
    /// waiting for, so nothing else can be stored through it.
    pub async fn upload_content(
        &self,
        log_id: &str,
        record_id: &str,
        digest: &str,
        body: ByteStream,
    ) -> Result<(), ServiceError> {
        let log_id = parse_log_id(log_id)?;
        let record_id = parse_record_id(record_id)?;
        let digest = parse_digest(digest)?;
        let Some(pending) = self.inner.store.pending(&log_id, &record_id).await? else {
            if self
                .inner
                .store
                .record_by_id(&log_id, &record_id)
                .await?
                .is_some()
            {
                return Err(WargError::RecordNotSourcing.into());
            }
            return Err(WargError::RecordNotFound(record_id).into());
        };
        if !pending.record.missing.contains(&digest) {
            let referenced = PackageRecord::decode(&pending.record.content_bytes)
                .is_ok_and(|record| record.contents().contains(&digest));
            // The same upload again (a retry) succeeds without doing anything.
            if referenced && pending.state != PendingState::Rejected {
                return Ok(());
            }
            if pending.state != PendingState::Sourcing {
                return Err(WargError::RecordNotSourcing.into());
            }
            return Err(ServiceError::bad_request(format!(
                "record {record_id} is not waiting for content {digest}"
            )));
        }
        if pending.state != PendingState::Sourcing {
            return Err(WargError::RecordNotSourcing.into());
        }
        let info = self
            .inner
            .blobs
            .put(Some(digest), body, self.inner.config.max_content_bytes)
            .await?;
        // The namespace's publish policy, checked from the bytes before the
        // record can be sequenced: a refusal rejects the record.
        let name = pending
            .record
            .package_name
            .as_deref()
            .and_then(|n| PackageName::new(n.to_owned()).ok());
        if let Some(name) = name
            && let Ok(record) = PackageRecord::decode(&pending.record.content_bytes)
            && let Err(error) = self
                .check_warg_content(&name, &record, &digest, info.size)
                .await
        {
            if let ServiceError::Client { message, .. } = &error {
                self.inner
                    .store
                    .reject_sourcing(&log_id, &record_id, message)
                    .await?;
            }
            return Err(error);
        }
        // What the accepted content imports and exports, for the search
        // index (joined with the release when it is sequenced).
        self.record_release_facts(&digest).await?;
        let after = self
            .inner
            .store
            .content_stored(&log_id, &record_id, &digest, info.size)
            .await?;
        if after.is_some_and(|p| p.state == PendingState::Queued) {
            self.record_queued();
        }
        Ok(())
    }

    /// Submits a record built and signed by the server itself (operator
    /// records); returns its id.
    pub(crate) async fn submit_pending(
        &self,
        pending: NewPending,
    ) -> Result<RecordId, ServiceError> {
        let record_id = pending.record_id;
        match self.inner.store.insert_pending(&pending).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                if let Some(live) = self
                    .inner
                    .store
                    .live_pending_for_log(&pending.log_id)
                    .await?
                    && live.record.record_id != record_id
                {
                    return Err(WargError::ConflictPendingPublish(live.record.record_id).into());
                }
            }
            Err(other) => return Err(other.into()),
        }
        self.record_queued();
        Ok(record_id)
    }

    /// A record became queued: counted in the backlog (by the node that
    /// sequences: a standby's sequencer is the leader's, which finds the
    /// record within its poll interval) and the sequencer is woken.
    pub(crate) fn record_queued(&self) {
        if !self.is_standby() {
            self.backlog().fetch_add(1, Ordering::Relaxed);
        }
        self.wake_sequencer();
    }
}
