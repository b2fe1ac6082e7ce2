//! Releases held until they are signed: the `releaseHeld` and
//! `releaseReleased` entries of a package's metadata log, and the rules
//! they obey.
//!
//! In a namespace whose policy requires a signature or attestations, a
//! release pushed over OCI is logged as usual, and the registry logs a
//! [`HeldEntry`] in the same record, naming the release's manifest and the
//! [`Requirement`] in force. When signatures arrive whose verified checks
//! (see [`super::signature`]) meet that requirement, the record that logs
//! them also logs a [`ReleasedEntry`] naming the manifests that carry them.
//! Both are judged here from the log alone, whoever signs the record: a
//! hold names a release of this log, a release names a hold and verified
//! checks about its manifest that satisfy the logged requirement.
//!
//! Whether a held release is *served* also depends on the namespace's
//! policy in force (the registry log): a namespace that no longer requires
//! anything holds nothing. That decision, and serving, are not here.

use cairn_crypto::Sha256Digest;
use semver::Version;
use serde::{Deserialize, Serialize};

use imbl::OrdMap;

use super::meta::{ManifestState, MetaState};
use super::registry::PublishPolicy;
use super::signature::{MAX_CHECKS, SignatureCheck};
use super::{ExtEntry, rule};
use crate::ValidationError;

/// The predicate type cosign 3 signs image signatures with: a signature,
/// not an attestation.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Most predicate types one requirement may name.
pub const MAX_REQUIRED_ATTESTATIONS: usize = 32;

/// What a held release waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requirement {
    /// A verified signature (a cosign signature, or cosign 3's signing
    /// statement).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signature: bool,
    /// A verified attestation of each of these in-toto predicate types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<String>,
}

impl Requirement {
    /// What `policy` holds releases to, if it holds them at all.
    pub fn of(policy: &PublishPolicy) -> Option<Self> {
        let requirement = Self {
            signature: policy.require_signature,
            attestations: policy.require_attestations.clone(),
        };
        (!requirement.is_empty()).then_some(requirement)
    }

    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        !self.signature && self.attestations.is_empty()
    }

    /// Whether `checks` (about one manifest) meet it: only verified checks
    /// count.
    pub fn is_met_by<'a>(&self, checks: impl IntoIterator<Item = &'a SignatureCheck>) -> bool {
        let verified: Vec<&SignatureCheck> =
            checks.into_iter().filter(|c| c.is_verified()).collect();
        let signed = verified.iter().any(|c| {
            c.predicate_type
                .as_deref()
                .is_none_or(|p| p == COSIGN_SIGN_PREDICATE)
        });
        (!self.signature || signed)
            && self.attestations.iter().all(|required| {
                verified
                    .iter()
                    .any(|c| c.predicate_type.as_deref() == Some(required.as_str()))
            })
    }

    /// What is missing, for people: "a signature by a trusted key or
    /// identity and an attestation of type X".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.signature {
            parts.push("a signature by a trusted key or identity".to_owned());
        }
        for predicate in &self.attestations {
            parts.push(format!("an attestation of type {predicate}"));
        }
        parts.join(" and ")
    }
}

/// `releaseHeld` entry: a release is not served until signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeldEntry {
    /// The held version.
    pub version: Version,
    /// Its manifest (the subject its signatures must name).
    pub digest: Sha256Digest,
    /// What it waits for: the namespace's requirement when it was held.
    pub requires: Requirement,
}

/// `releaseReleased` entry: a held release is served, its requirement met.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleasedEntry {
    /// The version.
    pub version: Version,
    /// Its manifest.
    pub digest: Sha256Digest,
    /// The manifests carrying the verified checks that meet the
    /// requirement.
    pub signatures: Vec<Sha256Digest>,
}

/// A hold as replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    /// The held release's manifest.
    pub digest: Sha256Digest,
    /// What it waits for.
    pub requires: Requirement,
    /// The signature manifests that released it, once released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_by: Option<Vec<Sha256Digest>>,
}

impl Hold {
    /// Whether it still waits.
    pub fn is_held(&self) -> bool {
        self.released_by.is_none()
    }
}

/// The entries the registry logs right after `entry`, in the same record:
/// `state` has `entry` applied, and `requirement` is the namespace's in
/// force (`None`: it holds nothing).
///
/// * A release that `entry` makes (a manifest pushed with its version tag,
///   or given one) is held, unless the verified checks already logged
///   about its manifest meet the requirement.
/// * A held release whose manifest the checks of `entry` are about is
///   released when all verified checks logged about it now meet its
///   logged requirement (the one it was held with).
pub fn follow_up(
    state: &MetaState,
    entry: &ExtEntry,
    requirement: Option<&Requirement>,
) -> Vec<ExtEntry> {
    let (release, checks) = match entry {
        ExtEntry::Manifest(m) => (
            m.release.as_ref().map(|r| (&r.version, m.digest)),
            &m.signatures,
        ),
        ExtEntry::Tag(t) => (
            t.release.as_ref().map(|r| (&r.version, t.digest)),
            &t.signatures,
        ),
        _ => return Vec::new(),
    };
    let mut entries = Vec::new();
    if let (Some((version, digest)), Some(requirement)) = (release, requirement)
        && state.hold(version).is_none()
        && !requirement.is_met_by(state.signatures_of(&digest).map(|(_, c)| c))
    {
        entries.push(ExtEntry::ReleaseHeld(HeldEntry {
            version: version.clone(),
            digest,
            requires: requirement.clone(),
        }));
    }
    let mut subjects: Vec<Sha256Digest> = checks.iter().map(|c| c.subject).collect();
    subjects.sort();
    subjects.dedup();
    for subject in subjects {
        let Some(version) = state.held_manifest(&subject) else {
            continue;
        };
        let Some(hold) = state.hold(version) else {
            continue;
        };
        if !hold
            .requires
            .is_met_by(state.signatures_of(&subject).map(|(_, c)| c))
        {
            continue;
        }
        let mut carriers: Vec<Sha256Digest> = state
            .signatures_of(&subject)
            .filter(|(_, c)| c.is_verified())
            .map(|(carrier, _)| *carrier)
            .collect();
        carriers.dedup();
        carriers.truncate(MAX_CHECKS);
        entries.push(ExtEntry::ReleaseReleased(ReleasedEntry {
            version: version.clone(),
            digest: subject,
            signatures: carriers,
        }));
    }
    entries
}

/// A hold names a release of this log by its manifest, once, with a
/// requirement that asks for something.
pub(super) fn apply_held(
    holds: &mut OrdMap<Version, Hold>,
    manifests: &OrdMap<Sha256Digest, ManifestState>,
    held: &HeldEntry,
) -> Result<(), ValidationError> {
    let released = manifests.get(&held.digest).and_then(|m| m.release.as_ref());
    if released != Some(&held.version) {
        return Err(rule(format!(
            "manifest {} is not release {}",
            held.digest, held.version
        )));
    }
    if holds.contains_key(&held.version) {
        return Err(rule(format!("release {} was already held", held.version)));
    }
    let requires = &held.requires;
    if requires.is_empty()
        || requires.attestations.len() > MAX_REQUIRED_ATTESTATIONS
        || requires
            .attestations
            .iter()
            .any(|p| p.is_empty() || p.len() > 256)
    {
        return Err(rule(
            "a hold requires a signature or 1 to 32 attestation types",
        ));
    }
    holds.insert(
        held.version.clone(),
        Hold {
            digest: held.digest,
            requires: requires.clone(),
            released_by: None,
        },
    );
    Ok(())
}

/// A release names a waiting hold, and manifests of this log whose
/// verified checks about the held manifest meet its requirement.
pub(super) fn apply_released(
    holds: &mut OrdMap<Version, Hold>,
    manifests: &OrdMap<Sha256Digest, ManifestState>,
    released: &ReleasedEntry,
) -> Result<(), ValidationError> {
    let Some(hold) = holds.get(&released.version) else {
        return Err(rule(format!("release {} is not held", released.version)));
    };
    if hold.digest != released.digest || !hold.is_held() {
        return Err(rule(format!(
            "release {} is not held as manifest {}",
            released.version, released.digest
        )));
    }
    if released.signatures.is_empty() || released.signatures.len() > MAX_CHECKS {
        return Err(rule(format!(
            "a release names 1 to {MAX_CHECKS} signature manifests"
        )));
    }
    let mut checks = Vec::new();
    for carrier in &released.signatures {
        let about: Vec<&SignatureCheck> = manifests
            .get(carrier)
            .map(|m| {
                m.signatures
                    .iter()
                    .filter(|c| c.subject == released.digest && c.is_verified())
                    .collect()
            })
            .unwrap_or_default();
        if about.is_empty() {
            return Err(rule(format!(
                "manifest {carrier} carries no verified signature of {}",
                released.digest
            )));
        }
        checks.extend(about);
    }
    if !hold.requires.is_met_by(checks) {
        return Err(rule(format!(
            "the signatures of release {} do not give {}",
            released.version,
            hold.requires.describe()
        )));
    }
    if let Some(hold) = holds.get_mut(&released.version) {
        hold.released_by = Some(released.signatures.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::ext::meta::ManifestEntry;
    use crate::ext::meta::tests::{by, pushed};
    use crate::ext::signature::{SignatureFormat, Verdict};

    fn check(verdict: Verdict, predicate: Option<&str>) -> SignatureCheck {
        SignatureCheck {
            verdict,
            format: SignatureFormat::Dsse,
            subject: Sha256Digest([1; 32]),
            blob: Sha256Digest([2; 32]),
            signed: None,
            key_fingerprint: Some("ab".into()),
            issuer: None,
            identity: None,
            certificate_fingerprint: None,
            log_id: None,
            log_index: None,
            integrated_time: None,
            timestamp_authority: None,
            timestamp_time: None,
            predicate_type: predicate.map(str::to_owned),
            reason: (verdict == Verdict::Unverified).then(|| "no rules".to_owned()),
        }
    }

    #[test]
    fn requirements_are_met_by_verified_checks_only() {
        let slsa = "https://slsa.dev/provenance/v1";
        let sign = Requirement {
            signature: true,
            attestations: Vec::new(),
        };
        let both = Requirement {
            signature: true,
            attestations: vec![slsa.into()],
        };
        let signature = check(Verdict::Verified, None);
        let cosign3 = check(Verdict::Verified, Some(COSIGN_SIGN_PREDICATE));
        let provenance = check(Verdict::Verified, Some(slsa));
        let unverified = check(Verdict::Unverified, None);
        assert!(sign.is_met_by([&signature]));
        assert!(sign.is_met_by([&cosign3]));
        assert!(!sign.is_met_by([&unverified]));
        assert!(!sign.is_met_by([&provenance]));
        assert!(!both.is_met_by([&signature]));
        assert!(!both.is_met_by([&provenance]));
        assert!(both.is_met_by([&signature, &provenance]));
        assert!(Requirement::of(&PublishPolicy::default()).is_none());
        assert_eq!(
            both.describe(),
            format!("a signature by a trusted key or identity and an attestation of type {slsa}")
        );
    }

    fn signature(carrier: Sha256Digest, subject: Sha256Digest) -> ExtEntry {
        use crate::ext::signature::{SignatureFormat, Verdict};
        ExtEntry::Manifest(ManifestEntry {
            digest: carrier,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            artifact_type: None,
            subject: Some(subject),
            size: 10,
            blobs: Vec::new(),
            tags: Vec::new(),
            release: None,
            wasm: None,
            signatures: vec![SignatureCheck {
                verdict: Verdict::Verified,
                format: SignatureFormat::Simplesigning,
                subject,
                blob: Sha256Digest([7; 32]),
                signed: None,
                key_fingerprint: Some("ab".into()),
                issuer: None,
                identity: None,
                certificate_fingerprint: None,
                log_id: None,
                log_index: None,
                integrated_time: None,
                timestamp_authority: None,
                timestamp_time: None,
                predicate_type: None,
                reason: None,
            }],
            by: by(),
        })
    }

    #[test]
    fn holds_name_releases_and_releases_need_signatures_meeting_them() {
        let (a, b, sig) = (
            Sha256Digest([1; 32]),
            Sha256Digest([2; 32]),
            Sha256Digest([3; 32]),
        );
        let v1: Version = "1.0.0".parse().unwrap();
        let sign = Requirement {
            signature: true,
            attestations: Vec::new(),
        };
        let held = |version: &Version, digest| {
            ExtEntry::ReleaseHeld(HeldEntry {
                version: version.clone(),
                digest,
                requires: sign.clone(),
            })
        };
        let released = |digest, signatures: Vec<Sha256Digest>| {
            ExtEntry::ReleaseReleased(ReleasedEntry {
                version: "1.0.0".parse().unwrap(),
                digest,
                signatures,
            })
        };
        let mut state = MetaState::new();
        let push = pushed(a, &["1.0.0"], Some("1.0.0"));
        state.apply_entry(&push).unwrap();
        state.apply_entry(&pushed(b, &["dev"], None)).unwrap();
        // What the registry logs after the push: the hold.
        assert_eq!(follow_up(&state, &push, Some(&sign)), vec![held(&v1, a)]);
        assert!(follow_up(&state, &push, None).is_empty());
        // A hold must name a release by its manifest, once, and ask for
        // something.
        assert!(state.clone().apply_entry(&held(&v1, b)).is_err());
        assert!(
            state
                .clone()
                .apply_entry(&held(&"2.0.0".parse().unwrap(), a))
                .is_err()
        );
        let mut empty = held(&v1, a);
        if let ExtEntry::ReleaseHeld(h) = &mut empty {
            h.requires = Requirement::default();
        }
        assert!(state.clone().apply_entry(&empty).is_err());
        // Released before held: refused.
        assert!(state.clone().apply_entry(&released(a, vec![b])).is_err());
        state.apply_entry(&held(&v1, a)).unwrap();
        assert!(state.clone().apply_entry(&held(&v1, a)).is_err());
        assert_eq!(state.held_manifest(&a), Some(&v1));
        // Released by manifests without verified checks about it: refused.
        assert!(state.clone().apply_entry(&released(a, vec![b])).is_err());
        assert!(state.clone().apply_entry(&released(a, vec![sig])).is_err());
        assert!(state.clone().apply_entry(&released(a, Vec::new())).is_err());
        // A signature of another manifest releases nothing.
        let elsewhere = signature(sig, b);
        let mut other = state.clone();
        other.apply_entry(&elsewhere).unwrap();
        assert!(follow_up(&other, &elsewhere, Some(&sign)).is_empty());
        assert!(other.apply_entry(&released(a, vec![sig])).is_err());
        // The signature the hold waits for: released, once.
        let signed = signature(sig, a);
        state.apply_entry(&signed).unwrap();
        let release = follow_up(&state, &signed, Some(&sign));
        assert_eq!(release, vec![released(a, vec![sig])]);
        state.apply_entry(&release[0]).unwrap();
        assert_eq!(state.held_manifest(&a), None);
        assert_eq!(state.hold(&v1).unwrap().released_by, Some(vec![sig]));
        assert!(state.clone().apply_entry(&release[0]).is_err());
        let json = serde_json::to_value(&release[0]).unwrap();
        assert_eq!(json["type"], "releaseReleased");
        assert_eq!(
            serde_json::from_value::<ExtEntry>(json).unwrap(),
            release[0]
        );
    }
}
