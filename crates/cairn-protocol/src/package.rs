//! The package log's validation state machine.
//!
//! SPEC: warg-wire §5; warg-protocol `package/state.rs`.

use imbl::OrdMap;

use cairn_crypto::{EcdsaPublicKey, KeyId, Sha256Digest};
use semver::{Version, VersionReq};

use crate::envelope::Envelope;
pub use crate::keys::Head;
use crate::keys::KeyTable;
use crate::record::{PackageEntry, PackagePermission, PackageRecord};
use crate::{RecordId, Timestamp, ValidationError};

/// The state of a release.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum ReleaseState {
    /// Available.
    Released {
        /// Its content digest.
        content: Sha256Digest,
    },
    /// Yanked.
    Yanked {
        /// Who yanked it.
        by: KeyId,
        /// When (the yank record's timestamp).
        timestamp: Timestamp,
    },
}

/// A release of a package.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Release {
    /// The record that released it.
    pub record_id: RecordId,
    /// The version.
    pub version: Version,
    /// Who released it.
    pub by: KeyId,
    /// The release record's timestamp.
    pub timestamp: Timestamp,
    /// Released or yanked.
    pub state: ReleaseState,
}

impl Release {
    /// Whether it has been yanked.
    pub fn yanked(&self) -> bool {
        matches!(self.state, ReleaseState::Yanked { .. })
    }

    /// Its content, unless yanked.
    pub fn content(&self) -> Option<&Sha256Digest> {
        match &self.state {
            ReleaseState::Released { content } => Some(content),
            ReleaseState::Yanked { .. } => None,
        }
    }
}

/// The validated state of a package log.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageState {
    table: KeyTable<PackagePermission>,
    releases: OrdMap<Version, Release>,
}

impl PackageState {
    /// An empty, uninitialised log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next record of the log and returns the new state. On
    /// error the state is consumed; callers that need the old state keep a
    /// clone.
    pub fn validate(mut self, envelope: &Envelope<PackageRecord>) -> Result<Self, ValidationError> {
        let record = envelope.record();
        let signer = envelope.key_id();
        let record_id = envelope.record_id();
        self.table.check_header(record)?;
        for entry in &record.entries {
            if let Some(permission) = entry.required_permission() {
                self.table.require(signer, &[permission])?;
            }
            if let PackageEntry::Init { key } = entry {
                if self.table.initialized {
                    return Err(ValidationError::InitialEntryAfterBeginning);
                }
                if signer != &key.key_id() {
                    return Err(ValidationError::KeyIdNotRecognized {
                        key_id: signer.to_string(),
                    });
                }
                self.table.init(signer, key, &PackagePermission::ALL);
                continue;
            }
            if !self.table.initialized {
                return Err(ValidationError::FirstEntryIsNotInit);
            }
            match entry {
                PackageEntry::Init { .. } => {}
                PackageEntry::GrantFlat { key, permissions } => {
                    self.table.grant(signer, key, permissions)?
                }
                PackageEntry::RevokeFlat {
                    key_id,
                    permissions,
                } => self.table.revoke(signer, key_id, permissions)?,
                PackageEntry::Release { version, content } => {
                    if self.releases.contains_key(version) {
                        return Err(ValidationError::ReleaseOfReleased {
                            version: version.to_string(),
                        });
                    }
                    self.releases.insert(
                        version.clone(),
                        Release {
                            record_id,
                            version: version.clone(),
                            by: signer.clone(),
                            timestamp: record.timestamp,
                            state: ReleaseState::Released { content: *content },
                        },
                    );
                }
                PackageEntry::Yank { version } => {
                    let release = self.releases.get_mut(version).ok_or_else(|| {
                        ValidationError::YankOfUnreleased {
                            version: version.to_string(),
                        }
                    })?;
                    if release.yanked() {
                        return Err(ValidationError::YankOfYanked {
                            version: version.to_string(),
                        });
                    }
                    release.state = ReleaseState::Yanked {
                        by: signer.clone(),
                        timestamp: record.timestamp,
                    };
                }
            }
        }
        self.table.finish(envelope, record.timestamp)?;
        Ok(self)
    }

    /// The last validated record.
    pub fn head(&self) -> Option<&Head> {
        self.table.head.as_ref()
    }

    /// Every release (yanked ones included), in version order.
    pub fn releases(&self) -> impl Iterator<Item = &Release> {
        self.releases.values()
    }

    /// The release of `version`.
    pub fn release(&self, version: &Version) -> Option<&Release> {
        self.releases.get(version)
    }

    /// The newest non-yanked release matching `req`.
    pub fn latest_matching(&self, req: &VersionReq) -> Option<&Release> {
        self.releases
            .values()
            .rev()
            .find(|r| !r.yanked() && req.matches(&r.version))
    }

    /// The public key with this id, if the log knows it.
    pub fn public_key(&self, key_id: &KeyId) -> Option<&EcdsaPublicKey> {
        self.table.keys.get(key_id)
    }

    /// Whether `key_id` holds `permission` now.
    pub fn has_permission(&self, key_id: &KeyId, permission: PackagePermission) -> bool {
        self.table.has(key_id, permission)
    }
}
