//! A package's metadata log: the OCI manifests pushed for it (with who
//! pushed them and which warg release they became), its tags, why versions
//! were yanked, and releases mirrored from an upstream registry.

use std::collections::BTreeMap;

use cairn_crypto::Sha256Digest;
use semver::Version;
use serde::{Deserialize, Serialize};

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
}

/// The validated state of a package's metadata log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    head: Option<Head>,
    manifests: BTreeMap<Sha256Digest, ManifestState>,
    tags: BTreeMap<String, Sha256Digest>,
    yanks: BTreeMap<Version, YankEntry>,
    /// warg records the registry signed on someone's behalf → who.
    #[serde(default)]
    attributions: BTreeMap<RecordId, String>,
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

    /// Every tag, in order.
    pub fn tags(&self) -> impl Iterator<Item = (&str, &Sha256Digest)> {
        self.tags.iter().map(|(t, d)| (t.as_str(), d))
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
        }
        self.head = Some(head);
        Ok(self)
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
                self.manifests.insert(
                    manifest.digest,
                    ManifestState {
                        media_type: manifest.media_type.clone(),
                        artifact_type: manifest.artifact_type.clone(),
                        subject: manifest.subject,
                        release: manifest.release.as_ref().map(|r| r.version.clone()),
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
                self.set_tag(&tag.tag, tag.digest)?;
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
                    });
                self.set_tag(&mirror.version.to_string(), mirror.digest)?;
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
mod tests {
    use super::*;

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
