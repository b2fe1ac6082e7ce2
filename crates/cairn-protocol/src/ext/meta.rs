//! A package's metadata log: the OCI manifests pushed for it (with who
//! pushed them and which warg release they became), its tags, why versions
//! were yanked, releases mirrored from an upstream registry, and the
//! mutable tags and manifests deleted over OCI.
//!
//! Deleting is itself a record: the log stays append-only, so the entries
//! that pushed a deleted manifest keep verifying, and the deletion says who
//! made it. Releases are never deleted — a version tag, or a manifest that
//! became a release, is refused by the rules here, whoever signs.

use imbl::{OrdMap, OrdSet};

use cairn_crypto::Sha256Digest;
use semver::Version;
use serde::{Deserialize, Serialize};

use super::hold::Hold;
use super::signature::{SignatureCheck, check_checks};
use super::{Attribution, ExtEntry, ExtRecord, check_common, rule};
use crate::envelope::Envelope;
use crate::keys::Head;
use crate::operator::OperatorState;
use crate::{RecordId, ValidationError};

/// Most tags one manifest entry may set.
pub const MAX_TAGS: usize = 16;
/// The longest yank reason.
pub const MAX_REASON: usize = 1024;

/// The warg release an OCI push became.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseLink {
    /// The version.
    pub version: Version,
    /// The warg package record that releases it.
    pub record: RecordId,
    /// The released content (the wasm layer).
    pub content: Sha256Digest,
}

/// What the registry computed from a wasm layer (never the client's claims).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmFacts {
    /// `module`, `component` or `wit-package`.
    pub kind: String,
    /// Imported WIT names.
    #[serde(default)]
    pub imports: Vec<String>,
    /// Exported WIT names.
    #[serde(default)]
    pub exports: Vec<String>,
}

/// `manifest` entry: an OCI manifest pushed to the package's repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestEntry {
    /// The manifest's digest.
    pub digest: Sha256Digest,
    /// Its media type.
    pub media_type: String,
    /// Its artifact type (or its config's media type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifest it refers to (signatures, attestations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Sha256Digest>,
    /// Its size in bytes.
    pub size: u64,
    /// Blobs it references (config first, then layers).
    #[serde(default)]
    pub blobs: Vec<Sha256Digest>,
    /// Tags pushed with it.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The warg release it became, for a wasm artifact pushed with a
    /// version tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseLink>,
    /// What the wasm layer is, computed by the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<WasmFacts>,
    /// The signatures it carries about its subject, as the registry
    /// checked them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureCheck>,
    /// Who pushed it.
    pub by: Attribution,
}

/// `tag` entry: a tag now names a manifest recorded earlier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagEntry {
    /// The tag.
    pub tag: String,
    /// The manifest.
    pub digest: Sha256Digest,
    /// The warg release it became, when a wasm artifact pushed earlier
    /// without a version tag gets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseLink>,
    /// The signatures the manifest carries, checked when a cosign tag
    /// (`sha256-<hex>.sig`, `.att`) attaches it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureCheck>,
    /// Who moved it.
    pub by: Attribution,
}

/// `yankReason` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct YankEntry {
    /// The yanked version.
    pub version: Version,
    /// Why.
    pub reason: String,
    /// Who yanked it.
    pub by: Attribution,
    /// The warg yank record, when the registry signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordId>,
}

/// `mirrored` entry: a release copied from the namespace's upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorEntry {
    /// The version (the upstream tag).
    pub version: Version,
    /// The upstream reference it came from.
    pub upstream: String,
    /// The manifest's digest.
    pub digest: Sha256Digest,
    /// The wasm layer.
    pub content: Sha256Digest,
    /// Blobs the manifest references (config first, then layers).
    #[serde(default)]
    pub blobs: Vec<Sha256Digest>,
}

/// `untag` entry: a mutable tag is deleted. Version tags name releases and
/// are never deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UntagEntry {
    /// The tag.
    pub tag: String,
    /// The manifest it named until now.
    pub digest: Sha256Digest,
    /// Who deleted it.
    pub by: Attribution,
}

/// `manifestDeleted` entry: a manifest that is not a release is no longer
/// served. No tag may still name it (the same record deletes them first,
/// with [`UntagEntry`]s); the entries that recorded it stay in the log, and
/// pushing it again records it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestDeletedEntry {
    /// The manifest's digest.
    pub digest: Sha256Digest,
    /// Who deleted it.
    pub by: Attribution,
}

/// A manifest as replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestState {
    /// Its media type.
    pub media_type: String,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// The manifest it refers to.
    pub subject: Option<Sha256Digest>,
    /// The version it released, if any.
    pub release: Option<Version>,
    /// The signature checks logged with it (a signature manifest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureCheck>,
}

/// The validated state of a package's metadata log. Its maps are
/// persistent (`imbl`): a clone shares them, so the sequencer and the
/// request handlers copy a state in constant time whatever its history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    head: Option<Head>,
    manifests: OrdMap<Sha256Digest, ManifestState>,
    tags: OrdMap<String, Sha256Digest>,
    yanks: OrdMap<Version, YankEntry>,
    /// warg records the registry signed on someone's behalf → who.
    #[serde(default)]
    attributions: OrdMap<RecordId, String>,
    /// The record that logged each manifest (receipts name it).
    #[serde(default)]
    manifest_records: OrdMap<Sha256Digest, RecordId>,
    /// The record that last set each tag (receipts name it).
    #[serde(default)]
    tag_records: OrdMap<String, RecordId>,
    /// Manifests deleted (and not pushed again since).
    #[serde(default, skip_serializing_if = "OrdSet::is_empty")]
    deleted: OrdSet<Sha256Digest>,
    /// Releases held until signed (and those released since), by version.
    #[serde(default, skip_serializing_if = "OrdMap::is_empty")]
    holds: OrdMap<Version, Hold>,
}

/// Whether `tag` is a valid OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
// SPEC: OCI distribution-spec — tag grammar.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
}

/// A version tag: a tag that is a semantic version. Version tags are
/// immutable; other tags (`latest`) move.
pub fn version_tag(tag: &str) -> Option<Version> {
    tag.parse().ok()
}

/// Whether the WIT name `name` (`ns:pkg/iface@ver`) matches `pattern`:
///
/// * `ns:*` — anything in namespace `ns`;
/// * `ns:pkg` or `ns:pkg/*` — any interface of package `ns:pkg`, any version;
/// * `ns:pkg/iface` — that interface, any version;
/// * `ns:pkg/iface@ver` — exactly that;
/// * a plain name (`run`) — exactly that function.
pub fn import_matches(pattern: &str, name: &str) -> bool {
    let unversioned = name.split_once('@').map_or(name, |(n, _)| n);
    if let Some(namespace) = pattern.strip_suffix(":*") {
        return name.split_once(':').is_some_and(|(ns, _)| ns == namespace);
    }
    if let Some(package) = pattern.strip_suffix("/*") {
        return unversioned
            .split_once('/')
            .is_some_and(|(pkg, _)| pkg == package);
    }
    if pattern.contains('@') {
        return pattern == name;
    }
    if pattern.contains('/') {
        return pattern == unversioned;
    }
    if pattern.contains(':') {
        return unversioned
            .split_once('/')
            .is_some_and(|(pkg, _)| pkg == pattern);
    }
    pattern == name
}

/// Whether `pattern` is a valid import pattern for [`import_matches`].
pub fn is_valid_import_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 256
        && pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":/@.-*+".contains(c))
        && pattern.matches('*').count() <= 1
        && (!pattern.contains('*') || pattern.ends_with(":*") || pattern.ends_with("/*"))
        && !pattern.starts_with('*')
}

impl MetaState {
    /// An empty metadata log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last validated record.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// A manifest recorded in this log.
    pub fn manifest(&self, digest: &Sha256Digest) -> Option<&ManifestState> {
        self.manifests.get(digest)
    }

    /// The manifest a tag names.
    pub fn tag(&self, tag: &str) -> Option<&Sha256Digest> {
        self.tags.get(tag)
    }

    /// Every manifest recorded, in digest order.
    pub fn manifests(&self) -> impl Iterator<Item = (&Sha256Digest, &ManifestState)> {
        self.manifests.iter()
    }

    /// The record of this log that recorded manifest `digest` (its
    /// `manifest` or `mirrored` entry). `None` for a state stored before
    /// records were remembered.
    pub fn manifest_record(&self, digest: &Sha256Digest) -> Option<&RecordId> {
        self.manifests.get(digest)?;
        self.manifest_records.get(digest)
    }

    /// The record of this log that last set `tag`, while the tag is set.
    pub fn tag_record(&self, tag: &str) -> Option<&RecordId> {
        self.tags.get(tag)?;
        self.tag_records.get(tag)
    }

    /// Every tag, in order.
    pub fn tags(&self) -> impl Iterator<Item = (&str, &Sha256Digest)> {
        self.tags.iter().map(|(t, d)| (t.as_str(), d))
    }

    /// Whether manifest `digest` was recorded, then deleted (and not pushed
    /// again since).
    pub fn is_deleted(&self, digest: &Sha256Digest) -> bool {
        self.deleted.contains(digest)
    }

    /// The tags naming manifest `digest`, in order.
    pub fn tags_of<'a>(&'a self, digest: &'a Sha256Digest) -> impl Iterator<Item = &'a str> {
        self.tags
            .iter()
            .filter(move |(_, d)| *d == digest)
            .map(|(t, _)| t.as_str())
    }

    /// The signature checks logged about `subject`, with the digest of the
    /// manifest carrying each, in manifest digest order.
    pub fn signatures_of<'a>(
        &'a self,
        subject: &'a Sha256Digest,
    ) -> impl Iterator<Item = (&'a Sha256Digest, &'a SignatureCheck)> {
        self.manifests.iter().flat_map(move |(manifest, state)| {
            state
                .signatures
                .iter()
                .filter(move |c| c.subject == *subject)
                .map(move |c| (manifest, c))
        })
    }

    /// The hold logged for release `version` (held or released since).
    pub fn hold(&self, version: &Version) -> Option<&Hold> {
        self.holds.get(version)
    }

    /// Every hold logged, by version.
    pub fn holds(&self) -> impl Iterator<Item = (&Version, &Hold)> {
        self.holds.iter()
    }

    /// The release whose manifest is `digest`, while its hold waits.
    pub fn held_manifest(&self, digest: &Sha256Digest) -> Option<&Version> {
        self.holds
            .iter()
            .find(|(_, hold)| hold.is_held() && hold.digest == *digest)
            .map(|(version, _)| version)
    }

    /// The recorded reason for a yank.
    pub fn yank(&self, version: &Version) -> Option<&YankEntry> {
        self.yanks.get(version)
    }

    /// The identity on whose behalf the registry signed the warg record
    /// `record` (a release of an OCI push, a yank with a reason).
    pub fn attributed(&self, record: &RecordId) -> Option<&str> {
        self.attributions.get(record).map(String::as_str)
    }

    /// Validates the next record against the operator log.
    pub fn validate(
        mut self,
        envelope: &Envelope<ExtRecord>,
        operator: &OperatorState,
    ) -> Result<Self, ValidationError> {
        let head = check_common(self.head.as_ref(), envelope, operator)?;
        for entry in &envelope.record().entries {
            self.apply(entry)?;
            self.remember(entry, head.record_id);
        }
        self.head = Some(head);
        Ok(self)
    }

    /// Applies one entry as the next record would, without the record's own
    /// checks (chain, signature, timestamp): for checking entries before the
    /// record that carries them is built. [`MetaState::validate`] of that
    /// record remains the judge.
    pub fn apply_entry(&mut self, entry: &ExtEntry) -> Result<(), ValidationError> {
        self.apply(entry)
    }

    /// Whether this (stored) state is what replaying the log gives
    /// (`replayed`). A state stored before the records of manifests and tags
    /// were remembered has neither map; it matches a replay that differs
    /// only by them (they are filled again by the log's next record).
    pub fn matches_replay(&self, replayed: &Self) -> bool {
        if self == replayed {
            return true;
        }
        if !(self.manifest_records.is_empty() && self.tag_records.is_empty()) {
            return false;
        }
        let mut without = replayed.clone();
        without.manifest_records.clear();
        without.tag_records.clear();
        *self == without
    }

    /// Notes which record recorded a manifest or set a tag.
    fn remember(&mut self, entry: &ExtEntry, record: RecordId) {
        match entry {
            ExtEntry::Manifest(manifest) => {
                self.manifest_records.insert(manifest.digest, record);
                for tag in &manifest.tags {
                    self.tag_records.insert(tag.clone(), record);
                }
            }
            ExtEntry::Tag(tag) => {
                self.tag_records.insert(tag.tag.clone(), record);
            }
            ExtEntry::Mirrored(mirror) => {
                self.manifest_records.entry(mirror.digest).or_insert(record);
                self.tag_records.insert(mirror.version.to_string(), record);
            }
            ExtEntry::Untag(untag) => {
                self.tag_records.remove(&untag.tag);
            }
            ExtEntry::ManifestDeleted(deleted) => {
                self.manifest_records.remove(&deleted.digest);
            }
            _ => {}
        }
    }

    fn set_tag(&mut self, tag: &str, digest: Sha256Digest) -> Result<(), ValidationError> {
        if !is_valid_tag(tag) {
            return Err(rule(format!("invalid tag `{tag}`")));
        }
        if version_tag(tag).is_some()
            && let Some(existing) = self.tags.get(tag)
            && *existing != digest
        {
            return Err(rule(format!(
                "version tag `{tag}` already names {existing}; versions are immutable"
            )));
        }
        self.tags.insert(tag.to_owned(), digest);
        Ok(())
    }

    fn apply(&mut self, entry: &ExtEntry) -> Result<(), ValidationError> {
        match entry {
            ExtEntry::Manifest(manifest) => {
                if self.manifests.contains_key(&manifest.digest) {
                    return Err(rule(format!(
                        "manifest {} is already recorded",
                        manifest.digest
                    )));
                }
                if manifest.tags.len() > MAX_TAGS {
                    return Err(rule("too many tags"));
                }
                if let Some(release) = &manifest.release
                    && !manifest.tags.contains(&release.version.to_string())
                {
                    return Err(rule("a release must be pushed with its version tag"));
                }
                if let Some(release) = &manifest.release {
                    self.attributions
                        .insert(release.record, manifest.by.identity.clone());
                }
                check_checks(&manifest.signatures, manifest.subject.as_ref())?;
                // Pushed again after a deletion: recorded again.
                self.deleted.remove(&manifest.digest);
                self.manifests.insert(
                    manifest.digest,
                    ManifestState {
                        media_type: manifest.media_type.clone(),
                        artifact_type: manifest.artifact_type.clone(),
                        subject: manifest.subject,
                        release: manifest.release.as_ref().map(|r| r.version.clone()),
                        signatures: manifest.signatures.clone(),
                    },
                );
                for tag in &manifest.tags {
                    self.set_tag(tag, manifest.digest)?;
                }
            }
            ExtEntry::Tag(tag) => {
                let Some(manifest) = self.manifests.get_mut(&tag.digest) else {
                    return Err(rule(format!(
                        "tag `{}` names unknown manifest {}",
                        tag.tag, tag.digest
                    )));
                };
                // A manifest pushed earlier that now gets its version tag
                // becomes that release: the release record is attributed
                // like one pushed with its manifest.
                if let Some(release) = &tag.release {
                    if release.version.to_string() != tag.tag {
                        return Err(rule("a release must be tagged with its version"));
                    }
                    manifest.release = Some(release.version.clone());
                    self.attributions
                        .insert(release.record, tag.by.identity.clone());
                }
                if !tag.signatures.is_empty() {
                    // About the manifest's own subject, or the one the
                    // cosign tag (`sha256-<hex>.<suffix>`) names.
                    let named = tag
                        .tag
                        .strip_prefix("sha256-")
                        .and_then(|rest| rest.split_once('.'))
                        .and_then(|(hex, _)| Sha256Digest::from_hex(hex).ok());
                    let subject = manifest.subject.or(named);
                    check_checks(&tag.signatures, subject.as_ref())?;
                    manifest.signatures = tag.signatures.clone();
                }
                self.set_tag(&tag.tag, tag.digest)?;
            }
            ExtEntry::Untag(untag) => {
                if version_tag(&untag.tag).is_some() {
                    return Err(rule(format!(
                        "version tag `{}` names a release; releases are never deleted (yank it)",
                        untag.tag
                    )));
                }
                match self.tags.get(&untag.tag) {
                    Some(existing) if *existing == untag.digest => {
                        self.tags.remove(&untag.tag);
                    }
                    Some(existing) => {
                        return Err(rule(format!(
                            "tag `{}` names {existing}, not {}",
                            untag.tag, untag.digest
                        )));
                    }
                    None => return Err(rule(format!("tag `{}` is not set", untag.tag))),
                }
            }
            ExtEntry::ManifestDeleted(deleted) => {
                let Some(manifest) = self.manifests.get(&deleted.digest) else {
                    return Err(rule(format!(
                        "manifest {} is not recorded (or already deleted)",
                        deleted.digest
                    )));
                };
                if let Some(version) = &manifest.release {
                    return Err(rule(format!(
                        "manifest {} is release {version}; releases are never deleted (yank it)",
                        deleted.digest
                    )));
                }
                if let Some(tag) = self.tags_of(&deleted.digest).next() {
                    return Err(rule(format!(
                        "tag `{tag}` still names manifest {}; delete the tag first",
                        deleted.digest
                    )));
                }
                self.manifests.remove(&deleted.digest);
                self.deleted.insert(deleted.digest);
            }
            ExtEntry::YankReason(yank) => {
                if yank.reason.trim().is_empty() || yank.reason.len() > MAX_REASON {
                    return Err(rule(format!(
                        "a yank reason must have 1 to {MAX_REASON} bytes"
                    )));
                }
                if let Some(record) = yank.record {
                    self.attributions.insert(record, yank.by.identity.clone());
                }
                self.yanks.insert(yank.version.clone(), yank.clone());
            }
            ExtEntry::Mirrored(mirror) => {
                self.manifests
                    .entry(mirror.digest)
                    .or_insert(ManifestState {
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        artifact_type: None,
                        subject: None,
                        release: Some(mirror.version.clone()),
                        signatures: Vec::new(),
                    });
                self.set_tag(&mirror.version.to_string(), mirror.digest)?;
            }
            ExtEntry::ReleaseHeld(held) => {
                super::hold::apply_held(&mut self.holds, &self.manifests, held)?;
            }
            ExtEntry::ReleaseReleased(released) => {
                super::hold::apply_released(&mut self.holds, &self.manifests, released)?;
            }
            ExtEntry::Identity(_)
            | ExtEntry::IdentityDisabled(_)
            | ExtEntry::KeyBound(_)
            | ExtEntry::KeyUnbound(_)
            | ExtEntry::Namespace(_)
            | ExtEntry::ContentWithheld(_)
            | ExtEntry::ContentRestored(_) => {
                return Err(rule(
                    "registry facts do not belong in a package's metadata log",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn states_stored_before_receipts_match_their_replay() {
        let record = |b: &[u8]| RecordId(Sha256Digest::of(b));
        let mut replayed = MetaState::default();
        replayed
            .tags
            .insert("latest".into(), Sha256Digest::of(b"m"));
        replayed.tag_records.insert("latest".into(), record(b"r"));
        let mut stored = replayed.clone();
        stored.tag_records.clear();
        assert!(stored.matches_replay(&replayed));
        assert!(replayed.matches_replay(&replayed));
        // Anything else that differs still differs.
        let mut moved = stored.clone();
        moved.tags.insert("latest".into(), Sha256Digest::of(b"n"));
        assert!(!moved.matches_replay(&replayed));
        let mut wrong = replayed.clone();
        wrong.tag_records.insert("latest".into(), record(b"x"));
        assert!(!wrong.matches_replay(&replayed));
    }

    /// Snapshots are stored as JSON: the persistent maps read and write
    /// the form the ordered maps wrote before them (objects and arrays in
    /// key order), so stored snapshots load and compare unchanged.
    #[test]
    fn stored_states_keep_their_json_form() {
        let (m, n) = (Sha256Digest::of(b"m"), Sha256Digest::of(b"n"));
        let (first, second) = if m < n { (m, n) } else { (n, m) };
        let stored = format!(
            r#"{{"head":null,"manifests":{{}},"tags":{{"a":"{first}","b":"{second}"}},"yanks":{{}},"attributions":{{}},"manifest_records":{{}},"tag_records":{{}},"deleted":["{first}","{second}"]}}"#
        );
        let state: MetaState = serde_json::from_str(&stored).unwrap();
        assert_eq!(state.tags.get("b"), Some(&second));
        assert!(state.deleted.contains(&first));
        assert_eq!(serde_json::to_string(&state).unwrap(), stored);
        // A clone shares the maps; changing it leaves the original alone.
        let mut changed = state.clone();
        changed.tags.insert("c".into(), first);
        assert_eq!(state.tags.len(), 2);
        assert_eq!(changed.tags.len(), 3);
    }

    #[test]
    fn import_patterns() {
        let tcp = "wasi:sockets/tcp@0.2.0";
        for yes in [
            "wasi:*",
            "wasi:sockets",
            "wasi:sockets/*",
            "wasi:sockets/tcp",
            "wasi:sockets/tcp@0.2.0",
        ] {
            assert!(import_matches(yes, tcp), "{yes}");
            assert!(is_valid_import_pattern(yes), "{yes}");
        }
        for no in [
            "wasi:http/*",
            "wasi:sock",
            "wasi:sockets/udp",
            "wasi:sockets/tcp@0.2.1",
            "other:*",
            "tcp",
        ] {
            assert!(!import_matches(no, tcp), "{no}");
        }
        assert!(import_matches("run", "run"));
        for bad in ["", "wasi:*/x", "a b", "*:*", "wasi:so*", "*"] {
            assert!(!is_valid_import_pattern(bad), "{bad}");
        }
    }

    /// The attribution of the test entries (also used by `hold`'s tests).
    pub(crate) fn by() -> Attribution {
        Attribution {
            identity: "alice".into(),
            via: "token".into(),
            token: None,
            claims: std::collections::BTreeMap::new(),
        }
    }

    /// A pushed manifest entry (also used by `hold`'s tests).
    pub(crate) fn pushed(digest: Sha256Digest, tags: &[&str], release: Option<&str>) -> ExtEntry {
        ExtEntry::Manifest(ManifestEntry {
            digest,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            artifact_type: None,
            subject: None,
            size: 10,
            blobs: Vec::new(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            release: release.map(|v| ReleaseLink {
                version: v.parse().unwrap(),
                record: RecordId(Sha256Digest([9; 32])),
                content: Sha256Digest([8; 32]),
            }),
            wasm: None,
            signatures: Vec::new(),
            by: by(),
        })
    }

    fn untag(tag: &str, digest: Sha256Digest) -> ExtEntry {
        ExtEntry::Untag(UntagEntry {
            tag: tag.into(),
            digest,
            by: by(),
        })
    }

    fn delete(digest: Sha256Digest) -> ExtEntry {
        ExtEntry::ManifestDeleted(ManifestDeletedEntry { digest, by: by() })
    }

    #[test]
    fn mutable_tags_and_manifests_are_deleted_releases_never() {
        let (a, b) = (Sha256Digest([1; 32]), Sha256Digest([2; 32]));
        let mut state = MetaState::new();
        state.apply(&pushed(a, &["latest", "dev"], None)).unwrap();
        state.apply(&pushed(b, &["1.0.0"], Some("1.0.0"))).unwrap();

        // A version tag and a release are refused, whoever signs.
        assert!(state.clone().apply(&untag("1.0.0", b)).is_err());
        assert!(state.clone().apply(&delete(b)).is_err());
        // The previous digest must be the tag's; unknown tags are refused.
        assert!(state.clone().apply(&untag("latest", b)).is_err());
        assert!(state.clone().apply(&untag("nope", a)).is_err());
        // A manifest still tagged is refused: its tags go first.
        assert!(state.clone().apply(&delete(a)).is_err());

        state.apply(&untag("dev", a)).unwrap();
        assert_eq!(state.tag("dev"), None);
        assert_eq!(state.tag("latest"), Some(&a));
        state.apply(&untag("latest", a)).unwrap();
        state.apply(&delete(a)).unwrap();
        assert!(state.manifest(&a).is_none());
        assert!(state.is_deleted(&a));
        // Deleted twice, or tagged while deleted: refused.
        assert!(state.clone().apply(&delete(a)).is_err());
        let retag = ExtEntry::Tag(TagEntry {
            tag: "latest".into(),
            digest: a,
            release: None,
            signatures: Vec::new(),
            by: by(),
        });
        assert!(state.clone().apply(&retag).is_err());
        // Pushed again: recorded again.
        state.apply(&pushed(a, &["latest"], None)).unwrap();
        assert!(!state.is_deleted(&a));
        assert_eq!(state.tags_of(&a).collect::<Vec<_>>(), vec!["latest"]);
    }

    #[test]
    fn deletion_entries_round_trip_as_json() {
        let entry = untag("latest", Sha256Digest([1; 32]));
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["type"], "untag");
        assert_eq!(serde_json::from_value::<ExtEntry>(json).unwrap(), entry);
        let entry = delete(Sha256Digest([1; 32]));
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["type"], "manifestDeleted");
        assert_eq!(serde_json::from_value::<ExtEntry>(json).unwrap(), entry);
    }

    #[test]
    fn tags() {
        for good in ["1.0.0", "latest", "sha256-abc", "_x", "v1.2.3-rc.1"] {
            assert!(is_valid_tag(good), "{good}");
        }
        for bad in ["", "-x", ".x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
        assert!(version_tag("1.0.0").is_some());
        assert!(version_tag("latest").is_none());
        assert!(version_tag("v1.0.0").is_none());
    }
}
