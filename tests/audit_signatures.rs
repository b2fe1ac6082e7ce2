//! `cairn audit signatures` against a real server: every logged signature
//! verdict is fetched over the OCI door and verified again. A clean
//! registry (keyed and keyless signatures, a Sigstore bundle) audits
//! clean; without a trusted root keyless verdicts are reported as not
//! rechecked; a bundle rewritten in the blob store behind the server's back,
//! and a verdict the namespace's trust rules in force do not support (a
//! record signed by the operator key), are evidence with exit code 2.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::new_without_default,
    reason = "tests"
)]

#[path = "support/cosign.rs"]
mod cosign;
#[path = "support/sigstore.rs"]
mod sigstore;
#[allow(dead_code, reason = "the verification tests' world, partly used here")]
#[path = "../crates/cairn-sigstore/tests/verification/support.rs"]
mod world;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_audit::oci::Door;
use cairn_audit::remote::Remote;
use cairn_audit::{AuditError, Trust};
use cairn_crypto::{PublicKey, Signature};
use cairn_protocol::ext::meta::TagEntry;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_protocol::ext::signature::SignatureCheck;
use cairn_protocol::ext::{Attribution, ExtEntry, ExtRecord, meta_log_name};
use cairn_protocol::record::{Record, RecordKind as _};
use cairn_protocol::wire::FetchLogsRequest;
use cairn_protocol::{Envelope, LogId, PackageName, Timestamp};
use cairn_service::identity::Action;
use cairn_sigstore::TrustedRoot;
use cairn_store::PendingStore as _;
use cairn_tests::cluster::cairn_bin;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use cosign::{attach, keyed_layer, public_pem};
use p256::ecdsa::SigningKey;
use serde_json::{Value, json};
use sigstore::{BUNDLE, Sigstore, keyless, keyless_bundle, workflow_rule};
use world::LeafSpec;

const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// A test Fulcio and Rekor, and the trusted root file naming them.
/// The trusted root `sigstore` writes.
fn root(sigstore: &Sigstore) -> TrustedRoot {
    TrustedRoot::from_json(&std::fs::read(&sigstore.root_path).unwrap()).unwrap()
}

/// Attaches a Sigstore bundle to `image` (`size` bytes) as a referrer.
async fn attach_bundle(
    oci: &OciSession,
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
    });
    let reference = digest_of(&serde_json::to_vec(&manifest).unwrap());
    oci.push(&reference, &[b"{}", bundle], &manifest)
        .await
        .map(|(digest, _)| digest)
}

/// Sets `acme`'s trust rules; they must be accepted.
async fn set_trust(server: &TestServer, token: &str, body: &Value) {
    let (status, answer) = cosign::set_trust(server, token, "acme", body).await;
    assert_eq!(status, 200, "{answer}");
}

/// A server trusting `sigstore` with `acme` owned by alice, release
/// `acme:app` 1.0.0, and a `sign` session on `acme/app`: the owner token,
/// the session, the release's manifest digest and size.
async fn acme(
    db: TestDatabase,
    sigstore: &Sigstore,
) -> (TestServer, String, OciSession, String, usize) {
    let server = TestServer::start_with(db, sigstore.args()).await;
    let owner = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
    claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
    let wasm = wit_package("acme:app", "1.0.0", "interface api { run: func(); }");
    let image = oci_push(&server, &owner, "acme/app", "1.0.0", &wasm)
        .await
        .unwrap();
    let size = wasm_manifest(&wasm, &wasm_config(&wasm)).len();
    let sign = token_for(&server, "alice", &["acme"], &[Action::Sign]).await;
    let oci = OciSession::login(&server, &sign, "acme/app").await;
    (server, owner, oci, image, size)
}

fn trust(server: &TestServer) -> Trust {
    Trust {
        vkey: server.registry().note_verifier_key(),
        policy: None,
    }
}

async fn audit(
    server: &TestServer,
    root: Option<&TrustedRoot>,
) -> Result<cairn_audit::signatures::SignatureReport, AuditError> {
    let remote = Remote::new(&server.url).unwrap();
    let door = Door::new(&server.url, None).unwrap();
    cairn_audit::signatures::check(&remote, &door, &trust(server), root, |_| {}).await
}

/// Runs `cairn audit signatures` on `server`: exit code and output.
fn audit_cli(server: &TestServer, root: &Path) -> (i32, String) {
    let output = Command::new(cairn_bin())
        .args(["audit", "signatures", &server.url, "--vkey"])
        .arg(server.registry().note_verifier_key().to_string())
        .arg("--trusted-root")
        .arg(root)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_are_rechecked_and_a_tampered_bundle_is_found() {
    for db in TestDatabase::all().await {
        let mut sigstore = Sigstore::new();
        let (server, owner, oci, image, size) = acme(db, &sigstore).await;
        let kind = server.kind();
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        set_trust(
            &server,
            &owner,
            &json!({
                "signatureKeys": [public_pem(&key)],
                "signatureIdentities": [workflow_rule()],
            }),
        )
        .await;
        let keyed = keyed_layer(&key, &image);
        let keyless = keyless(
            &sigstore.fulcio,
            &mut sigstore.rekor,
            LeafSpec::workflow(),
            &image,
        );
        attach(&oci, &image, "sig", &[&keyed, &keyless])
            .await
            .unwrap();
        let bundle = keyless_bundle(&sigstore.fulcio, &mut sigstore.rekor, &image);
        attach_bundle(&oci, &image, size, &bundle).await.unwrap();

        // Clean, with the trusted root: every verdict recomputed.
        let root = root(&sigstore);
        let report = audit(&server, Some(&root)).await.unwrap();
        assert_eq!(
            (
                report.verdicts,
                report.keyed,
                report.keyless,
                report.unverified
            ),
            (3, 1, 2, 0),
            "{kind}: {report:?}"
        );
        assert!(report.not_rechecked.is_empty(), "{kind}: {report:?}");
        // Without it: the keyed verdict only.
        let report = audit(&server, None).await.unwrap();
        assert_eq!((report.keyed, report.keyless), (1, 0), "{kind}");
        assert_eq!(report.not_rechecked.len(), 2, "{kind}: {report:?}");
        assert!(
            report
                .not_rechecked
                .iter()
                .all(|n| n.contains("not rechecked: keyless, and no trusted root was given")),
            "{kind}: {report:?}"
        );
        let (code, output) = audit_cli(&server, &sigstore.root_path);
        assert_eq!(code, 0, "{kind}: {output}");
        assert!(output.contains("no problems found"), "{kind}: {output}");

        // The bundle is rewritten in the blob store, same size.
        let hex = digest_of(&bundle).trim_start_matches("sha256:").to_owned();
        let path = server
            .data
            .path()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(&hex[2..]);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.iter().position(|b| *b == b'x').unwrap_or(10);
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let error = audit(&server, Some(&root)).await.unwrap_err();
        assert_eq!(error.exit_code(), 2, "{kind}: {error}");
        let text = error.to_string();
        assert!(
            text.contains("1 logged signature verdicts do not hold"),
            "{kind}: {text}"
        );
        assert!(text.contains(&digest_of(&bundle)), "{kind}: {text}");
        assert!(text.contains("/receipt/"), "{kind}: {text}");
        let (code, output) = audit_cli(&server, &sigstore.root_path);
        assert_eq!(code, 2, "{kind}: {output}");
        assert!(output.contains("SECURITY ERROR"), "{kind}: {output}");
    }
}

/// Signs `entries` as the next record of `package`'s metadata log with
/// the operator key and queues it, as a registry holding that key could;
/// returns once a checkpoint covers it.
async fn log_as_operator(server: &TestServer, package: &str, entries: Vec<ExtEntry>) {
    let package: PackageName = package.parse().unwrap();
    let meta = LogId::package_meta(&package);
    let logs = server
        .registry()
        .fetch_logs(FetchLogsRequest {
            log_length: log_length(server),
            limit: None,
            operator: None,
            packages: [(meta, None)].into(),
        })
        .await
        .unwrap();
    let head = logs.packages[&meta].last().unwrap();
    let head_bytes = STANDARD.decode(&head.envelope.content_bytes).unwrap();
    let head_record = ExtRecord::decode(&head_bytes).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let now = Timestamp::from_unix(now.as_secs(), 0).unwrap();
    let timestamp = if head_record.timestamp > now {
        head_record.timestamp
    } else {
        now
    };
    let record: ExtRecord = Record {
        prev: Some(ExtRecord::record_id(&head_bytes)),
        version: 0,
        timestamp,
        entries,
    };
    let bytes = record.encode();
    let signer = server.registry().operator_signer();
    let PublicKey::EcdsaP256(public) = signer.public_key().clone() else {
        panic!("the operator key is P-256");
    };
    let Signature::EcdsaP256(signature) = signer
        .sign(&Envelope::<ExtRecord>::signing_message(&bytes))
        .await
        .unwrap()
    else {
        panic!("a P-256 signature");
    };
    let envelope = Envelope::from_signed(record, bytes, public.key_id(), signature);
    let store = cairn_store::SqlStore::connect(&server.db.url, 2)
        .await
        .unwrap();
    let length = log_length(server);
    store
        .insert_pending(&cairn_store::NewPending {
            record_id: envelope.record_id(),
            log_id: meta,
            package_name: Some(meta_log_name(&package)),
            content_bytes: envelope.content_bytes().to_vec(),
            key_id: envelope.key_id().to_string(),
            signature: envelope.signature().to_string(),
            missing: Vec::new(),
            created_at_ms: 0,
        })
        .await
        .unwrap();
    eventually(30, "the record is sequenced", || async {
        (log_length(server) > length).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_the_rules_in_force_do_not_support_is_reported() {
    for db in TestDatabase::all().await {
        let sigstore = Sigstore::new();
        let (server, owner, oci, image, _) = acme(db, &sigstore).await;
        let kind = server.kind();
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        set_trust(
            &server,
            &owner,
            &json!({ "signatureKeys": [public_pem(&key)] }),
        )
        .await;
        let sig = attach(&oci, &image, "sig", &[&keyed_layer(&key, &image)])
            .await
            .unwrap();
        let root = root(&sigstore);
        assert_eq!(
            audit(&server, Some(&root)).await.unwrap().keyed,
            1,
            "{kind}"
        );

        // The owner now trusts another key only; then a record re-attaches
        // the signature with the verdict copied from the log.
        let other = SigningKey::random(&mut rand::rngs::OsRng);
        set_trust(
            &server,
            &owner,
            &json!({ "signatureKeys": [public_pem(&other)] }),
        )
        .await;
        let view: Value = reqwest::get(format!("{}/api/v1/packages/acme:app", server.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut logged = view["versions"][0]["signatures"][0].clone();
        logged.as_object_mut().unwrap().remove("manifest");
        let check: SignatureCheck = serde_json::from_value(logged).unwrap();
        log_as_operator(
            &server,
            "acme:app",
            vec![ExtEntry::Tag(TagEntry {
                tag: format!("{}.sig", image.replace(':', "-")),
                digest: sig.parse().unwrap(),
                release: None,
                signatures: vec![check],
                by: Attribution {
                    identity: "alice".into(),
                    via: "token".into(),
                    token: None,
                    claims: BTreeMap::new(),
                },
            })],
        )
        .await;

        let error = audit(&server, Some(&root)).await.unwrap_err();
        assert_eq!(error.exit_code(), 2, "{kind}: {error}");
        let text = error.to_string();
        assert!(
            text.contains("1 logged signature verdicts do not hold"),
            "{kind}: {text}"
        );
        assert!(
            text.contains(
                "logged as verified, but it does not verify under the trust rules namespace \
                 `acme` had then"
            ),
            "{kind}: {text}"
        );
        assert!(text.contains("no listed key verifies"), "{kind}: {text}");
        assert!(
            text.contains("the trust rules of namespace `acme` were set by entry"),
            "{kind}: {text}"
        );
    }
}
