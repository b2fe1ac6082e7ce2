//! One decision on a warg publish: validate the record against the logs'
//! state, then store it as pending only if those logs have not moved.
//!
//! The decision may be taken on any node. It reads the package log's state
//! from the store on a node that does not sequence (the leader's cached
//! states are its sequencer's, never behind), and the operator and registry
//! logs' states from this node's copies; the insert carries the heads of
//! all three ([`cairn_store::DecidedStore`]) and is refused if any moved,
//! so a record answered `202` is sequenced on exactly the state it was
//! validated against, whichever node answered.

use cairn_protocol::operator::NamespaceState;
use cairn_protocol::record::{PackageRecord, RecordKind as _};
use cairn_protocol::wire::{PackageRecordResponse, PublishRecordRequest, WargError};
use cairn_protocol::{Envelope, LogId, PackageName};
use cairn_store::{ExpectedHead, NewPending, PendingRecord, StoreError};

use crate::identity::Caller;
use crate::{Registry, ServiceError};

/// What one decision came to.
pub(super) enum Decided {
    /// Stored as pending.
    Stored(PendingRecord),
    /// Not stored; this is the answer (the same record again).
    Answer(PackageRecordResponse),
    /// A log the decision read moved before the insert: nothing stored.
    Moved,
}

impl Registry {
    /// Validates `envelope` (of `name`'s log `log_id`) completely and
    /// stores it as pending, unless a log it was validated against moved
    /// meanwhile.
    pub(super) async fn decide_and_insert(
        &self,
        log_id: &LogId,
        name: &PackageName,
        envelope: &Envelope<PackageRecord>,
        request: &PublishRecordRequest,
        caller: Option<&Caller>,
    ) -> Result<Decided, ServiceError> {
        let operator = self.operator_state();
        match operator.namespace(name.namespace()) {
            Some(NamespaceState::Defined) => {}
            Some(NamespaceState::Imported { .. }) => {
                return Err(WargError::NamespaceImported(name.namespace().into()).into());
            }
            None => return Err(WargError::NamespaceNotDefined(name.namespace().into()).into()),
        }
        let registry_log = self.registry_log();
        let record_id = envelope.record_id();
        self.check_warg_signer(&registry_log, name, envelope, &record_id, caller)?;

        // The common path is one state lookup (cached on the leader), one
        // content lookup and one insert; the record's existing state is
        // only looked up when the insert or the validation says there is
        // one.
        let gate = self.inner.commit_gate.read().await;
        let cached = if self.is_standby() {
            None
        } else {
            self.cached_log(log_id)
        };
        let state = match cached {
            Some(cached) => cached.package().cloned().unwrap_or_default(),
            None => match self.inner.store.log(log_id).await? {
                Some(row) => {
                    let store = self.inner.store.as_ref();
                    let loaded = crate::CachedLog::load(store, row, &operator).await?;
                    let state = loaded.package().cloned().unwrap_or_default();
                    // Under the commit gate, the stored state is the latest
                    // sequenced one: the sequencer may start from it.
                    if !self.is_standby() {
                        self.cache_log(std::sync::Arc::new(loaded));
                    }
                    state
                }
                None => Default::default(),
            },
        };
        let head = state.head().map(|h| h.record_id);
        if let Err(error) = state.validate(envelope) {
            // The same record again (already pending or sequenced) reports
            // its state instead of failing; a record built on a pending one
            // conflicts with it (it cannot be judged before that one is
            // sequenced).
            if let Some(state) = self.record_state(log_id, &record_id, true).await? {
                return Ok(Decided::Answer(state));
            }
            if let Some(live) = self.inner.store.live_pending_for_log(log_id).await? {
                return Err(WargError::ConflictPendingPublish(live.record.record_id).into());
            }
            if let Some(head) = self.stale_prev(log_id, envelope, &error).await? {
                return Err(WargError::ConflictPendingPublish(head).into());
            }
            return Err(WargError::Rejection(error.to_string()).into());
        }

        if let Some(error) = self.health().sequencer_error {
            // Do not accept what cannot be published now (e.g. the signer
            // is down): the client retries later.
            return Err(ServiceError::Unavailable {
                retry_after: 5,
                reason: format!("the registry cannot sequence records right now: {error}"),
            });
        }
        if self.backlog_len() >= self.inner.config.max_backlog {
            return Err(ServiceError::Unavailable {
                retry_after: 2,
                reason: "too many records are waiting to be sequenced".into(),
            });
        }

        let mut missing = Vec::new();
        for digest in envelope.record().contents() {
            let size = match self.inner.store.content(&digest).await? {
                Some(_) => self.inner.blobs.stat(&digest).await?,
                None => None,
            };
            match size {
                // Content already here is held to the namespace's policy now.
                Some(size) => {
                    self.check_warg_content(name, envelope.record(), &digest, size)
                        .await?;
                    self.record_release_facts(&digest).await?;
                }
                None => missing.push(digest),
            }
        }
        let new = NewPending {
            record_id,
            log_id: *log_id,
            package_name: Some(name.to_string()),
            content_bytes: envelope.content_bytes().to_vec(),
            key_id: envelope.key_id().to_string(),
            signature: request.record.signature.clone(),
            missing,
            created_at_ms: self.inner.clock.now_ms(),
        };
        let decided_on = [
            ExpectedHead::new(*log_id, head),
            ExpectedHead::new(LogId::operator(), operator.head().map(|h| h.record_id)),
            ExpectedHead::new(LogId::registry(), registry_log.head().map(|h| h.record_id)),
        ];
        let inserted = self
            .inner
            .store
            .insert_pending_decided(std::slice::from_ref(&new), &decided_on)
            .await;
        drop(gate);
        match inserted {
            Ok(mut pending) => match pending.pop() {
                Some(pending) => Ok(Decided::Stored(pending)),
                None => Err(ServiceError::Internal("an insert stored nothing".into())),
            },
            Err(StoreError::Moved(_)) => Ok(Decided::Moved),
            Err(StoreError::Conflict(_)) => {
                // The same record is already pending, or another record of
                // this log is (or was, and has just been sequenced).
                if let Some(state) = self.record_state(log_id, &record_id, true).await? {
                    return Ok(Decided::Answer(state));
                }
                if let Some(live) = self.inner.store.live_pending_for_log(log_id).await? {
                    return Err(WargError::ConflictPendingPublish(live.record.record_id).into());
                }
                // Sequenced meanwhile: decide again on the new head.
                Ok(Decided::Moved)
            }
            Err(other) => Err(other.into()),
        }
    }
}
