//! Rekor (v1) transparency-log evidence: the signed entry timestamp (SET),
//! the inclusion proof with its signed checkpoint, and the binding of the
//! entry's body to the signature being verified.
//!
//! SPEC: sigstore/rekor `pkg/api` and sigstore-go `pkg/tlog` — the SET is
//! an ECDSA signature by the log key over the RFC 8785 canonical JSON of
//! `{"body":<base64 body>,"integratedTime":<int>,"logID":<hex>,"logIndex":<int>}`
//! (keys sorted, no spaces). The inclusion proof is RFC 6962's over the leaf
//! `SHA-256(0x00 ‖ body)`; the checkpoint is a signed note whose body is
//! `origin\nsize\nbase64(root)\n[extra lines]` and whose signature lines
//! are `— <name> base64(keyhint[4] ‖ DER signature)` with keyhint the
//! first four bytes of SHA-256 of the log's DER key.
//!
//! Only a verified SET vouches for `integratedTime`: an inclusion proof
//! proves the body is in the log, not when it got there.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::error::Refusal;
use crate::trust_root::TrustedRoot;
use crate::verdict::LogProof;

/// A log entry as a signature carries it.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    /// The canonicalized entry body (JSON bytes).
    pub(crate) body: Vec<u8>,
    pub(crate) integrated_time: Option<i64>,
    pub(crate) log_index: u64,
    pub(crate) log_id: Vec<u8>,
    pub(crate) signed_entry_timestamp: Option<Vec<u8>>,
    pub(crate) inclusion_proof: Option<InclusionProof>,
}

/// An RFC 6962 inclusion proof with the checkpoint it leads to.
#[derive(Debug, Clone)]
pub(crate) struct InclusionProof {
    pub(crate) log_index: u64,
    pub(crate) tree_size: u64,
    pub(crate) root_hash: [u8; 32],
    pub(crate) hashes: Vec<[u8; 32]>,
    pub(crate) checkpoint: String,
}

/// What the entry's body must say.
pub(crate) struct Expected<'a> {
    /// SHA-256 of the signed artifact (hashedrekord) or DSSE payload.
    pub(crate) hash: [u8; 32],
    /// The raw signature bytes.
    pub(crate) signature: &'a [u8],
    /// DER of the certificate or public key that verifies it.
    pub(crate) verifier: &'a [u8],
    /// Whether the signature is a DSSE envelope's (`dsse`/`intoto` kinds)
    /// rather than a plain one (`hashedrekord`).
    pub(crate) dsse: bool,
}

impl LogEntry {
    /// Parses cosign's `dev.sigstore.cosign/bundle` annotation:
    /// `{"SignedEntryTimestamp":…,"Payload":{"body","integratedTime","logIndex","logID"}}`.
    pub(crate) fn from_cosign_bundle(json: &str) -> Result<Self, Refusal> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| Refusal::Malformed(format!("cosign bundle annotation: {e}")))?;
        let payload = &value["Payload"];
        Ok(Self {
            body: decode(str_field(payload, "body")?, "Payload.body")?,
            integrated_time: Some(int_field(payload, "integratedTime")?),
            log_index: u64::try_from(int_field(payload, "logIndex")?)
                .map_err(|_| Refusal::Malformed("negative logIndex".into()))?,
            log_id: hex::decode(str_field(payload, "logID")?)
                .map_err(|_| Refusal::Malformed("Payload.logID is not hex".into()))?,
            signed_entry_timestamp: Some(decode(
                str_field(&value, "SignedEntryTimestamp")?,
                "SignedEntryTimestamp",
            )?),
            inclusion_proof: None,
        })
    }

    /// Verifies the entry's proofs against the trusted Rekor keys and
    /// answers what they established. `now` bounds the integrated time.
    pub(crate) fn verify(&self, root: &TrustedRoot, now: i64) -> Result<LogProof, Refusal> {
        let log_hex = hex::encode(&self.log_id);
        let mut proof = LogProof {
            log_id: log_hex.clone(),
            log_index: self.log_index,
            integrated_time: None,
            signed_entry_timestamp: false,
            inclusion_proof: false,
        };
        if let Some(set) = &self.signed_entry_timestamp {
            let time = self.integrated_time.ok_or_else(|| {
                Refusal::UntrustedLogProof("a signed entry timestamp without integratedTime".into())
            })?;
            if time > now {
                return Err(Refusal::UntrustedLogProof(format!(
                    "integrated time {time} is in the future"
                )));
            }
            let payload = format!(
                r#"{{"body":"{}","integratedTime":{time},"logID":"{log_hex}","logIndex":{}}}"#,
                STANDARD.encode(&self.body),
                self.log_index
            );
            let mut keys = root.rekor_keys_at(&self.log_id, time).peekable();
            if keys.peek().is_none() {
                return Err(Refusal::UntrustedLogProof(format!(
                    "no trusted Rekor key for log {log_hex} valid at {time}"
                )));
            }
            if !keys.any(|log| log.key.verify(payload.as_bytes(), set).is_ok()) {
                return Err(Refusal::UntrustedLogProof(
                    "the signed entry timestamp does not verify".into(),
                ));
            }
            proof.integrated_time = Some(time);
            proof.signed_entry_timestamp = true;
        }
        if let Some(inclusion) = &self.inclusion_proof {
            let key_time = proof.integrated_time.unwrap_or(now);
            self.verify_inclusion(root, inclusion, key_time)?;
            proof.inclusion_proof = true;
        }
        if !proof.signed_entry_timestamp && !proof.inclusion_proof {
            return Err(Refusal::UntrustedLogProof(
                "the entry has neither a signed entry timestamp nor an inclusion proof".into(),
            ));
        }
        Ok(proof)
    }

    fn verify_inclusion(
        &self,
        root: &TrustedRoot,
        proof: &InclusionProof,
        key_time: i64,
    ) -> Result<(), Refusal> {
        let bad = |why: String| Refusal::UntrustedLogProof(why);
        let checkpoint = Checkpoint::parse(&proof.checkpoint).map_err(bad)?;
        let signed = root.rekor_keys_at(&self.log_id, key_time).any(|log| {
            let hint = log.key_hint();
            checkpoint.signatures.iter().any(|(key_hint, signature)| {
                *key_hint == hint && log.key.verify(checkpoint.signed, signature).is_ok()
            })
        });
        if !signed {
            return Err(bad(
                "the checkpoint is not signed by a trusted Rekor key of the entry's log".into(),
            ));
        }
        if checkpoint.tree_size != proof.tree_size || checkpoint.root_hash != proof.root_hash {
            return Err(bad(
                "the inclusion proof's root is not the checkpoint's".into()
            ));
        }
        let leaf = cairn_log::hash::leaf_hash(&self.body);
        let hashes: Vec<cairn_log::Hash> =
            proof.hashes.iter().map(|h| cairn_log::Hash(*h)).collect();
        cairn_log::proof::verify_inclusion(
            proof.log_index,
            proof.tree_size,
            &leaf,
            &hashes,
            &cairn_log::Hash(proof.root_hash),
        )
        .map_err(|e| bad(format!("the inclusion proof does not verify: {e}")))
    }

    /// Checks that the entry's body records this signature over this
    /// content with this verifier.
    pub(crate) fn check_body(&self, expected: &Expected<'_>) -> Result<(), Refusal> {
        let mismatch = |why: &str| Refusal::LogEntryMismatch(why.to_owned());
        let body: Value = serde_json::from_slice(&self.body)
            .map_err(|e| Refusal::Malformed(format!("log entry body: {e}")))?;
        let kind = body["kind"].as_str().unwrap_or_default();
        let version = body["apiVersion"].as_str().unwrap_or_default();
        let spec = &body["spec"];
        let hash_hex = hex::encode(expected.hash);
        let hash_matches =
            |h: &Value| h["algorithm"] == "sha256" && h["value"].as_str() == Some(&hash_hex);
        match (kind, version, expected.dsse) {
            ("hashedrekord", "0.0.1", false) => {
                if !hash_matches(&spec["data"]["hash"]) {
                    return Err(mismatch("the entry records other content"));
                }
                let signature = &spec["signature"];
                if decode_value(&signature["content"]).as_deref() != Some(expected.signature) {
                    return Err(mismatch("the entry records another signature"));
                }
                if pem_value(&signature["publicKey"]["content"]).as_deref()
                    != Some(expected.verifier)
                {
                    return Err(mismatch("the entry records another certificate or key"));
                }
                Ok(())
            }
            ("dsse", "0.0.1", true) => {
                if !hash_matches(&spec["payloadHash"]) {
                    return Err(mismatch("the entry records another payload"));
                }
                let found = spec["signatures"].as_array().is_some_and(|signatures| {
                    signatures.iter().any(|s| {
                        decode_value(&s["signature"]).as_deref() == Some(expected.signature)
                            && pem_value(&s["verifier"]).as_deref() == Some(expected.verifier)
                    })
                });
                found
                    .then_some(())
                    .ok_or_else(|| mismatch("the entry records another signature or verifier"))
            }
            ("intoto", "0.0.2", true) => {
                let content = &spec["content"];
                if !hash_matches(&content["payloadHash"]) {
                    return Err(mismatch("the entry records another payload"));
                }
                let found =
                    content["envelope"]["signatures"]
                        .as_array()
                        .is_some_and(|signatures| {
                            signatures.iter().any(|s| {
                                // Rekor stores the envelope's base64 `sig` base64-encoded again.
                                let sig = decode_value(&s["sig"])
                                    .and_then(|once| STANDARD.decode(once).ok());
                                sig.as_deref() == Some(expected.signature)
                                    && pem_value(&s["publicKey"]).as_deref()
                                        == Some(expected.verifier)
                            })
                        });
                found
                    .then_some(())
                    .ok_or_else(|| mismatch("the entry records another signature or verifier"))
            }
            _ => Err(mismatch(&format!(
                "a `{kind}` {version} entry cannot record this signature"
            ))),
        }
    }
}

/// A parsed checkpoint (signed note).
struct Checkpoint<'a> {
    signed: &'a [u8],
    tree_size: u64,
    root_hash: [u8; 32],
    signatures: Vec<([u8; 4], Vec<u8>)>,
}

impl<'a> Checkpoint<'a> {
    fn parse(note: &'a str) -> Result<Self, String> {
        let split = note
            .find("\n\n")
            .ok_or("the checkpoint has no signature block")?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        let mut lines = text.lines();
        let _origin = lines.next().filter(|o| !o.is_empty()).ok_or("no origin")?;
        let tree_size = lines
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or("bad tree size in the checkpoint")?;
        let root_hash = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .ok_or("bad root hash in the checkpoint")?;
        let signatures = signatures
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("\u{2014} ")?;
                let (_name, signature) = rest.rsplit_once(' ')?;
                let bytes = STANDARD.decode(signature).ok()?;
                let hint = <[u8; 4]>::try_from(bytes.get(..4)?).ok()?;
                Some((hint, bytes[4..].to_vec()))
            })
            .collect();
        Ok(Self {
            signed: text.as_bytes(),
            tree_size,
            root_hash,
            signatures,
        })
    }
}

pub(crate) fn decode(text: &str, what: &str) -> Result<Vec<u8>, Refusal> {
    STANDARD
        .decode(text)
        .map_err(|_| Refusal::Malformed(format!("{what} is not base64")))
}

fn decode_value(value: &Value) -> Option<Vec<u8>> {
    STANDARD.decode(value.as_str()?).ok()
}

/// The DER inside a base64 PEM field of an entry body.
fn pem_value(value: &Value) -> Option<Vec<u8>> {
    pem_der(&decode_value(value)?)
}

/// The DER of the first PEM block of `pem`, read as Rekor reads it (Go's
/// `encoding/pem`): base64 lines of any length. Rekor logs the PEM a
/// client sent as it was sent, and clients send what their Fulcio
/// returned, which need not be wrapped at RFC 7468's 64 columns.
fn pem_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body = rest[label_end + "-----".len()..].strip_prefix(['\r', '\n'])?;
    let end = body.find(&format!("-----END {label}-----"))?;
    let base64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(base64).ok()
}

pub(crate) fn str_field<'v>(value: &'v Value, name: &str) -> Result<&'v str, Refusal> {
    value[name]
        .as_str()
        .ok_or_else(|| Refusal::Malformed(format!("missing string `{name}`")))
}

/// An integer field, as a JSON number or (protobuf JSON int64) a string.
pub(crate) fn int_field(value: &Value, name: &str) -> Result<i64, Refusal> {
    let field = &value[name];
    field
        .as_i64()
        .or_else(|| field.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| Refusal::Malformed(format!("missing integer `{name}`")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn pem_is_read_with_lines_of_any_length() {
        let der: Vec<u8> = (0..=255).collect();
        let body = STANDARD.encode(&der);
        let wrapped: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let wrapped = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            wrapped.join("\n")
        );
        let one_line = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
        let crlf = one_line.replace('\n', "\r\n");
        for pem in [&wrapped, &one_line, &crlf] {
            assert_eq!(
                pem_der(pem.as_bytes()).as_deref(),
                Some(der.as_slice()),
                "{pem}"
            );
        }
        assert_eq!(
            x509_cert::der::pem::decode_vec(wrapped.as_bytes())
                .unwrap()
                .1,
            der,
            "as strict RFC 7468 reads it"
        );
        for bad in [
            format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END PUBLIC KEY-----\n"),
            format!("-----BEGIN CERTIFICATE-----\n{body}!\n-----END CERTIFICATE-----\n"),
            format!("-----BEGIN CERTIFICATE-----{body}\n-----END CERTIFICATE-----\n"),
            body.clone(),
        ] {
            assert_eq!(pem_der(bad.as_bytes()), None, "{bad}");
        }
    }
}
