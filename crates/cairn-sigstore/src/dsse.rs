//! DSSE envelopes holding in-toto statements: `cosign attest` layers
//! (`application/vnd.dsse.envelope.v1+json` under the `.att` tag) and the
//! `dsseEnvelope` of Sigstore bundles.
//!
//! SPEC: secure-systems-lab/dsse `protocol.md` — the signature is over
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`
//! with decimal ASCII lengths; the envelope is `{"payloadType", "payload"
//! (base64), "signatures": [{"keyid", "sig" (base64)}]}`.
//! SPEC: in-toto attestation `Statement` v0.1/v1 — `{"_type",
//! "subject": [{"name", "digest": {"sha256": hex}}], "predicateType",
//! "predicate"}`.
//!
//! An envelope verifies if one of its signatures authenticates (see
//! [`crate::signer`]) and its statement names the subject's sha256 among
//! its subjects. The verdict carries the statement's `predicateType`; use
//! [`crate::require_predicate_type`] to demand one.

use serde::Deserialize;
use serde_json::Value;

use crate::certificate::Leaf;
use crate::error::Refusal;
use crate::rekor::{LogEntry, decode};
use crate::signer::{Claim, LayerMaterial, Signed, authenticate, layer_material};
use crate::verdict::Verdict;
use crate::{Sha256Digest, Verifier};

/// The payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v0.1",
    "https://in-toto.io/Statement/v1",
];

/// DSSE's pre-authentication encoding of `payload` of `payload_type`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope {
    payload_type: String,
    payload: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

impl Envelope {
    pub(crate) fn parse(json: &[u8]) -> Result<Self, Refusal> {
        serde_json::from_slice(json).map_err(|e| Refusal::Malformed(format!("DSSE envelope: {e}")))
    }

    pub(crate) fn from_value(value: &Value) -> Result<Self, Refusal> {
        Self::deserialize(value).map_err(|e| Refusal::Malformed(format!("DSSE envelope: {e}")))
    }
}

/// Verifies a `cosign attest` layer: the DSSE envelope blob and the
/// layer's keyless annotations.
pub fn verify_dsse_attestation(
    verifier: &Verifier<'_>,
    subject: &Sha256Digest,
    envelope: &[u8],
    material: &LayerMaterial<'_>,
) -> Result<Verdict, Refusal> {
    let envelope = Envelope::parse(envelope)?;
    let (certificate, entries) = layer_material(material)?;
    verify_envelope(
        verifier,
        subject,
        &envelope,
        certificate.as_ref(),
        &entries,
        &[],
    )
}

/// Verifies an envelope with the given keyless material.
pub(crate) fn verify_envelope(
    verifier: &Verifier<'_>,
    subject: &Sha256Digest,
    envelope: &Envelope,
    certificate: Option<&Leaf>,
    entries: &[LogEntry],
    timestamps: &[Vec<u8>],
) -> Result<Verdict, Refusal> {
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Refusal::Malformed(format!(
            "DSSE payload type `{}`, expected `{IN_TOTO_PAYLOAD_TYPE}`",
            envelope.payload_type
        )));
    }
    let payload = decode(&envelope.payload, "the DSSE payload")?;
    let predicate_type = check_statement(&payload, subject)?;
    let signed = pae(&envelope.payload_type, &payload);
    let payload_digest = Sha256Digest::of(&payload);
    if envelope.signatures.is_empty() {
        return Err(Refusal::Malformed(
            "the DSSE envelope has no signature".into(),
        ));
    }
    let mut first_refusal = None;
    for signature in &envelope.signatures {
        let bytes = decode(&signature.sig, "a DSSE signature")?;
        let claim = Claim {
            signed: Signed::Message(&signed),
            signature: &bytes,
            certificate,
            log_entries: entries,
            timestamps,
            log_hash: payload_digest.0,
            dsse: true,
        };
        match authenticate(verifier, &claim) {
            Ok(authenticated) => {
                return Ok(authenticated.verdict(payload_digest.to_string(), Some(predicate_type)));
            }
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    Err(first_refusal.unwrap_or(Refusal::KeyNotListed))
}

/// Checks that the statement is about `subject`; answers its predicate
/// type.
fn check_statement(payload: &[u8], subject: &Sha256Digest) -> Result<String, Refusal> {
    let statement: Value = serde_json::from_slice(payload)
        .map_err(|e| Refusal::Malformed(format!("in-toto statement: {e}")))?;
    let kind = statement["_type"].as_str().unwrap_or_default();
    if !STATEMENT_TYPES.contains(&kind) {
        return Err(Refusal::Malformed(format!(
            "not an in-toto statement (`_type` is `{kind}`)"
        )));
    }
    let predicate_type = statement["predicateType"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Refusal::Malformed("the statement has no predicateType".into()))?;
    let subjects = statement["subject"]
        .as_array()
        .ok_or_else(|| Refusal::Malformed("the statement has no subject".into()))?;
    let wanted = subject.hex();
    let digests: Vec<&str> = subjects
        .iter()
        .filter_map(|s| s["digest"]["sha256"].as_str())
        .collect();
    if digests.iter().any(|d| d.eq_ignore_ascii_case(&wanted)) {
        Ok(predicate_type.to_owned())
    } else {
        Err(Refusal::SubjectMismatch {
            signed: digests
                .first()
                .map_or_else(|| "no sha256 subject".to_owned(), |d| format!("sha256:{d}")),
            subject: subject.to_string(),
        })
    }
}
