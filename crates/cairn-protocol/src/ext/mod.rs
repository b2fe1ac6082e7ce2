//! cairn's own logs, sequenced into the same registry log as the warg ones.
//!
//! warg records cannot say who owns a namespace, which identity a key
//! belongs to, which OCI manifest a tag names or why a version was yanked.
//! cairn records these facts in two more kinds of log, so that they are
//! signed, hash-chained, in the Merkle log and in the map like everything
//! else, and an auditor can check them:
//!
//! * the **registry log** ([`LogId::registry`], one per registry):
//!   identities, the warg keys bound to them, and each namespace's owners,
//!   publishers, trusted CI publishers, upstream and publish policy
//!   ([`registry::RegistryState`]);
//! * one **metadata log** per package ([`LogId::package_meta`]): OCI
//!   manifests pushed (with the identity that pushed them and the warg
//!   release they became), tags moved, yank reasons, releases mirrored from
//!   an upstream ([`meta::MetaState`]).
//!
//! Records are JSON (`{"prev", "version", "timestamp", "entries"}`), signed
//! like warg records with `CAIRN-RECORD-SIGNATURE-V0:` ‖ bytes, with record
//! id `SHA-256("CAIRN-RECORD-V0:" ‖ bytes)`. Only a key that holds `commit`
//! in the operator log may sign them. warg clients never request these
//! logs; `v1/fetch/logs` serves them to auditors like any other log.

pub mod hold;
pub mod meta;
pub mod registry;
pub mod signature;

use std::collections::BTreeMap;

use cairn_crypto::{KeyId, Sha256Digest};
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::keys::Head;
use crate::operator::OperatorState;
use crate::record::{OperatorPermission, Record, RecordKind};
use crate::{DecodeError, RecordId, Timestamp, ValidationError};

/// The largest extension record accepted.
pub const MAX_RECORD_BYTES: usize = 256 * 1024;

/// The name under which the registry log is listed (`v1/fetch/names`).
pub const REGISTRY_LOG_NAME: &str = "cairn-registry";
/// The prefix of a metadata log's listed name: `cairn-meta:<ns>:<name>`.
pub const META_LOG_PREFIX: &str = "cairn-meta:";

/// The listed name of `package`'s metadata log.
pub fn meta_log_name(package: &crate::PackageName) -> String {
    format!("{META_LOG_PREFIX}{package}")
}

/// The package whose metadata log is listed as `name`, if it is one.
pub fn meta_log_package(name: &str) -> Option<crate::PackageName> {
    name.strip_prefix(META_LOG_PREFIX)
        .and_then(|package| crate::PackageName::new(package).ok())
}

/// An extension record.
pub type ExtRecord = Record<ExtEntry>;

/// Who did something, as the registry authenticated it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attribution {
    /// The identity's id (see [`registry::IdentityEntry`]).
    pub identity: String,
    /// How it authenticated: `token`, `oidc`, `warg-key` or `operator`.
    pub via: String,
    /// The id (never the secret) of the token it used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Further facts, e.g. the OIDC claims of a CI publisher.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

/// One fact recorded in an extension log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ExtEntry {
    /// Registry log: an identity is created.
    Identity(registry::IdentityEntry),
    /// Registry log: an identity is disabled (its tokens stop working; its
    /// keys no longer publish).
    IdentityDisabled(registry::IdentityRef),
    /// Registry log: a warg key is bound to an identity.
    KeyBound(registry::KeyEntry),
    /// Registry log: a warg key is unbound.
    KeyUnbound(registry::KeyIdEntry),
    /// Registry log: a namespace's ownership and policy (the whole new
    /// state; it replaces the previous one).
    Namespace(registry::NamespaceEntry),
    /// Registry log: content is withheld (no longer served; its records
    /// stay and keep verifying).
    ContentWithheld(registry::WithheldEntry),
    /// Registry log: withheld content is served again.
    ContentRestored(registry::RestoredEntry),
    /// Metadata log: an OCI manifest was pushed.
    Manifest(meta::ManifestEntry),
    /// Metadata log: a tag now names a manifest.
    Tag(meta::TagEntry),
    /// Metadata log: why a version was yanked, and by whom.
    YankReason(meta::YankEntry),
    /// Metadata log: a release mirrored from the namespace's upstream.
    Mirrored(meta::MirrorEntry),
    /// Metadata log: a mutable tag is deleted.
    Untag(meta::UntagEntry),
    /// Metadata log: a manifest that is not a release is deleted.
    ManifestDeleted(meta::ManifestDeletedEntry),
    /// Metadata log: a release is held (not served) until signatures
    /// meeting its namespace's requirement arrive.
    ReleaseHeld(hold::HeldEntry),
    /// Metadata log: a held release is served, its requirement met.
    ReleaseReleased(hold::ReleasedEntry),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Json {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev: Option<RecordId>,
    #[serde(default)]
    version: u32,
    timestamp: Timestamp,
    entries: Vec<ExtEntry>,
}

impl RecordKind for ExtRecord {
    const SIGNATURE_PREFIX: &'static [u8] = b"CAIRN-RECORD-SIGNATURE-V0";

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DecodeError::Protobuf(format!(
                "extension record larger than {MAX_RECORD_BYTES} bytes"
            )));
        }
        let json: Json = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::Protobuf(format!("invalid extension record: {e}")))?;
        if json.timestamp.seconds < 0 || json.timestamp.seconds > crate::timestamp::MAX_SECONDS {
            return Err(DecodeError::TimestampOutOfRange);
        }
        if json.timestamp.nanos >= 1_000_000_000 {
            return Err(DecodeError::TimestampOutOfRange);
        }
        if json.entries.is_empty() {
            return Err(DecodeError::EmptyEntry);
        }
        Ok(Record {
            prev: json.prev,
            version: json.version,
            timestamp: json.timestamp,
            entries: json.entries,
        })
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Json {
            prev: self.prev,
            version: self.version,
            timestamp: self.timestamp,
            entries: self.entries.clone(),
        })
        .unwrap_or_default()
    }

    fn record_id(content_bytes: &[u8]) -> RecordId {
        RecordId::cairn(content_bytes)
    }

    fn contents(&self) -> Vec<Sha256Digest> {
        self.entries
            .iter()
            .filter_map(|entry| match entry {
                ExtEntry::Mirrored(m) => Some(m.content),
                _ => None,
            })
            .collect()
    }
}

/// The rules every extension record obeys, whatever its log: `prev` names
/// the log's head, version 0, timestamps never decrease, and the signer is
/// an operator key that holds `commit`. Returns the new head.
pub(crate) fn check_common(
    head: Option<&Head>,
    envelope: &Envelope<ExtRecord>,
    operator: &OperatorState,
) -> Result<Head, ValidationError> {
    let record = envelope.record();
    match (head, &record.prev) {
        (None, Some(_)) => return Err(ValidationError::PreviousHashOnFirstRecord),
        (Some(_), None) => return Err(ValidationError::NoPreviousHashAfterInit),
        (Some(head), Some(prev)) if head.record_id != *prev => {
            return Err(ValidationError::RecordHashDoesNotMatch);
        }
        _ => {}
    }
    if record.version != 0 {
        return Err(ValidationError::ProtocolVersionNotAllowed {
            version: record.version,
        });
    }
    if head.is_some_and(|h| record.timestamp < h.timestamp) {
        return Err(ValidationError::TimestampLowerThanPrevious);
    }
    let signer: &KeyId = envelope.key_id();
    if !operator.has_permission(signer, OperatorPermission::Commit) {
        return Err(ValidationError::UnauthorizedAction {
            key_id: signer.to_string(),
            needed_permission: "commit".into(),
        });
    }
    let key = operator
        .public_key(signer)
        .ok_or_else(|| ValidationError::KeyIdNotRecognized {
            key_id: signer.to_string(),
        })?;
    envelope
        .verify(key)
        .map_err(|_| ValidationError::SignatureError)?;
    Ok(Head {
        record_id: envelope.record_id(),
        timestamp: record.timestamp,
    })
}

fn rule(message: impl Into<String>) -> ValidationError {
    ValidationError::ExtensionRule(message.into())
}
