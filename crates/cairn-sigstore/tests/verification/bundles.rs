//! Sigstore bundles v0.1–v0.3: message signatures and DSSE envelopes,
//! SETs and inclusion proofs with signed checkpoints.

use cairn_sigstore::{Refusal, Sha256Digest, Signer, TrustPolicy, verify_bundle};
use p256::ecdsa::SigningKey;
use serde_json::{Value, json};

use crate::support::*;
use crate::{World, fingerprint, key_policy, workflow_policy};

const V01: &str = "application/vnd.dev.sigstore.bundle+json;version=0.1";
const V02: &str = "application/vnd.dev.sigstore.bundle+json;version=0.2";
const V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";

/// A manifest to sign; its digest is the subject.
fn manifest(name: &str) -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"name":"{name}"}}"#).into_bytes()
}

fn verify(
    world: &World,
    policy: &TrustPolicy,
    subject: &[u8],
    bundle: &Value,
) -> Result<cairn_sigstore::Verdict, Refusal> {
    verify_bundle(
        &world.verifier(policy),
        &Sha256Digest::of(subject),
        &serde_json::to_vec(bundle).unwrap(),
    )
}

/// A keyless message-signature bundle of `artifact` (as `cosign
/// sign-blob --bundle` and the cosign 2 OCI 1.1 mode make them).
fn message_bundle(
    world: &mut World,
    media_type: &str,
    artifact: &[u8],
    promise: bool,
    proof: bool,
) -> Value {
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let signature = leaf.sign(artifact);
    let digest = sha256(artifact);
    let entry = world
        .rekor
        .log(hashedrekord(&digest, &signature, &leaf.pem()), T0 + 30);
    let certificate = if media_type == V03 {
        json!({ "certificate": { "rawBytes": b64(&leaf.der) } })
    } else {
        json!({ "x509CertificateChain": { "certificates": [{ "rawBytes": b64(&leaf.der) }] } })
    };
    let mut material = certificate;
    material["tlogEntries"] = json!([tlog_entry(&entry, "hashedrekord", promise, proof)]);
    json!({
        "mediaType": media_type,
        "verificationMaterial": material,
        "messageSignature": {
            "messageDigest": { "algorithm": "SHA2_256", "digest": b64(&digest) },
            "signature": b64(&signature),
        },
    })
}

/// A cosign 3 bundle: a DSSE in-toto statement about `subject`, keyless,
/// logged as a `dsse` entry with SET and inclusion proof.
fn dsse_bundle(world: &mut World, subject: &[u8], predicate_type: &str, promise: bool) -> Value {
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let statement = statement(&digest_of(subject), predicate_type);
    let (envelope, signature) = envelope(&statement, |m| leaf.sign(m));
    let body = dsse_entry(
        &serde_json::to_vec(&envelope).unwrap(),
        &statement,
        &signature,
        &leaf.pem(),
    );
    let entry = world.rekor.log(body, T0 + 30);
    json!({
        "mediaType": V03,
        "verificationMaterial": {
            "certificate": { "rawBytes": b64(&leaf.der) },
            "tlogEntries": [tlog_entry(&entry, "dsse", promise, true)],
        },
        "dsseEnvelope": envelope,
    })
}

#[test]
fn message_signature_bundles_of_every_version_verify() {
    for (media_type, promise, proof) in [(V01, true, false), (V02, true, true), (V03, true, true)] {
        let mut world = World::new();
        let artifact = manifest("app");
        let bundle = message_bundle(&mut world, media_type, &artifact, promise, proof);
        let verdict = verify(&world, &workflow_policy(), &artifact, &bundle)
            .unwrap_or_else(|e| panic!("{media_type}: {e}"));
        assert!(
            matches!(verdict.signer, Signer::Certificate { .. }),
            "{media_type}"
        );
        let log = verdict.log.unwrap();
        assert_eq!(log.integrated_time, Some(T0 + 30), "{media_type}");
        assert_eq!(log.inclusion_proof, proof, "{media_type}");
        assert_eq!(verdict.payload_digest, digest_of(&artifact));
    }
}

#[test]
fn a_cosign_3_dsse_bundle_verifies_and_reports_its_predicate_type() {
    let mut world = World::new();
    let artifact = manifest("app");
    let bundle = dsse_bundle(&mut world, &artifact, COSIGN_SIGN, true);
    let verdict = verify(&world, &workflow_policy(), &artifact, &bundle).unwrap();
    assert_eq!(verdict.predicate_type.as_deref(), Some(COSIGN_SIGN));
    let log = verdict.log.unwrap();
    assert!(log.signed_entry_timestamp && log.inclusion_proof);
}

#[test]
fn a_bundle_for_another_artifact_is_refused() {
    let mut world = World::new();
    let signed = manifest("app");
    let target = manifest("malware");
    let bundle = message_bundle(&mut world, V03, &signed, true, true);
    let refusal = verify(&world, &workflow_policy(), &target, &bundle).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::SubjectMismatch {
            signed: digest_of(&signed),
            subject: digest_of(&target)
        }
    );
    let bundle = dsse_bundle(&mut world, &signed, COSIGN_SIGN, true);
    let refusal = verify(&world, &workflow_policy(), &target, &bundle).unwrap_err();
    assert!(
        matches!(refusal, Refusal::SubjectMismatch { .. }),
        "{refusal}"
    );
}

#[test]
fn tampered_bundles_are_refused() {
    let mut world = World::new();
    let artifact = manifest("app");
    let bundle = message_bundle(&mut world, V03, &artifact, true, true);
    let policy = workflow_policy();
    let entry = "/verificationMaterial/tlogEntries/0";

    // A proof hash changed.
    let mut tampered = bundle.clone();
    let hash = tampered
        .pointer_mut(&format!("{entry}/inclusionProof/hashes/0"))
        .unwrap();
    *hash = json!(b64(&[7u8; 32]));
    let refusal = verify(&world, &policy, &artifact, &tampered).unwrap_err();
    assert!(
        matches!(refusal, Refusal::UntrustedLogProof(ref why) if why.contains("inclusion proof does not verify")),
        "{refusal}"
    );

    // The checkpoint's root rewritten (its signature no longer matches).
    let mut tampered = bundle.clone();
    let checkpoint = tampered
        .pointer_mut(&format!("{entry}/inclusionProof/checkpoint/envelope"))
        .unwrap();
    let text = checkpoint.as_str().unwrap().to_owned();
    let root = text.lines().nth(2).unwrap().to_owned();
    *checkpoint = json!(text.replace(&root, &b64(&[9u8; 32])));
    *tampered
        .pointer_mut(&format!("{entry}/inclusionProof/rootHash"))
        .unwrap() = json!(b64(&[9u8; 32]));
    let refusal = verify(&world, &policy, &artifact, &tampered).unwrap_err();
    assert!(
        matches!(refusal, Refusal::UntrustedLogProof(ref why) if why.contains("checkpoint is not signed")),
        "{refusal}"
    );

    // The signature swapped for one over other bytes.
    let mut tampered = bundle.clone();
    let other = world
        .fulcio
        .issue(LeafSpec::workflow())
        .sign(b"other bytes");
    tampered["messageSignature"]["signature"] = json!(b64(&other));
    let refusal = verify(&world, &policy, &artifact, &tampered).unwrap_err();
    assert!(matches!(refusal, Refusal::BadSignature(_)), "{refusal}");

    // The DSSE payload edited after signing.
    let mut dsse = dsse_bundle(&mut world, &artifact, COSIGN_SIGN, true);
    let forged = statement(&digest_of(&artifact), "https://slsa.dev/provenance/v1");
    dsse["dsseEnvelope"]["payload"] = json!(b64(&forged));
    let refusal = verify(&world, &policy, &artifact, &dsse).unwrap_err();
    assert!(matches!(refusal, Refusal::BadSignature(_)), "{refusal}");
}

#[test]
fn a_bundle_without_a_signed_entry_timestamp_has_no_trusted_time() {
    let mut world = World::new();
    let artifact = manifest("app");
    // Inclusion proof only (as Rekor v2 writes): verified, but it does not
    // vouch for the time, and the bundle has no RFC 3161 timestamp.
    let bundle = dsse_bundle(&mut world, &artifact, COSIGN_SIGN, false);
    let refusal = verify(&world, &workflow_policy(), &artifact, &bundle).unwrap_err();
    assert!(
        matches!(refusal, Refusal::NoTrustedSigningTime(_)),
        "{refusal}"
    );
}

#[test]
fn version_rules_on_log_entries_are_enforced() {
    let mut world = World::new();
    let artifact = manifest("app");
    let bundle = message_bundle(&mut world, V02, &artifact, true, false);
    let refusal = verify(&world, &workflow_policy(), &artifact, &bundle).unwrap_err();
    assert!(
        matches!(refusal, Refusal::Malformed(ref why) if why.contains("needs an inclusion proof")),
        "{refusal}"
    );
    let bundle = message_bundle(&mut world, V01, &artifact, false, true);
    let refusal = verify(&world, &workflow_policy(), &artifact, &bundle).unwrap_err();
    assert!(
        matches!(refusal, Refusal::Malformed(ref why) if why.contains("inclusion promise")),
        "{refusal}"
    );
    let mut bundle = message_bundle(&mut world, V03, &artifact, true, true);
    bundle["mediaType"] = json!("application/vnd.dev.sigstore.bundle+json;version=9.9");
    let refusal = verify(&world, &workflow_policy(), &artifact, &bundle).unwrap_err();
    assert!(matches!(refusal, Refusal::Malformed(_)), "{refusal}");
}

#[test]
fn a_public_key_bundle_needs_a_listed_key() {
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;
    let world = World::new();
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let artifact = manifest("app");
    let digest = sha256(&artifact);
    let signature: p256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
    let bundle = json!({
        "mediaType": V03,
        "verificationMaterial": { "publicKey": { "hint": fingerprint(&key) } },
        "messageSignature": {
            "messageDigest": { "algorithm": "SHA2_256", "digest": b64(&digest) },
            "signature": b64(signature.to_der().as_bytes()),
        },
    });
    let verdict = verify(&world, &key_policy(&key), &artifact, &bundle).unwrap();
    assert_eq!(
        verdict.signer,
        Signer::Key {
            fingerprint: fingerprint(&key)
        }
    );
    let other = SigningKey::random(&mut rand::rngs::OsRng);
    let refusal = verify(&world, &key_policy(&other), &artifact, &bundle).unwrap_err();
    assert_eq!(refusal, Refusal::KeyNotListed);
}
