use cairn_blob::BlobError;
use cairn_protocol::wire::WargError;
use cairn_store::StoreError;
use thiserror::Error;

/// How a registry operation failed, in terms an API layer can answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServiceError {
    /// A client-visible protocol error, to be answered exactly.
    #[error("{0:?}")]
    Warg(WargError),
    /// Temporarily unable to serve (storage down, signer down, overloaded).
    /// Answered with 503 and `Retry-After`.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// Seconds the client should wait.
        retry_after: u32,
        /// Why (logged; safe to show).
        reason: String,
    },
    /// A server-side fault. Details are logged, never sent to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::Warg(WargError::Message {
            status: 400,
            message: message.into(),
        })
    }

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::Warg(WargError::Message {
            status: 413,
            message: message.into(),
        })
    }

    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            retry_after: 1,
            reason: reason.into(),
        }
    }
}

impl From<WargError> for ServiceError {
    fn from(error: WargError) -> Self {
        Self::Warg(error)
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(reason) => Self::unavailable(reason),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::TooLarge { limit } => {
                Self::too_large(format!("content exceeds the limit of {limit} bytes"))
            }
            BlobError::DigestMismatch { expected, found } => Self::bad_request(format!(
                "content digest {found} does not match the expected {expected}"
            )),
            BlobError::Body(reason) => {
                Self::bad_request(format!("reading the content failed: {reason}"))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<cairn_log::Error> for ServiceError {
    fn from(error: cairn_log::Error) -> Self {
        Self::Internal(error.to_string())
    }
}
