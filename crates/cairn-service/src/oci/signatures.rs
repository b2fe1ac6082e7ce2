//! Signatures and attestations checked at push, against the namespace's
//! trust rules and the deployment's Sigstore trusted root.
//!
//! # The story of a signature push
//!
//! A manifest attached to another (a cosign `.sig` / `.att` tag, or a
//! referrer with a `subject`) is validated like any push. Then, before its
//! bytes are stored and before anything is submitted to the log, each of
//! its **signature layers** is read and judged:
//!
//! * `application/vnd.dev.cosign.simplesigning.v1+json`: a cosign payload
//!   with its `dev.cosignproject.cosign/signature` annotation and, keyless,
//!   the certificate, chain and Rekor bundle annotations;
//! * `application/vnd.dsse.envelope.v1+json`: a `cosign attest` envelope
//!   holding an in-toto statement, with the same keyless annotations;
//! * `application/vnd.dev.sigstore.bundle…`: a Sigstore bundle v0.1–v0.3
//!   (message signature or DSSE envelope), as cosign 3 attaches it.
//!
//! Other layers (SBOMs, notation envelopes, anything else) are not
//! signatures cairn verifies; they pass as before and are logged without a
//! verdict.
//!
//! * In a namespace **with trust rules** ([`PublishPolicy::has_trust_rules`])
//!   every signature layer must verify (`cairn-sigstore`: bound to the
//!   subject, signed by a listed key or a keyless identity allowed by an
//!   `ISSUER=IDENTITY_REGEX` rule, with a Rekor entry or an RFC 3161
//!   timestamp checked against the trusted root; one call,
//!   [`cairn_sigstore::verify_layer`], picks the layout by media type), and
//!   an attestation must be of a required predicate type
//!   when the namespace requires some. Anything else is refused with
//!   `DENIED` and the reason; nothing is stored or logged.
//! * **Elsewhere** every signature layer is logged as `unverified`, with the
//!   reason.
//!
//! The verdicts travel with the push into its metadata log entry
//! ([`SignatureCheck`]), so the log says who signed what.
//!
//! This module does not hold releases back until they are signed:
//! [`crate::hold`] does, from the verdicts logged here.

use std::time::UNIX_EPOCH;

use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_protocol::ext::signature::{SignatureCheck, SignatureFormat, Verdict};
use cairn_protocol::oci::Descriptor;
use cairn_sigstore::{LayerFormat, Refusal, Signer, TrustPolicy, TrustedRoot, Verifier};
use serde_json::Value;

use super::{OciCode, OciError, Repository};
use crate::{Registry, ServiceError};

pub use cairn_sigstore::{DSSE_ENVELOPE, SIMPLESIGNING};
/// The predicate type cosign 3 signs image signatures with: a signature,
/// not an attestation.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// The largest signature blob read for verification.
const MAX_SIGNATURE_BLOB: u64 = 4 * 1024 * 1024;
/// Most keys, identity rules and required predicate types a namespace may
/// list (each).
pub const MAX_TRUST_RULES: usize = 32;

/// The signature layout of a layer media type, if it is one.
pub fn signature_format(media_type: &str) -> Option<SignatureFormat> {
    Some(match LayerFormat::of(media_type)? {
        LayerFormat::Simplesigning => SignatureFormat::Simplesigning,
        LayerFormat::Dsse => SignatureFormat::Dsse,
        LayerFormat::Bundle => SignatureFormat::Bundle,
    })
}

/// The namespace's trust rules, parsed.
pub fn trust_policy(policy: &PublishPolicy) -> Result<TrustPolicy, ServiceError> {
    TrustPolicy::parse(&policy.signature_keys, &policy.signature_identities)
        .map_err(|e| ServiceError::bad_request(e.to_string()))
}

/// Checks a namespace's signature settings before they are logged: keys
/// parse, identity rules compile, predicate types are URIs, requirements
/// name someone to trust.
pub fn check_policy(policy: &PublishPolicy) -> Result<(), ServiceError> {
    for (what, list) in [
        ("signature keys", &policy.signature_keys),
        ("signature identities", &policy.signature_identities),
        ("required attestations", &policy.require_attestations),
    ] {
        if list.len() > MAX_TRUST_RULES {
            return Err(ServiceError::bad_request(format!(
                "at most {MAX_TRUST_RULES} {what}"
            )));
        }
    }
    let trust = trust_policy(policy)?;
    for predicate in &policy.require_attestations {
        if predicate.is_empty()
            || predicate.len() > 256
            || !predicate.contains(':')
            || predicate.chars().any(char::is_whitespace)
        {
            return Err(ServiceError::bad_request(format!(
                "invalid predicate type `{predicate}`: use a URI such as https://slsa.dev/provenance/v1"
            )));
        }
    }
    if (policy.require_signature || !policy.require_attestations.is_empty()) && trust.is_empty() {
        return Err(ServiceError::bad_request(
            "requiring signatures or attestations needs a signature key or a signature identity \
             to trust (--signature-key PATH, --signature-identity ISSUER=IDENTITY_REGEX)",
        ));
    }
    Ok(())
}

/// The logged facts of a verified signature.
pub fn verified(
    format: SignatureFormat,
    subject: Sha256Digest,
    blob: Sha256Digest,
    verdict: cairn_sigstore::Verdict,
) -> SignatureCheck {
    let mut check = unverified(format, subject, blob, String::new());
    check.verdict = Verdict::Verified;
    check.reason = None;
    check.signed = Some(verdict.payload_digest);
    check.predicate_type = verdict.predicate_type;
    match verdict.signer {
        Signer::Key { fingerprint } => check.key_fingerprint = Some(fingerprint),
        Signer::Certificate {
            issuer,
            identity,
            certificate_fingerprint,
        } => {
            check.issuer = Some(issuer);
            check.identity = Some(identity.as_str().to_owned());
            check.certificate_fingerprint = Some(certificate_fingerprint);
        }
    }
    if let Some(log) = verdict.log {
        check.log_id = Some(log.log_id);
        check.log_index = Some(log.log_index);
        check.integrated_time = log.integrated_time;
    }
    if let Some(timestamp) = verdict.timestamp {
        check.timestamp_authority = Some(timestamp.authority);
        check.timestamp_time = Some(timestamp.gen_time);
    }
    check
}

fn unverified(
    format: SignatureFormat,
    subject: Sha256Digest,
    blob: Sha256Digest,
    reason: String,
) -> SignatureCheck {
    SignatureCheck {
        verdict: Verdict::Unverified,
        format,
        subject,
        blob,
        signed: None,
        key_fingerprint: None,
        issuer: None,
        identity: None,
        certificate_fingerprint: None,
        log_id: None,
        log_index: None,
        integrated_time: None,
        timestamp_authority: None,
        timestamp_time: None,
        predicate_type: None,
        reason: Some(reason),
    }
}

/// What a push attaches, as [`Registry::check_signatures`] needs it.
pub(crate) struct Attached<'a> {
    /// The manifest bytes (layer annotations are read from them).
    pub body: &'a [u8],
    /// The manifest's layers.
    pub layers: &'a [Descriptor],
    /// The SHA-256 each layer is stored under (`None`: not stored).
    pub stored: &'a [Option<Sha256Digest>],
    /// The subject by SHA-256, if known.
    pub subject: Option<Sha256Digest>,
    /// Whether the manifest names a subject the registry cannot resolve to
    /// a SHA-256 (a SHA-512 it never saw).
    pub unresolved_subject: bool,
}

impl Registry {
    /// Judges the signature layers of a push (see the module
    /// documentation): the checks to log, or `DENIED` in a namespace with
    /// trust rules when one does not verify.
    pub(crate) async fn check_signatures(
        &self,
        repository: &Repository,
        attached: Attached<'_>,
    ) -> Result<Vec<SignatureCheck>, OciError> {
        let signatures: Vec<(usize, SignatureFormat)> = attached
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, layer)| Some((i, signature_format(&layer.media_type)?)))
            .collect();
        if signatures.is_empty() {
            return Ok(Vec::new());
        }
        let namespace = repository.package.namespace();
        let policy = self.namespace_policy(namespace);
        let denied = |message: String| OciError::new(OciCode::Denied, message);
        let Some(subject) = attached.subject else {
            if attached.unresolved_subject && policy.has_trust_rules() {
                return Err(denied(format!(
                    "namespace `{namespace}` accepts verified signatures only, and this one is about \
                     a manifest this registry has not seen; push the subject first"
                )));
            }
            // Not attached to anything: judged when a cosign tag attaches it.
            return Ok(Vec::new());
        };
        let trust = if policy.has_trust_rules() {
            Some(trust_policy(&policy)?)
        } else {
            None
        };
        let annotations: Value = serde_json::from_slice(attached.body)
            .map_err(|e| ServiceError::Internal(format!("a parsed manifest is not JSON: {e}")))?;
        let configured_root = self.inner.config.trusted_root.as_deref();
        let empty_root = TrustedRoot::default();
        let root = configured_root.unwrap_or(&empty_root);
        let now = self
            .inner
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let sigstore_subject = cairn_sigstore::Sha256Digest(subject.0);

        let mut checks = Vec::with_capacity(signatures.len());
        for (index, format) in signatures {
            let layer = &attached.layers[index];
            let Some(blob) = attached.stored.get(index).copied().flatten() else {
                return Err(OciError::new(
                    OciCode::ManifestBlobUnknown,
                    format!(
                        "signature layer {} is not in {}",
                        layer.digest, repository.name
                    ),
                ));
            };
            let Some(trust) = &trust else {
                checks.push(unverified(
                    format,
                    subject,
                    blob,
                    format!("namespace `{namespace}` has no trust rules"),
                ));
                continue;
            };
            let bytes = self.read_blob(&blob, MAX_SIGNATURE_BLOB).await?;
            let verifier = Verifier {
                root,
                policy: trust,
                now,
            };
            let outcome = cairn_sigstore::verify_layer(
                &verifier,
                &sigstore_subject,
                &layer.media_type,
                &bytes,
                &annotations["layers"][index]["annotations"],
            )
            .and_then(|verdict| required_predicate(&policy, verdict));
            match outcome {
                Ok(verdict) => checks.push(verified(format, subject, blob, verdict)),
                Err(refusal) => {
                    let hint = if configured_root.is_none() {
                        " (this registry has no Sigstore trusted root: keyless signatures \
                         cannot be verified until it is started with --trusted-root)"
                    } else {
                        ""
                    };
                    return Err(denied(format!(
                        "namespace `{namespace}` accepts verified signatures only: signature layer \
                         {} about {subject} is refused: {refusal}{hint}",
                        layer.digest
                    )));
                }
            }
        }
        Ok(checks)
    }
}

/// In a namespace requiring attestations, an attestation (an in-toto
/// statement other than cosign's own signing statement) must be of one of
/// the required predicate types.
pub fn required_predicate(
    policy: &PublishPolicy,
    verdict: cairn_sigstore::Verdict,
) -> Result<cairn_sigstore::Verdict, Refusal> {
    let Some(found) = verdict.predicate_type.as_deref() else {
        return Ok(verdict);
    };
    if policy.require_attestations.is_empty() || found == COSIGN_SIGN_PREDICATE {
        return Ok(verdict);
    }
    let one = std::slice::from_ref(&verdict);
    if policy
        .require_attestations
        .iter()
        .any(|required| cairn_sigstore::require_predicate_type(one, required).is_ok())
    {
        return Ok(verdict);
    }
    Err(Refusal::WrongPredicateType {
        required: policy.require_attestations.join(" or "),
        found: found.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn formats_by_media_type() {
        assert_eq!(
            signature_format(SIMPLESIGNING),
            Some(SignatureFormat::Simplesigning)
        );
        assert_eq!(signature_format(DSSE_ENVELOPE), Some(SignatureFormat::Dsse));
        for bundle in [
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            "application/vnd.dev.sigstore.bundle+json;version=0.1",
        ] {
            assert_eq!(signature_format(bundle), Some(SignatureFormat::Bundle));
        }
        assert_eq!(signature_format("application/spdx+json"), None);
        assert_eq!(
            signature_format("application/vnd.cncf.notary.signature"),
            None
        );
    }

    #[test]
    fn policies_are_checked_before_they_are_logged() {
        let identity = "https://token.actions.githubusercontent.com=https://github\\.com/acme/.*";
        let ok = PublishPolicy {
            signature_identities: vec![identity.into()],
            require_signature: true,
            require_attestations: vec!["https://slsa.dev/provenance/v1".into()],
            ..PublishPolicy::default()
        };
        assert!(check_policy(&ok).is_ok());
        for (bad, reason) in [
            (
                PublishPolicy {
                    require_signature: true,
                    ..PublishPolicy::default()
                },
                "needs a signature key",
            ),
            (
                PublishPolicy {
                    signature_keys: vec!["not a key".into()],
                    ..PublishPolicy::default()
                },
                "invalid public key",
            ),
            (
                PublishPolicy {
                    signature_identities: vec!["https://issuer.example=(".into()],
                    ..PublishPolicy::default()
                },
                "bad regular expression",
            ),
            (
                PublishPolicy {
                    require_attestations: vec!["slsa provenance".into()],
                    ..ok.clone()
                },
                "invalid predicate type",
            ),
        ] {
            let error = check_policy(&bad).unwrap_err().to_string();
            assert!(error.contains(reason), "{error}");
        }
    }
}
