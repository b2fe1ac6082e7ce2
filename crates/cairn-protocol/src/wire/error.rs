//! Error bodies of the warg v1 API.
//!
//! SPEC: warg-wire §7.10 — untagged JSON matched by shape:
//! `{"status":N,"message":…}`, `{"status":404,"type":…,"id":…}`,
//! `{"status":409,"type":…,"id":…}`, `{"status":405}`,
//! `{"status":422,"reason":…}`.

use cairn_crypto::Sha256Digest;
use serde_json::{Value, json};

use crate::{LogId, RecordId};

/// Every error the warg API returns, with its exact body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WargError {
    /// 404 `logLength` (fetch and proofs): not a checkpoint length.
    CheckpointNotFound(u64),
    /// 404 `log`: unknown log.
    LogNotFound(LogId),
    /// 404 `fetchToken`.
    FetchTokenNotFound(String),
    /// 404 `record`.
    RecordNotFound(RecordId),
    /// 404 `namespace`: not defined on this registry.
    NamespaceNotDefined(String),
    /// 409 `namespaceImport`: imported from another registry.
    NamespaceImported(String),
    /// 409 `record`: another record of the log is pending.
    ConflictPendingPublish(RecordId),
    /// 405: the record is not sourcing content.
    RecordNotSourcing,
    /// 404 `contentDigest`.
    ContentDigestNotFound(Sha256Digest),
    /// 404 `leaf`.
    LeafNotFound(u64),
    /// 422 `packageNotIncluded`.
    PackageNotIncluded(LogId),
    /// 422 `incorrectProof`.
    IncorrectProof {
        /// The expected root.
        root: Sha256Digest,
        /// The root found.
        found: Sha256Digest,
    },
    /// 422 `failure`.
    BundleFailure(String),
    /// 401.
    Unauthorized(String),
    /// 422 rejection of a publish.
    Rejection(String),
    /// 501.
    NotSupported(String),
    /// Any status with a message (400, 413, 429, 500, 503, …).
    Message {
        /// HTTP status.
        status: u16,
        /// Human-readable message.
        message: String,
    },
}

impl WargError {
    /// The HTTP status (always equal to the body's `status`).
    pub fn status(&self) -> u16 {
        match self {
            Self::CheckpointNotFound(_)
            | Self::LogNotFound(_)
            | Self::FetchTokenNotFound(_)
            | Self::RecordNotFound(_)
            | Self::NamespaceNotDefined(_)
            | Self::ContentDigestNotFound(_)
            | Self::LeafNotFound(_) => 404,
            Self::NamespaceImported(_) | Self::ConflictPendingPublish(_) => 409,
            Self::RecordNotSourcing => 405,
            Self::PackageNotIncluded(_)
            | Self::IncorrectProof { .. }
            | Self::BundleFailure(_)
            | Self::Rejection(_) => 422,
            Self::Unauthorized(_) => 401,
            Self::NotSupported(_) => 501,
            Self::Message { status, .. } => *status,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let status = self.status();
        match self {
            Self::CheckpointNotFound(n) => json!({"status": status, "type": "logLength", "id": n}),
            Self::LogNotFound(id) => json!({"status": status, "type": "log", "id": id}),
            Self::FetchTokenNotFound(t) => json!({"status": status, "type": "fetchToken", "id": t}),
            Self::RecordNotFound(id) => json!({"status": status, "type": "record", "id": id}),
            Self::NamespaceNotDefined(ns) => {
                json!({"status": status, "type": "namespace", "id": ns})
            }
            Self::NamespaceImported(ns) => {
                json!({"status": status, "type": "namespaceImport", "id": ns})
            }
            Self::ConflictPendingPublish(id) => {
                json!({"status": status, "type": "record", "id": id})
            }
            Self::RecordNotSourcing => json!({"status": status}),
            Self::ContentDigestNotFound(d) => {
                json!({"status": status, "type": "contentDigest", "id": d})
            }
            Self::LeafNotFound(i) => json!({"status": status, "type": "leaf", "id": i}),
            Self::PackageNotIncluded(id) => {
                json!({"status": status, "reason": "packageNotIncluded", "log_id": id})
            }
            Self::IncorrectProof { root, found } => {
                json!({"status": status, "reason": "incorrectProof", "root": root, "found": found})
            }
            Self::BundleFailure(message) => {
                json!({"status": status, "reason": "failure", "message": message})
            }
            Self::Unauthorized(message)
            | Self::Rejection(message)
            | Self::NotSupported(message)
            | Self::Message { message, .. } => json!({"status": status, "message": message}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_reference_shapes() {
        assert_eq!(
            WargError::CheckpointNotFound(5).body(),
            json!({"status": 404, "type": "logLength", "id": 5})
        );
        assert_eq!(
            WargError::LogNotFound(LogId::operator()).body(),
            json!({"status": 404, "type": "log", "id": LogId::operator().to_string()})
        );
        assert_eq!(WargError::RecordNotSourcing.body(), json!({"status": 405}));
        assert_eq!(
            WargError::BundleFailure("A bundle can not be made from no proofs".into()).body(),
            json!({"status": 422, "reason": "failure", "message": "A bundle can not be made from no proofs"})
        );
        assert_eq!(
            WargError::Message {
                status: 503,
                message: "busy".into()
            }
            .body(),
            json!({"status": 503, "message": "busy"})
        );
    }
}
