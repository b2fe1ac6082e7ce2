//! One entry point for a signature layer of an OCI manifest: its media
//! type says which layout it is, and so which verification applies. The
//! push path and the auditor's recheck both call [`verify_layer`], so a
//! verdict is recomputed by exactly the code that logged it.
//!
//! | Media type | Layout | Verified with |
//! |---|---|---|
//! | [`SIMPLESIGNING`] | cosign `.sig` payload, signature and keyless material in annotations | [`crate::verify_simplesigning`] |
//! | [`DSSE_ENVELOPE`] | `cosign attest` envelope, keyless material in annotations | [`crate::verify_dsse_attestation`] |
//! | `application/vnd.dev.sigstore.bundle…` | a Sigstore bundle, self-contained | [`crate::verify_bundle`] |

use serde_json::Value;

use crate::error::Refusal;
use crate::signer::{LayerMaterial, SignatureLayer};
use crate::verdict::Verdict;
use crate::{Sha256Digest, Verifier};

/// cosign's simplesigning payload.
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// A DSSE envelope (`cosign attest`).
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The prefix of every Sigstore bundle media type (the version follows).
pub const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";

/// The signature layouts a layer media type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerFormat {
    /// A cosign simplesigning payload.
    Simplesigning,
    /// A DSSE envelope holding an in-toto statement.
    Dsse,
    /// A Sigstore bundle (the bundle parser checks the version).
    Bundle,
}

impl LayerFormat {
    /// The layout of a layer of `media_type`, if it is a signature.
    pub fn of(media_type: &str) -> Option<Self> {
        match media_type {
            SIMPLESIGNING => Some(Self::Simplesigning),
            DSSE_ENVELOPE => Some(Self::Dsse),
            bundle if bundle.starts_with(BUNDLE_PREFIX) => Some(Self::Bundle),
            _ => None,
        }
    }
}

/// Verifies one signature layer as a signature of `subject`: the layer's
/// `media_type`, its `blob`, and its `annotations` (the manifest's
/// `layers[].annotations` object; `null` when it has none).
pub fn verify_layer(
    verifier: &Verifier<'_>,
    subject: &Sha256Digest,
    media_type: &str,
    blob: &[u8],
    annotations: &Value,
) -> Result<Verdict, Refusal> {
    let get = |name: &str| annotations.get(name).and_then(Value::as_str);
    match LayerFormat::of(media_type) {
        Some(LayerFormat::Simplesigning) => SignatureLayer::from_annotations(blob, get)
            .and_then(|layer| crate::verify_simplesigning(verifier, subject, &layer)),
        Some(LayerFormat::Dsse) => crate::verify_dsse_attestation(
            verifier,
            subject,
            blob,
            &LayerMaterial::from_annotations(get),
        ),
        Some(LayerFormat::Bundle) => crate::verify_bundle(verifier, subject, blob),
        None => Err(Refusal::Unsupported(format!(
            "layer media type `{media_type}` is not a signature"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_media_type() {
        assert_eq!(
            LayerFormat::of(SIMPLESIGNING),
            Some(LayerFormat::Simplesigning)
        );
        assert_eq!(LayerFormat::of(DSSE_ENVELOPE), Some(LayerFormat::Dsse));
        for bundle in [
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            "application/vnd.dev.sigstore.bundle+json;version=0.1",
        ] {
            assert_eq!(LayerFormat::of(bundle), Some(LayerFormat::Bundle));
        }
        assert_eq!(LayerFormat::of("application/spdx+json"), None);
        assert_eq!(
            LayerFormat::of("application/vnd.cncf.notary.signature"),
            None
        );
    }

    #[test]
    fn layers_dispatch_on_their_media_type() {
        let root = crate::TrustedRoot::default();
        let policy = crate::TrustPolicy::default();
        let verifier = Verifier {
            root: &root,
            policy: &policy,
            now: 0,
        };
        let subject = Sha256Digest([1; 32]);
        let refusal = |media_type: &str, blob: &[u8]| {
            verify_layer(&verifier, &subject, media_type, blob, &Value::Null)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        // Each layout's own parser answers: the dispatch reached it.
        assert!(refusal(SIMPLESIGNING, b"{}").contains("dev.cosignproject.cosign/signature"));
        assert!(refusal(DSSE_ENVELOPE, b"{}").contains("DSSE envelope"));
        assert!(
            refusal("application/vnd.dev.sigstore.bundle.v0.3+json", b"{}").contains("mediaType")
        );
        assert!(refusal("application/spdx+json", b"{}").contains("is not a signature"));
    }
}
