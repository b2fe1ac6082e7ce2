//! Offline verification of an inclusion receipt (`c2sp.org/tlog-proof`)
//! served by `GET /receipt/{logId}/{recordId}`.
//!
//! SPEC: c2sp.org/tlog-proof — compute the leaf hash (cairn: the warg log
//! entry carried as `extra`, which also names the log and the record),
//! check the checkpoint's origin and log signature, check the witness
//! cosignatures required by the policy, and check the inclusion proof from
//! the leaf to the signed root.

use cairn_log::hash::leaf_hash;
use cairn_log::leaf::parse_log_leaf;
use cairn_log::proof::verify_inclusion;
use cairn_log::witness::TlogProof;
use cairn_protocol::{LogId, RecordId};

use crate::{AuditError, Trust};

/// What a verified receipt proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// The record's log.
    pub log_id: LogId,
    /// The record.
    pub record_id: RecordId,
    /// Its index in the registry log.
    pub index: u64,
    /// The size of the checkpoint it is proven against.
    pub size: u64,
    /// Witnesses whose cosignatures verified.
    pub cosigned_by: Vec<String>,
}

/// Verifies a receipt against `trust`, offline.
pub fn verify_receipt(bytes: &[u8], trust: &Trust) -> Result<ReceiptFacts, AuditError> {
    let receipt =
        TlogProof::parse(bytes).map_err(|e| AuditError::Inconsistent(format!("receipt: {e}")))?;
    let verified = trust.verify(&receipt.checkpoint.to_bytes())?;
    let entry = receipt
        .extra
        .as_deref()
        .ok_or_else(|| AuditError::Inconsistent("the receipt carries no log entry".into()))?;
    let (log_id, record_id) = parse_log_leaf(entry).ok_or_else(|| {
        AuditError::Inconsistent("the receipt's entry is not a warg log leaf".into())
    })?;
    verify_inclusion(
        receipt.index,
        verified.checkpoint.size,
        &leaf_hash(entry),
        &receipt.proof,
        &verified.checkpoint.root,
    )
    .map_err(|e| AuditError::Inconsistent(format!("the inclusion proof does not verify: {e}")))?;
    Ok(ReceiptFacts {
        log_id: LogId(log_id),
        record_id: RecordId(record_id),
        index: receipt.index,
        size: verified.checkpoint.size,
        cosigned_by: verified.cosigned_by,
    })
}
