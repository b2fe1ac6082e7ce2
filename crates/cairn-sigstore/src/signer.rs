//! Who made a signature: the step shared by every layout, once the signed
//! bytes are known to name the subject.
//!
//! * **Keyed** (no certificate): some key listed in the policy must verify
//!   the signature. Transparency-log entries, when present, must verify
//!   too and record this signature by this key (never ignored: a tampered
//!   entry refuses the signature).
//! * **Keyless** (a certificate): the certificate's key must verify the
//!   signature; every log entry must record exactly this signature, content
//!   and certificate. The signing time comes from a verified source: the
//!   earliest integrated time a verified SET vouches for, and the `genTime`
//!   of each RFC 3161 timestamp of a trusted authority
//!   ([`crate::timestamp`]). There must be at least one, and the
//!   certificate is checked (chain, validity, code signing, identity) at
//!   each.
//!
//! Either way every RFC 3161 timestamp the signature carries must verify:
//! one that does not refuses the signature rather than being ignored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Verifier;
use crate::certificate::Leaf;
use crate::error::Refusal;
use crate::rekor::{Expected, LogEntry};
use crate::verdict::{LogProof, Signer, TimestampProof, Verdict};

/// The keyless material cosign attaches to a signature layer as
/// annotations.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerMaterial<'a> {
    /// `dev.sigstore.cosign/certificate`: the PEM leaf.
    pub certificate: Option<&'a str>,
    /// `dev.sigstore.cosign/chain`: PEM intermediates and root. Informative
    /// only: trust comes from the trusted root.
    pub chain: Option<&'a str>,
    /// `dev.sigstore.cosign/bundle`: the Rekor entry with its SET.
    pub bundle: Option<&'a str>,
}

impl<'a> LayerMaterial<'a> {
    /// Reads the annotations through `get` (annotation name → value).
    pub fn from_annotations(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self {
            certificate: get("dev.sigstore.cosign/certificate"),
            chain: get("dev.sigstore.cosign/chain"),
            bundle: get("dev.sigstore.cosign/bundle"),
        }
    }
}

/// A cosign simplesigning layer: the payload blob and its annotations.
#[derive(Debug, Clone, Copy)]
pub struct SignatureLayer<'a> {
    /// The layer's blob (`application/vnd.dev.cosign.simplesigning.v1+json`).
    pub payload: &'a [u8],
    /// `dev.cosignproject.cosign/signature`: base64 of the signature.
    pub signature: &'a str,
    /// The keyless annotations.
    pub material: LayerMaterial<'a>,
}

impl<'a> SignatureLayer<'a> {
    /// Reads a layer from its blob and annotations; the signature
    /// annotation is required.
    pub fn from_annotations(
        payload: &'a [u8],
        get: impl Fn(&str) -> Option<&'a str> + Copy,
    ) -> Result<Self, Refusal> {
        Ok(Self {
            payload,
            signature: get("dev.cosignproject.cosign/signature").ok_or_else(|| {
                Refusal::Malformed("no dev.cosignproject.cosign/signature annotation".into())
            })?,
            material: LayerMaterial::from_annotations(get),
        })
    }
}

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Signed<'a> {
    /// The signature is over these bytes.
    Message(&'a [u8]),
    /// The signature is over an artifact of which only the SHA-256 is
    /// known.
    Prehashed(&'a [u8; 32]),
}

/// One signature with what it claims.
pub(crate) struct Claim<'a> {
    pub(crate) signed: Signed<'a>,
    pub(crate) signature: &'a [u8],
    pub(crate) certificate: Option<&'a Leaf>,
    pub(crate) log_entries: &'a [LogEntry],
    /// DER RFC 3161 timestamps over `signature` (a bundle's
    /// `rfc3161Timestamps`).
    pub(crate) timestamps: &'a [Vec<u8>],
    /// The hash the log body records (artifact or DSSE payload).
    pub(crate) log_hash: [u8; 32],
    pub(crate) dsse: bool,
}

/// Decodes the keyless material of a cosign layer.
pub(crate) fn layer_material(
    material: &LayerMaterial<'_>,
) -> Result<(Option<Leaf>, Vec<LogEntry>), Refusal> {
    let certificate = material.certificate.map(Leaf::from_pem).transpose()?;
    let entries = material
        .bundle
        .map(LogEntry::from_cosign_bundle)
        .transpose()?
        .into_iter()
        .collect();
    Ok((certificate, entries))
}

/// Decodes a base64 signature.
pub(crate) fn decode_signature(text: &str) -> Result<Vec<u8>, Refusal> {
    STANDARD
        .decode(text.trim())
        .map_err(|_| Refusal::Malformed("the signature is not base64".into()))
}

/// Who signed a claim, and the evidence of when.
pub(crate) struct Authenticated {
    signer: Signer,
    log: Option<LogProof>,
    timestamp: Option<TimestampProof>,
}

impl Authenticated {
    /// The verdict for this signer over `payload_digest`.
    pub(crate) fn verdict(self, payload_digest: String, predicate_type: Option<String>) -> Verdict {
        Verdict {
            signer: self.signer,
            log: self.log,
            timestamp: self.timestamp,
            payload_digest,
            predicate_type,
        }
    }
}

/// Establishes the signer of `claim` (see the module documentation).
pub(crate) fn authenticate(
    verifier: &Verifier<'_>,
    claim: &Claim<'_>,
) -> Result<Authenticated, Refusal> {
    match claim.certificate {
        None => keyed(verifier, claim),
        Some(leaf) => keyless(verifier, claim, leaf),
    }
}

fn keyed(verifier: &Verifier<'_>, claim: &Claim<'_>) -> Result<Authenticated, Refusal> {
    let key = verifier
        .policy
        .keys
        .iter()
        .find(|key| verify(key, claim.signed, claim.signature).is_ok())
        .ok_or(Refusal::KeyNotListed)?;
    let mut log = None;
    for entry in claim.log_entries {
        entry.check_body(&expected(claim, key.spki_der()))?;
        log = Some(entry.verify(verifier.root, verifier.now)?);
    }
    let timestamps = timestamps(verifier, claim)?;
    Ok(Authenticated {
        signer: Signer::Key {
            fingerprint: key.fingerprint(),
        },
        log,
        timestamp: timestamps.into_iter().next(),
    })
}

fn keyless(
    verifier: &Verifier<'_>,
    claim: &Claim<'_>,
    leaf: &Leaf,
) -> Result<Authenticated, Refusal> {
    verify(&leaf.key, claim.signed, claim.signature)?;
    if claim.log_entries.is_empty() && claim.timestamps.is_empty() {
        return Err(Refusal::NoTrustedSigningTime(
            "a certificate signature needs a Rekor entry with a signed entry timestamp \
             or an RFC 3161 timestamp of a trusted timestamp authority"
                .into(),
        ));
    }
    // The earliest integrated time a verified SET vouches for is the
    // strongest proof the log gives of when the signature existed; an entry
    // with an inclusion proof only (Rekor v2) proves no time.
    let mut proven: Option<LogProof> = None;
    for entry in claim.log_entries {
        entry.check_body(&expected(claim, leaf.der()))?;
        let proof = entry.verify(verifier.root, verifier.now)?;
        let earlier = match (&proven, proof.integrated_time) {
            (None, _) => true,
            (Some(p), Some(time)) => p.integrated_time.is_none_or(|t| time < t),
            (Some(_), None) => false,
        };
        if earlier {
            proven = Some(proof);
        }
    }
    let timestamps = timestamps(verifier, claim)?;
    let times: Vec<i64> = proven
        .as_ref()
        .and_then(|p| p.integrated_time)
        .into_iter()
        .chain(timestamps.iter().map(|t| t.gen_time))
        .collect();
    let Some((&first, rest)) = times.split_first() else {
        return Err(Refusal::NoTrustedSigningTime(
            "no log entry has a signed entry timestamp, and no RFC 3161 timestamp \
             was given"
                .into(),
        ));
    };
    let signer = leaf.verify_at(verifier.root, verifier.policy, first)?;
    for &time in rest {
        leaf.verify_at(verifier.root, verifier.policy, time)?;
    }
    Ok(Authenticated {
        signer,
        log: proven,
        timestamp: timestamps.into_iter().next(),
    })
}

/// Verifies every timestamp of the claim over its signature; answers them
/// earliest first.
fn timestamps(verifier: &Verifier<'_>, claim: &Claim<'_>) -> Result<Vec<TimestampProof>, Refusal> {
    let mut proofs = claim
        .timestamps
        .iter()
        .map(|token| crate::timestamp::verify(verifier.root, verifier.now, token, claim.signature))
        .collect::<Result<Vec<_>, _>>()?;
    proofs.sort_by_key(|p| p.gen_time);
    Ok(proofs)
}

fn expected<'a>(claim: &'a Claim<'a>, verifier: &'a [u8]) -> Expected<'a> {
    Expected {
        hash: claim.log_hash,
        signature: claim.signature,
        verifier,
        dsse: claim.dsse,
    }
}

fn verify(key: &crate::PublicKey, signed: Signed<'_>, signature: &[u8]) -> Result<(), Refusal> {
    match signed {
        Signed::Message(message) => key.verify(message, signature),
        Signed::Prehashed(digest) => key.verify_prehashed_sha256(digest, signature),
    }
}
