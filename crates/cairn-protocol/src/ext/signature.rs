//! What the registry found when it checked a signature or attestation
//! pushed over OCI: the verdict logged with the push, in the `manifest` or
//! `tag` entry of the subject package's metadata log.
//!
//! The registry checks each signature layer of an attachment (a cosign
//! simplesigning payload, a DSSE envelope, a Sigstore bundle) against the
//! namespace's trust rules before anything is logged. In a namespace with
//! trust rules only verified signatures are accepted; elsewhere a
//! signature is stored and logged as [`Verdict::Unverified`] with the
//! reason. A verified entry names its signer: a listed key's fingerprint,
//! or a Fulcio certificate's issuer and identity, with the Rekor entry or
//! the RFC 3161 timestamp authority that proved when it was signed. This
//! module holds the facts and the rules an
//! entry must obey; the cryptography is in `cairn-sigstore`, not here.

use cairn_crypto::Sha256Digest;
use serde::{Deserialize, Serialize};

use super::rule;
use crate::ValidationError;

/// The longest reason an unverified check may carry.
pub const MAX_CHECK_REASON: usize = 1024;
/// Most checks one entry may carry (one per signature layer).
pub const MAX_CHECKS: usize = 64;

/// Whether a signature verified against the namespace's trust rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// A listed key or a trusted keyless identity signed exactly the
    /// subject.
    Verified,
    /// Stored without a trusted signer (the namespace has no trust rules).
    Unverified,
}

/// The layout a signature arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignatureFormat {
    /// A cosign simplesigning payload (`.sig`).
    Simplesigning,
    /// A DSSE envelope holding an in-toto statement (`.att`).
    Dsse,
    /// A Sigstore bundle (v0.1–v0.3), attached as a referrer.
    Bundle,
}

/// One signature layer as the registry judged it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureCheck {
    /// Verified or not.
    pub verdict: Verdict,
    /// The layout.
    pub format: SignatureFormat,
    /// The manifest the signature is about.
    pub subject: Sha256Digest,
    /// The blob that holds the signature: the payload, the envelope or the
    /// bundle.
    pub blob: Sha256Digest,
    /// `sha256:<hex>` of what was signed (payload, in-toto statement or
    /// message digest), for a verified signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<String>,
    /// Hex SHA-256 of the listed key's SubjectPublicKeyInfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// The certificate's OIDC issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The certificate's SAN (email or URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Hex SHA-256 of the leaf certificate's DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_fingerprint: Option<String>,
    /// Hex id of the Rekor log that recorded the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    /// The Rekor entry's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// The Rekor entry's integrated time (seconds since the epoch), as its
    /// verified signed entry timestamp vouches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrated_time: Option<i64>,
    /// The RFC 3161 timestamp authority that vouched for the signing time
    /// (its URI in the trusted root), when the signature carries a verified
    /// timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_authority: Option<String>,
    /// That timestamp's `genTime` (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_time: Option<i64>,
    /// The in-toto predicate type of an attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    /// Why an unverified signature is not verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SignatureCheck {
    /// Whether the signer is trusted.
    pub fn is_verified(&self) -> bool {
        self.verdict == Verdict::Verified
    }
}

/// The rules every entry's checks obey, whoever signs the record: a
/// verified check names exactly one signer kind (a key, or an issuer and
/// identity with a log entry) and no reason; an unverified one has a
/// reason; all are about `subject`.
pub(crate) fn check_checks(
    checks: &[SignatureCheck],
    subject: Option<&Sha256Digest>,
) -> Result<(), ValidationError> {
    if checks.is_empty() {
        return Ok(());
    }
    if checks.len() > MAX_CHECKS {
        return Err(rule(format!("at most {MAX_CHECKS} signature checks")));
    }
    let Some(subject) = subject else {
        return Err(rule("signature checks need a subject"));
    };
    for check in checks {
        if check.subject != *subject {
            return Err(rule(format!(
                "a signature check is about {}, the manifest about {subject}",
                check.subject
            )));
        }
        match check.verdict {
            Verdict::Verified => {
                let keyed = check.key_fingerprint.is_some();
                let keyless = check.issuer.is_some() && check.identity.is_some();
                if keyed == keyless || check.reason.is_some() {
                    return Err(rule(
                        "a verified signature names either a key or an issuer and identity",
                    ));
                }
                let logged = check.log_index.is_some() && check.integrated_time.is_some();
                let timestamped =
                    check.timestamp_authority.is_some() && check.timestamp_time.is_some();
                if keyless && !logged && !timestamped {
                    return Err(rule(
                        "a verified keyless signature names its signing time: a Rekor entry \
                         and its integrated time, or a timestamp authority and its time",
                    ));
                }
            }
            Verdict::Unverified => {
                let reason = check.reason.as_deref().unwrap_or_default();
                if reason.trim().is_empty() || reason.len() > MAX_CHECK_REASON {
                    return Err(rule(format!(
                        "an unverified signature carries a reason of 1 to {MAX_CHECK_REASON} bytes"
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn keyed(subject: Sha256Digest) -> SignatureCheck {
        SignatureCheck {
            verdict: Verdict::Verified,
            format: SignatureFormat::Simplesigning,
            subject,
            blob: Sha256Digest([7; 32]),
            signed: Some(Sha256Digest([7; 32]).to_string()),
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
        }
    }

    #[test]
    fn checks_name_one_signer_and_their_subject() {
        let subject = Sha256Digest([1; 32]);
        assert!(check_checks(&[keyed(subject)], Some(&subject)).is_ok());
        assert!(check_checks(&[keyed(subject)], None).is_err());
        assert!(check_checks(&[keyed(subject)], Some(&Sha256Digest([2; 32]))).is_err());

        let mut both = keyed(subject);
        both.issuer = Some("https://issuer.example".into());
        both.identity = Some("me@example.com".into());
        assert!(check_checks(&[both.clone()], Some(&subject)).is_err());
        both.key_fingerprint = None;
        assert!(
            check_checks(&[both.clone()], Some(&subject)).is_err(),
            "keyless needs its log entry"
        );
        let mut timestamped = both.clone();
        both.log_index = Some(3);
        both.integrated_time = Some(1);
        assert!(check_checks(&[both], Some(&subject)).is_ok());
        timestamped.timestamp_authority = Some("https://tsa.example".into());
        assert!(
            check_checks(&[timestamped.clone()], Some(&subject)).is_err(),
            "a timestamp needs its time"
        );
        timestamped.timestamp_time = Some(1);
        assert!(check_checks(&[timestamped], Some(&subject)).is_ok());

        let mut unverified = keyed(subject);
        unverified.verdict = Verdict::Unverified;
        assert!(check_checks(&[unverified.clone()], Some(&subject)).is_err());
        unverified.reason = Some("no trust rules".into());
        assert!(check_checks(&[unverified], Some(&subject)).is_ok());
    }

    #[test]
    fn checks_round_trip_as_json() {
        let check = keyed(Sha256Digest([1; 32]));
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(json["verdict"], "verified");
        assert_eq!(json["format"], "simplesigning");
        assert!(json.get("issuer").is_none());
        assert_eq!(
            serde_json::from_value::<SignatureCheck>(json).unwrap(),
            check
        );
    }
}
