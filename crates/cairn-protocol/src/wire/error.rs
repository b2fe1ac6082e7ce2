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

impl std::fmt::Display for WargError {
    /// A sentence for people (command-line errors, logs, plain-text
    /// answers); [`WargError::body`] is what the warg API sends.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CheckpointNotFound(n) => write!(f, "no checkpoint has log length {n}"),
            Self::LogNotFound(id) => write!(f, "log {id} not found"),
            Self::FetchTokenNotFound(token) => write!(f, "fetch token `{token}` not found"),
            Self::RecordNotFound(id) => write!(f, "record {id} not found"),
            Self::NamespaceNotDefined(ns) => {
                write!(f, "namespace `{ns}` is not defined on this registry")
            }
            Self::NamespaceImported(ns) => {
                write!(f, "namespace `{ns}` is imported from another registry")
            }
            Self::ConflictPendingPublish(id) => {
                write!(f, "record {id} of this log is still pending")
            }
            Self::RecordNotSourcing => f.write_str("the record does not source content"),
            Self::ContentDigestNotFound(digest) => write!(f, "content {digest} not found"),
            Self::LeafNotFound(index) => write!(f, "leaf {index} not found"),
            Self::PackageNotIncluded(id) => {
                write!(f, "package log {id} is not included in the checkpoint")
            }
            Self::IncorrectProof { root, found } => {
                write!(f, "incorrect proof: expected root {root}, found {found}")
            }
            Self::BundleFailure(message)
            | Self::Unauthorized(message)
            | Self::Rejection(message)
            | Self::NotSupported(message)
            | Self::Message { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for WargError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_a_sentence() {
        let error = WargError::Message {
            status: 400,
            message: "namespace `test` needs an owner".into(),
        };
        assert_eq!(error.to_string(), "namespace `test` needs an owner");
        assert_eq!(
            WargError::NamespaceNotDefined("acme".into()).to_string(),
            "namespace `acme` is not defined on this registry"
        );
    }

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
