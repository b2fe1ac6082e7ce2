//! RFC 3161 timestamps at push: a keyless Sigstore bundle whose signing
//! time is proven by a trusted timestamp authority instead of a Rekor
//! entry releases a held release, and the verdict names the authority and
//! its time; a bundle whose timestamp does not verify is refused with
//! `403 DENIED` and the reason, and nothing is logged.
//!
//! The timestamps are real `TimeStampResp`s (CMS SignedData over a
//! TSTInfo) signed by the test timestamp authority of the trusted root the
//! server starts with.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::new_without_default,
    reason = "tests"
)]

#[allow(dead_code, reason = "the verification tests' world, partly used here")]
#[path = "../crates/cairn-sigstore/tests/verification/support.rs"]
mod world;

#[path = "support/cosign.rs"]
mod cosign;
#[path = "support/sigstore.rs"]
mod sigstore;

use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use cosign::{package_view, set_trust};
use serde_json::{Value, json};
use sigstore::{BUNDLE, Sigstore, timestamped_bundle, workflow_rule};
use world::{GITHUB, T0, Tsa, WORKFLOW};

const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Attaches `bundle` to `image` (`size` bytes) as cosign 3 does: a
/// referrer pushed by digest. `Ok` is its digest.
async fn attach_bundle(
    session: &OciSession,
    image: &str,
    size: usize,
    bundle: &[u8],
) -> Result<String, OciFailure> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": BUNDLE,
        "config": descriptor(EMPTY, b"{}"),
        "layers": [descriptor(BUNDLE, bundle)],
        "subject": { "mediaType": MANIFEST, "digest": image, "size": size },
        "annotations": { "dev.sigstore.bundle.content": "dsse-envelope" },
    });
    let reference = digest_of(&serde_json::to_vec(&manifest).unwrap());
    session
        .push(&reference, &[b"{}", bundle], &manifest)
        .await
        .map(|(digest, _)| digest)
}

/// The package view's entry for `acme:app@1.0.0`.
async fn release(server: &TestServer) -> Value {
    let view = package_view(server, "acme:app").await;
    view["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "1.0.0")
        .cloned()
        .unwrap_or_else(|| panic!("no 1.0.0 in {view}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamped_keyless_bundle_releases_a_held_release() {
    for db in TestDatabase::all().await {
        let sigstore = Sigstore::new();
        let server = TestServer::start_with(db, sigstore.args()).await;
        let kind = server.kind();
        let owner = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
        let (status, body) = set_trust(
            &server,
            &owner,
            "acme",
            &json!({"signatureIdentities": [workflow_rule()], "requireSignature": true}),
        )
        .await;
        assert_eq!(status, 200, "{kind}: {body}");
        let wasm = wit_package("acme:app", "1.0.0", "interface api { run: func(); }");
        let image = oci_push(&server, &owner, "acme/app", "1.0.0", &wasm)
            .await
            .unwrap();
        let size = wasm_manifest(&wasm, &wasm_config(&wasm)).len();
        assert_eq!(release(&server).await["held"], true, "{kind}");
        assert_eq!(
            manifest_status(&server, "acme/app", "1.0.0").await.0,
            403,
            "{kind}: held"
        );

        let sign = token_for(&server, "alice", &["acme"], &[Action::Sign]).await;
        let session = OciSession::login(&server, &sign, "acme/app").await;

        // A timestamp by an authority the root does not name: refused with
        // the reason, nothing logged, still held.
        let length = log_length(&server);
        let rogue = Tsa::new("rogue");
        let (status, code, message) = attach_bundle(
            &session,
            &image,
            size,
            &timestamped_bundle(&sigstore.fulcio, &rogue, &image),
        )
        .await
        .expect_err("an untrusted timestamp is refused");
        assert_eq!(
            (status, code.as_str()),
            (403, "DENIED"),
            "{kind}: {message}"
        );
        assert!(
            message.contains("the signed timestamp does not verify"),
            "{kind}: {message}"
        );
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");
        assert_eq!(release(&server).await["held"], true, "{kind}");

        // Timestamped by the trusted authority, with no Rekor entry at all:
        // verified, logged with the authority and time, and the release
        // is served.
        let referrer = attach_bundle(
            &session,
            &image,
            size,
            &timestamped_bundle(&sigstore.fulcio, &sigstore.tsa, &image),
        )
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let version = release(&server).await;
        assert_eq!(version["held"], false, "{kind}: {version}");
        let signatures = version["signatures"].as_array().unwrap();
        let check = signatures
            .iter()
            .find(|s| s["manifest"] == referrer.as_str())
            .unwrap_or_else(|| panic!("{kind}: {version}"));
        assert_eq!(check["verdict"], "verified", "{kind}");
        assert_eq!(check["issuer"], GITHUB, "{kind}");
        assert_eq!(check["identity"], WORKFLOW, "{kind}");
        assert_eq!(check["timestampAuthority"], sigstore.tsa.uri, "{kind}");
        assert_eq!(check["timestampTime"], T0 + 30, "{kind}");
        assert!(check.get("logIndex").is_none(), "{kind}: {check}");
        assert_eq!(
            manifest_status(&server, "acme/app", "1.0.0").await,
            (200, image.clone()),
            "{kind}: served once signed"
        );
    }
}
