use cairn_blob::BlobError;
use cairn_protocol::wire::WargError;
use cairn_store::StoreError;
use thiserror::Error;

/// A client mistake, in terms every API dialect can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// 400: malformed or invalid input.
    BadRequest,
    /// 401: missing or invalid credentials.
    Unauthorized,
    /// 403: valid credentials that do not allow this.
    Forbidden,
    /// 404: no such thing.
    NotFound,
    /// 409: conflicts with the current state.
    Conflict,
    /// 413: too large.
    TooLarge,
    /// 422: well-formed but refused by a rule (a publish policy).
    Refused,
    /// 451 (Unavailable For Legal Reasons): the content is withheld by the
    /// registry (a takedown); the message gives the logged reason.
    Withheld,
}

impl ClientError {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::Refused => 422,
            Self::Withheld => 451,
        }
    }
}

/// How a registry operation failed, in terms an API layer can answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServiceError {
    /// A client-visible protocol error, to be answered exactly.
    #[error("{0}")]
    Warg(WargError),
    /// A client mistake any dialect can answer (the message is safe to
    /// show).
    #[error("{message}")]
    Client {
        /// What kind.
        kind: ClientError,
        /// Why.
        message: String,
    },
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
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
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

    fn client(kind: ClientError, message: impl Into<String>) -> Self {
        Self::Client {
            kind,
            message: message.into(),
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::client(ClientError::Unauthorized, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::client(ClientError::Forbidden, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::client(ClientError::NotFound, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::client(ClientError::Conflict, message)
    }

    /// 422: refused by a rule.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::client(ClientError::Refused, message)
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
            // Another node sequences now: retrying reaches it.
            StoreError::Fenced(reason) => Self::unavailable(reason),
            // A log moved under a write decided on it: deciding again (the
            // client's retry) sees where it is now.
            StoreError::Moved(reason) => Self::unavailable(reason),
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
