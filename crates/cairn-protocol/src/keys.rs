//! The part of log validation shared by operator and package logs: the
//! record header (prev chain, version, timestamp), the key and permission
//! tables, and the final signature check.
//!
//! SPEC: warg-wire §5.1, steps 1–3 and 5–7.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use cairn_crypto::{EcdsaPublicKey, KeyId};

use crate::envelope::Envelope;
use crate::record::{Record, RecordKind};
use crate::{RecordId, Timestamp, ValidationError};

/// The protocol version every record must carry.
pub const RECORD_VERSION: u32 = 0;

/// The last validated record of a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    /// Its record id.
    pub record_id: RecordId,
    /// Its timestamp.
    pub timestamp: Timestamp,
}

/// Keys, permissions and head of one log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "P: serde::Serialize + Ord",
    deserialize = "P: serde::Deserialize<'de> + Ord"
))]
pub(crate) struct KeyTable<P> {
    pub(crate) initialized: bool,
    pub(crate) head: Option<Head>,
    pub(crate) permissions: BTreeMap<KeyId, BTreeSet<P>>,
    pub(crate) keys: BTreeMap<KeyId, EcdsaPublicKey>,
}

impl<P> Default for KeyTable<P> {
    fn default() -> Self {
        Self {
            initialized: false,
            head: None,
            permissions: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }
}

impl<P: Ord + Copy + Display> KeyTable<P> {
    /// Steps 1–3: prev chain, version, timestamp.
    pub(crate) fn check_header<E>(&self, record: &Record<E>) -> Result<(), ValidationError> {
        match (&self.head, &record.prev) {
            (None, Some(_)) => return Err(ValidationError::PreviousHashOnFirstRecord),
            (Some(_), None) => return Err(ValidationError::NoPreviousHashAfterInit),
            (Some(head), Some(prev)) if head.record_id != *prev => {
                return Err(ValidationError::RecordHashDoesNotMatch);
            }
            _ => {}
        }
        if record.version != RECORD_VERSION {
            return Err(ValidationError::ProtocolVersionNotAllowed {
                version: record.version,
            });
        }
        if let Some(head) = &self.head
            && record.timestamp < head.timestamp
        {
            return Err(ValidationError::TimestampLowerThanPrevious);
        }
        Ok(())
    }

    /// The keys that currently hold `permission`, in key id order.
    pub(crate) fn holders(&self, permission: P) -> impl Iterator<Item = &KeyId> {
        self.permissions
            .iter()
            .filter(move |(_, set)| set.contains(&permission))
            .map(|(key_id, _)| key_id)
    }

    /// Whether `key_id` currently holds `permission`.
    pub(crate) fn has(&self, key_id: &KeyId, permission: P) -> bool {
        self.permissions
            .get(key_id)
            .is_some_and(|set| set.contains(&permission))
    }

    /// The signer must hold every permission in `permissions`.
    pub(crate) fn require(&self, key_id: &KeyId, permissions: &[P]) -> Result<(), ValidationError> {
        for &permission in permissions {
            if !self.has(key_id, permission) {
                return Err(ValidationError::UnauthorizedAction {
                    key_id: key_id.to_string(),
                    needed_permission: permission.to_string(),
                });
            }
        }
        Ok(())
    }

    /// `init`: grants every permission to the signer and registers the key.
    pub(crate) fn init(&mut self, signer: &KeyId, key: &EcdsaPublicKey, all: &[P]) {
        self.initialized = true;
        self.permissions
            .insert(signer.clone(), all.iter().copied().collect());
        self.keys.insert(key.key_id(), key.clone());
    }

    /// `grantFlat`: the signer must hold what it grants.
    pub(crate) fn grant(
        &mut self,
        signer: &KeyId,
        key: &EcdsaPublicKey,
        permissions: &[P],
    ) -> Result<(), ValidationError> {
        self.require(signer, permissions)?;
        let key_id = key.key_id();
        self.keys.insert(key_id.clone(), key.clone());
        self.permissions
            .entry(key_id)
            .or_default()
            .extend(permissions.iter().copied());
        Ok(())
    }

    /// `revokeFlat`: the signer must hold what it revokes; the target must
    /// hold each permission (a repeated permission fails the second time).
    /// The key itself stays known, as in the reference.
    pub(crate) fn revoke(
        &mut self,
        signer: &KeyId,
        key_id: &KeyId,
        permissions: &[P],
    ) -> Result<(), ValidationError> {
        self.require(signer, permissions)?;
        for &permission in permissions {
            let removed = self
                .permissions
                .get_mut(key_id)
                .is_some_and(|set| set.remove(&permission));
            if !removed {
                return Err(ValidationError::PermissionNotFoundToRevoke {
                    permission: permission.to_string(),
                    key_id: key_id.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Steps 5–7: initialised, known signer, valid signature; then the head moves.
    pub(crate) fn finish<R: RecordKind>(
        &mut self,
        envelope: &Envelope<R>,
        timestamp: Timestamp,
    ) -> Result<(), ValidationError> {
        if !self.initialized {
            return Err(ValidationError::InitialRecordDoesNotInit);
        }
        let key = self.keys.get(envelope.key_id()).ok_or_else(|| {
            ValidationError::KeyIdNotRecognized {
                key_id: envelope.key_id().to_string(),
            }
        })?;
        envelope
            .verify(key)
            .map_err(|_| ValidationError::SignatureError)?;
        self.head = Some(Head {
            record_id: envelope.record_id(),
            timestamp,
        });
        Ok(())
    }
}
