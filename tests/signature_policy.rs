//! Signed components only: a namespace's trust rules (listed keys, keyless
//! identities, required attestations), set by its owner over the API, are
//! applied to every signature pushed over OCI. What verifies is logged with
//! its signer and listed in the package view; every attack is refused with
//! `403 DENIED` and nothing is logged; where a namespace has no rules,
//! signatures are stored and logged as unverified.
//!
//! Signatures are made the way cosign makes them (simplesigning payloads,
//! DSSE envelopes, Sigstore bundles), keyless ones by a test Fulcio-style
//! CA and a Rekor-like log whose trusted root the server is started with.
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

use std::collections::BTreeMap;

use cairn_protocol::ext::registry::PublishPolicy;
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use cosign::{Layer, cosign_manifest, keyed_layer, package_view, public_pem, set_trust};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey as _;
use rcgen::SanType;
use serde_json::{Value, json};
use sigstore::{BUNDLE, COSIGN_SIGN, Sigstore, keyless, keyless_bundle, workflow_rule};
use world::{
    Fulcio, GITHUB, LeafSpec, Rekor, T0, WORKFLOW, bundle_annotation, dsse_entry, envelope,
    hashedrekord, sha256, statement,
};

const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const SLSA: &str = "https://slsa.dev/provenance/v1";
const SPDX: &str = "https://spdx.dev/Document";

/// The Sigstore-like world: a trusted Fulcio and Rekor, and the trusted
/// root file the server starts with.
fn fingerprint(key: &SigningKey) -> String {
    hex::encode(sha256(
        key.verifying_key().to_public_key_der().unwrap().as_bytes(),
    ))
}

/// A keyless `cosign attest` layer: a DSSE envelope of an in-toto
/// statement of `predicate_type` about `image`.
fn keyless_attestation(
    fulcio: &Fulcio,
    rekor: &mut Rekor,
    image: &str,
    predicate_type: &str,
) -> Layer {
    let leaf = fulcio.issue(LeafSpec::workflow());
    let statement = statement(image, predicate_type);
    let (envelope, signature) = envelope(&statement, |m| leaf.sign(m));
    let envelope = serde_json::to_vec(&envelope).unwrap();
    let entry = rekor.log(
        dsse_entry(&envelope, &statement, &signature, &leaf.pem()),
        T0 + 30,
    );
    Layer {
        blob: envelope,
        media_type: DSSE,
        annotations: BTreeMap::from([
            ("predicateType".to_owned(), predicate_type.to_owned()),
            ("dev.sigstore.cosign/certificate".to_owned(), leaf.pem()),
            ("dev.sigstore.cosign/chain".to_owned(), fulcio.chain_pem()),
            (
                "dev.sigstore.cosign/bundle".to_owned(),
                bundle_annotation(&entry),
            ),
        ]),
    }
}

/// An OCI session on one repository, attaching the way cosign does.
struct Oci(OciSession);

impl Oci {
    async fn login(server: &TestServer, token: &str, repo: &str) -> Self {
        Self(OciSession::login(server, token, repo).await)
    }

    /// Uploads `blobs` and pushes `manifest` under `reference`: `Ok` is
    /// its digest, `Err` the OCI error (status, code, message).
    async fn push(
        &self,
        reference: &str,
        blobs: &[&[u8]],
        manifest: &Value,
    ) -> Result<String, OciFailure> {
        self.0
            .push(reference, blobs, manifest)
            .await
            .map(|(digest, _)| digest)
    }

    /// Pushes a cosign `.sig` / `.att` manifest of `layers` about `image`.
    async fn attach(
        &self,
        image: &str,
        suffix: &str,
        layers: &[&Layer],
    ) -> Result<String, (u16, String, String)> {
        let (config, manifest) = cosign_manifest(layers);
        let mut blobs: Vec<&[u8]> = layers.iter().map(|l| l.blob.as_slice()).collect();
        blobs.push(&config);
        self.push(
            &format!("{}.{suffix}", image.replace(':', "-")),
            &blobs,
            &manifest,
        )
        .await
    }

    /// Attaches a Sigstore bundle to `image` (`size` bytes) as a referrer.
    async fn attach_bundle(
        &self,
        image: &str,
        size: usize,
        bundle: &[u8],
    ) -> Result<String, (u16, String, String)> {
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
        self.push(&reference, &[b"{}", bundle], &manifest).await
    }
}

/// The number of records in `package`'s metadata log.
async fn meta_length(server: &TestServer, package: &str) -> usize {
    let meta = cairn_protocol::LogId::package_meta(&package.parse().unwrap());
    let logs = server
        .registry()
        .fetch_logs(cairn_protocol::wire::FetchLogsRequest {
            log_length: log_length(server),
            limit: None,
            operator: None,
            packages: [(meta, None)].into(),
        })
        .await
        .unwrap();
    logs.packages[&meta].len()
}

/// The workflow identity rule of [`WORKFLOW`].
/// A server trusting `sigstore`, namespace `acme` owned by alice; alice's
/// owner token, her `sign` token, and release 1.0.0 of `acme:app` with its
/// manifest digest and size.
async fn acme(
    db: TestDatabase,
    sigstore: &Sigstore,
) -> (TestServer, String, String, String, usize) {
    let server = TestServer::start_with(db, sigstore.args()).await;
    let owner = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
    claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
    let wasm = wit_package("acme:app", "1.0.0", "interface api { run: func(); }");
    let image = oci_push(&server, &owner, "acme/app", "1.0.0", &wasm)
        .await
        .unwrap();
    let size = wasm_manifest(&wasm, &wasm_config(&wasm)).len();
    let sign = token_for(&server, "alice", &["acme"], &[Action::Sign]).await;
    (server, owner, sign, image, size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_keyless_attested_and_bundled_signatures_verify_and_are_listed() {
    for db in TestDatabase::all().await {
        let mut sigstore = Sigstore::new();
        let (server, owner, sign, image, size) = acme(db, &sigstore).await;
        let kind = server.kind();
        let key = SigningKey::random(&mut rand::rngs::OsRng);

        // The owner sets the trust rules; a publisher-only token may not.
        let rules = json!({
            "signatureKeys": [public_pem(&key)],
            "signatureIdentities": [workflow_rule()],
            "requireAttestations": [SLSA],
        });
        let (status, _) = set_trust(&server, &sign, "acme", &rules).await;
        assert_eq!(status, 403, "{kind}: a sign token is not an owner's");
        let (status, body) = set_trust(&server, &owner, "acme", &rules).await;
        assert_eq!(status, 200, "{kind}: {body}");
        let view: Value = reqwest::get(format!("{}/api/v1/namespaces/acme", server.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let policy = &view["ownership"]["policy"];
        assert_eq!(policy["signatureIdentities"][0], workflow_rule(), "{kind}");
        assert_eq!(policy["requireAttestations"][0], SLSA, "{kind}");

        let oci = Oci::login(&server, &sign, "acme/app").await;
        // A keyed signature, then cosign's second signature appended to
        // the same `.sig` manifest: a keyless one by the release workflow.
        let keyed = keyed_layer(&key, &image);
        oci.attach(&image, "sig", &[&keyed])
            .await
            .unwrap_or_else(|e| panic!("{kind}: keyed: {e:?}"));
        let keyless = keyless(
            &sigstore.fulcio,
            &mut sigstore.rekor,
            LeafSpec::workflow(),
            &image,
        );
        let sig = oci
            .attach(&image, "sig", &[&keyed, &keyless])
            .await
            .unwrap_or_else(|e| panic!("{kind}: keyless: {e:?}"));
        // SLSA provenance, keyless.
        let provenance = keyless_attestation(&sigstore.fulcio, &mut sigstore.rekor, &image, SLSA);
        let att = oci
            .attach(&image, "att", &[&provenance])
            .await
            .unwrap_or_else(|e| panic!("{kind}: attestation: {e:?}"));
        // A cosign 3 bundle through the referrers API.
        let bundle = keyless_bundle(&sigstore.fulcio, &mut sigstore.rekor, &image);
        let referrer = oci
            .attach_bundle(&image, size, &bundle)
            .await
            .unwrap_or_else(|e| panic!("{kind}: bundle: {e:?}"));

        // The package view lists each with its verdict and signer.
        let view = package_view(&server, "acme:app").await;
        let version = &view["versions"][0];
        assert_eq!(version["manifest"], image, "{kind}");
        let signatures = version["signatures"].as_array().unwrap();
        let of = |manifest: &str, blob: &[u8]| {
            signatures
                .iter()
                .filter(|s| s["manifest"] == manifest && s["blob"] == digest_of(blob))
                .collect::<Vec<_>>()
        };
        assert!(
            signatures
                .iter()
                .all(|s| s["verdict"] == "verified" && s["subject"] == image.as_str()),
            "{kind}: {signatures:#?}"
        );
        // Both layers carry the same payload (as cosign writes them); they
        // differ by signer.
        let (by_key, by_workflow): (Vec<_>, Vec<_>) = of(&sig, &keyed.blob)
            .into_iter()
            .partition(|s| s.get("keyFingerprint").is_some());
        assert_eq!(keyed.blob, keyless.blob);
        assert_eq!(by_key.len(), 1, "{kind}: {signatures:#?}");
        assert_eq!(by_key[0]["keyFingerprint"], fingerprint(&key), "{kind}");
        assert_eq!(by_key[0]["format"], "simplesigning", "{kind}");
        assert_eq!(by_workflow.len(), 1, "{kind}: {signatures:#?}");
        assert_eq!(by_workflow[0]["issuer"], GITHUB, "{kind}");
        assert_eq!(by_workflow[0]["identity"], WORKFLOW, "{kind}");
        assert_eq!(by_workflow[0]["integratedTime"], T0 + 30, "{kind}");
        assert!(by_workflow[0]["logIndex"].is_u64(), "{kind}");
        let attested = of(&att, &provenance.blob);
        assert_eq!(attested[0]["predicateType"], SLSA, "{kind}");
        assert_eq!(attested[0]["format"], "dsse", "{kind}");
        let bundled = of(&referrer, &bundle);
        assert_eq!(bundled[0]["format"], "bundle", "{kind}");
        assert_eq!(bundled[0]["predicateType"], COSIGN_SIGN, "{kind}");
        assert_eq!(bundled[0]["identity"], WORKFLOW, "{kind}");
        // The first `.sig` manifest (the keyed signature alone) stays
        // logged too, with its own verdict.
        assert_eq!(signatures.len(), 5, "{kind}: {signatures:#?}");
    }
}

/// Pushes `layers` as `suffix` and expects `403 DENIED` naming `reason`,
/// with nothing logged and nothing served.
async fn refused(
    server: &TestServer,
    oci: &Oci,
    image: &str,
    suffix: &str,
    layers: &[&Layer],
    reason: &str,
) {
    let kind = server.kind();
    let (length, meta) = (log_length(server), meta_length(server, "acme:app").await);
    let (status, code, message) = oci
        .attach(image, suffix, layers)
        .await
        .expect_err("the attack is refused");
    assert_eq!(
        (status, code.as_str()),
        (403, "DENIED"),
        "{kind}: {message}"
    );
    assert!(message.contains(reason), "{kind}: {reason}: {message}");
    assert_eq!(
        log_length(server),
        length,
        "{kind}: {reason}: nothing logged"
    );
    assert_eq!(
        meta_length(server, "acme:app").await,
        meta,
        "{kind}: {reason}"
    );
    let tag = format!("{}.{suffix}", image.replace(':', "-"));
    let (status, _) = manifest_status(server, "acme/app", &tag).await;
    assert_eq!(status, 404, "{kind}: {reason}: nothing served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_that_do_not_verify_are_refused_and_nothing_is_logged() {
    for db in TestDatabase::all().await {
        let mut sigstore = Sigstore::new();
        let (server, owner, sign, image, _) = acme(db, &sigstore).await;
        let kind = server.kind();
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let rules = json!({
            "signatureKeys": [public_pem(&key)],
            "signatureIdentities": [workflow_rule()],
            "requireSignature": true,
            "requireAttestations": [SLSA],
        });
        let (status, body) = set_trust(&server, &owner, "acme", &rules).await;
        assert_eq!(status, 200, "{kind}: {body}");
        let oci = Oci::login(&server, &sign, "acme/app").await;

        // A valid signature of another artifact, replayed onto this one.
        let other = digest_of(b"another artifact");
        refused(
            &server,
            &oci,
            &image,
            "sig",
            &[&keyed_layer(&key, &other)],
            "the signature is for",
        )
        .await;
        // A key nobody listed.
        let stranger = SigningKey::random(&mut rand::rngs::OsRng);
        refused(
            &server,
            &oci,
            &image,
            "sig",
            &[&keyed_layer(&stranger, &image)],
            "no listed key verifies",
        )
        .await;
        // Another workflow of the same organisation.
        let mut spec = LeafSpec::workflow();
        spec.san = SanType::URI(
            "https://github.com/acme/app/.github/workflows/pr.yml@refs/heads/main"
                .try_into()
                .unwrap(),
        );
        let layer = keyless(&sigstore.fulcio, &mut sigstore.rekor, spec, &image);
        refused(
            &server,
            &oci,
            &image,
            "sig",
            &[&layer],
            "matches no identity rule",
        )
        .await;
        // The right identity from another OIDC issuer.
        let mut spec = LeafSpec::workflow();
        spec.oidc_issuer = "https://accounts.example.com".into();
        let layer = keyless(&sigstore.fulcio, &mut sigstore.rekor, spec, &image);
        refused(
            &server,
            &oci,
            &image,
            "sig",
            &[&layer],
            "matches no identity rule",
        )
        .await;
        // A certificate from a CA the deployment does not trust.
        let rogue = Fulcio::new("rogue");
        let layer = keyless(&rogue, &mut sigstore.rekor, LeafSpec::workflow(), &image);
        refused(
            &server,
            &oci,
            &image,
            "sig",
            &[&layer],
            "not issued by a trusted CA",
        )
        .await;
        // A certificate that expired before the log saw the signature.
        let mut spec = LeafSpec::workflow();
        spec.not_after = T0;
        let layer = keyless(&sigstore.fulcio, &mut sigstore.rekor, spec, &image);
        refused(
            &server,
            &oci,
            &image,
            "sig",
            &[&layer],
            "not valid at the signing time",
        )
        .await;
        // A tampered Rekor bundle: the integrated time rewritten.
        let mut layer = keyless(
            &sigstore.fulcio,
            &mut sigstore.rekor,
            LeafSpec::workflow(),
            &image,
        );
        let annotation = layer
            .annotations
            .get_mut("dev.sigstore.cosign/bundle")
            .unwrap();
        let mut bundle: Value = serde_json::from_str(annotation).unwrap();
        bundle["Payload"]["integratedTime"] = json!(T0 + 60);
        *annotation = bundle.to_string();
        refused(
            &server,
            &oci,
            &image,
            "sig",
            &[&layer],
            "transparency-log proof",
        )
        .await;
        // A genuine Rekor entry, for other content.
        let leaf = sigstore.fulcio.issue(LeafSpec::workflow());
        let mut layer = keyless(
            &sigstore.fulcio,
            &mut sigstore.rekor,
            LeafSpec::workflow(),
            &image,
        );
        let other_payload = world::simplesigning_payload("registry.test/acme/app", &other);
        let other_signature = leaf.sign(&other_payload);
        let entry = sigstore.rekor.log(
            hashedrekord(&sha256(&other_payload), &other_signature, &leaf.pem()),
            T0 + 30,
        );
        layer.annotations.insert(
            "dev.sigstore.cosign/bundle".into(),
            bundle_annotation(&entry),
        );
        refused(
            &server,
            &oci,
            &image,
            "sig",
            &[&layer],
            "does not match the signature",
        )
        .await;
        // An SBOM where the namespace asks for provenance.
        let sbom = keyless_attestation(&sigstore.fulcio, &mut sigstore.rekor, &image, SPDX);
        refused(
            &server,
            &oci,
            &image,
            "att",
            &[&sbom],
            "is not the required",
        )
        .await;
        // One bad signature among good ones refuses the whole push.
        let good = keyed_layer(&key, &image);
        refused(
            &server,
            &oci,
            &image,
            "sig",
            &[&good, &keyed_layer(&stranger, &image)],
            "no listed key verifies",
        )
        .await;

        // The rules are checked before they are logged.
        for (bad, reason) in [
            (
                json!({ "signatureKeys": ["not a key"] }),
                "invalid public key",
            ),
            (
                json!({ "signatureIdentities": [format!("{GITHUB}=(")] }),
                "bad regular expression",
            ),
            (json!({ "requireSignature": true }), "needs a signature key"),
        ] {
            let length = log_length(&server);
            let (status, body) = set_trust(&server, &owner, "acme", &bad).await;
            assert_eq!(status, 400, "{kind}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains(reason),
                "{kind}: {body}"
            );
            assert_eq!(log_length(&server), length, "{kind}");
        }
        // And the valid signature still goes in.
        oci.attach(&image, "sig", &[&good])
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trust_rules_signatures_are_logged_as_unverified() {
    for db in TestDatabase::all().await {
        let sigstore = Sigstore::new();
        let (server, _owner, sign, image, _) = acme(db, &sigstore).await;
        let kind = server.kind();
        let oci = Oci::login(&server, &sign, "acme/app").await;
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let layer = keyed_layer(&key, &image);
        let meta = meta_length(&server, "acme:app").await;
        let sig = oci
            .attach(&image, "sig", &[&layer])
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(meta_length(&server, "acme:app").await, meta + 1, "{kind}");
        let view = package_view(&server, "acme:app").await;
        let signatures = view["versions"][0]["signatures"].as_array().unwrap();
        assert_eq!(signatures.len(), 1, "{kind}: {signatures:#?}");
        let check = &signatures[0];
        assert_eq!(check["manifest"], sig, "{kind}");
        assert_eq!(check["verdict"], "unverified", "{kind}");
        assert_eq!(check["blob"], digest_of(&layer.blob), "{kind}");
        assert!(
            check["reason"].as_str().unwrap().contains("no trust rules"),
            "{kind}: {check}"
        );
        assert!(check.get("keyFingerprint").is_none(), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_trusted_root_stops_the_server() {
    let db = TestDatabase::all().await.into_iter().next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trusted_root.json");
    std::fs::write(&path, b"{\"tlogs\": 5}").unwrap();
    let server = TestServer::prepare(
        db,
        ServeArgs {
            trusted_root: Some(path.clone()),
            ..ServeArgs::default()
        },
    );
    let Err(error) = server
        .try_boot(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
    else {
        panic!("the server refuses to start");
    };
    let error = error.to_string();
    assert!(
        error.contains(&format!("--trusted-root {}", path.display()))
            && error.contains("invalid trusted root"),
        "{error}"
    );
}
