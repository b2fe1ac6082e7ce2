//! Signatures made by a real Sigstore client verify: npm's Sigstore client
//! library (`@sigstore/sign`, sigstore-js) signs keyless with a certificate
//! from a mock Fulcio and logs in a mock Rekor (`@sigstore/mock`, both on
//! loopback; see support/sigstore_js.rs), and cairn, started with the
//! trusted root of those two, checks its bundles at OCI push against a
//! namespace's keyless identity rule.
//!
//! The client's own layouts are exercised as it writes them: a message
//! signature over the manifest bytes (a bundle v0.2 with a certificate
//! chain and a `hashedrekord` entry) and DSSE envelopes of in-toto
//! statements (bundles v0.3 with a certificate, `dsse` or `intoto`
//! entries), each entry with an inclusion promise and an inclusion proof
//! to a signed checkpoint. They are attached through the referrers API as
//! cosign 3 attaches bundles. A release held until signed is served once
//! one verifies; a bundle moved to another manifest, altered in one byte,
//! or signed by an identity the namespace does not trust is refused with
//! `403 DENIED` and nothing is logged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

#[path = "support/cosign.rs"]
mod cosign;
#[path = "support/sigstore_js.rs"]
mod sigstore_js;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use cosign::{attach_bundle, package_view, set_trust};
use serde_json::{Value, json};
use sigstore_js::{SigstoreJs, statement};

const AWAITS: &str = "release 1.0.0 awaits a signature matching policy";
const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
const SLSA: &str = "https://slsa.dev/provenance/v1";
/// What every refusal says.
const ACCEPTS: &str = "accepts verified signatures only";
/// The last byte, for [`flip`].
const LAST: usize = usize::MAX;

/// The identity rule trusting exactly `identity` from `issuer`.
fn rule(issuer: &str, identity: &str) -> String {
    format!("{issuer}={}", regex_escape(identity))
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Every entry of `package`'s metadata log, record by record.
async fn meta_records(server: &TestServer, package: &str) -> Vec<Vec<Value>> {
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
    logs.packages[&meta]
        .iter()
        .map(|record| {
            let bytes = STANDARD.decode(&record.envelope.content_bytes).unwrap();
            let json: Value = serde_json::from_slice(&bytes).unwrap();
            json["entries"].as_array().unwrap().clone()
        })
        .collect()
}

/// A release pushed over OCI: its manifest's bytes and digest.
struct Release {
    manifest: Vec<u8>,
    image: String,
}

async fn push(server: &TestServer, token: &str, repo: &str, name: &str, version: &str) -> Release {
    let wasm = wit_package(name, version, "interface api { run: func(); }");
    let image = oci_push(server, token, repo, version, &wasm).await.unwrap();
    let manifest = wasm_manifest(&wasm, &wasm_config(&wasm));
    assert_eq!(
        digest_of(&manifest),
        image,
        "the manifest pushed is this one"
    );
    Release { manifest, image }
}

/// A server trusting `sigstore`'s root; namespace `acme` (owned by alice)
/// trusting the client's identity and `rival` trusting another workflow,
/// both holding releases until signed; release 1.0.0 of `acme:app`,
/// `acme:lib` and `rival:app`, and 0.9.0 of `acme:app`, all held. Returns
/// the server, alice's sign token and the releases.
struct World {
    server: TestServer,
    sign: String,
    app: Release,
    older: Release,
    lib: Release,
    rival: Release,
}

async fn world(db: TestDatabase, sigstore: &SigstoreJs) -> World {
    let server = TestServer::start_with(db, sigstore.args()).await;
    let owner = identity_with_token(&server, "alice", &["acme", "rival"], &[Action::Publish]).await;
    for namespace in ["acme", "rival"] {
        claim(&server, namespace, &["alice"], PublishPolicy::default()).await;
    }
    let trusted = rule(&sigstore.issuer, &sigstore.identity);
    let (status, body) = set_trust(
        &server,
        &owner,
        "acme",
        &json!({ "signatureIdentities": [trusted], "requireSignature": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let another = rule(
        &sigstore.issuer,
        "https://github.com/rival/app/.github/workflows/release.yml@refs/heads/main",
    );
    let (status, body) = set_trust(
        &server,
        &owner,
        "rival",
        &json!({ "signatureIdentities": [another], "requireSignature": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let older = push(&server, &owner, "acme/app", "acme:app", "0.9.0").await;
    let app = push(&server, &owner, "acme/app", "acme:app", "1.0.0").await;
    let lib = push(&server, &owner, "acme/lib", "acme:lib", "1.0.0").await;
    let rival = push(&server, &owner, "rival/app", "rival:app", "1.0.0").await;
    let sign = token_for(&server, "alice", &["acme", "rival"], &[Action::Sign]).await;
    World {
        server,
        sign,
        app,
        older,
        lib,
        rival,
    }
}

/// The anonymous status of `repo`'s manifest `image`, and the message of
/// a refusal.
async fn served(server: &TestServer, repo: &str, image: &str) -> (u16, String) {
    let response = reqwest::get(format!("{}/v2/{repo}/manifests/{image}", server.url))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    (status, message.to_owned())
}

/// Attaches `bundle` to `release` of `repo` and expects `403 DENIED`
/// naming `reason`, with nothing logged.
async fn refused(w: &World, repo: &str, release: &Release, bundle: &[u8], reason: &str) {
    let server = &w.server;
    let kind = server.kind();
    let before = log_length(server);
    let session = OciSession::login(server, &w.sign, repo).await;
    let (status, code, message) =
        attach_bundle(&session, &release.image, release.manifest.len(), bundle)
            .await
            .expect_err("refused");
    assert_eq!(
        (status, code.as_str()),
        (403, "DENIED"),
        "{kind}: {message}"
    );
    assert!(message.contains(reason), "{kind}: {reason}: {message}");
    assert_eq!(
        log_length(server),
        before,
        "{kind}: {reason}: nothing logged"
    );
}

/// The logged check of the signature `blob` attached by `referrer`, from
/// the package view, with the record of the package's metadata log that
/// logged it.
async fn logged(w: &World, package: &str, referrer: &str, blob: &[u8]) -> (Value, Vec<Value>) {
    let view = package_view(&w.server, package).await;
    let check = view["versions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["signatures"].as_array().cloned().unwrap_or_default())
        .find(|s| s["manifest"] == referrer && s["blob"] == digest_of(blob))
        .unwrap_or_else(|| panic!("{referrer} is listed: {view:#}"));
    let records = meta_records(&w.server, package).await;
    let record = records
        .into_iter()
        .find(|entries| entries.iter().any(|e| e["digest"] == referrer))
        .unwrap_or_else(|| panic!("{referrer} is logged"));
    (check, record)
}

/// The first transparency-log entry of a bundle.
fn tlog_entry(bundle: &[u8]) -> Value {
    let bundle: Value = serde_json::from_slice(bundle).unwrap();
    bundle["verificationMaterial"]["tlogEntries"][0].clone()
}

/// `bundle` with one bit of the base64 bytes at `path` (a JSON pointer)
/// flipped, `byte` bytes in.
fn flip(bundle: &[u8], path: &str, byte: usize) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(bundle).unwrap();
    let field = json.pointer_mut(path).unwrap_or_else(|| panic!("{path}"));
    let mut bytes = STANDARD.decode(field.as_str().unwrap()).unwrap();
    let byte = byte.min(bytes.len() - 1);
    bytes[byte] ^= 0x01;
    *field = json!(STANDARD.encode(bytes));
    serde_json::to_vec(&json).unwrap()
}

/// `bundle` with the int64 (a decimal string) at `path` made one smaller:
/// an earlier integrated time stays in the past, unlike a later one.
fn one_less(bundle: &[u8], path: &str) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(bundle).unwrap();
    let field = json.pointer_mut(path).unwrap_or_else(|| panic!("{path}"));
    let value: i64 = field.as_str().unwrap().parse().unwrap();
    *field = json!((value - 1).to_string());
    serde_json::to_vec(&json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_signature_bundle_from_sigstore_js_releases_a_held_release() {
    let Some(mut sigstore) = SigstoreJs::start() else {
        return;
    };
    for db in TestDatabase::all().await {
        let w = world(db, &sigstore).await;
        let server = &w.server;
        let kind = server.kind();
        assert_eq!(served(server, "acme/app", &w.app.image).await.0, 403);
        assert!(
            served(server, "acme/app", &w.app.image)
                .await
                .1
                .contains(AWAITS)
        );

        // sigstore-js signs the manifest's bytes: the bundle's message
        // digest is the manifest digest.
        let bundle = sigstore.sign_message(&w.app.manifest);
        let parsed: Value = serde_json::from_slice(&bundle).unwrap();
        assert_eq!(
            parsed["mediaType"], "application/vnd.dev.sigstore.bundle+json;version=0.2",
            "{kind}"
        );
        let entry = tlog_entry(&bundle);
        assert_eq!(entry["kindVersion"]["kind"], "hashedrekord", "{kind}");
        assert!(entry.get("inclusionPromise").is_some(), "{kind}: {entry}");
        assert!(entry.get("inclusionProof").is_some(), "{kind}: {entry}");

        // Moved to another manifest: refused.
        refused(&w, "acme/app", &w.older, &bundle, "the signature is for").await;
        // One byte altered, wherever it is: refused.
        let proof = "/verificationMaterial/tlogEntries/0/inclusionProof";
        for (altered, reason) in [
            (
                flip(&bundle, "/messageSignature/signature", 20),
                "does not verify",
            ),
            (
                flip(&bundle, "/messageSignature/messageDigest/digest", 0),
                "the signature is for",
            ),
            (
                flip(
                    &bundle,
                    "/verificationMaterial/x509CertificateChain/certificates/0/rawBytes",
                    LAST,
                ),
                "the transparency-log entry does not match the signature",
            ),
            (
                flip(
                    &bundle,
                    "/verificationMaterial/tlogEntries/0/canonicalizedBody",
                    40,
                ),
                "the transparency-log entry does not match the signature",
            ),
            (
                flip(
                    &bundle,
                    "/verificationMaterial/tlogEntries/0/inclusionPromise/signedEntryTimestamp",
                    30,
                ),
                "the signed entry timestamp does not verify",
            ),
            (
                flip(&bundle, &format!("{proof}/rootHash"), 0),
                "the transparency-log proof does not verify",
            ),
            (
                one_less(
                    &bundle,
                    "/verificationMaterial/tlogEntries/0/integratedTime",
                ),
                "the signed entry timestamp does not verify",
            ),
            (
                one_less(&bundle, "/verificationMaterial/tlogEntries/0/logIndex"),
                "the signed entry timestamp does not verify",
            ),
        ] {
            refused(&w, "acme/app", &w.app, &altered, reason).await;
        }
        // Signed by an identity `rival` does not trust: refused.
        let stranger = sigstore.sign_message(&w.rival.manifest);
        refused(
            &w,
            "rival/app",
            &w.rival,
            &stranger,
            &format!(
                "identity {} from issuer {}",
                sigstore.identity, sigstore.issuer
            ),
        )
        .await;
        assert_eq!(served(server, "rival/app", &w.rival.image).await.0, 403);
        assert_eq!(served(server, "acme/app", &w.app.image).await.0, 403);

        // The bundle as the client wrote it: verified, logged with its
        // signer and log entry, and the release served.
        let session = OciSession::login(server, &w.sign, "acme/app").await;
        let referrer = attach_bundle(&session, &w.app.image, w.app.manifest.len(), &bundle)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let (check, record) = logged(&w, "acme:app", &referrer, &bundle).await;
        assert_eq!(check["verdict"], "verified", "{kind}: {check:#}");
        assert_eq!(check["format"], "bundle", "{kind}");
        assert_eq!(check["subject"], w.app.image.as_str(), "{kind}");
        assert_eq!(check["issuer"], sigstore.issuer.as_str(), "{kind}");
        assert_eq!(check["identity"], sigstore.identity.as_str(), "{kind}");
        let index: u64 = entry["logIndex"].as_str().unwrap().parse().unwrap();
        let time: i64 = entry["integratedTime"].as_str().unwrap().parse().unwrap();
        assert_eq!(check["logIndex"], index, "{kind}");
        assert_eq!(check["integratedTime"], time, "{kind}");
        let log_id = hex::encode(
            STANDARD
                .decode(entry["logId"]["keyId"].as_str().unwrap())
                .unwrap(),
        );
        assert_eq!(check["logId"], log_id.as_str(), "{kind}");
        // The metadata log says so, and releases in the same record.
        let types: Vec<&str> = record.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["manifest", "releaseReleased"],
            "{kind}: {record:#?}"
        );
        let signature = &record[0]["signatures"][0];
        assert_eq!(signature["verdict"], "verified", "{kind}: {signature}");
        assert_eq!(signature["identity"], sigstore.identity.as_str(), "{kind}");
        assert_eq!(signature["logIndex"], index, "{kind}");
        assert_eq!(
            served(server, "acme/app", &w.app.image).await,
            (200, String::new())
        );
        assert_eq!(
            manifest_status(server, "acme/app", "1.0.0").await,
            (200, w.app.image.clone())
        );
        // The other releases stay held.
        assert_eq!(served(server, "acme/app", &w.older.image).await.0, 403);
        assert_eq!(served(server, "acme/lib", &w.lib.image).await.0, 403);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsse_bundles_from_sigstore_js_verify_with_dsse_and_intoto_log_entries() {
    let Some(mut sigstore) = SigstoreJs::start() else {
        return;
    };
    for db in TestDatabase::all().await {
        let w = world(db, &sigstore).await;
        let server = &w.server;
        let kind = server.kind();

        // cosign 3's signing statement, logged as a `dsse` entry.
        let bundle = sigstore.sign_statement(&statement(&w.lib.image, COSIGN_SIGN), "dsse");
        let parsed: Value = serde_json::from_slice(&bundle).unwrap();
        assert_eq!(
            parsed["mediaType"], "application/vnd.dev.sigstore.bundle.v0.3+json",
            "{kind}"
        );
        assert!(parsed["verificationMaterial"].get("certificate").is_some());
        assert_eq!(tlog_entry(&bundle)["kindVersion"]["kind"], "dsse", "{kind}");

        refused(&w, "acme/app", &w.app, &bundle, "the signature is for").await;
        for (altered, reason) in [
            (
                flip(&bundle, "/dsseEnvelope/signatures/0/sig", 20),
                "the signature does not verify",
            ),
            (flip(&bundle, "/dsseEnvelope/payload", 60), ACCEPTS),
            (
                flip(&bundle, "/verificationMaterial/certificate/rawBytes", LAST),
                "the transparency-log entry does not match the signature",
            ),
        ] {
            refused(&w, "acme/lib", &w.lib, &altered, reason).await;
        }
        let stranger = sigstore.sign_statement(&statement(&w.rival.image, COSIGN_SIGN), "dsse");
        refused(
            &w,
            "rival/app",
            &w.rival,
            &stranger,
            "matches no identity rule",
        )
        .await;

        let session = OciSession::login(server, &w.sign, "acme/lib").await;
        let referrer = attach_bundle(&session, &w.lib.image, w.lib.manifest.len(), &bundle)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let (check, record) = logged(&w, "acme:lib", &referrer, &bundle).await;
        assert_eq!(check["verdict"], "verified", "{kind}: {check:#}");
        assert_eq!(check["predicateType"], COSIGN_SIGN, "{kind}");
        assert_eq!(check["identity"], sigstore.identity.as_str(), "{kind}");
        let index: u64 = tlog_entry(&bundle)["logIndex"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(check["logIndex"], index, "{kind}");
        let types: Vec<&str> = record.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["manifest", "releaseReleased"], "{kind}");
        assert_eq!(served(server, "acme/lib", &w.lib.image).await.0, 200);

        // SLSA provenance, logged as an `intoto` entry (the older kind
        // cosign attestations are in): verified too.
        let provenance = sigstore.sign_statement(&statement(&w.app.image, SLSA), "intoto");
        assert_eq!(
            tlog_entry(&provenance)["kindVersion"]["kind"],
            "intoto",
            "{kind}"
        );
        let session = OciSession::login(server, &w.sign, "acme/app").await;
        let referrer = attach_bundle(&session, &w.app.image, w.app.manifest.len(), &provenance)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let (check, _) = logged(&w, "acme:app", &referrer, &provenance).await;
        assert_eq!(check["verdict"], "verified", "{kind}: {check:#}");
        assert_eq!(check["predicateType"], SLSA, "{kind}");
        assert_eq!(check["identity"], sigstore.identity.as_str(), "{kind}");
    }
}
