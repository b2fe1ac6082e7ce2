//! The log page: the latest checkpoint (warg and C2SP forms), the keys
//! that sign it, where its proofs are served, a form to look a record up,
//! and the checkpoint history (newest first, a page at a time) with the
//! witness cosignatures each checkpoint received.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::Registry;
use serde::{Deserialize, Serialize};

use crate::http::AppState;

/// The latest checkpoint as the pages show it.
#[derive(Clone, Debug, Serialize)]
pub(super) struct CheckpointView {
    /// Records in the log.
    length: u64,
    /// The log root (`sha256:…`).
    log_root: String,
    /// The map root.
    map_root: String,
    /// When it was signed (seconds since the epoch).
    timestamp: u64,
    /// The key id of the warg signature.
    key_id: String,
    /// The C2SP signed note, if one was signed.
    note: Option<String>,
    /// The note key's verifier key (`origin+hash+key`).
    verifier_key: String,
    /// The operator key (warg checkpoints).
    operator_key: String,
}

/// The latest checkpoint, if the registry has one.
pub(super) fn checkpoint_view(registry: &Registry) -> Option<CheckpointView> {
    let latest = registry.latest_checkpoint()?;
    let checkpoint = &latest.checkpoint.checkpoint;
    Some(CheckpointView {
        length: checkpoint.log_length,
        log_root: checkpoint.log_root.to_string(),
        map_root: checkpoint.map_root.to_string(),
        timestamp: latest.checkpoint.timestamp,
        key_id: latest.key_id.clone(),
        note: latest.note.clone(),
        verifier_key: registry.note_verifier_key().to_string(),
        operator_key: registry.operator_public_key().to_string(),
    })
}

/// Checkpoints per page of history.
const HISTORY_PAGE: u32 = 20;

#[derive(Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    before: Option<u64>,
}

/// A witness's cosignature.
#[derive(Serialize)]
struct Cosignature {
    witness: String,
    key_id: String,
    timestamp: u64,
}

/// One checkpoint of the history.
#[derive(Serialize)]
struct HistoryEntry {
    length: u64,
    log_root: String,
    timestamp: u64,
    cosignatures: Vec<Cosignature>,
}

#[derive(Serialize)]
struct Log {
    checkpoint: Option<CheckpointView>,
    history: Vec<HistoryEntry>,
    /// `before` of the next (older) page.
    older: Option<u64>,
    /// Whether this is a later page.
    paged: bool,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    super::page(&state, "log.html", async |_site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        registry.authorize_log_read(caller.as_ref())?;
        let found = registry
            .checkpoint_history(params.before, HISTORY_PAGE + 1)
            .await?;
        let more = found.len() > HISTORY_PAGE as usize;
        let history: Vec<HistoryEntry> = found
            .into_iter()
            .take(HISTORY_PAGE as usize)
            .map(|c| {
                let checkpoint = &c.checkpoint.checkpoint;
                HistoryEntry {
                    length: checkpoint.checkpoint.log_length,
                    log_root: checkpoint.checkpoint.log_root.to_string(),
                    timestamp: checkpoint.timestamp,
                    cosignatures: c
                        .cosignatures
                        .into_iter()
                        .map(|s| Cosignature {
                            witness: s.witness,
                            key_id: format!("{:08x}", s.key_id),
                            timestamp: s.timestamp,
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Log {
            checkpoint: checkpoint_view(registry),
            older: history.last().filter(|_| more).map(|h| h.length),
            history,
            paged: params.before.is_some(),
        })
    })
    .await
}
