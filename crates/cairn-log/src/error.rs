use thiserror::Error;

/// Errors from the log, the map, proofs and encodings.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A proof was requested for an index or size outside the tree.
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index (or old size).
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was requested between sizes that do not allow one.
    #[error("no consistency proof from size {from} to size {to}")]
    InvalidSizes {
        /// The older size.
        from: u64,
        /// The newer size.
        to: u64,
    },
    /// A hash the caller was asked to supply was not supplied.
    #[error("missing stored hash for {0}")]
    MissingHash(String),
    /// A proof does not verify.
    #[error("proof verification failed: {0}")]
    ProofMismatch(&'static str),
    /// A protobuf or text encoding is malformed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A tree or bundle is larger than the encoding allows.
    #[error("size {0} exceeds the limit of the encoding")]
    TooLarge(u64),
}

impl Error {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            reason: reason.into(),
        }
    }
}
