//! The log page: the latest checkpoint (warg and C2SP forms), the keys
//! that sign it, and where its proofs are served.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::Registry;
use serde::Serialize;

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

#[derive(Serialize)]
struct Log {
    checkpoint: Option<CheckpointView>,
}

pub(super) async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    super::page(&state, "log.html", async |_site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        registry.authorize_log_read(caller.as_ref())?;
        Ok(Log {
            checkpoint: checkpoint_view(registry),
        })
    })
    .await
}
