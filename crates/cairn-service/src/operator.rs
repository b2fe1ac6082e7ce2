//! Operator records: built and signed by the server with the operator key.

use std::sync::Arc;
use std::time::Duration;

use cairn_crypto::{Signature, Signer};
use cairn_protocol::operator::OperatorState;
use cairn_protocol::record::{OperatorEntry, OperatorRecord, RecordKind as _};
use cairn_protocol::{Envelope, LogId, RecordId, Timestamp};
use cairn_store::{NewPending, PendingState, Store};

use crate::keys::ecdsa_key_id;
use crate::{Clock, Registry, ServiceError};

/// Builds, signs and validates the next operator record on top of `state`.
pub(crate) async fn build_operator_record(
    state: &OperatorState,
    signer: &dyn Signer,
    clock: &dyn Clock,
    entries: Vec<OperatorEntry>,
) -> Result<Envelope<OperatorRecord>, ServiceError> {
    let key_id = ecdsa_key_id(signer)?;
    let now = clock.now();
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ServiceError::Internal("the clock is before 1970".into()))?;
    let mut timestamp = Timestamp::from_unix(since_epoch.as_secs(), since_epoch.subsec_nanos())
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    if let Some(head) = state.head()
        && head.timestamp > timestamp
    {
        // SPEC: warg-wire §5.1 — timestamps never decrease within a log.
        timestamp = head.timestamp;
    }
    let record = OperatorRecord {
        prev: state.head().map(|h| h.record_id),
        version: 0,
        timestamp,
        entries,
    };
    let bytes = record.encode();
    let message = Envelope::<OperatorRecord>::signing_message(&bytes);
    let signature = match signer.sign(&message).await {
        Ok(Signature::EcdsaP256(signature)) => signature,
        Ok(Signature::Ed25519(_)) => {
            return Err(ServiceError::Internal(
                "the operator log key must be ECDSA P-256".into(),
            ));
        }
        Err(e) if e.is_transient() => {
            return Err(ServiceError::Unavailable {
                retry_after: 5,
                reason: format!("cannot sign the operator record: {e}"),
            });
        }
        Err(e) => {
            return Err(ServiceError::Internal(format!(
                "cannot sign the operator record: {e}"
            )));
        }
    };
    let envelope = Envelope::from_signed(record, bytes, key_id, signature);
    state.clone().validate(&envelope).map_err(|e| {
        ServiceError::bad_request(format!("the operator record would be invalid: {e}"))
    })?;
    Ok(envelope)
}

/// Submits an operator record directly to a store (for command-line tools
/// that run beside a server); the running sequencer picks it up.
pub async fn submit_operator_record(
    store: &dyn Store,
    signer: &dyn Signer,
    clock: &dyn Clock,
    entries: Vec<OperatorEntry>,
) -> Result<RecordId, ServiceError> {
    let row = store
        .log(&LogId::operator())
        .await?
        .ok_or_else(|| ServiceError::Internal("the registry is not initialised".into()))?;
    let state: OperatorState =
        crate::log_state::log_state(store, &row, &OperatorState::default()).await?;
    if let Some(live) = store.live_pending_for_log(&LogId::operator()).await? {
        return Err(
            cairn_protocol::wire::WargError::ConflictPendingPublish(live.record.record_id).into(),
        );
    }
    let envelope = build_operator_record(&state, signer, clock, entries).await?;
    store.insert_pending(&pending_for(&envelope, clock)).await?;
    Ok(envelope.record_id())
}

/// The pending row of a signed operator record (no content to wait for).
pub(crate) fn pending_for(envelope: &Envelope<OperatorRecord>, clock: &dyn Clock) -> NewPending {
    NewPending {
        record_id: envelope.record_id(),
        log_id: LogId::operator(),
        package_name: None,
        content_bytes: envelope.content_bytes().to_vec(),
        key_id: envelope.key_id().to_string(),
        signature: envelope.signature().to_string(),
        missing: Vec::new(),
        created_at_ms: clock.now_ms(),
    }
}

/// Waits until `record_id` is covered by a checkpoint, polling the store.
/// Fails with the reason if the record was rejected.
pub async fn wait_for_record(
    store: &dyn Store,
    log_id: &LogId,
    record_id: &RecordId,
    timeout: Duration,
) -> Result<u64, ServiceError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(record) = store.record_by_id(log_id, record_id).await?
            && let Some(latest) = store.latest_checkpoint().await?
            && record.registry_index < latest.checkpoint.checkpoint.log_length
        {
            return Ok(record.registry_index);
        }
        if let Some(pending) = store.pending(log_id, record_id).await?
            && pending.state == PendingState::Rejected
        {
            return Err(ServiceError::bad_request(format!(
                "record rejected: {}",
                pending.reason.unwrap_or_default()
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServiceError::unavailable(format!(
                "record {record_id} was not sequenced within {timeout:?}; is the server running?"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Registry {
    /// Appends an operator record with `entries`, signed by the operator
    /// key, and waits until a checkpoint covers it.
    pub async fn append_operator_record(
        &self,
        entries: Vec<OperatorEntry>,
    ) -> Result<RecordId, ServiceError> {
        let state: Arc<OperatorState> = self.operator_state();
        let envelope = build_operator_record(
            &state,
            self.keys().operator.as_ref(),
            self.inner.clock.as_ref(),
            entries,
        )
        .await?;
        let record_id = self
            .submit_pending(pending_for(&envelope, self.inner.clock.as_ref()))
            .await?;
        wait_for_record(
            self.inner.store.as_ref(),
            &LogId::operator(),
            &record_id,
            Duration::from_secs(30),
        )
        .await?;
        Ok(record_id)
    }

    /// Defines a namespace for this registry's own packages.
    pub async fn define_namespace(&self, namespace: &str) -> Result<RecordId, ServiceError> {
        self.append_operator_record(vec![OperatorEntry::DefineNamespace {
            namespace: namespace.to_owned(),
        }])
        .await
    }
}
