use thiserror::Error;

/// Why bytes could not be decoded into a record or envelope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a valid protobuf message of the expected type.
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    /// The record has no timestamp.
    #[error("record has no timestamp")]
    MissingTimestamp,
    /// The timestamp is before 1970 or after 9999.
    #[error("record timestamp is out of range")]
    TimestampOutOfRange,
    /// A digest field (`prev`, `content_hash`) is not a valid SHA-256 digest.
    #[error("invalid digest in `{field}`: {source}")]
    InvalidDigest {
        /// The field.
        field: &'static str,
        /// The parse error.
        source: cairn_crypto::Error,
    },
    /// A key field is not a valid `ecdsa-p256:` public key.
    #[error("invalid public key: {0}")]
    InvalidKey(cairn_crypto::Error),
    /// The signature is not a valid `ecdsa-p256:` DER signature.
    #[error("invalid signature: {0}")]
    InvalidSignature(cairn_crypto::Error),
    /// An `init` entry names a hash algorithm other than `sha256`.
    #[error("unsupported hash algorithm `{0}`")]
    UnsupportedHashAlgorithm(String),
    /// A permission value is unspecified or unknown.
    #[error("the value {0} could not be parsed as a permission")]
    InvalidPermission(i32),
    /// A version string is not strict semver.
    #[error("invalid version `{0}`")]
    InvalidVersion(String),
    /// An entry has no contents.
    #[error("no content in entry")]
    EmptyEntry,
    /// Invalid base64 in a JSON envelope.
    #[error("invalid base64 in contentBytes")]
    Base64,
}

/// Why a record was rejected by a log's validation state machine.
///
/// Messages match the reference implementation's wording, because they are
/// shown to users as the rejection reason.
// SPEC: warg-protocol operator/state.rs and package/state.rs `ValidationError`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A non-`init` entry came before the log was initialised.
    #[error("the first entry of the log is not \"init\"")]
    FirstEntryIsNotInit,
    /// The first record did not initialise the log.
    #[error("the initial record is empty and does not \"init\"")]
    InitialRecordDoesNotInit,
    /// The signing key is not known to the log (or, for a package `init`,
    /// is not the key being initialised).
    #[error("the Key ID used to sign this envelope is not known to this log")]
    KeyIdNotRecognized {
        /// The key id.
        key_id: String,
    },
    /// A second `init` entry.
    #[error("a second \"init\" entry was found")]
    InitialEntryAfterBeginning,
    /// The signer lacks a permission the entry needs.
    #[error("the key with ID {key_id} did not have required permission {needed_permission}")]
    UnauthorizedAction {
        /// The signer.
        key_id: String,
        /// The permission it lacks.
        needed_permission: String,
    },
    /// A revoke names a permission the target does not hold.
    #[error("attempted to remove permission {permission} from key {key_id} which did not have it")]
    PermissionNotFoundToRevoke {
        /// The permission.
        permission: String,
        /// The target key.
        key_id: String,
    },
    /// A release of a version that was already released.
    #[error("an entry attempted to release version {version} which is already released")]
    ReleaseOfReleased {
        /// The version.
        version: String,
    },
    /// A yank of a version that was never released.
    #[error("an entry attempted to yank version {version} which had not yet been released")]
    YankOfUnreleased {
        /// The version.
        version: String,
    },
    /// A yank of a version that is already yanked.
    #[error("an entry attempted to yank version {version} which is already yanked")]
    YankOfYanked {
        /// The version.
        version: String,
    },
    /// The envelope signature does not verify.
    #[error("unable to verify signature")]
    SignatureError,
    /// `prev` does not name the previous record.
    #[error("previous record hash does not match")]
    RecordHashDoesNotMatch,
    /// The first record of a log has a `prev`.
    #[error("the first record contained a previous hash value")]
    PreviousHashOnFirstRecord,
    /// A later record has no `prev`.
    #[error("non-initial record contained no previous hash")]
    NoPreviousHashAfterInit,
    /// The record's protocol version is not 0.
    #[error("protocol version {version} not allowed")]
    ProtocolVersionNotAllowed {
        /// The version found.
        version: u32,
    },
    /// The timestamp is earlier than the previous record's.
    #[error("record has lower timestamp than previous")]
    TimestampLowerThanPrevious,
    /// A namespace is not lowercase kebab case (or is too long).
    #[error(
        "the namespace `{namespace}` is invalid; namespace must be a lowercased kebab case string"
    )]
    InvalidNamespace {
        /// The namespace (truncated).
        namespace: String,
    },
    /// A namespace is defined or imported twice.
    #[error("the namespace `{namespace}` is already defined and cannot be redefined")]
    NamespaceAlreadyDefined {
        /// The namespace.
        namespace: String,
    },
    /// A rule of cairn's own logs (registry and package metadata) is broken.
    #[error("{0}")]
    ExtensionRule(String),
}
