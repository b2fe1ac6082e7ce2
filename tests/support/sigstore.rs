//! A test Sigstore (a Fulcio-style CA, a Rekor-like log and an RFC 3161
//! timestamp authority, with the trusted root a server is started with)
//! and the keyless cosign layouts made with it: the signature tests share
//! these.
//!
//! Included with `#[path]` next to `world` (the verification tests' world,
//! `crates/cairn-sigstore/tests/verification/support.rs`) and `cosign`
//! (support/cosign.rs).
#![allow(dead_code, reason = "each test uses part of it")]

use cairn_server::config::ServeArgs;
use serde_json::json;

use crate::cosign::{Layer, SIMPLESIGNING};
use crate::world::{
    Fulcio, GITHUB, LeafSpec, Rekor, T0, Tsa, b64, dsse_entry, envelope, keyless_layer, statement,
    timestamp_data, tlog_entry, trusted_root_with_tsa,
};

/// A Sigstore bundle v0.3's media type.
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// cosign 3's signing predicate.
pub const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";

/// A CA, a log and a timestamp authority, and their trusted root in a
/// file.
pub struct Sigstore {
    pub fulcio: Fulcio,
    pub rekor: Rekor,
    pub tsa: Tsa,
    _dir: tempfile::TempDir,
    pub root_path: std::path::PathBuf,
}

impl Sigstore {
    pub fn new() -> Self {
        let fulcio = Fulcio::new("fulcio");
        let rekor = Rekor::new();
        let tsa = Tsa::new("tsa");
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("trusted_root.json");
        let root = trusted_root_with_tsa(
            &fulcio,
            &rekor,
            &tsa,
            json!({ "start": "2025-01-01T00:00:00Z" }),
        );
        std::fs::write(&root_path, root).unwrap();
        Self {
            fulcio,
            rekor,
            tsa,
            _dir: dir,
            root_path,
        }
    }

    /// Server options trusting this Sigstore.
    pub fn args(&self) -> ServeArgs {
        ServeArgs {
            trusted_root: Some(self.root_path.clone()),
            ..ServeArgs::default()
        }
    }
}

/// The keyless rule of the release workflow of `acme/app`.
pub fn workflow_rule() -> String {
    format!(
        "{GITHUB}=https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/heads/main"
    )
}

/// A keyless cosign signature of `image` by a certificate `fulcio` issues
/// for `spec`, logged in `rekor`.
pub fn keyless(fulcio: &Fulcio, rekor: &mut Rekor, spec: LeafSpec, image: &str) -> Layer {
    let leaf = fulcio.issue(spec);
    let (payload, annotations) = keyless_layer(&leaf, fulcio, rekor, image);
    Layer {
        blob: payload,
        media_type: SIMPLESIGNING,
        annotations,
    }
}

/// A cosign 3 Sigstore bundle v0.3 of `image`: a DSSE statement of
/// cosign's signing predicate, keyless, with SET and inclusion proof.
pub fn keyless_bundle(fulcio: &Fulcio, rekor: &mut Rekor, image: &str) -> Vec<u8> {
    let leaf = fulcio.issue(LeafSpec::workflow());
    let statement = statement(image, COSIGN_SIGN);
    let (envelope, signature) = envelope(&statement, |m| leaf.sign(m));
    let body = dsse_entry(
        &serde_json::to_vec(&envelope).unwrap(),
        &statement,
        &signature,
        &leaf.pem(),
    );
    let entry = rekor.log(body, T0 + 30);
    serde_json::to_vec(&json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {
            "certificate": { "rawBytes": b64(&leaf.der) },
            "tlogEntries": [tlog_entry(&entry, "dsse", true, true)],
        },
        "dsseEnvelope": envelope,
    }))
    .unwrap()
}

/// A cosign 3 Sigstore bundle v0.3 of `image` with an RFC 3161 timestamp
/// by `tsa` at `T0 + 30` instead of a transparency-log entry (as a client
/// writing to Rekor v2, whose entries carry no time, or to no log at all,
/// makes them): a DSSE statement of cosign's signing predicate, keyless.
pub fn timestamped_bundle(fulcio: &Fulcio, tsa: &Tsa, image: &str) -> Vec<u8> {
    let leaf = fulcio.issue(LeafSpec::workflow());
    let statement = statement(image, COSIGN_SIGN);
    let (envelope, signature) = envelope(&statement, |m| leaf.sign(m));
    serde_json::to_vec(&json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {
            "certificate": { "rawBytes": b64(&leaf.der) },
            "timestampVerificationData":
                timestamp_data(&[tsa.timestamp(&signature, T0 + 30)]),
        },
        "dsseEnvelope": envelope,
    }))
    .unwrap()
}
