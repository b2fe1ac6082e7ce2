//! The OCI tables against the logs: a pure comparison, shared by `cairn
//! fsck` (rows read from the database) and any auditor that can list the
//! same rows.
//!
//! Every tag, every visible manifest and the blobs a manifest references
//! are projections of a package's metadata log (the sequencer writes them
//! in the batch that sequences the record, and removes the rows of deleted
//! tags and manifests the same way: a deleted manifest still served is a
//! problem, its blobs are no longer required); the manifests of releases
//! published over warg are derived from the package log, and the yank
//! referrers from the logged yank reasons. [`OciLogs`] is what the logs
//! say, folded from validated records and replayed states; its `check_*`
//! methods take one row each and say what is wrong with it, and
//! [`OciLogs::finish`] lists what the logs name but no row held.
//!
//! This module does no I/O: recomputing a derived manifest needs the
//! release's bytes, so the caller derives and passes the result in
//! ([`Recomputed`]). It is not the place for sizes of stored bytes either —
//! those are facts of the blob store, compared by the caller.
//!
//! Rows are fed in this order: derived rows, manifests, tags, blob links
//! (a derived row vouches for a manifest row and a link).

use std::collections::{BTreeMap, BTreeSet};

use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::ExtEntry;
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::package::PackageState;
use cairn_protocol::{PackageName, Timestamp};
use semver::Version;

use crate::oci::{IMAGE_MANIFEST, WASM_CONFIG, YANK_ARTIFACT_TYPE};

/// The annotation naming a derived manifest's version.
const VERSION_ANNOTATION: &str = "org.opencontainers.image.version";

/// A mismatch between a row and the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciProblem {
    /// What it is about: a repository (`namespace/name`), or a content
    /// digest for `published` flags. A caller that knows a repository or a
    /// content changed while it read may drop its problems.
    pub subject: String,
    /// What is wrong, for people.
    pub message: String,
}

impl OciProblem {
    fn new(subject: &str, message: String) -> Self {
        Self {
            subject: subject.to_owned(),
            message,
        }
    }
}

impl std::fmt::Display for OciProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A manifest row, as [`OciLogs::check_manifest`] needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRow<'a> {
    /// `namespace/name`.
    pub repository: &'a str,
    /// Its digest.
    pub digest: Sha256Digest,
    /// Its artifact type.
    pub artifact_type: Option<&'a str>,
    /// Its annotations (a JSON object).
    pub annotations: &'a str,
    /// Whether it is served.
    pub visible: bool,
}

/// A release manifest derived again from the release's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recomputed {
    /// The manifest's digest.
    pub manifest: Sha256Digest,
    /// Its config's digest.
    pub config: Sha256Digest,
}

/// A live (not yanked) release: what deriving its manifest needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveRelease {
    /// The released content.
    pub content: Sha256Digest,
    /// The release record's timestamp.
    pub created: Timestamp,
}

/// What the logs of one package say its repository holds.
#[derive(Debug, Default)]
struct RepositoryLogs {
    package: Option<PackageName>,
    /// Tag → manifest, and whether its row was seen.
    tags: BTreeMap<String, (Sha256Digest, bool)>,
    /// Manifests recorded in the metadata log, and whether a row was seen.
    manifests: BTreeMap<Sha256Digest, bool>,
    /// Blobs recorded manifests reference, and whether a link was seen.
    blobs: BTreeMap<Sha256Digest, bool>,
    /// The blobs each recorded image manifest references.
    manifest_blobs: BTreeMap<Sha256Digest, Vec<Sha256Digest>>,
    /// Manifests deleted (and not recorded again since).
    deleted: BTreeSet<Sha256Digest>,
    /// Releases of the package log (`None` once yanked).
    releases: BTreeMap<Version, Option<LiveRelease>>,
    /// Logged yank reasons: version → (reason, who).
    yanks: BTreeMap<Version, (String, String)>,
    /// Manifests named by derived rows that checked out.
    derived: BTreeSet<Sha256Digest>,
}

/// What the logs say the OCI tables hold, and the comparison with rows.
#[derive(Debug, Default)]
pub struct OciLogs {
    repositories: BTreeMap<String, RepositoryLogs>,
}

impl OciLogs {
    /// Nothing logged yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn repository(&mut self, package: &PackageName) -> &mut RepositoryLogs {
        let logs = self
            .repositories
            .entry(crate::oci_repository(package))
            .or_default();
        logs.package.get_or_insert_with(|| package.clone());
        logs
    }

    /// Folds the entries of a metadata record of `package` that validated
    /// (records its log refused change nothing). Call in log order.
    pub fn record_meta(&mut self, package: &PackageName, entries: &[ExtEntry]) {
        let logs = self.repository(package);
        for entry in entries {
            match entry {
                ExtEntry::Manifest(m) => {
                    logs.manifests.insert(m.digest, false);
                    logs.deleted.remove(&m.digest);
                    // An index lists manifests (checked as manifests), an
                    // image manifest the blobs linked to the repository.
                    if m.media_type == IMAGE_MANIFEST {
                        logs.blobs.extend(m.blobs.iter().map(|b| (*b, false)));
                        logs.manifest_blobs.insert(m.digest, m.blobs.clone());
                    }
                }
                ExtEntry::Mirrored(m) => {
                    logs.manifests.insert(m.digest, false);
                    logs.blobs.extend(m.blobs.iter().map(|b| (*b, false)));
                    logs.manifest_blobs.insert(m.digest, m.blobs.clone());
                }
                ExtEntry::ManifestDeleted(d) => {
                    logs.manifests.remove(&d.digest);
                    logs.deleted.insert(d.digest);
                    // Its blobs stay required only if a live manifest
                    // references them too (`cairn gc` may unlink the rest).
                    for blob in logs.manifest_blobs.remove(&d.digest).unwrap_or_default() {
                        if !logs.manifest_blobs.values().any(|b| b.contains(&blob)) {
                            logs.blobs.remove(&blob);
                        }
                    }
                }
                ExtEntry::YankReason(y) => {
                    logs.yanks
                        .insert(y.version.clone(), (y.reason.clone(), y.by.identity.clone()));
                }
                // Tags come from the replayed state (`add_states`).
                _ => {}
            }
        }
    }

    /// Adds what the replayed logs of `package` say: the tags of its
    /// metadata log and the releases of its package log.
    pub fn add_states(
        &mut self,
        package: &PackageName,
        meta: Option<&MetaState>,
        releases: Option<&PackageState>,
    ) {
        let logs = self.repository(package);
        if let Some(meta) = meta {
            logs.tags.extend(
                meta.tags()
                    .map(|(tag, digest)| (tag.to_owned(), (*digest, false))),
            );
        }
        if let Some(state) = releases {
            logs.releases.extend(state.releases().map(|r| {
                let live = r.content().map(|content| LiveRelease {
                    content: *content,
                    created: r.timestamp,
                });
                (r.version.clone(), live)
            }));
        }
    }

    /// The live release `version` of `repository`, to derive its manifest.
    pub fn live_release(
        &self,
        repository: &str,
        version: &str,
    ) -> Option<(&PackageName, LiveRelease)> {
        let logs = self.repositories.get(repository)?;
        let version: Version = version.parse().ok()?;
        let live = logs.releases.get(&version).copied().flatten()?;
        Some((logs.package.as_ref()?, live))
    }

    /// The version a visible manifest row claims to be derived for, when
    /// no log records it (so the caller can recompute it).
    pub fn claimed_derivation(&self, row: &ManifestRow<'_>) -> Option<String> {
        if !row.visible
            || row.artifact_type != Some(WASM_CONFIG)
            || self
                .repositories
                .get(row.repository)
                .is_some_and(|logs| logs.manifests.contains_key(&row.digest))
        {
            return None;
        }
        annotation(row.annotations, VERSION_ANNOTATION)
    }

    /// Checks an `oci_derived` row: the version is a release of the
    /// package log, and (when the release is live and its bytes were at
    /// hand) derivation gives the same manifest.
    pub fn check_derived(
        &mut self,
        repository: &str,
        version: &str,
        digest: &Sha256Digest,
        recomputed: Option<&Recomputed>,
    ) -> Option<OciProblem> {
        let released = self.release_problem(repository, version, digest, recomputed);
        if released.is_some() {
            return released;
        }
        let live = self.live_release(repository, version).map(|(_, l)| l);
        let logs = self.repositories.get_mut(repository)?;
        logs.derived.insert(*digest);
        // A derived manifest's config and content are linked at derivation.
        if let Some(live) = live {
            logs.blobs.entry(live.content).or_insert(false);
        }
        if let Some(recomputed) = recomputed {
            logs.blobs.entry(recomputed.config).or_insert(false);
        }
        None
    }

    fn release_problem(
        &self,
        repository: &str,
        version: &str,
        digest: &Sha256Digest,
        recomputed: Option<&Recomputed>,
    ) -> Option<OciProblem> {
        let released = self.repositories.get(repository).is_some_and(|logs| {
            version
                .parse::<Version>()
                .is_ok_and(|v| logs.releases.contains_key(&v))
        });
        if !released {
            return Some(OciProblem::new(
                repository,
                format!(
                    "the derived manifest {digest} of {repository} names version {version}, which no log releases"
                ),
            ));
        }
        match recomputed {
            Some(r) if r.manifest != *digest => Some(OciProblem::new(
                repository,
                format!(
                    "the derived manifest of {repository} {version} is {digest} in the database, but the release derives {}",
                    r.manifest
                ),
            )),
            _ => None,
        }
    }

    /// Checks a manifest row. A manifest a metadata log records must be
    /// visible; a visible one no log records must be derived from a logged
    /// release or a logged yank. `recomputed` is the derivation of the
    /// version [`OciLogs::claimed_derivation`] named, if the caller made it.
    pub fn check_manifest(
        &mut self,
        row: &ManifestRow<'_>,
        recomputed: Option<&Recomputed>,
    ) -> Option<OciProblem> {
        let repository = row.repository;
        let digest = row.digest;
        if let Some(seen) = self
            .repositories
            .get_mut(repository)
            .and_then(|logs| logs.manifests.get_mut(&digest))
        {
            *seen = true;
            return (!row.visible).then(|| {
                OciProblem::new(
                    repository,
                    format!(
                        "manifest {digest} of {repository} is recorded in its log but not visible"
                    ),
                )
            });
        }
        if !row.visible {
            // An upload whose record was not (or not yet) sequenced.
            return None;
        }
        let logs = self.repositories.get(repository);
        if logs.is_some_and(|logs| logs.deleted.contains(&digest)) {
            return Some(OciProblem::new(
                repository,
                format!("manifest {digest} of {repository} is deleted in its log but still served"),
            ));
        }
        if logs.is_some_and(|logs| logs.derived.contains(&digest)) {
            return None;
        }
        if row.artifact_type == Some(YANK_ARTIFACT_TYPE) {
            return self.yank_problem(row);
        }
        if let Some(version) = self.claimed_derivation(row) {
            return self.release_problem(repository, &version, &digest, recomputed);
        }
        Some(OciProblem::new(
            repository,
            format!("visible manifest {digest} of {repository} is recorded in no log"),
        ))
    }

    fn yank_problem(&self, row: &ManifestRow<'_>) -> Option<OciProblem> {
        let repository = row.repository;
        let version = annotation(row.annotations, "dev.cairn.yank.version");
        let reason = annotation(row.annotations, "dev.cairn.yank.reason");
        let by = annotation(row.annotations, "dev.cairn.yank.by");
        let logged = version
            .as_deref()
            .and_then(|v| v.parse::<Version>().ok())
            .and_then(|v| self.repositories.get(repository)?.yanks.get(&v));
        match logged {
            Some((logged_reason, logged_by))
                if reason.as_ref() == Some(logged_reason) && by.as_ref() == Some(logged_by) =>
            {
                None
            }
            Some((logged_reason, _)) => Some(OciProblem::new(
                repository,
                format!(
                    "yank referrer {} of {repository} says {:?} by {:?}, but the log says {logged_reason:?}",
                    row.digest,
                    reason.unwrap_or_default(),
                    by.unwrap_or_default()
                ),
            )),
            None => Some(OciProblem::new(
                repository,
                format!(
                    "yank referrer {} of {repository} names version {}, whose yank no log records",
                    row.digest,
                    version.unwrap_or_default()
                ),
            )),
        }
    }

    /// Checks a tag row: its log sets the tag to the same manifest.
    pub fn check_tag(
        &mut self,
        repository: &str,
        tag: &str,
        digest: &Sha256Digest,
    ) -> Option<OciProblem> {
        let logged = self
            .repositories
            .get_mut(repository)
            .and_then(|logs| logs.tags.get_mut(tag));
        match logged {
            Some((logged, seen)) => {
                *seen = true;
                (*logged != *digest).then(|| {
                    OciProblem::new(
                        repository,
                        format!(
                            "tag {tag} of {repository} names {digest} in the database but the log says {logged}"
                        ),
                    )
                })
            }
            None => Some(OciProblem::new(
                repository,
                format!(
                    "tag {tag} of {repository} names {digest} in the database but no log sets it"
                ),
            )),
        }
    }

    /// Notes a blob link row (links the logs do not name are uploads, and
    /// fine).
    pub fn check_blob_link(&mut self, repository: &str, digest: &Sha256Digest) {
        if let Some(seen) = self
            .repositories
            .get_mut(repository)
            .and_then(|logs| logs.blobs.get_mut(digest))
        {
            *seen = true;
        }
    }

    /// What the logs name but no row held: tags, manifests, blob links.
    pub fn finish(self) -> Vec<OciProblem> {
        let mut problems = Vec::new();
        for (repository, logs) in self.repositories {
            for (tag, (digest, seen)) in &logs.tags {
                if !seen {
                    problems.push(OciProblem::new(
                        &repository,
                        format!(
                            "tag {tag} of {repository} names {digest} in the log but has no row"
                        ),
                    ));
                }
            }
            for (digest, seen) in &logs.manifests {
                if !seen {
                    problems.push(OciProblem::new(
                        &repository,
                        format!("manifest {digest} of {repository} is recorded in its log but has no row"),
                    ));
                }
            }
            for (digest, seen) in &logs.blobs {
                if !seen {
                    problems.push(OciProblem::new(
                        &repository,
                        format!("blob {digest} is referenced by a manifest of {repository} but not linked to it"),
                    ));
                }
            }
        }
        problems
    }
}

/// A string annotation of a JSON object.
fn annotation(annotations: &str, key: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(annotations)
        .ok()?
        .get(key)?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn digest(byte: u8) -> Sha256Digest {
        Sha256Digest([byte; 32])
    }

    fn logs() -> OciLogs {
        let package: PackageName = "acme:app".parse().unwrap();
        let mut logs = OciLogs::new();
        let logs_of = logs.repository(&package);
        logs_of.manifests.insert(digest(1), false);
        logs_of.blobs.insert(digest(2), false);
        logs_of.tags.insert("1.0.0".into(), (digest(1), false));
        logs
    }

    fn row(digest: Sha256Digest, visible: bool) -> ManifestRow<'static> {
        ManifestRow {
            repository: "acme/app",
            digest,
            artifact_type: None,
            annotations: "{}",
            visible,
        }
    }

    #[test]
    fn matching_rows_are_clean() {
        let mut logs = logs();
        assert_eq!(logs.check_manifest(&row(digest(1), true), None), None);
        assert_eq!(logs.check_tag("acme/app", "1.0.0", &digest(1)), None);
        logs.check_blob_link("acme/app", &digest(2));
        // Uploads the logs do not name, and invisible rows, are fine.
        logs.check_blob_link("acme/app", &digest(9));
        assert_eq!(logs.check_manifest(&row(digest(9), false), None), None);
        assert_eq!(logs.finish(), vec![]);
    }

    #[test]
    fn each_mismatch_is_reported() {
        let mut logs = logs();
        let repointed = logs.check_tag("acme/app", "1.0.0", &digest(3)).unwrap();
        assert_eq!(
            repointed.message,
            format!(
                "tag 1.0.0 of acme/app names {} in the database but the log says {}",
                digest(3),
                digest(1)
            )
        );
        assert!(logs.check_tag("acme/app", "extra", &digest(1)).is_some());
        assert!(logs.check_manifest(&row(digest(1), false), None).is_some());
        assert!(logs.check_manifest(&row(digest(4), true), None).is_some());
        // Not linked: the blob a recorded manifest references.
        let missing = logs.finish();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].message.contains("not linked"));
    }

    #[test]
    fn deleted_manifests_must_be_gone() {
        use cairn_protocol::ext::Attribution;
        use cairn_protocol::ext::meta::{ManifestDeletedEntry, ManifestEntry};
        let package: PackageName = "acme:app".parse().unwrap();
        let by = Attribution {
            identity: "alice".into(),
            via: "token".into(),
            token: None,
            claims: BTreeMap::new(),
        };
        let pushed = |digest: Sha256Digest, blobs: Vec<Sha256Digest>| {
            ExtEntry::Manifest(ManifestEntry {
                digest,
                media_type: IMAGE_MANIFEST.into(),
                artifact_type: None,
                subject: None,
                size: 1,
                blobs,
                tags: Vec::new(),
                release: None,
                wasm: None,
                signatures: Vec::new(),
                by: by.clone(),
            })
        };
        let deleted = ExtEntry::ManifestDeleted(ManifestDeletedEntry {
            digest: digest(1),
            by: by.clone(),
        });
        let mut logs = OciLogs::new();
        logs.record_meta(&package, &[pushed(digest(1), vec![digest(2), digest(3)])]);
        logs.record_meta(&package, &[pushed(digest(4), vec![digest(3)])]);
        logs.record_meta(&package, &[deleted]);
        // Gone, with its own blob unlinked: clean. The shared blob is still
        // required by the live manifest.
        assert_eq!(logs.check_manifest(&row(digest(4), true), None), None);
        logs.check_blob_link("acme/app", &digest(3));
        assert_eq!(logs.finish(), vec![]);

        let mut logs = OciLogs::new();
        logs.record_meta(&package, &[pushed(digest(1), vec![digest(2)])]);
        logs.record_meta(
            &package,
            &[ExtEntry::ManifestDeleted(ManifestDeletedEntry {
                digest: digest(1),
                by: by.clone(),
            })],
        );
        // Still served: reported; being pushed again (invisible): fine.
        let served = logs.check_manifest(&row(digest(1), true), None).unwrap();
        assert!(served.message.contains("deleted"), "{served}");
        assert_eq!(logs.check_manifest(&row(digest(1), false), None), None);
        // Pushed again: a live manifest once more.
        logs.record_meta(&package, &[pushed(digest(1), vec![])]);
        assert_eq!(logs.check_manifest(&row(digest(1), true), None), None);
    }

    #[test]
    fn derived_rows_need_a_release() {
        let mut logs = logs();
        assert!(
            logs.check_derived("acme/app", "2.0.0", &digest(5), None)
                .is_some()
        );
        logs.repositories
            .get_mut("acme/app")
            .unwrap()
            .releases
            .insert("2.0.0".parse().unwrap(), None);
        assert_eq!(
            logs.check_derived("acme/app", "2.0.0", &digest(5), None),
            None
        );
        // The derived manifest row it names is then accounted for.
        assert_eq!(logs.check_manifest(&row(digest(5), true), None), None);
        let wrong = Recomputed {
            manifest: digest(6),
            config: digest(7),
        };
        assert!(
            logs.check_derived("acme/app", "2.0.0", &digest(5), Some(&wrong))
                .is_some()
        );
    }
}
