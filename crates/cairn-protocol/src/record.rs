//! Operator and package records: typed models, decoding and encoding.
//!
//! SPEC: warg-wire §4.1; decoding rules from warg-protocol
//! `operator/mod.rs` and `package/mod.rs` (`TryFrom<protobuf::…>`).

use std::fmt;

use cairn_crypto::{EcdsaPublicKey, KeyId, Sha256Digest};
use prost::Message as _;
use semver::Version;

use crate::proto::{self, operator_entry, package_entry};
use crate::{DecodeError, RecordId, Timestamp};

/// The only hash algorithm warg logs use.
pub const HASH_ALGORITHM: &str = "sha256";

/// Operator-log permissions.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum OperatorPermission {
    /// Sign checkpoints; grant and revoke operator permissions.
    Commit,
    /// Define namespaces.
    DefineNamespace,
    /// Import namespaces from other registries.
    ImportNamespace,
}

impl OperatorPermission {
    /// Every operator permission (what `init` grants).
    pub const ALL: [Self; 3] = [Self::Commit, Self::DefineNamespace, Self::ImportNamespace];

    fn from_proto(value: i32) -> Result<Self, DecodeError> {
        match value {
            1 => Ok(Self::Commit),
            2 => Ok(Self::DefineNamespace),
            3 => Ok(Self::ImportNamespace),
            other => Err(DecodeError::InvalidPermission(other)),
        }
    }

    fn to_proto(self) -> i32 {
        match self {
            Self::Commit => 1,
            Self::DefineNamespace => 2,
            Self::ImportNamespace => 3,
        }
    }
}

impl fmt::Display for OperatorPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Commit => "commit",
            Self::DefineNamespace => "defineNamespace",
            Self::ImportNamespace => "importNamespace",
        })
    }
}

/// Package-log permissions.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum PackagePermission {
    /// Publish releases.
    Release,
    /// Yank releases.
    Yank,
}

impl PackagePermission {
    /// Every package permission (what `init` grants).
    pub const ALL: [Self; 2] = [Self::Release, Self::Yank];

    fn from_proto(value: i32) -> Result<Self, DecodeError> {
        match value {
            1 => Ok(Self::Release),
            2 => Ok(Self::Yank),
            other => Err(DecodeError::InvalidPermission(other)),
        }
    }

    fn to_proto(self) -> i32 {
        match self {
            Self::Release => 1,
            Self::Yank => 2,
        }
    }
}

impl fmt::Display for PackagePermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Release => "release",
            Self::Yank => "yank",
        })
    }
}

/// An entry of an operator record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorEntry {
    /// Initialises the log with its first key.
    Init {
        /// The operator key.
        key: EcdsaPublicKey,
    },
    /// Grants permissions to a key.
    GrantFlat {
        /// The key.
        key: EcdsaPublicKey,
        /// The permissions (duplicates allowed, as in the reference).
        permissions: Vec<OperatorPermission>,
    },
    /// Revokes permissions from a key id.
    RevokeFlat {
        /// The key id (opaque).
        key_id: KeyId,
        /// The permissions.
        permissions: Vec<OperatorPermission>,
    },
    /// Defines a namespace for this registry's own packages.
    DefineNamespace {
        /// The namespace.
        namespace: String,
    },
    /// Marks a namespace as imported from another registry.
    ImportNamespace {
        /// The namespace.
        namespace: String,
        /// The registry it is imported from (not validated, as in the reference).
        registry: String,
    },
}

impl OperatorEntry {
    /// The permission the signer must hold for this entry, if any.
    pub fn required_permission(&self) -> Option<OperatorPermission> {
        match self {
            Self::Init { .. } => None,
            Self::GrantFlat { .. } | Self::RevokeFlat { .. } => Some(OperatorPermission::Commit),
            Self::DefineNamespace { .. } => Some(OperatorPermission::DefineNamespace),
            Self::ImportNamespace { .. } => Some(OperatorPermission::ImportNamespace),
        }
    }
}

/// An entry of a package record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageEntry {
    /// Initialises the log; the signer must be `key`.
    Init {
        /// The initial key.
        key: EcdsaPublicKey,
    },
    /// Grants permissions to a key.
    GrantFlat {
        /// The key.
        key: EcdsaPublicKey,
        /// The permissions.
        permissions: Vec<PackagePermission>,
    },
    /// Revokes permissions from a key id.
    RevokeFlat {
        /// The key id (opaque).
        key_id: KeyId,
        /// The permissions.
        permissions: Vec<PackagePermission>,
    },
    /// Releases a version with content.
    Release {
        /// The version.
        version: Version,
        /// The content digest.
        content: Sha256Digest,
    },
    /// Yanks a released version.
    Yank {
        /// The version.
        version: Version,
    },
}

impl PackageEntry {
    /// The permission the signer must hold for this entry, if any.
    pub fn required_permission(&self) -> Option<PackagePermission> {
        match self {
            Self::Init { .. } | Self::GrantFlat { .. } | Self::RevokeFlat { .. } => None,
            Self::Release { .. } => Some(PackagePermission::Release),
            Self::Yank { .. } => Some(PackagePermission::Yank),
        }
    }
}

/// A record: the common header and typed entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<E> {
    /// The previous record of the same log.
    pub prev: Option<RecordId>,
    /// Protocol version (must be 0 to validate).
    pub version: u32,
    /// Signer-chosen time.
    pub timestamp: Timestamp,
    /// The entries.
    pub entries: Vec<E>,
}

/// An operator record.
pub type OperatorRecord = Record<OperatorEntry>;
/// A package record.
pub type PackageRecord = Record<PackageEntry>;

/// What distinguishes the two kinds of record.
pub trait RecordKind: Sized + Clone + fmt::Debug {
    /// Signing prefix (`WARG-…-RECORD-SIGNATURE-V0`).
    const SIGNATURE_PREFIX: &'static [u8];
    /// Decodes the protobuf bytes.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
    /// Encodes to protobuf (fields in field-number order, like prost).
    fn encode(&self) -> Vec<u8>;
    /// The record id of these content bytes.
    fn record_id(content_bytes: &[u8]) -> RecordId;
    /// Content digests the record refers to.
    fn contents(&self) -> Vec<Sha256Digest>;
}

fn decode_prev(prev: Option<String>) -> Result<Option<RecordId>, DecodeError> {
    prev.map(|s| {
        s.parse::<Sha256Digest>()
            .map(RecordId)
            .map_err(|source| DecodeError::InvalidDigest {
                field: "prev",
                source,
            })
    })
    .transpose()
}

fn decode_time(time: Option<proto::Timestamp>) -> Result<Timestamp, DecodeError> {
    Timestamp::from_proto(time.ok_or(DecodeError::MissingTimestamp)?)
}

fn decode_hash_algorithm(s: String) -> Result<(), DecodeError> {
    if s == HASH_ALGORITHM {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedHashAlgorithm(
            s.chars().take(64).collect(),
        ))
    }
}

fn decode_key(s: &str) -> Result<EcdsaPublicKey, DecodeError> {
    s.parse().map_err(DecodeError::InvalidKey)
}

fn decode_version(s: &str) -> Result<Version, DecodeError> {
    Version::parse(s).map_err(|_| DecodeError::InvalidVersion(s.chars().take(64).collect()))
}

fn protobuf_error(e: prost::DecodeError) -> DecodeError {
    DecodeError::Protobuf(e.to_string())
}

impl RecordKind for OperatorRecord {
    const SIGNATURE_PREFIX: &'static [u8] = b"WARG-OPERATOR-RECORD-SIGNATURE-V0";

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let message = proto::OperatorRecord::decode(bytes).map_err(protobuf_error)?;
        let prev = decode_prev(message.prev)?;
        let timestamp = decode_time(message.time)?;
        let entries = message
            .entries
            .into_iter()
            .map(|entry| {
                Ok(match entry.contents.ok_or(DecodeError::EmptyEntry)? {
                    operator_entry::Contents::Init(init) => {
                        decode_hash_algorithm(init.hash_algorithm)?;
                        OperatorEntry::Init {
                            key: decode_key(&init.key)?,
                        }
                    }
                    operator_entry::Contents::GrantFlat(grant) => OperatorEntry::GrantFlat {
                        key: decode_key(&grant.key)?,
                        permissions: grant
                            .permissions
                            .into_iter()
                            .map(OperatorPermission::from_proto)
                            .collect::<Result<_, _>>()?,
                    },
                    operator_entry::Contents::RevokeFlat(revoke) => OperatorEntry::RevokeFlat {
                        key_id: KeyId::new(revoke.key_id),
                        permissions: revoke
                            .permissions
                            .into_iter()
                            .map(OperatorPermission::from_proto)
                            .collect::<Result<_, _>>()?,
                    },
                    operator_entry::Contents::DefineNamespace(define) => {
                        OperatorEntry::DefineNamespace {
                            namespace: define.namespace,
                        }
                    }
                    operator_entry::Contents::ImportNamespace(import) => {
                        OperatorEntry::ImportNamespace {
                            namespace: import.namespace,
                            registry: import.registry,
                        }
                    }
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Self {
            prev,
            version: message.version,
            timestamp,
            entries,
        })
    }

    fn encode(&self) -> Vec<u8> {
        proto::OperatorRecord {
            prev: self.prev.map(|p| p.to_string()),
            version: self.version,
            time: Some(self.timestamp.to_proto()),
            entries: self
                .entries
                .iter()
                .map(|entry| proto::OperatorEntry {
                    contents: Some(match entry {
                        OperatorEntry::Init { key } => {
                            operator_entry::Contents::Init(proto::OperatorInit {
                                hash_algorithm: HASH_ALGORITHM.into(),
                                key: key.to_string(),
                            })
                        }
                        OperatorEntry::GrantFlat { key, permissions } => {
                            operator_entry::Contents::GrantFlat(proto::OperatorGrantFlat {
                                key: key.to_string(),
                                permissions: permissions.iter().map(|p| p.to_proto()).collect(),
                            })
                        }
                        OperatorEntry::RevokeFlat {
                            key_id,
                            permissions,
                        } => operator_entry::Contents::RevokeFlat(proto::OperatorRevokeFlat {
                            key_id: key_id.to_string(),
                            permissions: permissions.iter().map(|p| p.to_proto()).collect(),
                        }),
                        OperatorEntry::DefineNamespace { namespace } => {
                            operator_entry::Contents::DefineNamespace(
                                proto::OperatorDefineNamespace {
                                    namespace: namespace.clone(),
                                },
                            )
                        }
                        OperatorEntry::ImportNamespace {
                            namespace,
                            registry,
                        } => operator_entry::Contents::ImportNamespace(
                            proto::OperatorImportNamespace {
                                namespace: namespace.clone(),
                                registry: registry.clone(),
                            },
                        ),
                    }),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    fn record_id(content_bytes: &[u8]) -> RecordId {
        RecordId::operator(content_bytes)
    }

    fn contents(&self) -> Vec<Sha256Digest> {
        Vec::new()
    }
}

impl RecordKind for PackageRecord {
    const SIGNATURE_PREFIX: &'static [u8] = b"WARG-PACKAGE-RECORD-SIGNATURE-V0";

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let message = proto::PackageRecord::decode(bytes).map_err(protobuf_error)?;
        let prev = decode_prev(message.prev)?;
        let timestamp = decode_time(message.time)?;
        let entries = message
            .entries
            .into_iter()
            .map(|entry| {
                Ok(match entry.contents.ok_or(DecodeError::EmptyEntry)? {
                    package_entry::Contents::Init(init) => {
                        decode_hash_algorithm(init.hash_algorithm)?;
                        PackageEntry::Init {
                            key: decode_key(&init.key)?,
                        }
                    }
                    package_entry::Contents::GrantFlat(grant) => PackageEntry::GrantFlat {
                        key: decode_key(&grant.key)?,
                        permissions: grant
                            .permissions
                            .into_iter()
                            .map(PackagePermission::from_proto)
                            .collect::<Result<_, _>>()?,
                    },
                    package_entry::Contents::RevokeFlat(revoke) => PackageEntry::RevokeFlat {
                        key_id: KeyId::new(revoke.key_id),
                        permissions: revoke
                            .permissions
                            .into_iter()
                            .map(PackagePermission::from_proto)
                            .collect::<Result<_, _>>()?,
                    },
                    package_entry::Contents::Release(release) => PackageEntry::Release {
                        version: decode_version(&release.version)?,
                        content: release.content_hash.parse().map_err(|source| {
                            DecodeError::InvalidDigest {
                                field: "content_hash",
                                source,
                            }
                        })?,
                    },
                    package_entry::Contents::Yank(yank) => PackageEntry::Yank {
                        version: decode_version(&yank.version)?,
                    },
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Self {
            prev,
            version: message.version,
            timestamp,
            entries,
        })
    }

    fn encode(&self) -> Vec<u8> {
        proto::PackageRecord {
            prev: self.prev.map(|p| p.to_string()),
            version: self.version,
            time: Some(self.timestamp.to_proto()),
            entries: self
                .entries
                .iter()
                .map(|entry| proto::PackageEntry {
                    contents: Some(match entry {
                        PackageEntry::Init { key } => {
                            package_entry::Contents::Init(proto::PackageInit {
                                key: key.to_string(),
                                hash_algorithm: HASH_ALGORITHM.into(),
                            })
                        }
                        PackageEntry::GrantFlat { key, permissions } => {
                            package_entry::Contents::GrantFlat(proto::PackageGrantFlat {
                                key: key.to_string(),
                                permissions: permissions.iter().map(|p| p.to_proto()).collect(),
                            })
                        }
                        PackageEntry::RevokeFlat {
                            key_id,
                            permissions,
                        } => package_entry::Contents::RevokeFlat(proto::PackageRevokeFlat {
                            key_id: key_id.to_string(),
                            permissions: permissions.iter().map(|p| p.to_proto()).collect(),
                        }),
                        PackageEntry::Release { version, content } => {
                            package_entry::Contents::Release(proto::PackageRelease {
                                version: version.to_string(),
                                content_hash: content.to_string(),
                            })
                        }
                        PackageEntry::Yank { version } => {
                            package_entry::Contents::Yank(proto::PackageYank {
                                version: version.to_string(),
                            })
                        }
                    }),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    fn record_id(content_bytes: &[u8]) -> RecordId {
        RecordId::package(content_bytes)
    }

    fn contents(&self) -> Vec<Sha256Digest> {
        let mut digests: Vec<Sha256Digest> = self
            .entries
            .iter()
            .filter_map(|entry| match entry {
                PackageEntry::Release { content, .. } => Some(*content),
                _ => None,
            })
            .collect();
        digests.sort_unstable();
        digests.dedup();
        digests
    }
}
