//! The operator log's validation state machine.
//!
//! SPEC: warg-wire §5; warg-protocol `operator/state.rs`.

use std::collections::BTreeMap;

use cairn_crypto::{EcdsaPublicKey, KeyId};

use crate::ValidationError;
use crate::envelope::Envelope;
pub use crate::keys::Head;
use crate::keys::KeyTable;
use crate::name::is_valid_namespace;
use crate::record::{OperatorEntry, OperatorPermission, OperatorRecord};

/// How a namespace is known to the registry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum NamespaceState {
    /// Used for this registry's own packages.
    Defined,
    /// Imported from another registry.
    Imported {
        /// The registry it comes from.
        registry: String,
    },
}

/// The validated state of the operator log.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperatorState {
    table: KeyTable<OperatorPermission>,
    namespaces: BTreeMap<String, NamespaceState>,
}

impl OperatorState {
    /// An empty, uninitialised log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next record of the log and returns the new state. On
    /// error the state is consumed; callers that need the old state keep a
    /// clone.
    pub fn validate(
        mut self,
        envelope: &Envelope<OperatorRecord>,
    ) -> Result<Self, ValidationError> {
        let record = envelope.record();
        let signer = envelope.key_id();
        self.table.check_header(record)?;
        for entry in &record.entries {
            if let Some(permission) = entry.required_permission() {
                self.table.require(signer, &[permission])?;
            }
            if let OperatorEntry::Init { key } = entry {
                if self.table.initialized {
                    return Err(ValidationError::InitialEntryAfterBeginning);
                }
                self.table.init(signer, key, &OperatorPermission::ALL);
                continue;
            }
            if !self.table.initialized {
                return Err(ValidationError::FirstEntryIsNotInit);
            }
            match entry {
                OperatorEntry::Init { .. } => {}
                OperatorEntry::GrantFlat { key, permissions } => {
                    self.table.grant(signer, key, permissions)?
                }
                OperatorEntry::RevokeFlat {
                    key_id,
                    permissions,
                } => self.table.revoke(signer, key_id, permissions)?,
                OperatorEntry::DefineNamespace { namespace } => {
                    self.add_namespace(namespace, NamespaceState::Defined)?
                }
                OperatorEntry::ImportNamespace {
                    namespace,
                    registry,
                } => self.add_namespace(
                    namespace,
                    NamespaceState::Imported {
                        registry: registry.clone(),
                    },
                )?,
            }
        }
        self.table.finish(envelope, record.timestamp)?;
        Ok(self)
    }

    fn add_namespace(
        &mut self,
        namespace: &str,
        state: NamespaceState,
    ) -> Result<(), ValidationError> {
        if !is_valid_namespace(namespace) {
            return Err(ValidationError::InvalidNamespace {
                namespace: namespace.chars().take(80).collect(),
            });
        }
        if self.namespaces.contains_key(namespace) {
            return Err(ValidationError::NamespaceAlreadyDefined {
                namespace: namespace.to_owned(),
            });
        }
        self.namespaces.insert(namespace.to_owned(), state);
        Ok(())
    }

    /// The last validated record.
    pub fn head(&self) -> Option<&Head> {
        self.table.head.as_ref()
    }

    /// The public key with this id, if the log knows it (revoked keys stay known).
    pub fn public_key(&self, key_id: &KeyId) -> Option<&EcdsaPublicKey> {
        self.table.keys.get(key_id)
    }

    /// Whether `key_id` holds `permission` now.
    pub fn has_permission(&self, key_id: &KeyId, permission: OperatorPermission) -> bool {
        self.table.has(key_id, permission)
    }

    /// The keys that hold `permission` now, in key id order.
    pub fn holders(&self, permission: OperatorPermission) -> impl Iterator<Item = &KeyId> {
        self.table.holders(permission)
    }

    /// How `namespace` is known, if at all.
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceState> {
        self.namespaces.get(namespace)
    }

    /// All namespaces.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &NamespaceState)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), v))
    }
}
