//! End-to-end verification of signatures made in cosign's and Sigstore's
//! exact formats by a test Fulcio CA and a test Rekor log: what must
//! verify does, and every attack is refused with its reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::new_without_default,
    reason = "tests"
)]

mod attestations;
mod bundles;
mod golden;
mod simplesigning;
mod support;
mod timestamps;
mod trust;

use cairn_sigstore::{PublicKey, TrustPolicy, TrustedRoot, Verifier};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey as _;
use support::{Fulcio, GITHUB, NOW, Rekor, trusted_root};

/// The trusted world: one Fulcio, one Rekor, the root naming both.
pub struct World {
    pub fulcio: Fulcio,
    pub rekor: Rekor,
    pub root: TrustedRoot,
}

impl World {
    pub fn new() -> Self {
        let fulcio = Fulcio::new("fulcio");
        let rekor = Rekor::new();
        let root = TrustedRoot::from_json(&trusted_root(&fulcio, &rekor)).unwrap();
        Self {
            fulcio,
            rekor,
            root,
        }
    }

    pub fn verifier<'a>(&'a self, policy: &'a TrustPolicy) -> Verifier<'a> {
        Verifier {
            root: &self.root,
            policy,
            now: NOW,
        }
    }
}

/// A policy allowing the acme release workflow on GitHub Actions.
pub fn workflow_policy() -> TrustPolicy {
    TrustPolicy::parse::<&str, _>(
        &[],
        &[format!(
            "{GITHUB}=https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/heads/main"
        )],
    )
    .unwrap()
}

/// A policy listing `key` (as `cosign.pub`).
pub fn key_policy(key: &SigningKey) -> TrustPolicy {
    let pem = key
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    TrustPolicy::parse::<_, &str>(&[pem], &[]).unwrap()
}

/// The fingerprint of `key`.
pub fn fingerprint(key: &SigningKey) -> String {
    let der = key.verifying_key().to_public_key_der().unwrap();
    PublicKey::from_der(der.as_bytes()).unwrap().fingerprint()
}
