//! cosign's tag scheme: `sha256-<hex>.sig` layers, keyed and keyless.

use std::collections::BTreeMap;

use cairn_sigstore::{
    Identity, Refusal, Sha256Digest, SignatureLayer, Signer, TrustPolicy, verify_simplesigning,
};
use p256::ecdsa::SigningKey;
use rcgen::SanType;

use crate::support::*;
use crate::{World, fingerprint, key_policy, workflow_policy};

fn image(name: &str) -> String {
    digest_of(name.as_bytes())
}

fn verify(
    world: &World,
    policy: &TrustPolicy,
    subject: &str,
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
) -> Result<cairn_sigstore::Verdict, Refusal> {
    let layer =
        SignatureLayer::from_annotations(payload, |k| annotations.get(k).map(String::as_str))?;
    verify_simplesigning(
        &world.verifier(policy),
        &Sha256Digest::parse(subject).unwrap(),
        &layer,
    )
}

/// A keyed cosign signature of `image`, as `cosign sign --key` writes it.
fn keyed(key: &SigningKey, image: &str) -> (Vec<u8>, BTreeMap<String, String>) {
    use p256::ecdsa::signature::Signer as _;
    let payload = simplesigning_payload("registry.test/acme/app", image);
    let signature: p256::ecdsa::Signature = key.sign(&payload);
    let annotations = BTreeMap::from([(
        "dev.cosignproject.cosign/signature".to_owned(),
        b64(signature.to_der().as_bytes()),
    )]);
    (payload, annotations)
}

#[test]
fn a_keyed_signature_by_a_listed_key_verifies() {
    let world = World::new();
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let subject = image("app 1.0.0");
    let (payload, annotations) = keyed(&key, &subject);
    let verdict = verify(&world, &key_policy(&key), &subject, &payload, &annotations).unwrap();
    assert_eq!(
        verdict.signer,
        Signer::Key {
            fingerprint: fingerprint(&key)
        }
    );
    assert_eq!(verdict.payload_digest, digest_of(&payload));
    assert_eq!(verdict.log, None);
    assert_eq!(verdict.predicate_type, None);
}

#[test]
fn a_key_that_is_not_listed_is_refused() {
    let world = World::new();
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let listed = SigningKey::random(&mut rand::rngs::OsRng);
    let subject = image("app 1.0.0");
    let (payload, annotations) = keyed(&key, &subject);
    let refusal = verify(
        &world,
        &key_policy(&listed),
        &subject,
        &payload,
        &annotations,
    )
    .unwrap_err();
    assert_eq!(refusal, Refusal::KeyNotListed);
    // An empty policy trusts nobody.
    let refusal = verify(
        &world,
        &TrustPolicy::default(),
        &subject,
        &payload,
        &annotations,
    )
    .unwrap_err();
    assert_eq!(refusal, Refusal::KeyNotListed);
}

#[test]
fn a_signature_copied_from_another_artifact_is_refused() {
    let world = World::new();
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let signed = image("app 1.0.0");
    let target = image("malware 6.6.6");
    let (payload, annotations) = keyed(&key, &signed);
    let refusal = verify(&world, &key_policy(&key), &target, &payload, &annotations).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::SubjectMismatch {
            signed: signed.clone(),
            subject: target.clone()
        }
    );
    // Rewriting the payload to name the target breaks the signature.
    let forged = String::from_utf8(payload)
        .unwrap()
        .replace(&signed, &target);
    let refusal = verify(
        &world,
        &key_policy(&key),
        &target,
        forged.as_bytes(),
        &annotations,
    )
    .unwrap_err();
    assert_eq!(refusal, Refusal::KeyNotListed);
}

#[test]
fn a_keyless_signature_from_an_allowed_workflow_verifies() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let subject = image("app 1.0.0");
    let (payload, annotations) = keyless_layer(&leaf, &world.fulcio, &mut world.rekor, &subject);
    let verdict = verify(&world, &workflow_policy(), &subject, &payload, &annotations).unwrap();
    assert_eq!(
        verdict.signer,
        Signer::Certificate {
            issuer: GITHUB.to_owned(),
            identity: Identity::Uri(WORKFLOW.to_owned()),
            certificate_fingerprint: hex::encode(sha256(&leaf.der)),
        }
    );
    let log = verdict.log.unwrap();
    assert_eq!(log.integrated_time, Some(T0 + 30));
    assert_eq!(log.log_index, 5);
    assert_eq!(log.log_id, hex::encode(world.rekor.log_id));
    assert!(log.signed_entry_timestamp);
    assert_eq!(verdict.payload_digest, digest_of(&payload));
}

#[test]
fn the_legacy_issuer_extension_and_email_identities_are_read() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec {
        san: SanType::Rfc822Name("alice@acme.example".try_into().unwrap()),
        oidc_issuer: "https://accounts.google.com".to_owned(),
        legacy_issuer_only: true,
        ..LeafSpec::workflow()
    });
    let subject = image("app 1.0.0");
    let (payload, annotations) = keyless_layer(&leaf, &world.fulcio, &mut world.rekor, &subject);
    let policy =
        TrustPolicy::parse::<&str, _>(&[], &["https://accounts.google.com=.*@acme\\.example"])
            .unwrap();
    let verdict = verify(&world, &policy, &subject, &payload, &annotations).unwrap();
    assert!(matches!(
        verdict.signer,
        Signer::Certificate { ref issuer, identity: Identity::Email(ref email), .. }
            if issuer == "https://accounts.google.com" && email == "alice@acme.example"
    ));
}

#[test]
fn a_wrong_identity_or_issuer_is_refused() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let subject = image("app 1.0.0");
    let (payload, annotations) = keyless_layer(&leaf, &world.fulcio, &mut world.rekor, &subject);
    let expected = Refusal::IdentityNotAllowed {
        issuer: GITHUB.to_owned(),
        identity: WORKFLOW.to_owned(),
    };
    for rule in [
        // Another repository of the same issuer.
        format!("{GITHUB}=https://github\\.com/acme/other/.*"),
        // A prefix of the identity: rules are anchored.
        format!("{GITHUB}=https://github\\.com/acme/app"),
        // The right identity from another issuer.
        format!("https://accounts.google.com={}", ".*"),
    ] {
        let policy = TrustPolicy::parse::<&str, _>(&[], &[rule.as_str()]).unwrap();
        let refusal = verify(&world, &policy, &subject, &payload, &annotations).unwrap_err();
        assert_eq!(refusal, expected, "{rule}");
    }
}

#[test]
fn a_certificate_from_an_untrusted_ca_is_refused() {
    let mut world = World::new();
    let rogue = Fulcio::new("rogue");
    let leaf = rogue.issue(LeafSpec::workflow());
    let subject = image("app 1.0.0");
    // Logged in the trusted Rekor, with the rogue chain attached.
    let (payload, annotations) = keyless_layer(&leaf, &rogue, &mut world.rekor, &subject);
    let refusal = verify(&world, &workflow_policy(), &subject, &payload, &annotations).unwrap_err();
    assert!(
        matches!(refusal, Refusal::UntrustedCertificate(ref why) if why.contains("no trusted Fulcio CA")),
        "{refusal}"
    );
}

#[test]
fn a_certificate_expired_at_signing_time_is_refused() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec {
        not_before: T0 - 1200,
        not_after: T0 - 600,
        ..LeafSpec::workflow()
    });
    let subject = image("app 1.0.0");
    let (payload, annotations) = keyless_layer(&leaf, &world.fulcio, &mut world.rekor, &subject);
    let refusal = verify(&world, &workflow_policy(), &subject, &payload, &annotations).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::CertificateNotValidAtSigningTime {
            signed_at: T0 + 30,
            not_before: T0 - 1200,
            not_after: T0 - 600,
        }
    );
}

#[test]
fn a_certificate_without_code_signing_is_refused() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec {
        code_signing: false,
        ..LeafSpec::workflow()
    });
    let subject = image("app 1.0.0");
    let (payload, annotations) = keyless_layer(&leaf, &world.fulcio, &mut world.rekor, &subject);
    let refusal = verify(&world, &workflow_policy(), &subject, &payload, &annotations).unwrap_err();
    assert!(matches!(refusal, Refusal::NotCodeSigning(_)), "{refusal}");
}

#[test]
fn a_rekor_entry_for_other_content_is_refused() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let subject = image("app 1.0.0");
    let (payload, mut annotations) =
        keyless_layer(&leaf, &world.fulcio, &mut world.rekor, &subject);
    // A genuine entry of the same signer, for another artifact.
    let (_, other) = keyless_layer(
        &leaf,
        &world.fulcio,
        &mut world.rekor,
        &image("something else"),
    );
    annotations.insert(
        "dev.sigstore.cosign/bundle".into(),
        other["dev.sigstore.cosign/bundle"].clone(),
    );
    let refusal = verify(&world, &workflow_policy(), &subject, &payload, &annotations).unwrap_err();
    assert!(
        matches!(refusal, Refusal::LogEntryMismatch(ref why) if why.contains("other content")),
        "{refusal}"
    );
}

#[test]
fn a_tampered_signed_entry_timestamp_is_refused() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let subject = image("app 1.0.0");
    let (payload, mut annotations) =
        keyless_layer(&leaf, &world.fulcio, &mut world.rekor, &subject);
    // Moving the integrated time (say, into an expired certificate's
    // window) breaks the SET.
    let bundle = annotations["dev.sigstore.cosign/bundle"].replace(
        &format!("\"integratedTime\":{}", T0 + 30),
        &format!("\"integratedTime\":{}", T0 + 31),
    );
    annotations.insert("dev.sigstore.cosign/bundle".into(), bundle);
    let refusal = verify(&world, &workflow_policy(), &subject, &payload, &annotations).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::UntrustedLogProof("the signed entry timestamp does not verify".into())
    );
}

#[test]
fn an_entry_in_an_untrusted_log_is_refused() {
    let world = World::new();
    let mut rogue_log = Rekor::new();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let subject = image("app 1.0.0");
    let (payload, annotations) = keyless_layer(&leaf, &world.fulcio, &mut rogue_log, &subject);
    let refusal = verify(&world, &workflow_policy(), &subject, &payload, &annotations).unwrap_err();
    assert!(
        matches!(refusal, Refusal::UntrustedLogProof(ref why) if why.contains("no trusted Rekor key")),
        "{refusal}"
    );
}

#[test]
fn a_keyless_signature_without_a_log_entry_is_refused() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let subject = image("app 1.0.0");
    let (payload, mut annotations) =
        keyless_layer(&leaf, &world.fulcio, &mut world.rekor, &subject);
    annotations.remove("dev.sigstore.cosign/bundle");
    let refusal = verify(&world, &workflow_policy(), &subject, &payload, &annotations).unwrap_err();
    assert!(
        matches!(refusal, Refusal::NoTrustedSigningTime(_)),
        "{refusal}"
    );
}

#[test]
fn a_signature_by_another_key_under_the_certificate_is_refused() {
    let mut world = World::new();
    let leaf = world.fulcio.issue(LeafSpec::workflow());
    let subject = image("app 1.0.0");
    let (payload, mut annotations) =
        keyless_layer(&leaf, &world.fulcio, &mut world.rekor, &subject);
    let (_, keyed) = keyed(&SigningKey::random(&mut rand::rngs::OsRng), &subject);
    annotations.insert(
        "dev.cosignproject.cosign/signature".into(),
        keyed["dev.cosignproject.cosign/signature"].clone(),
    );
    let refusal = verify(&world, &workflow_policy(), &subject, &payload, &annotations).unwrap_err();
    assert!(matches!(refusal, Refusal::BadSignature(_)), "{refusal}");
}

#[test]
fn a_keyed_signature_logged_in_rekor_verifies_its_entry_too() {
    use p256::pkcs8::EncodePublicKey as _;
    let mut world = World::new();
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let subject = image("app 1.0.0");
    let (payload, mut annotations) = keyed(&key, &subject);
    let signature = decode_base64(&annotations["dev.cosignproject.cosign/signature"]);
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let entry = world.rekor.log(
        hashedrekord(&sha256(&payload), &signature, &public_pem),
        T0 + 30,
    );
    annotations.insert(
        "dev.sigstore.cosign/bundle".into(),
        bundle_annotation(&entry),
    );
    let verdict = verify(&world, &key_policy(&key), &subject, &payload, &annotations).unwrap();
    assert_eq!(verdict.log.unwrap().integrated_time, Some(T0 + 30));

    // An entry recording another key is not ignored.
    let other = SigningKey::random(&mut rand::rngs::OsRng)
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let entry = world
        .rekor
        .log(hashedrekord(&sha256(&payload), &signature, &other), T0 + 40);
    annotations.insert(
        "dev.sigstore.cosign/bundle".into(),
        bundle_annotation(&entry),
    );
    let refusal = verify(&world, &key_policy(&key), &subject, &payload, &annotations).unwrap_err();
    assert!(matches!(refusal, Refusal::LogEntryMismatch(_)), "{refusal}");
}

fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
