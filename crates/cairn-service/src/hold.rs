//! Releases held until they are signed: what every door refuses while a
//! release waits for the signatures its namespace requires.
//!
//! A release is **held** when its package's metadata log holds a
//! `releaseHeld` entry for it that no `releaseReleased` entry answered
//! ([`MetaState::held_manifest`]), and its namespace's policy in force (the
//! registry log) still requires a signature or attestations. Both facts are
//! logged, so every node, `cairn fsck` and an auditor reach the same answer;
//! nothing here is kept beside the logs. The entries themselves are made
//! with the pushes that cause them ([`cairn_protocol::ext::hold::follow_up`],
//! called when the sequencer builds a batch's push records).
//!
//! While held, a release's manifest (by tag or digest), its content layer
//! (when no release that is not held has the same bytes), `/content/…`
//! downloads and warg content sources are refused with
//! `"<package>: release <version> awaits a signature matching policy …"`
//! in each door's format (`403 DENIED` on `/v2`, a warg `403` on `/v1`,
//! `{status,message}` on `/content`); `latest` and tag listings skip it. The
//! namespace's publishers and signers (a token allowing `sign` there, held
//! by an owner or publisher) still read its manifest and blobs: `cosign
//! sign` resolves the subject it signs that way.
//!
//! This module decides nothing about who may push or sign, and does not
//! verify signatures (`oci::signatures` does, at push).

use std::collections::BTreeSet;

use cairn_crypto::Sha256Digest;
use cairn_protocol::PackageName;
use cairn_protocol::ext::hold::Requirement;
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{PackageEntry, PackageRecord};
use semver::Version;

use crate::identity::{Action, Caller};
use crate::oci::{OciError, Repository};
use crate::{Registry, ServiceError};

/// The most repositories looked at to decide whether content is held.
const MAX_HOLDERS: u32 = 64;

impl Registry {
    /// The requirement `namespace`'s policy in force holds new releases to,
    /// if it holds them at all.
    pub(crate) fn hold_requirement(&self, namespace: &str) -> Option<Requirement> {
        Requirement::of(&self.namespace_policy(namespace))
    }

    /// Whether some namespace holds releases now: when none does, nothing
    /// is held and no log needs reading.
    fn any_namespace_holds(&self) -> bool {
        self.registry_log()
            .namespaces()
            .any(|n| Requirement::of(&n.policy).is_some())
    }

    /// The versions of `package` held now (empty when its namespace holds
    /// nothing).
    pub(crate) fn held_versions(
        &self,
        package: &PackageName,
        meta: &MetaState,
    ) -> BTreeSet<Version> {
        if self.hold_requirement(package.namespace()).is_none() {
            return BTreeSet::new();
        }
        meta.holds()
            .filter(|(_, hold)| hold.is_held())
            .map(|(version, _)| version.clone())
            .collect()
    }

    /// The refusal for manifest `digest` of `package`, if it is a release
    /// held now.
    pub(crate) fn held_manifest_refusal(
        &self,
        package: &PackageName,
        meta: &MetaState,
        digest: &Sha256Digest,
    ) -> Option<ServiceError> {
        self.hold_requirement(package.namespace())?;
        let version = meta.held_manifest(digest)?;
        let hold = meta.hold(version)?;
        Some(ServiceError::held(package, version, &hold.requires))
    }

    /// Whether `caller` sees held releases of `repository`: the
    /// namespace's publishers and signers, who sign them.
    pub(crate) fn sees_held(&self, caller: Option<&Caller>, repository: &Repository) -> bool {
        caller.is_some()
            && self
                .oci_push_rights(caller, repository, Action::Sign)
                .is_ok()
    }

    /// `DENIED` when manifest `digest` of `repository` is a held release
    /// and `caller` may not sign it.
    pub(crate) async fn oci_refuse_held_manifest(
        &self,
        caller: Option<&Caller>,
        repository: &Repository,
        digest: &Sha256Digest,
    ) -> Result<(), OciError> {
        if self
            .hold_requirement(repository.package.namespace())
            .is_none()
            || self.sees_held(caller, repository)
        {
            return Ok(());
        }
        let (_, meta) = self.oci_states(&repository.package).await?;
        match self.held_manifest_refusal(&repository.package, &meta, digest) {
            Some(refusal) => Err(refusal.into()),
            None => Ok(()),
        }
    }

    /// `GET|HEAD /v2/<name>/blobs/<digest>`: `DENIED` when the blob is the
    /// content of a held release of the repository's package, no release
    /// of it that is not held has the same content, and `caller` may not
    /// sign there. Asked once the caller may read the repository.
    pub async fn oci_refuse_held_blob(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        digest: &str,
    ) -> Result<(), OciError> {
        let Ok(repository) = Repository::parse(repository) else {
            return Ok(());
        };
        if self
            .hold_requirement(repository.package.namespace())
            .is_none()
            || self.sees_held(caller, &repository)
        {
            return Ok(());
        }
        let Some(digest) = self.oci_blob_sha256(digest).await? else {
            return Ok(());
        };
        let (state, meta) = self.oci_states(&repository.package).await?;
        match self.held_content(&repository.package, &state, &meta, &digest) {
            Held::By(refusal) => Err(refusal.into()),
            Held::Served | Held::Unknown => Ok(()),
        }
    }

    /// Whether content `digest` is held in `package`: the content of a held
    /// release and of no live release that is not held.
    fn held_content(
        &self,
        package: &PackageName,
        state: &PackageState,
        meta: &MetaState,
        digest: &Sha256Digest,
    ) -> Held {
        let held = self.held_versions(package, meta);
        let mut refusal = None;
        for release in state.releases().filter(|r| !r.yanked()) {
            if release.content() != Some(digest) {
                continue;
            }
            if !held.contains(&release.version) {
                return Held::Served;
            }
            if refusal.is_none() {
                refusal = meta
                    .hold(&release.version)
                    .map(|hold| ServiceError::held(package, &release.version, &hold.requires));
            }
        }
        refusal.map_or(Held::Unknown, Held::By)
    }

    /// `/content/…` downloads and `v1/content/{digest}`: refused when every
    /// release that has content `digest`, among the repositories holding
    /// it, is held (and some is). Content that a repository of a namespace
    /// holding nothing has, or a release that is not held, is served.
    pub(crate) async fn refuse_held_content(
        &self,
        digest: &Sha256Digest,
    ) -> Result<(), ServiceError> {
        if !self.any_namespace_holds() {
            return Ok(());
        }
        let repositories = self
            .inner
            .store
            .blob_repositories(digest, MAX_HOLDERS)
            .await?;
        let mut refusal = None;
        for repository in repositories {
            let Ok(repository) = Repository::parse(&repository) else {
                continue;
            };
            let package = &repository.package;
            if self.hold_requirement(package.namespace()).is_none() {
                return Ok(());
            }
            let (state, meta) = self.oci_states(package).await?;
            match self.held_content(package, &state, &meta, digest) {
                Held::Served => return Ok(()),
                Held::By(error) => {
                    refusal.get_or_insert(error);
                }
                Held::Unknown => {}
            }
        }
        refusal.map_or(Ok(()), Err)
    }

    /// The warg door cannot hold a release (its record is the client's,
    /// sequenced without a metadata record beside it), so a namespace that
    /// holds releases takes them over OCI only: a warg record releasing a
    /// version there is refused before anything is stored.
    pub(crate) fn refuse_warg_release_in_holding_namespace(
        &self,
        name: &PackageName,
        record: &PackageRecord,
    ) -> Result<(), ServiceError> {
        let Some(requirement) = self.hold_requirement(name.namespace()) else {
            return Ok(());
        };
        let releases = record
            .entries
            .iter()
            .any(|e| matches!(e, PackageEntry::Release { .. }));
        if !releases {
            return Ok(());
        }
        Err(ServiceError::refused(format!(
            "namespace `{}` holds new releases until they are signed ({}), which the warg \
             protocol cannot do: publish {name} over OCI (`wkg publish` to this registry's OCI \
             door, or `oras push`), then sign its manifest",
            name.namespace(),
            requirement.describe()
        )))
    }
}

/// Whether content is held in one package.
enum Held {
    /// A held release has it; none that is not held does.
    By(ServiceError),
    /// A release that is not held has it.
    Served,
    /// No live release has it.
    Unknown,
}

impl ServiceError {
    /// 403: release `version` of `package` is held until signatures
    /// meeting `requires` arrive.
    pub fn held(package: &PackageName, version: &Version, requires: &Requirement) -> Self {
        Self::forbidden(format!(
            "{package}: release {version} awaits a signature matching policy (namespace `{}` \
             requires {}); it is served once signed",
            package.namespace(),
            requires.describe()
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    #[test]
    fn held_is_a_403_naming_the_release_and_what_it_awaits() {
        let package = PackageName::new("acme:app".to_owned()).unwrap();
        let requires = Requirement {
            signature: true,
            attestations: Vec::new(),
        };
        match ServiceError::held(&package, &"1.2.0".parse().unwrap(), &requires) {
            ServiceError::Client { kind, message } => {
                assert_eq!(kind.status(), 403);
                assert!(
                    message.contains("release 1.2.0 awaits a signature matching policy"),
                    "{message}"
                );
                assert!(
                    message.contains("a signature by a trusted key"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
