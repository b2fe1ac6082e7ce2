use thiserror::Error;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database is unreachable, overloaded or timed out. Transient.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule refused the write; nothing was stored.
    #[error("storage conflict: {0}")]
    Conflict(String),
    /// Stored data violates an invariant (missing node, undecodable row,
    /// two roots for one length). Stop and run `cairn fsck`.
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    /// The store is not usable as configured (bad URL, migrations newer than
    /// this binary, locked by another process).
    #[error("storage misconfigured: {0}")]
    Config(String),
    /// A fenced write (a batch or checkpoint of the sequencer) was refused
    /// because its fence no longer holds the sequencer lease: another node
    /// took over. Nothing was stored; the writer must stop sequencing
    /// ([`crate::LeaseStore`]).
    #[error("fenced: {0}")]
    Fenced(String),
    /// A log the write was decided on has moved since (another record was
    /// sequenced on it), or a record the sequencer built on a log's head
    /// met a pending record of that log decided on the same head. Nothing
    /// was stored: decide again on the stored state
    /// ([`crate::DecidedStore`]).
    #[error("moved: {0}")]
    Moved(String),
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::Conflict(db.message().to_owned())
            }
            sqlx::Error::Database(db) if is_busy(db.code().as_deref()) => {
                Self::Unavailable(db.message().to_owned())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(error.to_string()),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::RowNotFound => Self::Corrupt(error.to_string()),
            sqlx::Error::Configuration(_) | sqlx::Error::Migrate(_) => {
                Self::Config(error.to_string())
            }
            _ => Self::Unavailable(error.to_string()),
        }
    }
}

/// SQLite `SQLITE_BUSY` / `SQLITE_LOCKED` (and extended codes), PostgreSQL
/// serialization and lock failures.
fn is_busy(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("5" | "6" | "261" | "262" | "517" | "40001" | "40P01" | "55P03" | "57014")
    )
}
