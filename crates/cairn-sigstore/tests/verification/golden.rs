//! Golden vectors from the Sigstore public-good instance: its
//! `trusted_root.json` and two bundles made by real clients, as published
//! in the test data of sigstore/sigstore-rs (`tests/data/bundle_v03.json`,
//! a cosign 3 image signature of kubewarden-controller) and
//! sigstore/sigstore-rust (`sigstore-bundle/tests/fixtures/bundle_v3.json`,
//! a `sigstore-python` message signature on the staging instance, with
//! the staging `trusted_root.json`). They check the formats against
//! what Fulcio, Rekor and the clients actually write: the SET payload, the
//! checkpoint note, the dsse and hashedrekord bodies, the issuer
//! extensions.

use cairn_sigstore::{
    Identity, Refusal, Sha256Digest, Signer, TimestampProof, TrustPolicy, TrustedRoot, Verifier,
    verify_bundle,
};

const ROOT: &[u8] = include_bytes!("data/public-good-trusted-root.json");
const STAGING_ROOT: &[u8] = include_bytes!("data/staging-trusted-root.json");
const IMAGE_BUNDLE: &[u8] = include_bytes!("data/cosign-3-image-bundle.json");
const MESSAGE_BUNDLE: &[u8] = include_bytes!("data/message-signature-bundle.json");
/// 2027-01-15: after both signatures.
const NOW: i64 = 1_800_000_000;

fn verify(
    policy: &TrustPolicy,
    subject: &str,
    bundle: &[u8],
) -> Result<cairn_sigstore::Verdict, Refusal> {
    verify_with(ROOT, policy, subject, bundle)
}

fn verify_with(
    root: &[u8],
    policy: &TrustPolicy,
    subject: &str,
    bundle: &[u8],
) -> Result<cairn_sigstore::Verdict, Refusal> {
    let root = TrustedRoot::from_json(root).unwrap();
    verify_bundle(
        &Verifier {
            root: &root,
            policy,
            now: NOW,
        },
        &Sha256Digest::parse(subject).unwrap(),
        bundle,
    )
}

#[test]
fn the_public_good_trusted_root_loads() {
    let root = TrustedRoot::from_json(ROOT).unwrap();
    assert!(root.certificate_authorities.len() >= 2);
    assert!(
        root.tlogs
            .iter()
            .any(|l| l.base_url == "https://rekor.sigstore.dev")
    );
    assert!(!root.ctlogs.is_empty());
    assert!(!root.timestamp_authorities.is_empty());
}

#[test]
fn a_cosign_3_image_signature_from_github_actions_verifies() {
    let subject = "sha256:c811d58de79c92f03214e63aa339484e488d694ae8a6283b5f3f17a9faf50172";
    let policy = TrustPolicy::parse::<&str, _>(
        &[],
        &["https://token.actions.githubusercontent.com=https://github\\.com/kubewarden/kubewarden-controller/\\.github/workflows/release\\.yml@refs/tags/v.*"],
    )
    .unwrap();
    let verdict = verify(&policy, subject, IMAGE_BUNDLE).unwrap();
    assert_eq!(
        verdict.predicate_type.as_deref(),
        Some("https://sigstore.dev/cosign/sign/v1")
    );
    assert!(matches!(
        verdict.signer,
        Signer::Certificate { identity: Identity::Uri(ref uri), .. }
            if uri == "https://github.com/kubewarden/kubewarden-controller/.github/workflows/release.yml@refs/tags/v1.34.0"
    ));
    let log = verdict.log.unwrap();
    assert_eq!(log.log_index, 1_261_105_807);
    assert_eq!(log.integrated_time, Some(1_775_719_409));
    assert!(log.signed_entry_timestamp && log.inclusion_proof);
    // cosign 3 also asked the public-good timestamp authority.
    assert_eq!(
        verdict.timestamp,
        Some(TimestampProof {
            authority: "https://timestamp.sigstore.dev/api/v1/timestamp".to_owned(),
            gen_time: 1_775_719_409,
        })
    );

    // A timestamp that does not verify is never ignored, even beside a
    // good Rekor entry: here the root trusts no timestamp authority.
    let mut without_tsa: serde_json::Value = serde_json::from_slice(ROOT).unwrap();
    without_tsa["timestampAuthorities"] = serde_json::json!([]);
    assert!(matches!(
        verify_with(&serde_json::to_vec(&without_tsa).unwrap(), &policy, subject, IMAGE_BUNDLE),
        Err(Refusal::UntrustedTimestamp(ref why)) if why.contains("trusted TSA is its signer")
    ));

    // Another image, or another repository's workflow: refused.
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert!(matches!(
        verify(&policy, other, IMAGE_BUNDLE),
        Err(Refusal::SubjectMismatch { .. })
    ));
    let strict = TrustPolicy::parse::<&str, _>(
        &[],
        &["https://token.actions.githubusercontent.com=https://github\\.com/acme/.*"],
    )
    .unwrap();
    assert!(matches!(
        verify(&strict, subject, IMAGE_BUNDLE),
        Err(Refusal::IdentityNotAllowed { .. })
    ));
}

#[test]
fn a_message_signature_by_an_email_identity_verifies() {
    let subject = "sha256:5e6ae9de58c1177bea615b4fcbfb2fd688e8c4b51c2e56b6a38e817833ec24a2";
    let policy = TrustPolicy::parse::<&str, _>(
        &[],
        &["https://github.com/login/oauth=william@yossarian\\.net"],
    )
    .unwrap();
    let verdict = verify_with(STAGING_ROOT, &policy, subject, MESSAGE_BUNDLE).unwrap();
    assert_eq!(
        verdict.signer,
        Signer::Certificate {
            issuer: "https://github.com/login/oauth".to_owned(),
            identity: Identity::Email("william@yossarian.net".to_owned()),
            certificate_fingerprint: match &verdict.signer {
                Signer::Certificate {
                    certificate_fingerprint,
                    ..
                } => certificate_fingerprint.clone(),
                Signer::Key { .. } => unreachable!(),
            },
        }
    );
    assert_eq!(verdict.log.unwrap().log_index, 25_915_956);

    // The production root does not trust the staging log.
    assert!(matches!(
        verify(&policy, subject, MESSAGE_BUNDLE),
        Err(Refusal::UntrustedLogProof(ref why)) if why.contains("no trusted Rekor key")
    ));
}
