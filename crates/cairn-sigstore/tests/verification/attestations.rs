//! `cosign attest` layers (`.att`): DSSE envelopes of in-toto statements,
//! keyed and keyless, and the required-predicate-type policy check.

use std::collections::BTreeMap;

use cairn_sigstore::{
    LayerMaterial, Refusal, Sha256Digest, Signer, TrustPolicy, require_predicate_type,
    verify_dsse_attestation,
};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;

use crate::support::*;
use crate::{World, fingerprint, key_policy, workflow_policy};

const SLSA: &str = "https://slsa.dev/provenance/v1";
const SBOM: &str = "https://spdx.dev/Document";

fn sign_with(key: &SigningKey) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    |message| {
        let signature: p256::ecdsa::Signature = key.sign(message);
        signature.to_der().as_bytes().to_vec()
    }
}

fn verify(
    world: &World,
    policy: &TrustPolicy,
    subject: &str,
    envelope: &[u8],
    annotations: &BTreeMap<String, String>,
) -> Result<cairn_sigstore::Verdict, Refusal> {
    verify_dsse_attestation(
        &world.verifier(policy),
        &Sha256Digest::parse(subject).unwrap(),
        envelope,
        &LayerMaterial::from_annotations(|k| annotations.get(k).map(String::as_str)),
    )
}

#[test]
fn a_keyed_attestation_verifies_and_the_predicate_type_policy_applies() {
    let world = World::new();
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let image = digest_of(b"app 1.0.0");
    let (envelope, _) = envelope(&statement(&image, SLSA), sign_with(&key));
    let envelope = serde_json::to_vec(&envelope).unwrap();
    let verdict = verify(
        &world,
        &key_policy(&key),
        &image,
        &envelope,
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(
        verdict.signer,
        Signer::Key {
            fingerprint: fingerprint(&key)
        }
    );
    assert_eq!(verdict.predicate_type.as_deref(), Some(SLSA));

    let verdicts = [verdict];
    assert!(require_predicate_type(&verdicts, SLSA).is_ok());
    // An attestation of the wrong predicate type does not satisfy a rule
    // requiring an SBOM.
    assert_eq!(
        require_predicate_type(&verdicts, SBOM).unwrap_err(),
        Refusal::WrongPredicateType {
            required: SBOM.to_owned(),
            found: SLSA.to_owned()
        }
    );
    assert_eq!(
        require_predicate_type(&[], SBOM).unwrap_err(),
        Refusal::WrongPredicateType {
            required: SBOM.to_owned(),
            found: "none".to_owned()
        }
    );
}

#[test]
fn a_keyless_attestation_logged_as_dsse_verifies() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let image = digest_of(b"app 1.0.0");
    let statement = statement(&image, SLSA);
    let (envelope, signature) = envelope(&statement, |m| leaf.sign(m));
    let envelope = serde_json::to_vec(&envelope).unwrap();
    let entry = world.rekor.log(
        dsse_entry(&envelope, &statement, &signature, &leaf.pem()),
        T0 + 30,
    );
    let annotations = BTreeMap::from([
        ("dev.sigstore.cosign/certificate".to_owned(), leaf.pem()),
        (
            "dev.sigstore.cosign/chain".to_owned(),
            world.fulcio.chain_pem(),
        ),
        (
            "dev.sigstore.cosign/bundle".to_owned(),
            bundle_annotation(&entry),
        ),
    ]);
    let verdict = verify(&world, &workflow_policy(), &image, &envelope, &annotations).unwrap();
    assert!(matches!(verdict.signer, Signer::Certificate { .. }));
    assert_eq!(verdict.payload_digest, digest_of(&statement));
    assert_eq!(verdict.log.unwrap().integrated_time, Some(T0 + 30));

    // The same envelope logged as a hashedrekord (another kind of entry)
    // does not count.
    let wrong_kind = world.rekor.log(
        hashedrekord(&sha256(&statement), &signature, &leaf.pem()),
        T0 + 40,
    );
    let mut annotations = annotations;
    annotations.insert(
        "dev.sigstore.cosign/bundle".into(),
        bundle_annotation(&wrong_kind),
    );
    let refusal = verify(&world, &workflow_policy(), &image, &envelope, &annotations).unwrap_err();
    assert!(matches!(refusal, Refusal::LogEntryMismatch(_)), "{refusal}");
}

#[test]
fn an_attestation_about_another_image_is_refused() {
    let world = World::new();
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let signed = digest_of(b"app 1.0.0");
    let target = digest_of(b"malware");
    let (envelope, _) = envelope(&statement(&signed, SLSA), sign_with(&key));
    let envelope = serde_json::to_vec(&envelope).unwrap();
    let refusal = verify(
        &world,
        &key_policy(&key),
        &target,
        &envelope,
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert_eq!(
        refusal,
        Refusal::SubjectMismatch {
            signed,
            subject: target
        }
    );
}

#[test]
fn an_envelope_of_another_payload_type_is_refused() {
    let world = World::new();
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let image = digest_of(b"app 1.0.0");
    let (mut envelope, _) = envelope(&statement(&image, SLSA), sign_with(&key));
    envelope["payloadType"] = "text/plain".into();
    let envelope = serde_json::to_vec(&envelope).unwrap();
    let refusal = verify(
        &world,
        &key_policy(&key),
        &image,
        &envelope,
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(matches!(refusal, Refusal::Malformed(ref why) if why.contains("payload type")));
}
