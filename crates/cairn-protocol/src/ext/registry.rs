//! The registry log: identities, the warg keys bound to them, who owns and
//! may publish in each namespace, under which policy, and which content
//! the registry withholds (a legal takedown, a leaked secret).
//!
//! Withholding is a decision about serving, not about history: the records
//! that name withheld content stay in the log and keep verifying; the
//! registry only stops handing out the bytes (and may delete them).

use std::collections::{BTreeMap, BTreeSet};

use cairn_crypto::{EcdsaPublicKey, KeyId, Sha256Digest};
use serde::{Deserialize, Serialize};

use super::{Attribution, ExtEntry, ExtRecord, check_common, rule};
use crate::envelope::Envelope;
use crate::ext::meta::MetaState;
use crate::keys::Head;
use crate::name::is_valid_namespace;
use crate::operator::OperatorState;
use crate::{RecordId, ValidationError};

/// The longest identity name.
pub const MAX_IDENTITY_NAME: usize = 64;

/// Whether `name` is a valid identity name: 1–64 of `[a-z0-9._-]`,
/// starting with a letter or digit.
pub fn is_valid_identity_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTITY_NAME
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// What an identity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityKind {
    /// A person.
    User,
    /// A robot account (CI, automation).
    Robot,
    /// A CI workflow trusted through OIDC (trusted publishing).
    TrustedPublisher,
    /// The registry itself: its publisher key signs the warg records of
    /// OCI pushes, each attributed to the identity that pushed.
    Registry,
}

/// `identity` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityEntry {
    /// Its unique name.
    pub name: String,
    /// What it is.
    pub kind: IdentityKind,
}

/// `identityDisabled` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityRef {
    /// The identity.
    pub name: String,
}

/// `keyBound` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyEntry {
    /// The identity.
    pub identity: String,
    /// The warg public key (`ecdsa-p256:…`).
    pub key: EcdsaPublicKey,
}

/// `keyUnbound` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyIdEntry {
    /// The identity.
    pub identity: String,
    /// The key id.
    pub key_id: KeyId,
}

/// Where an imported namespace's packages come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upstream {
    /// The upstream OCI registry's base URL (`https://ghcr.io`).
    pub registry: String,
    /// Prepended to `<namespace>/<name>` on the upstream (`webassembly/`).
    #[serde(default)]
    pub prefix: String,
}

/// What may be published in a namespace, checked before anything is
/// logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishPolicy {
    /// Largest content in bytes (none: the registry's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Whether core modules are accepted besides components.
    #[serde(default)]
    pub allow_modules: bool,
    /// Whether content that is not WebAssembly at all is accepted.
    #[serde(default)]
    pub allow_other: bool,
    /// Whether a WIT package's embedded name and version must be the
    /// release's coordinates.
    #[serde(default = "yes")]
    pub name_must_match: bool,
    /// If not empty, every import must match one of these patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports_allow: Vec<String>,
    /// No import may match one of these patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports_deny: Vec<String>,
    /// Tags (besides versions, which are always immutable) that may not
    /// move once set: patterns where `*` matches any run of characters
    /// (`v*`, `release-*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub immutable_tags: Vec<String>,
    /// Public keys (PEM SubjectPublicKeyInfo, as `cosign generate-key-pair`
    /// writes `cosign.pub`) whose signatures are trusted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signature_keys: Vec<String>,
    /// Keyless signers: `ISSUER=IDENTITY_REGEX` (cosign's
    /// `--certificate-oidc-issuer` and anchored
    /// `--certificate-identity-regexp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signature_identities: Vec<String>,
    /// Whether every release needs a signature matching the keys or
    /// identities.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_signature: bool,
    /// In-toto predicate types of the attestations the namespace requires
    /// (and the only ones it accepts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_attestations: Vec<String>,
}

fn yes() -> bool {
    true
}

impl PublishPolicy {
    /// Whether `tag` matches one of the immutable-tag patterns.
    pub fn tag_is_immutable(&self, tag: &str) -> bool {
        self.immutable_tags.iter().any(|p| glob_matches(p, tag))
    }

    /// Whether the namespace has trust rules: signatures pushed into it
    /// must then verify against them.
    pub fn has_trust_rules(&self) -> bool {
        !self.signature_keys.is_empty()
            || !self.signature_identities.is_empty()
            || self.require_signature
            || !self.require_attestations.is_empty()
    }
}

/// Whether `pattern` is a valid immutable-tag pattern: tag characters
/// (`A-Za-z0-9._-`) and `*`, 1 to 128 of them.
pub fn is_valid_tag_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 128
        && pattern
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b))
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: an exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Default for PublishPolicy {
    fn default() -> Self {
        Self {
            max_bytes: None,
            allow_modules: false,
            allow_other: false,
            name_must_match: true,
            imports_allow: Vec::new(),
            imports_deny: Vec::new(),
            immutable_tags: Vec::new(),
            signature_keys: Vec::new(),
            signature_identities: Vec::new(),
            require_signature: false,
            require_attestations: Vec::new(),
        }
    }
}

/// A CI workflow allowed to publish through OIDC trusted publishing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedPublisher {
    /// The identity publishes are attributed to (kind `trusted-publisher`).
    pub identity: String,
    /// The token issuer (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// Claims the token must carry: exact values, or a prefix ending in `*`.
    pub claims: BTreeMap<String, String>,
}

/// `namespace` entry: a namespace's whole ownership and policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceEntry {
    /// The namespace.
    pub namespace: String,
    /// Identities that own it: they may publish and manage it.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Identities that may publish in it.
    #[serde(default)]
    pub publishers: Vec<String>,
    /// Open: any warg key may publish (for development registries).
    #[serde(default)]
    pub open: bool,
    /// For imported namespaces: the upstream they are mirrored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// Publish policy.
    #[serde(default)]
    pub policy: PublishPolicy,
    /// CI workflows that may publish through OIDC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_publishers: Vec<TrustedPublisher>,
    /// Who made this change.
    pub by: Attribution,
}

/// The longest reason for withholding content, in bytes.
pub const MAX_WITHHOLD_REASON: usize = 1024;

/// `contentWithheld` entry: the registry stops serving content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WithheldEntry {
    /// The content.
    pub digest: Sha256Digest,
    /// Why (1 to [`MAX_WITHHOLD_REASON`] bytes, not only blanks); shown to
    /// clients that ask for the content.
    pub reason: String,
    /// Who decided.
    pub by: Attribution,
}

/// `contentRestored` entry: withheld content is served again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoredEntry {
    /// The content.
    pub digest: Sha256Digest,
    /// Who decided.
    pub by: Attribution,
}

/// Whether `reason` may explain a withholding: 1 to
/// [`MAX_WITHHOLD_REASON`] bytes, not only whitespace.
pub fn is_valid_withhold_reason(reason: &str) -> bool {
    !reason.trim().is_empty() && reason.len() <= MAX_WITHHOLD_REASON
}

/// An identity as replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityState {
    /// What it is.
    pub kind: IdentityKind,
    /// Whether it has been disabled.
    pub disabled: bool,
    /// Its bound warg keys.
    pub keys: BTreeSet<KeyId>,
}

/// The validated state of the registry log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryState {
    head: Option<Head>,
    identities: BTreeMap<String, IdentityState>,
    keys: BTreeMap<KeyId, (String, EcdsaPublicKey)>,
    namespaces: BTreeMap<String, NamespaceEntry>,
    /// Content withheld now (absent in states stored before withholding
    /// existed).
    #[serde(default)]
    withheld: BTreeMap<Sha256Digest, WithheldEntry>,
}

/// Whether an identity may publish in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The namespace is open to any key.
    Open,
    /// The identity owns the namespace.
    Owner,
    /// The identity is one of its publishers.
    Publisher,
    /// The identity may not publish there.
    Denied,
    /// The namespace has no ownership record.
    Unclaimed,
}

impl Access {
    /// Whether publishing is allowed.
    pub fn allowed(self) -> bool {
        matches!(self, Self::Open | Self::Owner | Self::Publisher)
    }
}

impl RegistryState {
    /// An empty registry log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last validated record.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// An identity.
    pub fn identity(&self, name: &str) -> Option<&IdentityState> {
        self.identities.get(name)
    }

    /// All identities.
    pub fn identities(&self) -> impl Iterator<Item = (&str, &IdentityState)> {
        self.identities.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The identity a warg key is bound to, with the key.
    pub fn key(&self, key_id: &KeyId) -> Option<(&str, &EcdsaPublicKey)> {
        self.keys.get(key_id).map(|(i, k)| (i.as_str(), k))
    }

    /// A namespace's ownership record.
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceEntry> {
        self.namespaces.get(namespace)
    }

    /// All namespace records.
    pub fn namespaces(&self) -> impl Iterator<Item = &NamespaceEntry> {
        self.namespaces.values()
    }

    /// Why `digest` is withheld, if it is.
    pub fn withheld(&self, digest: &Sha256Digest) -> Option<&WithheldEntry> {
        self.withheld.get(digest)
    }

    /// All content withheld now, by digest.
    pub fn withheld_all(&self) -> impl Iterator<Item = &WithheldEntry> {
        self.withheld.values()
    }

    /// Whether `identity` may publish in `namespace`.
    pub fn access(&self, namespace: &str, identity: Option<&str>) -> Access {
        let Some(entry) = self.namespaces.get(namespace) else {
            return Access::Unclaimed;
        };
        if entry.open {
            return Access::Open;
        }
        let Some(identity) = identity else {
            return Access::Denied;
        };
        if self.identities.get(identity).is_none_or(|i| i.disabled) {
            return Access::Denied;
        }
        if entry.owners.iter().any(|o| o == identity) {
            Access::Owner
        } else if entry.publishers.iter().any(|p| p == identity)
            || entry
                .trusted_publishers
                .iter()
                .any(|t| t.identity == identity)
        {
            Access::Publisher
        } else {
            Access::Denied
        }
    }

    fn known(&self, name: &str) -> Result<&IdentityState, ValidationError> {
        self.identities
            .get(name)
            .ok_or_else(|| rule(format!("unknown identity `{name}`")))
    }

    /// Validates the next record of the registry log against the operator
    /// log `operator` (which must allow its signer to commit).
    pub fn validate(
        mut self,
        envelope: &Envelope<ExtRecord>,
        operator: &OperatorState,
    ) -> Result<Self, ValidationError> {
        let head = check_common(self.head.as_ref(), envelope, operator)?;
        for entry in &envelope.record().entries {
            self.apply(entry)?;
        }
        self.head = Some(head);
        Ok(self)
    }

    fn apply(&mut self, entry: &ExtEntry) -> Result<(), ValidationError> {
        match entry {
            ExtEntry::Identity(identity) => {
                if !is_valid_identity_name(&identity.name) {
                    return Err(rule(format!("invalid identity name `{}`", identity.name)));
                }
                if self.identities.contains_key(&identity.name) {
                    return Err(rule(format!("identity `{}` already exists", identity.name)));
                }
                self.identities.insert(
                    identity.name.clone(),
                    IdentityState {
                        kind: identity.kind,
                        disabled: false,
                        keys: BTreeSet::new(),
                    },
                );
            }
            ExtEntry::IdentityDisabled(reference) => {
                let state = self
                    .identities
                    .get_mut(&reference.name)
                    .ok_or_else(|| rule(format!("unknown identity `{}`", reference.name)))?;
                if state.disabled {
                    return Err(rule(format!(
                        "identity `{}` is already disabled",
                        reference.name
                    )));
                }
                state.disabled = true;
            }
            ExtEntry::KeyBound(bound) => {
                let identity = self.known(&bound.identity)?;
                if identity.disabled {
                    return Err(rule(format!("identity `{}` is disabled", bound.identity)));
                }
                let key_id = bound.key.key_id();
                if let Some((owner, _)) = self.keys.get(&key_id) {
                    return Err(rule(format!("key {key_id} is already bound to `{owner}`")));
                }
                self.keys
                    .insert(key_id.clone(), (bound.identity.clone(), bound.key.clone()));
                if let Some(identity) = self.identities.get_mut(&bound.identity) {
                    identity.keys.insert(key_id);
                }
            }
            ExtEntry::KeyUnbound(unbound) => {
                match self.keys.get(&unbound.key_id) {
                    Some((owner, _)) if *owner == unbound.identity => {}
                    _ => {
                        return Err(rule(format!(
                            "key {} is not bound to `{}`",
                            unbound.key_id, unbound.identity
                        )));
                    }
                }
                self.keys.remove(&unbound.key_id);
                if let Some(identity) = self.identities.get_mut(&unbound.identity) {
                    identity.keys.remove(&unbound.key_id);
                }
            }
            ExtEntry::Namespace(namespace) => {
                if !is_valid_namespace(&namespace.namespace) {
                    return Err(rule(format!("invalid namespace `{}`", namespace.namespace)));
                }
                for name in namespace
                    .owners
                    .iter()
                    .chain(&namespace.publishers)
                    .chain(namespace.trusted_publishers.iter().map(|t| &t.identity))
                {
                    self.known(name)?;
                }
                if !namespace.open && namespace.upstream.is_none() && namespace.owners.is_empty() {
                    return Err(rule(format!(
                        "namespace `{}` needs an owner unless it is open or imported",
                        namespace.namespace
                    )));
                }
                for pattern in namespace
                    .policy
                    .imports_allow
                    .iter()
                    .chain(&namespace.policy.imports_deny)
                {
                    if !crate::ext::meta::is_valid_import_pattern(pattern) {
                        return Err(rule(format!("invalid import pattern `{pattern}`")));
                    }
                }
                self.namespaces
                    .insert(namespace.namespace.clone(), namespace.clone());
            }
            ExtEntry::ContentWithheld(withheld) => {
                if !is_valid_withhold_reason(&withheld.reason) {
                    return Err(rule(format!(
                        "the reason for withholding {} must be 1 to {MAX_WITHHOLD_REASON} bytes, not only blanks",
                        withheld.digest
                    )));
                }
                if self.withheld.contains_key(&withheld.digest) {
                    return Err(rule(format!(
                        "content {} is already withheld",
                        withheld.digest
                    )));
                }
                self.withheld.insert(withheld.digest, withheld.clone());
            }
            ExtEntry::ContentRestored(restored) => {
                if self.withheld.remove(&restored.digest).is_none() {
                    return Err(rule(format!("content {} is not withheld", restored.digest)));
                }
            }
            ExtEntry::Manifest(_)
            | ExtEntry::Tag(_)
            | ExtEntry::YankReason(_)
            | ExtEntry::Mirrored(_)
            | ExtEntry::Untag(_)
            | ExtEntry::ManifestDeleted(_)
            | ExtEntry::ReleaseHeld(_)
            | ExtEntry::ReleaseReleased(_) => {
                return Err(rule("package metadata does not belong in the registry log"));
            }
        }
        Ok(())
    }
}

/// Checks who may have signed a package record of `namespace`: the signer's
/// key must be bound to an identity allowed to publish there, or be the
/// registry's own publisher key with the record attributed (in the
/// package's metadata log `meta`) to an identity allowed to publish there.
///
/// Namespaces without an ownership record are not checked here (`Ok(None)`):
/// whether they accept publishes is the registry's configuration. Returns
/// the identity the record is attributed to.
pub fn authorize(
    registry: &RegistryState,
    meta: Option<&MetaState>,
    namespace: &str,
    signer: &KeyId,
    record: &RecordId,
) -> Result<Option<String>, String> {
    let Some(entry) = registry.namespace(namespace) else {
        return Ok(None);
    };
    if entry.upstream.is_some() {
        return Err(format!(
            "namespace `{namespace}` is imported from {}; nothing can be published into it",
            entry.upstream.as_ref().map_or("", |u| u.registry.as_str())
        ));
    }
    if entry.open {
        return Ok(None);
    }
    let Some((identity, _)) = registry.key(signer) else {
        return Err(format!(
            "key {signer} is not bound to an identity that may publish in `{namespace}`"
        ));
    };
    let acting = match registry.identity(identity).map(|i| i.kind) {
        Some(IdentityKind::Registry) => meta
            .and_then(|m| m.attributed(record))
            .ok_or_else(|| {
                format!("record {record} is signed by the registry's publisher key but attributed to nobody")
            })?,
        _ => identity,
    };
    if registry.identity(acting).is_some_and(|i| i.disabled) {
        return Err(format!("identity `{acting}` is disabled"));
    }
    if registry.access(namespace, Some(acting)).allowed() {
        Ok(Some(acting.to_owned()))
    } else {
        Err(format!("`{acting}` may not publish in `{namespace}`"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn immutable_tag_patterns() {
        let policy = PublishPolicy {
            immutable_tags: vec!["v*".into(), "release-*-final".into(), "stable".into()],
            ..PublishPolicy::default()
        };
        for yes in [
            "v1",
            "v1.0.0",
            "v",
            "release-2026-final",
            "release--final",
            "stable",
        ] {
            assert!(policy.tag_is_immutable(yes), "{yes}");
        }
        for no in [
            "main",
            "1v",
            "release-final",
            "release-2026",
            "stable2",
            "xstable",
        ] {
            assert!(!policy.tag_is_immutable(no), "{no}");
        }
        assert!(!PublishPolicy::default().tag_is_immutable("v1"));
        assert!(is_valid_tag_pattern("v*") && is_valid_tag_pattern("*"));
        for bad in ["", "a/b", "a:b", "a b", &"x".repeat(129)] {
            assert!(!is_valid_tag_pattern(bad), "{bad}");
        }
    }

    fn by() -> Attribution {
        Attribution {
            identity: "cli".into(),
            via: "operator".into(),
            token: None,
            claims: BTreeMap::new(),
        }
    }

    fn withhold(digest: Sha256Digest, reason: &str) -> ExtEntry {
        ExtEntry::ContentWithheld(WithheldEntry {
            digest,
            reason: reason.into(),
            by: by(),
        })
    }

    fn restore(digest: Sha256Digest) -> ExtEntry {
        ExtEntry::ContentRestored(RestoredEntry { digest, by: by() })
    }

    #[test]
    fn withholding_is_replayed_and_undone() {
        let digest = Sha256Digest::of(b"leaked");
        let mut state = RegistryState::new();
        assert!(state.withheld(&digest).is_none());
        state.apply(&withhold(digest, "DMCA notice 42")).unwrap();
        assert_eq!(state.withheld(&digest).unwrap().reason, "DMCA notice 42");
        assert_eq!(state.withheld_all().count(), 1);
        let twice = state.apply(&withhold(digest, "again")).unwrap_err();
        assert!(twice.to_string().contains("already withheld"), "{twice}");
        state.apply(&restore(digest)).unwrap();
        assert!(state.withheld(&digest).is_none());
        let unknown = state.apply(&restore(digest)).unwrap_err();
        assert!(unknown.to_string().contains("is not withheld"), "{unknown}");
    }

    #[test]
    fn reasons_are_bounded() {
        let digest = Sha256Digest::of(b"x");
        let mut state = RegistryState::new();
        for bad in ["", "  \n", &"x".repeat(MAX_WITHHOLD_REASON + 1)] {
            assert!(state.apply(&withhold(digest, bad)).is_err(), "{bad:?}");
        }
        state
            .apply(&withhold(digest, &"x".repeat(MAX_WITHHOLD_REASON)))
            .unwrap();
    }

    #[test]
    fn entries_have_stable_names_and_old_states_still_load() {
        let digest = Sha256Digest::of(b"x");
        let json = serde_json::to_value(withhold(digest, "r")).unwrap();
        assert_eq!(json["type"], "contentWithheld");
        assert_eq!(json["digest"], digest.to_string());
        let json = serde_json::to_value(restore(digest)).unwrap();
        assert_eq!(json["type"], "contentRestored");
        let mut state = RegistryState::new();
        state.apply(&withhold(digest, "r")).unwrap();
        let stored = serde_json::to_string(&state).unwrap();
        let back: RegistryState = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, state);
        let old: RegistryState =
            serde_json::from_str(r#"{"head":null,"identities":{},"keys":{},"namespaces":{}}"#)
                .unwrap();
        assert!(old.withheld(&digest).is_none());
    }
}
