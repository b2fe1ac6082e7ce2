//! cosign signatures in the tag scheme: one layer of the manifest under
//! `sha256-<hex>.sig`, whose blob is the simplesigning payload and whose
//! annotations carry the signature (and, keyless, the certificate and the
//! Rekor entry).
//!
//! SPEC: sigstore/cosign `specs/SIGNATURE_SPEC.md` — the payload is
//! `{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":"sha256:…"},"type":"cosign container image signature"},"optional":…}`;
//! the signature annotation `dev.cosignproject.cosign/signature` is the
//! base64 signature over the payload bytes exactly as stored.
//!
//! The payload must name the subject in `docker-manifest-digest`: a layer
//! copied from another image's signature manifest is refused with
//! [`Refusal::SubjectMismatch`] before any cryptography.

use serde_json::Value;

use crate::error::Refusal;
use crate::signer::{
    Claim, SignatureLayer, Signed, authenticate, decode_signature, layer_material,
};
use crate::verdict::Verdict;
use crate::{Sha256Digest, Verifier};

const SIGNATURE_TYPE: &str = "cosign container image signature";

/// Verifies one cosign simplesigning layer as a signature of `subject`.
pub fn verify_simplesigning(
    verifier: &Verifier<'_>,
    subject: &Sha256Digest,
    layer: &SignatureLayer<'_>,
) -> Result<Verdict, Refusal> {
    let payload: Value = serde_json::from_slice(layer.payload)
        .map_err(|e| Refusal::Malformed(format!("simplesigning payload: {e}")))?;
    let critical = &payload["critical"];
    if critical["type"] != SIGNATURE_TYPE {
        return Err(Refusal::Malformed(format!(
            "the payload's critical.type is not `{SIGNATURE_TYPE}`"
        )));
    }
    let signed = critical["image"]["docker-manifest-digest"]
        .as_str()
        .ok_or_else(|| {
            Refusal::Malformed("the payload has no critical.image.docker-manifest-digest".into())
        })?;
    if signed != subject.to_string() {
        return Err(Refusal::SubjectMismatch {
            signed: signed.to_owned(),
            subject: subject.to_string(),
        });
    }
    let signature = decode_signature(layer.signature)?;
    let (certificate, entries) = layer_material(&layer.material)?;
    let payload_digest = Sha256Digest::of(layer.payload);
    let claim = Claim {
        signed: Signed::Message(layer.payload),
        signature: &signature,
        certificate: certificate.as_ref(),
        log_entries: &entries,
        timestamps: &[],
        log_hash: payload_digest.0,
        dsse: false,
    };
    Ok(authenticate(verifier, &claim)?.verdict(payload_digest.to_string(), None))
}
