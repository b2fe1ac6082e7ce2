//! A log's validation state: its latest stored snapshot, with the log's
//! records after the snapshot replayed through the same validator the
//! sequencer ran on them.
//!
//! The sequencer stores a snapshot of a package or metadata log's state only
//! every [`SNAPSHOT_EVERY`] records (the operator and registry logs, written
//! rarely and held in memory whole, get one with every record), so a batch
//! writes a constant amount per log instead of the log's whole history.
//! Every reader of a log's state loads it here ([`log_state`],
//! [`log_state_of`]): a stored snapshot alone may be behind the log.

use cairn_crypto::KeyId;
use cairn_protocol::ext::ExtRecord;
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::ext::registry::RegistryState;
use cairn_protocol::operator::OperatorState;
use cairn_protocol::package::PackageState;
use cairn_protocol::record::OperatorPermission;
use cairn_protocol::record::{OperatorRecord, PackageRecord, RecordKind};
use cairn_protocol::{Envelope, LogId};
use cairn_store::{LogRow, LogSnapshot, Store, StoredRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ServiceError;

/// How many records of a package or metadata log may follow its latest
/// snapshot before the sequencer stores a new one: the most a load replays.
///
/// A snapshot costs the log's whole state (about 370 bytes per release for
/// a package log, 550 for its metadata log) once per this many records; a
/// cold load replays at most this many records (one signature check each).
pub const SNAPSHOT_EVERY: u64 = 32;

/// Records read per query while replaying.
const REPLAY_PAGE: u32 = 256;

/// A log's validator: the state it keeps and how a record advances it.
pub trait LogValidator: Default + Serialize + DeserializeOwned + Sized {
    /// Whether records are checked against the operator log (their signer
    /// must hold `commit` there).
    const NEEDS_OPERATOR: bool;

    /// Validates the log's next record, as the sequencer did when it
    /// sequenced it, against `operator` (the operator log's state).
    fn next(self, record: &StoredRecord, operator: &OperatorState) -> Result<Self, String>;
}

fn envelope<T: RecordKind>(record: &StoredRecord) -> Result<Envelope<T>, String> {
    Envelope::<T>::from_parts(
        record.content_bytes.clone(),
        KeyId::new(record.key_id.clone()),
        &record.signature,
    )
    .map_err(|e| e.to_string())
}

impl LogValidator for OperatorState {
    const NEEDS_OPERATOR: bool = false;

    fn next(self, record: &StoredRecord, _operator: &OperatorState) -> Result<Self, String> {
        self.validate(&envelope::<OperatorRecord>(record)?)
            .map_err(|e| e.to_string())
    }
}

impl LogValidator for RegistryState {
    const NEEDS_OPERATOR: bool = true;

    fn next(self, record: &StoredRecord, operator: &OperatorState) -> Result<Self, String> {
        self.validate(&envelope::<ExtRecord>(record)?, operator)
            .map_err(|e| e.to_string())
    }
}

impl LogValidator for MetaState {
    const NEEDS_OPERATOR: bool = true;

    fn next(self, record: &StoredRecord, operator: &OperatorState) -> Result<Self, String> {
        self.validate(&envelope::<ExtRecord>(record)?, operator)
            .map_err(|e| e.to_string())
    }
}

impl LogValidator for PackageState {
    const NEEDS_OPERATOR: bool = false;

    fn next(self, record: &StoredRecord, _operator: &OperatorState) -> Result<Self, String> {
        self.validate(&envelope::<PackageRecord>(record)?)
            .map_err(|e| e.to_string())
    }
}

/// Parses a stored snapshot.
pub fn parse_snapshot<S: LogValidator>(
    log_id: &LogId,
    snapshot: &LogSnapshot,
) -> Result<S, ServiceError> {
    serde_json::from_str(&snapshot.state).map_err(|e| {
        ServiceError::Internal(format!("stored state of log {log_id} is unreadable: {e}"))
    })
}

/// The snapshot of `state` after the log's first `records` records, the
/// last of them at registry index `index`.
pub(crate) fn snapshot_of<S: Serialize>(
    state: &S,
    records: u64,
    index: u64,
) -> Result<LogSnapshot, ServiceError> {
    Ok(LogSnapshot {
        records,
        index,
        state: serde_json::to_string(state).map_err(|e| ServiceError::Internal(e.to_string()))?,
    })
}

/// The current state of the log of `row`: its snapshot (the default state
/// without one) with the log's records after it, up to the row's head,
/// replayed. `operator` is the operator log's current state (used only by
/// validators that need it; see [`LogValidator::NEEDS_OPERATOR`]): a record
/// whose signer it no longer authorizes (the operator key was rotated since)
/// is checked against the operator log as of that record, as it was when it
/// was sequenced.
///
/// A record that does not replay, or a log whose records do not end at its
/// head, is an internal error: the stored log is damaged (run `cairn fsck`).
pub async fn log_state<S: LogValidator>(
    store: &dyn Store,
    row: &LogRow,
    operator: &OperatorState,
) -> Result<S, ServiceError> {
    let (state, _) = replay_after(store, row, row.snapshot.as_ref(), operator).await?;
    Ok(state)
}

/// [`log_state`] of the log `log_id`, with its row; `None` for a log
/// without records.
pub async fn log_state_of<S: LogValidator>(
    store: &dyn Store,
    log_id: &LogId,
    operator: &OperatorState,
) -> Result<Option<(LogRow, S)>, ServiceError> {
    match store.log(log_id).await? {
        Some(row) => {
            let state = log_state(store, &row, operator).await?;
            Ok(Some((row, state)))
        }
        None => Ok(None),
    }
}

/// The operator log's current state (the default state before its first
/// record).
pub async fn operator_state(store: &dyn Store) -> Result<OperatorState, ServiceError> {
    Ok(
        log_state_of::<OperatorState>(store, &LogId::operator(), &OperatorState::default())
            .await?
            .map(|(_, state)| state)
            .unwrap_or_default(),
    )
}

/// Replays the records of `row`'s log after `snapshot` (from the first
/// record without one) on the snapshot's state. Returns the state and how
/// many records were replayed.
pub(crate) async fn replay_after<S: LogValidator>(
    store: &dyn Store,
    row: &LogRow,
    snapshot: Option<&LogSnapshot>,
    operator: &OperatorState,
) -> Result<(S, u64), ServiceError> {
    let log_id = &row.log_id;
    let (mut state, mut after, mut count) = match snapshot {
        Some(s) => (parse_snapshot::<S>(log_id, s)?, Some(s.index), s.records),
        None => (S::default(), None, 0),
    };
    let covered = count;
    let damaged = |what: String| ServiceError::Internal(format!("log {log_id}: {what}"));
    if count > row.record_count {
        return Err(damaged(format!(
            "its snapshot covers {count} records, the log has {}",
            row.record_count
        )));
    }
    let mut history: Option<OperatorHistory> = None;
    let mut last = None;
    while count < row.record_count {
        let below = row.head_index.saturating_add(1);
        let page = store.log_records(log_id, after, below, REPLAY_PAGE).await?;
        if page.is_empty() {
            return Err(damaged(format!(
                "{} records stored up to its head, {} counted",
                count, row.record_count
            )));
        }
        for record in &page {
            let key_id = KeyId::new(record.key_id.clone());
            let as_of = if S::NEEDS_OPERATOR && !authorizes(operator, &key_id) {
                let history = history.get_or_insert_with(OperatorHistory::default);
                history.advance(store, record.registry_index).await?;
                &history.state
            } else {
                operator
            };
            state = state.next(record, as_of).map_err(|reason| {
                damaged(format!(
                    "the record at index {} does not replay: {reason}",
                    record.registry_index
                ))
            })?;
            count += 1;
            after = Some(record.registry_index);
            last = Some(record.record_id);
        }
    }
    if let Some(last) = last
        && (after != Some(row.head_index) || last != row.head_record)
    {
        return Err(damaged(format!(
            "its records end at index {after:?}, its head is {} at index {}",
            row.head_record, row.head_index
        )));
    }
    Ok((state, count - covered))
}

/// Whether `operator` lets `key_id` sign registry-built records.
fn authorizes(operator: &OperatorState, key_id: &KeyId) -> bool {
    operator.has_permission(key_id, OperatorPermission::Commit)
        && operator.public_key(key_id).is_some()
}

/// The operator log's state as of some registry index, replayed from its
/// first record and advanced as later indices are asked for.
#[derive(Default)]
struct OperatorHistory {
    /// The registry index of the last operator record applied.
    after: Option<u64>,
    state: OperatorState,
}

impl OperatorHistory {
    /// Applies the operator records below `index` not applied yet.
    async fn advance(&mut self, store: &dyn Store, index: u64) -> Result<(), ServiceError> {
        loop {
            let page = store
                .log_records(&LogId::operator(), self.after, index, REPLAY_PAGE)
                .await?;
            let Some(last) = page.last().map(|r| r.registry_index) else {
                return Ok(());
            };
            for record in &page {
                self.state = std::mem::take(&mut self.state)
                    .next(record, &OperatorState::default())
                    .map_err(|reason| {
                        ServiceError::Internal(format!(
                            "operator log: the record at index {} does not replay: {reason}",
                            record.registry_index
                        ))
                    })?;
            }
            self.after = Some(last);
        }
    }
}
