//! RFC 3161 timestamps in Sigstore bundles: a test timestamp authority
//! signs real `TimeStampResp`s (CMS SignedData over a TSTInfo); a bundle
//! timestamped by a trusted TSA needs no Rekor entry, and every way a
//! timestamp can fail to prove the signing time is refused, never ignored.

use cairn_sigstore::{Refusal, Sha256Digest, TimestampProof, TrustedRoot, Verifier, verify_bundle};
use serde_json::{Value, json};
use x509_cert::der::Encode as _;

use crate::support::*;
use crate::workflow_policy;

const V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";

/// A Fulcio, a Rekor and a TSA, with a root trusting the TSA for
/// `valid_for`.
struct Timestamped {
    fulcio: Fulcio,
    rekor: Rekor,
    tsa: Tsa,
    root: TrustedRoot,
}

impl Timestamped {
    fn new() -> Self {
        Self::valid_for(json!({ "start": "2025-01-01T00:00:00Z" }))
    }

    fn valid_for(valid_for: Value) -> Self {
        let fulcio = Fulcio::new("fulcio");
        let rekor = Rekor::new();
        let tsa = Tsa::new("tsa");
        let root = TrustedRoot::from_json(&trusted_root_with_tsa(&fulcio, &rekor, &tsa, valid_for))
            .unwrap();
        Self {
            fulcio,
            rekor,
            tsa,
            root,
        }
    }

    fn verify(&self, subject: &[u8], bundle: &Value) -> Result<cairn_sigstore::Verdict, Refusal> {
        let policy = workflow_policy();
        verify_bundle(
            &Verifier {
                root: &self.root,
                policy: &policy,
                now: NOW,
            },
            &Sha256Digest::of(subject),
            &serde_json::to_vec(bundle).unwrap(),
        )
    }
}

fn manifest() -> Vec<u8> {
    br#"{"schemaVersion":2,"name":"app"}"#.to_vec()
}

/// A keyless cosign 3 DSSE bundle of `subject` with no log entry;
/// `timestamp` makes its timestamps from the envelope's signature.
fn dsse_bundle(
    world: &Timestamped,
    spec: LeafSpec,
    subject: &[u8],
    timestamp: impl Fn(&[u8]) -> Vec<Vec<u8>>,
) -> Value {
    let leaf = world.fulcio.issue(spec);
    let statement = statement(&digest_of(subject), COSIGN_SIGN);
    let (envelope, signature) = envelope(&statement, |m| leaf.sign(m));
    json!({
        "mediaType": V03,
        "verificationMaterial": {
            "certificate": { "rawBytes": b64(&leaf.der) },
            "timestampVerificationData": timestamp_data(&timestamp(&signature)),
        },
        "dsseEnvelope": envelope,
    })
}

fn refused(world: &Timestamped, bundle: &Value) -> Refusal {
    world.verify(&manifest(), bundle).unwrap_err()
}

fn untrusted_timestamp(refusal: &Refusal, reason: &str) -> bool {
    matches!(refusal, Refusal::UntrustedTimestamp(why) if why.contains(reason))
}

#[test]
fn a_timestamped_keyless_bundle_verifies_without_a_log_entry() {
    let world = Timestamped::new();
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |s| {
        vec![world.tsa.timestamp(s, T0 + 30)]
    });
    let verdict = world.verify(&manifest(), &bundle).unwrap();
    assert_eq!(verdict.log, None);
    assert_eq!(
        verdict.timestamp,
        Some(TimestampProof {
            authority: world.tsa.uri.clone(),
            gen_time: T0 + 30,
        })
    );
    assert_eq!(verdict.predicate_type.as_deref(), Some(COSIGN_SIGN));

    // A bare TimeStampToken (no TimeStampResp around it) is accepted too,
    // and with several timestamps the earliest is recorded.
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |s| {
        vec![
            world.tsa.token(s, T0 + 200).to_der().unwrap(),
            world.tsa.timestamp(s, T0 + 10),
        ]
    });
    let verdict = world.verify(&manifest(), &bundle).unwrap();
    assert_eq!(verdict.timestamp.map(|t| t.gen_time), Some(T0 + 10));
}

#[test]
fn a_timestamped_message_signature_verifies() {
    let world = Timestamped::new();
    let artifact = manifest();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let signature = leaf.sign(&artifact);
    let bundle = json!({
        "mediaType": V03,
        "verificationMaterial": {
            "certificate": { "rawBytes": b64(&leaf.der) },
            "timestampVerificationData":
                timestamp_data(&[world.tsa.timestamp(&signature, T0 + 30)]),
        },
        "messageSignature": {
            "messageDigest": { "algorithm": "SHA2_256", "digest": b64(&sha256(&artifact)) },
            "signature": b64(&signature),
        },
    });
    let verdict = world.verify(&artifact, &bundle).unwrap();
    assert_eq!(verdict.timestamp.map(|t| t.gen_time), Some(T0 + 30));
}

#[test]
fn a_timestamp_over_other_bytes_is_refused() {
    let world = Timestamped::new();
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |_| {
        vec![world.tsa.timestamp(b"another signature", T0 + 30)]
    });
    let refusal = refused(&world, &bundle);
    assert!(
        untrusted_timestamp(&refusal, "over other bytes than the signature"),
        "{refusal}"
    );
}

#[test]
fn a_timestamp_by_an_untrusted_authority_is_refused() {
    let world = Timestamped::new();
    let rogue = Tsa::new("rogue");
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |s| {
        vec![rogue.timestamp(s, T0 + 30)]
    });
    let refusal = refused(&world, &bundle);
    // Its certificate rides in the token, but the token's certificates are
    // never anchors.
    assert!(
        untrusted_timestamp(&refusal, "not a trusted timestamp authority"),
        "{refusal}"
    );
}

#[test]
fn a_timestamp_outside_the_authoritys_validity_is_refused() {
    // The TSA was retired before the signature (T0 is 2026-05-28).
    let world = Timestamped::valid_for(json!({
        "start": "2025-01-01T00:00:00Z",
        "end": "2026-01-01T00:00:00Z",
    }));
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |s| {
        vec![world.tsa.timestamp(s, T0 + 30)]
    });
    let refusal = refused(&world, &bundle);
    assert!(
        untrusted_timestamp(&refusal, "was not valid at genTime"),
        "{refusal}"
    );
}

#[test]
fn a_tampered_token_is_refused() {
    let world = Timestamped::new();
    // Backdating: the genTime digits rewritten inside the signed TSTInfo.
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |s| {
        let mut token = world.tsa.timestamp(s, T0 + 30);
        let text = b"20260528"; // T0's date in the GeneralizedTime
        let at = token.windows(text.len()).position(|w| w == text).unwrap();
        token[at + 7] = b'7';
        vec![token]
    });
    let refusal = refused(&world, &bundle);
    assert!(
        untrusted_timestamp(&refusal, "signed message digest is not the TSTInfo's"),
        "{refusal}"
    );

    // The TSA's signature itself damaged.
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |s| {
        let mut token = world.tsa.timestamp(s, T0 + 30);
        let last = token.len() - 1;
        token[last] ^= 1;
        vec![token]
    });
    let refusal = refused(&world, &bundle);
    assert!(
        untrusted_timestamp(&refusal, "the TSA's signature"),
        "{refusal}"
    );

    // Not a timestamp at all.
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |_| {
        vec![b"not DER".to_vec()]
    });
    let refusal = refused(&world, &bundle);
    assert!(
        untrusted_timestamp(&refusal, "neither a TimeStampResp nor a TimeStampToken"),
        "{refusal}"
    );
}

#[test]
fn a_certificate_expired_at_the_timestamp_is_refused() {
    let world = Timestamped::new();
    // The leaf is valid T0-60..T0+540; the TSA vouches for T0+3000.
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |s| {
        vec![world.tsa.timestamp(s, T0 + 3000)]
    });
    let refusal = refused(&world, &bundle);
    assert!(
        matches!(
            refusal,
            Refusal::CertificateNotValidAtSigningTime { signed_at, .. } if signed_at == T0 + 3000
        ),
        "{refusal}"
    );
}

#[test]
fn a_timestamp_from_the_future_is_refused() {
    let world = Timestamped::new();
    let bundle = dsse_bundle(&world, LeafSpec::workflow(), &manifest(), |s| {
        vec![world.tsa.timestamp(s, NOW + 60)]
    });
    let refusal = refused(&world, &bundle);
    assert!(untrusted_timestamp(&refusal, "in the future"), "{refusal}");
}

#[test]
fn a_bad_timestamp_beside_a_good_log_entry_is_refused() {
    let mut world = Timestamped::new();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let statement = statement(&digest_of(&manifest()), COSIGN_SIGN);
    let (envelope, signature) = envelope(&statement, |m| leaf.sign(m));
    let body = dsse_entry(
        &serde_json::to_vec(&envelope).unwrap(),
        &statement,
        &signature,
        &leaf.pem(),
    );
    let entry = world.rekor.log(body, T0 + 30);
    let mut bundle = json!({
        "mediaType": V03,
        "verificationMaterial": {
            "certificate": { "rawBytes": b64(&leaf.der) },
            "tlogEntries": [tlog_entry(&entry, "dsse", true, true)],
            "timestampVerificationData":
                timestamp_data(&[world.tsa.timestamp(&signature, T0 + 30)]),
        },
        "dsseEnvelope": envelope,
    });
    // Both time sources verify: both are recorded.
    let verdict = world.verify(&manifest(), &bundle).unwrap();
    assert_eq!(verdict.log.unwrap().integrated_time, Some(T0 + 30));
    assert_eq!(verdict.timestamp.unwrap().gen_time, T0 + 30);

    bundle["verificationMaterial"]["timestampVerificationData"] =
        timestamp_data(&[Tsa::new("rogue").timestamp(&signature, T0 + 30)]);
    let refusal = refused(&world, &bundle);
    assert!(
        matches!(refusal, Refusal::UntrustedTimestamp(_)),
        "{refusal}"
    );
}
