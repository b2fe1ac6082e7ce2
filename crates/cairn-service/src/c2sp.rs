//! The C2SP views of the log: the signed checkpoint note
//! (`c2sp.org/tlog-checkpoint`) and the static tiles (`c2sp.org/tlog-tiles`).
//!
//! They describe the same RFC 6962 tree as the warg checkpoint: the C2SP
//! root hash is the warg `logRoot`, and each tile entry is the warg log leaf
//! (`WARG-LOG-LEAF-V0` ‖ log id ‖ record id), so `SHA-256(0x00 ‖ entry)` is
//! the leaf hash. A reader of tiles can audit the whole log without the warg
//! API or the database.

use std::collections::HashMap;

use cairn_crypto::note::Note;
use cairn_log::Hash;
use cairn_log::leaf::log_leaf_bytes;
use cairn_log::proof::{inclusion_plan, inclusion_proof};
use cairn_log::tiles::{self, Tile, TileKind};
use cairn_log::tree::NodeId;
use cairn_log::witness::TlogProof;
use cairn_protocol::wire::WargError;

use crate::publish::{parse_log_id, parse_record_id};
use crate::{Registry, ServiceError};

/// A tile's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileData {
    /// The tile (kind, index, width).
    pub tile: Tile,
    /// Its contents: concatenated hashes, or an entry bundle.
    pub bytes: Vec<u8>,
}

/// The C2SP checkpoint served at `/checkpoint` when witnesses are
/// configured: the newest one whose cosignatures satisfy the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServedNote {
    /// The tree size.
    pub(crate) length: u64,
    /// The note with the operator signature and the cosignatures.
    pub(crate) bytes: Vec<u8>,
}

fn not_found(message: impl Into<String>) -> ServiceError {
    ServiceError::Warg(WargError::Message {
        status: 404,
        message: message.into(),
    })
}

impl Registry {
    pub(crate) fn served_note(&self) -> Option<std::sync::Arc<ServedNote>> {
        self.inner.served.read().ok().and_then(|s| s.clone())
    }

    /// The latest C2SP checkpoint: the note signed by the note key, with
    /// the witness cosignatures collected for it.
    pub async fn c2sp_checkpoint(&self) -> Result<Vec<u8>, ServiceError> {
        if let Some(served) = self.served_note() {
            return Ok(served.bytes.clone());
        }
        let latest = self
            .latest_checkpoint()
            .ok_or_else(|| ServiceError::unavailable("the registry has no checkpoint yet"))?;
        let note = latest.note.as_ref().ok_or_else(|| {
            ServiceError::unavailable("no C2SP checkpoint has been signed yet; publish a record")
        })?;
        Ok(note.as_bytes().to_vec())
    }

    /// A tile of the tree of the latest checkpoint, from the part of the
    /// URL path after `tile/` (e.g. `0/x001/234.p/7`, `entries/005`).
    ///
    /// Any width up to what the tree holds is served (every stored hash is
    /// immutable), so a partial tile of a size that had a checkpoint is
    /// always available; a full tile never changes once it exists.
    pub async fn tile(&self, path: &str) -> Result<TileData, ServiceError> {
        let tile = Tile::parse_path(path).map_err(|_| not_found("not a tile path"))?;
        self.tile_data(tile).await
    }

    /// The bytes of `tile` in the tree of the latest checkpoint (404 if
    /// that tree does not hold it).
    pub(crate) async fn tile_data(&self, tile: Tile) -> Result<TileData, ServiceError> {
        let size = self.latest_length();
        if !tiles::tile_exists(size, &tile) {
            return Err(not_found(format!(
                "tile {} does not exist in a tree of {size} leaves",
                tile.path()
            )));
        }
        let start = tile.index * tiles::TILE_WIDTH;
        let end = start + u64::from(tile.width);
        let bytes = match tile.kind {
            TileKind::Hashes { level } => {
                let hashes = self
                    .inner
                    .store
                    .log_node_range(level * tiles::TILE_HEIGHT, start, end)
                    .await?;
                if hashes.len() != usize::from(tile.width) {
                    return Err(ServiceError::Internal(format!(
                        "tile {}: {} of {} stored hashes found",
                        tile.path(),
                        hashes.len(),
                        tile.width
                    )));
                }
                tiles::encode_hash_tile(&hashes)
            }
            TileKind::Entries => {
                let records = self.inner.store.records_range(start, end).await?;
                if records.len() != usize::from(tile.width) {
                    return Err(ServiceError::Internal(format!(
                        "entry bundle {}: {} of {} records found",
                        tile.path(),
                        records.len(),
                        tile.width
                    )));
                }
                let leaves: Vec<Vec<u8>> = records
                    .iter()
                    .map(|r| log_leaf_bytes(&r.log_id.0, &r.record_id.0))
                    .collect();
                tiles::encode_entries(leaves.iter().map(Vec::as_slice))?
            }
        };
        Ok(TileData { tile, bytes })
    }

    /// An offline-verifiable inclusion receipt (`c2sp.org/tlog-proof`) for
    /// a record: its log entry (as `extra`), its index, its inclusion proof,
    /// and the checkpoint it is proven against — the cosigned one when it
    /// covers the record, else the latest.
    pub async fn receipt(&self, log_id: &str, record_id: &str) -> Result<Vec<u8>, ServiceError> {
        let log_id = parse_log_id(log_id)?;
        let record_id = parse_record_id(record_id)?;
        let record = self
            .inner
            .store
            .record_by_id(&log_id, &record_id)
            .await?
            .ok_or_else(|| {
                not_found(format!(
                    "record {record_id} of log {log_id} is not sequenced"
                ))
            })?;
        let index = record.registry_index;
        let (size, note) = match self.served_note() {
            Some(served) if served.length > index => (served.length, served.bytes.clone()),
            _ => {
                let latest = self
                    .latest_checkpoint()
                    .filter(|l| l.checkpoint.checkpoint.log_length > index)
                    .ok_or_else(|| not_found(format!("record {record_id} is not published yet")))?;
                let note = latest.note.clone().ok_or_else(|| {
                    ServiceError::unavailable("no C2SP checkpoint has been signed yet")
                })?;
                (latest.checkpoint.checkpoint.log_length, note.into_bytes())
            }
        };
        let plan = inclusion_plan(index, size)?;
        let hashes = self.inner.store.log_nodes(&plan).await?;
        let source: HashMap<NodeId, Hash> = plan.into_iter().zip(hashes).collect();
        let proof = inclusion_proof(index, size, &source)?;
        let checkpoint = Note::parse(&note)
            .map_err(|e| ServiceError::Internal(format!("stored note unreadable: {e}")))?;
        Ok(TlogProof {
            extra: Some(log_leaf_bytes(&log_id.0, &record_id.0)),
            index,
            proof,
            checkpoint,
        }
        .encode())
    }
}
