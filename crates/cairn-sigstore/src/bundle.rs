//! Sigstore bundles v0.1, v0.2 and v0.3 (protobuf-specs `Bundle`, JSON
//! form), as cosign 3 attaches them through the referrers API.
//!
//! SPEC: sigstore/protobuf-specs `sigstore_bundle.proto` and sigstore-go
//! `pkg/bundle` —
//! * media types `application/vnd.dev.sigstore.bundle+json;version=0.1`,
//!   `…;version=0.2`, `…;version=0.3` and
//!   `application/vnd.dev.sigstore.bundle.v0.3+json`;
//! * `verificationMaterial`: `x509CertificateChain.certificates[0]` (the
//!   leaf; v0.1/v0.2), `certificate` (v0.3) or `publicKey.hint`, and
//!   `tlogEntries[]` with `logIndex`, `logId.keyId`, `integratedTime`,
//!   `inclusionPromise.signedEntryTimestamp`, `inclusionProof { logIndex,
//!   rootHash, treeSize, hashes[], checkpoint.envelope }` and
//!   `canonicalizedBody` (int64 as strings, bytes as base64);
//! * v0.1 entries need an inclusion promise, v0.2 and later an inclusion
//!   proof;
//! * proto3 JSON omits fields holding their default: an absent `logIndex`
//!   is 0, absent `hashes` an empty list (sigstore-js writes the first
//!   entry of a log so);
//! * content: `messageSignature { messageDigest { algorithm, digest },
//!   signature }` or `dsseEnvelope`.
//!
//! A message signature binds the subject by its digest, which must equal
//! the subject's; the signature is checked over that digest (ECDSA P-256,
//! the key type cosign and Fulcio use; other key types are refused as
//! unsupported since only the digest is known). A DSSE envelope binds it
//! by its in-toto statement.

use serde_json::Value;

use crate::certificate::Leaf;
use crate::dsse::{Envelope, verify_envelope};
use crate::error::Refusal;
use crate::rekor::{InclusionProof, LogEntry, decode, int_field, str_field};
use crate::signer::{Claim, Signed, authenticate};
use crate::verdict::Verdict;
use crate::{Sha256Digest, Verifier};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    V01,
    V02,
    V03,
}

fn version(media_type: &str) -> Result<Version, Refusal> {
    match media_type {
        "application/vnd.dev.sigstore.bundle+json;version=0.1" => Ok(Version::V01),
        "application/vnd.dev.sigstore.bundle+json;version=0.2" => Ok(Version::V02),
        "application/vnd.dev.sigstore.bundle+json;version=0.3"
        | "application/vnd.dev.sigstore.bundle.v0.3+json" => Ok(Version::V03),
        other => Err(Refusal::Malformed(format!(
            "unsupported bundle media type `{other}`"
        ))),
    }
}

/// Verifies a Sigstore bundle as a signature or attestation of `subject`.
pub fn verify_bundle(
    verifier: &Verifier<'_>,
    subject: &Sha256Digest,
    bundle: &[u8],
) -> Result<Verdict, Refusal> {
    let bundle: Value = serde_json::from_slice(bundle)
        .map_err(|e| Refusal::Malformed(format!("bundle JSON: {e}")))?;
    let version = version(str_field(&bundle, "mediaType")?)?;
    let material = &bundle["verificationMaterial"];
    if !material.is_object() {
        return Err(Refusal::Malformed("no verificationMaterial".into()));
    }
    let certificate = certificate(material, version)?;
    let entries = tlog_entries(material, version)?;
    let timestamps = rfc3161_timestamps(material)?;

    match (bundle.get("messageSignature"), bundle.get("dsseEnvelope")) {
        (Some(message), None) => verify_message(
            verifier,
            subject,
            message,
            certificate.as_ref(),
            &entries,
            &timestamps,
        ),
        (None, Some(envelope)) => verify_envelope(
            verifier,
            subject,
            &Envelope::from_value(envelope)?,
            certificate.as_ref(),
            &entries,
            &timestamps,
        ),
        _ => Err(Refusal::Malformed(
            "a bundle holds exactly one of messageSignature and dsseEnvelope".into(),
        )),
    }
}

fn verify_message(
    verifier: &Verifier<'_>,
    subject: &Sha256Digest,
    message: &Value,
    certificate: Option<&Leaf>,
    entries: &[LogEntry],
    timestamps: &[Vec<u8>],
) -> Result<Verdict, Refusal> {
    let digest = &message["messageDigest"];
    if digest["algorithm"] != "SHA2_256" {
        return Err(Refusal::Unsupported(format!(
            "message digest algorithm {}",
            digest["algorithm"]
        )));
    }
    let signed = decode(str_field(digest, "digest")?, "messageDigest.digest")?;
    let signed = <[u8; 32]>::try_from(signed)
        .map_err(|_| Refusal::Malformed("the message digest is not 32 bytes".into()))?;
    if signed != subject.0 {
        return Err(Refusal::SubjectMismatch {
            signed: Sha256Digest(signed).to_string(),
            subject: subject.to_string(),
        });
    }
    let signature = decode(
        str_field(message, "signature")?,
        "messageSignature.signature",
    )?;
    let claim = Claim {
        signed: Signed::Prehashed(&signed),
        signature: &signature,
        certificate,
        log_entries: entries,
        timestamps,
        log_hash: signed,
        dsse: false,
    };
    Ok(authenticate(verifier, &claim)?.verdict(subject.to_string(), None))
}

/// The DER RFC 3161 timestamps of
/// `timestampVerificationData.rfc3161Timestamps[].signedTimestamp`.
fn rfc3161_timestamps(material: &Value) -> Result<Vec<Vec<u8>>, Refusal> {
    let Some(timestamps) = material
        .get("timestampVerificationData")
        .and_then(|data| data.get("rfc3161Timestamps"))
    else {
        return Ok(Vec::new());
    };
    timestamps
        .as_array()
        .ok_or_else(|| Refusal::Malformed("rfc3161Timestamps is not a list".into()))?
        .iter()
        .map(|t| {
            decode(
                str_field(t, "signedTimestamp")?,
                "rfc3161Timestamps.signedTimestamp",
            )
        })
        .collect()
}

/// The leaf certificate, if the bundle is keyless.
fn certificate(material: &Value, version: Version) -> Result<Option<Leaf>, Refusal> {
    let raw = |value: &Value, what: &str| -> Result<Leaf, Refusal> {
        Leaf::from_der(&decode(str_field(value, "rawBytes")?, what)?)
    };
    if let Some(leaf) = material.get("certificate") {
        if version < Version::V03 {
            return Err(Refusal::Malformed(
                "`certificate` needs a bundle of version 0.3".into(),
            ));
        }
        return raw(leaf, "certificate.rawBytes").map(Some);
    }
    if let Some(chain) = material.get("x509CertificateChain") {
        if version >= Version::V03 {
            return Err(Refusal::Malformed(
                "a version 0.3 bundle carries `certificate`, not `x509CertificateChain`".into(),
            ));
        }
        let leaf = chain["certificates"]
            .as_array()
            .and_then(|c| c.first())
            .ok_or_else(|| Refusal::Malformed("an empty x509CertificateChain".into()))?;
        return raw(leaf, "x509CertificateChain.certificates[0].rawBytes").map(Some);
    }
    if material.get("publicKey").is_some() {
        return Ok(None);
    }
    Err(Refusal::Malformed(
        "the verification material has no certificate and no public key".into(),
    ))
}

fn tlog_entries(material: &Value, version: Version) -> Result<Vec<LogEntry>, Refusal> {
    let Some(entries) = material.get("tlogEntries") else {
        return Ok(Vec::new());
    };
    let entries = entries
        .as_array()
        .ok_or_else(|| Refusal::Malformed("tlogEntries is not a list".into()))?;
    entries
        .iter()
        .map(|entry| {
            let parsed = tlog_entry(entry)?;
            if version == Version::V01 && parsed.signed_entry_timestamp.is_none() {
                return Err(Refusal::Malformed(
                    "a version 0.1 bundle entry needs an inclusion promise".into(),
                ));
            }
            if version >= Version::V02 && parsed.inclusion_proof.is_none() {
                return Err(Refusal::Malformed(
                    "a bundle entry of version 0.2 or later needs an inclusion proof".into(),
                ));
            }
            Ok(parsed)
        })
        .collect()
}

fn tlog_entry(entry: &Value) -> Result<LogEntry, Refusal> {
    let non_negative = |value: i64, what: &str| {
        u64::try_from(value).map_err(|_| Refusal::Malformed(format!("negative {what}")))
    };
    let signed_entry_timestamp = entry
        .get("inclusionPromise")
        .map(|p| {
            decode(
                str_field(p, "signedEntryTimestamp")?,
                "inclusionPromise.signedEntryTimestamp",
            )
        })
        .transpose()?;
    let inclusion_proof = entry
        .get("inclusionProof")
        .map(|proof| -> Result<InclusionProof, Refusal> {
            let hash = |text: &str, what: &str| -> Result<[u8; 32], Refusal> {
                <[u8; 32]>::try_from(decode(text, what)?)
                    .map_err(|_| Refusal::Malformed(format!("{what} is not 32 bytes")))
            };
            let hashes = proof["hashes"]
                .as_array()
                .map(|hashes| {
                    hashes
                        .iter()
                        .map(|h| hash(h.as_str().unwrap_or_default(), "inclusionProof.hashes"))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            Ok(InclusionProof {
                log_index: non_negative(int64_field(proof, "logIndex")?, "proof logIndex")?,
                tree_size: non_negative(int_field(proof, "treeSize")?, "treeSize")?,
                root_hash: hash(str_field(proof, "rootHash")?, "inclusionProof.rootHash")?,
                hashes,
                checkpoint: str_field(&proof["checkpoint"], "envelope")?.to_owned(),
            })
        })
        .transpose()?;
    Ok(LogEntry {
        body: decode(str_field(entry, "canonicalizedBody")?, "canonicalizedBody")?,
        integrated_time: int_field(entry, "integratedTime").ok(),
        log_index: non_negative(int64_field(entry, "logIndex")?, "logIndex")?,
        log_id: decode(str_field(&entry["logId"], "keyId")?, "logId.keyId")?,
        signed_entry_timestamp,
        inclusion_proof,
    })
}

/// A protobuf `int64` field in its JSON form: proto3 JSON leaves out fields
/// holding their default, so an absent field is 0 (the first entry of a
/// log, or of a shard, has index 0 and is written without one).
fn int64_field(value: &Value, name: &str) -> Result<i64, Refusal> {
    if value.get(name).is_none_or(Value::is_null) {
        return Ok(0);
    }
    int_field(value, name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    #[test]
    fn an_absent_int64_is_zero_and_a_malformed_one_is_refused() {
        let proof = json!({ "treeSize": "1" });
        assert_eq!(int64_field(&proof, "logIndex").unwrap(), 0);
        assert_eq!(
            int64_field(&json!({ "logIndex": null }), "logIndex").unwrap(),
            0
        );
        assert_eq!(
            int64_field(&json!({ "logIndex": "7" }), "logIndex").unwrap(),
            7
        );
        assert_eq!(
            int64_field(&json!({ "logIndex": 7 }), "logIndex").unwrap(),
            7
        );
        for bad in [json!("seven"), json!([]), json!("1.5")] {
            assert!(matches!(
                int64_field(&json!({ "logIndex": bad }), "logIndex"),
                Err(Refusal::Malformed(_))
            ));
        }
    }
}
