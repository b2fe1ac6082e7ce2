//! Verification of signed components: cosign signatures, Sigstore bundles
//! and in-toto attestations, checked against a Sigstore trusted root and a
//! namespace's trust rules.
//!
//! # The story of one verification
//!
//! The caller (the OCI door, when it is told to accept signed components
//! only) has already pulled a signature artifact from a push: a cosign
//! simplesigning layer with its annotations, a DSSE envelope from an
//! `.att` manifest, or a Sigstore bundle referring to a manifest. It knows
//! the digest of the manifest the artifact claims to sign (the *subject*).
//! It calls [`verify_layer`] with the layer's media type, blob and
//! annotations, which dispatches to [`verify_simplesigning`],
//! [`verify_dsse_attestation`] or [`verify_bundle`], with a [`Verifier`]:
//! the deployment's [`TrustedRoot`], the namespace's [`TrustPolicy`] and
//! the current time.
//!
//! 1. **Binding.** The signed content must name the subject: the
//!    simplesigning payload's `critical.image.docker-manifest-digest`, the
//!    in-toto statement's `subject[].digest.sha256`, or the bundle's
//!    message digest. A signature copied from another artifact stops here.
//! 2. **Signature.** The signature must verify over exactly those bytes
//!    (the payload, DSSE's pre-authentication encoding, or the message
//!    digest).
//! 3. **Signer.** Either a key listed in the policy verifies it, or the
//!    signature carries a certificate, and then:
//!    * every transparency-log entry must verify and record this signature
//!      over this content with this certificate: a Rekor signed entry
//!      timestamp (SET) by a trusted Rekor key valid at that time, any
//!      inclusion proof leading to a checkpoint signed by a trusted Rekor
//!      key;
//!    * at least one verified source proves when it was signed: the
//!      integrated time of a verified SET, or the `genTime` of an RFC 3161
//!      timestamp by a trusted timestamp authority over the signature bytes
//!      (`timestamp.rs`); every timestamp present must
//!      verify;
//!    * the certificate chains to a trusted Fulcio CA, every certificate of
//!      the chain being valid at each proven signing time;
//!    * the leaf has the code-signing extended key usage;
//!    * its Fulcio issuer extension and its SAN match an identity rule.
//!
//! The answer is a [`Verdict`] naming the signer, or a [`Refusal`] saying
//! precisely which check failed.
//!
//! # Contract
//!
//! * Pure: no I/O, no clock, no randomness. The current time is an argument
//!   ([`Verifier::now`]), used only to refuse log entries from the future.
//! * Only the trusted root decides what is trusted. Chains and keys carried
//!   by the signature itself (`dev.sigstore.cosign/chain`, a bundle's
//!   intermediates, a `publicKey` hint) are never trust anchors.
//! * Embedded SCTs are **not** verified. A certificate-based signature
//!   with neither a verified SET nor a verified timestamp (an inclusion
//!   proof alone proves no time) is refused with
//!   [`Refusal::NoTrustedSigningTime`].
//! * Total: every input, however malformed, gives a `Refusal`, never a
//!   panic.

mod bundle;
mod certificate;
mod dsse;
mod error;
mod keys;
mod layer;
mod policy;
mod rekor;
mod signer;
mod simplesigning;
mod time;
mod timestamp;
mod trust_root;
mod verdict;

pub use bundle::verify_bundle;
pub use dsse::{IN_TOTO_PAYLOAD_TYPE, pae, verify_dsse_attestation};
pub use error::{PolicyError, Refusal};
pub use keys::PublicKey;
pub use layer::{BUNDLE_PREFIX, DSSE_ENVELOPE, LayerFormat, SIMPLESIGNING, verify_layer};
pub use policy::{IdentityRule, TrustPolicy, require_predicate_type};
pub use signer::{LayerMaterial, SignatureLayer};
pub use simplesigning::verify_simplesigning;
pub use trust_root::{CertificateAuthority, TransparencyLog, TrustedRoot, Validity};
pub use verdict::{Identity, LogProof, Signer, TimestampProof, Verdict};

/// What a verification trusts, and when it runs.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    /// The Fulcio CAs, Rekor keys and timestamp authorities of the
    /// deployment.
    pub root: &'a TrustedRoot,
    /// The namespace's listed keys and keyless identity rules.
    pub policy: &'a TrustPolicy,
    /// The current time, in seconds since the Unix epoch: log entries
    /// integrated, and timestamps generated, later than this are refused.
    pub now: i64,
}

/// A `sha256:<hex>` digest, as OCI writes manifest digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let malformed = || Refusal::Malformed(format!("`{text}` is not a sha256 digest"));
        let hex_part = text.strip_prefix("sha256:").ok_or_else(malformed)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(malformed());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| malformed())?;
        Ok(Self(out))
    }

    /// The lowercase hex of the digest, without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}
