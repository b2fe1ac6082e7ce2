//! A test Sigstore (a Fulcio-style CA and a Rekor-like log, with the
//! trusted root a server is started with) and the keyless cosign layouts
//! made with it: the signature tests share these.
//!
//! Included with `#[path]` next to `world` (the verification tests' world,
//! `crates/cairn-sigstore/tests/verification/support.rs`) and `cosign`
//! (support/cosign.rs).
#![allow(dead_code, reason = "each test uses part of it")]

use cairn_server::config::ServeArgs;
use serde_json::json;

use crate::cosign::{Layer, SIMPLESIGNING};
use crate::world::{
    Fulcio, GITHUB, LeafSpec, Rekor, T0, b64, dsse_entry, envelope, keyless_layer, statement,
    tlog_entry, trusted_root,
};

/// A Sigstore bundle v0.3's media type.
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// cosign 3's signing predicate.
pub const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";

/// A CA and a log, and their trusted root in a file.
pub struct Sigstore {
    pub fulcio: Fulcio,
    pub rekor: Rekor,
    _dir: tempfile::TempDir,
    pub root_path: std::path::PathBuf,
}

impl Sigstore {
    pub fn new() -> Self {
        let fulcio = Fulcio::new("fulcio");
        let rekor = Rekor::new();
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("trusted_root.json");
        std::fs::write(&root_path, trusted_root(&fulcio, &rekor)).unwrap();
        Self {
            fulcio,
            rekor,
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
