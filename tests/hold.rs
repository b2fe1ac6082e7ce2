//! Hold until signed: in a namespace requiring signatures, a release is
//! logged but held — refused by digest, by tag, through `latest`, through
//! `/content` and through the warg door, skipped in tag listings — until a
//! signature matching the policy arrives and verifies; then it is served.
//! The hold and the release are both entries of the package's metadata
//! log, in the records of the push that caused them.
//!
//! Signatures are keyed cosign signatures (`cosign sign --key`), attached
//! with cosign's tag scheme by the namespace's signer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

#[path = "support/cosign.rs"]
mod cosign;

use base64::Engine as _;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use cosign::{attach, cosign_key, keyed_layer, package_view, public_pem, set_trust};
use serde_json::{Value, json};
use wasm_pkg_client_016 as wkg;

const AWAITS: &str = "release 1.0.0 awaits a signature matching policy";

/// The entry types of each record of `package`'s metadata log.
async fn meta_entries(server: &TestServer, package: &str) -> Vec<Vec<String>> {
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
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&record.envelope.content_bytes)
                .unwrap();
            let json: Value = serde_json::from_slice(&bytes).unwrap();
            json["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// A GET (with `token` as bearer, if any): status and body.
async fn get(server: &TestServer, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.basic_auth("cosign", Some(token));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// The message of an answer: an OCI error's, or a `{status,message}`'s.
fn message(body: &[u8]) -> String {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    json["errors"][0]["message"]
        .as_str()
        .or_else(|| json["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The tags anonymous callers (or `token`'s) see.
async fn tags(server: &TestServer, token: Option<&str>) -> Vec<String> {
    let (status, body) = get(server, "/v2/acme/app/tags/list", token).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_slice(&body).unwrap();
    serde_json::from_value(json["tags"].clone()).unwrap()
}

/// A server with namespace `acme` owned by alice; release 0.9.0 of
/// `acme:app` pushed before the namespace required signatures, then the
/// policy (alice's key, signatures required), then release 1.0.0. Returns
/// the server, alice's sign token, the key, 1.0.0's wasm and manifest
/// digest, and 0.9.0's manifest digest.
struct World {
    server: TestServer,
    sign: String,
    key: p256::ecdsa::SigningKey,
    wasm: Vec<u8>,
    image: String,
    older: String,
}

async fn world(db: TestDatabase) -> World {
    let server = TestServer::start(db).await;
    let owner = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
    claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
    let old = wit_package("acme:app", "0.9.0", "interface api { run: func(); }");
    let older = oci_push(&server, &owner, "acme/app", "0.9.0", &old)
        .await
        .unwrap();
    let key = cosign_key();
    let (status, body) = set_trust(
        &server,
        &owner,
        "acme",
        &json!({"signatureKeys": [public_pem(&key)], "requireSignature": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let wasm = wit_package(
        "acme:app",
        "1.0.0",
        "interface api { run: func(); stop: func(); }",
    );
    let image = oci_push(&server, &owner, "acme/app", "1.0.0", &wasm)
        .await
        .unwrap();
    let sign = token_for(&server, "alice", &["acme"], &[Action::Sign]).await;
    World {
        server,
        sign,
        key,
        wasm,
        image,
        older,
    }
}

/// Every door refuses (or skips) the held release, with the message.
async fn assert_held(w: &World) {
    let server = &w.server;
    let content = digest_of(&w.wasm);
    let hex = content.trim_start_matches("sha256:");
    for path in [
        format!("/v2/acme/app/manifests/{}", w.image),
        "/v2/acme/app/manifests/1.0.0".to_owned(),
        format!("/v2/acme/app/blobs/{content}"),
        format!("/content/sha256-{hex}"),
        format!("/v1/content/{content}"),
    ] {
        let (status, body) = get(server, &path, None).await;
        assert_eq!(status, 403, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(
            message(&body).contains(AWAITS),
            "{path}: {}",
            message(&body)
        );
        if path.starts_with("/v2/") {
            let json: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["errors"][0]["code"], "DENIED", "{path}");
        }
    }
    // HEAD too (no body).
    let head = reqwest::Client::new()
        .head(format!("{}/v2/acme/app/manifests/{}", server.url, w.image))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 403);
    // `latest` resolves to the newest release that is served; the tag
    // listing skips the held one.
    assert_eq!(
        manifest_status(server, "acme/app", "latest").await,
        (200, w.older.clone())
    );
    assert!(!tags(server, None).await.contains(&"1.0.0".to_owned()));
    // The namespace's signer reads it (cosign resolves what it signs).
    let (status, _) = get(
        server,
        &format!("/v2/acme/app/manifests/{}", w.image),
        Some(&w.sign),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        tags(server, Some(&w.sign))
            .await
            .contains(&"1.0.0".to_owned())
    );
    // The package view says so.
    let view = package_view(server, "acme:app").await;
    let versions = view["versions"].as_array().unwrap();
    assert_eq!(versions[0]["version"], "0.9.0");
    assert_eq!(versions[0]["held"], false);
    assert_eq!(versions[1]["held"], true, "{view}");
    assert!(versions[1]["heldReason"].as_str().unwrap().contains(AWAITS));
    assert_eq!(versions[1]["hold"]["requires"]["signature"], true);
}

/// Every door serves the release.
async fn assert_served(w: &World) {
    let server = &w.server;
    let content = digest_of(&w.wasm);
    let hex = content.trim_start_matches("sha256:");
    for path in [
        format!("/v2/acme/app/manifests/{}", w.image),
        "/v2/acme/app/manifests/1.0.0".to_owned(),
        format!("/v1/content/{content}"),
    ] {
        let (status, body) = get(server, &path, None).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    }
    for path in [
        format!("/v2/acme/app/blobs/{content}"),
        format!("/content/sha256-{hex}"),
    ] {
        let (status, body) = get(server, &path, None).await;
        assert_eq!((status, body == w.wasm), (200, true), "{path}");
    }
    assert_eq!(
        manifest_status(server, "acme/app", "latest").await,
        (200, w.image.clone())
    );
    assert!(tags(server, None).await.contains(&"1.0.0".to_owned()));
    let view = package_view(server, "acme:app").await;
    let held = &view["versions"][1];
    assert_eq!(held["held"], false, "{view}");
    assert!(held.get("heldReason").is_none());
    assert_eq!(held["hold"]["releasedBy"].as_array().unwrap().len(), 1);
}

/// Audits what the OCI door serves, anonymously, against the logs.
async fn audit_door(server: &TestServer) {
    let remote = cairn_audit::remote::Remote::new(&server.url).unwrap();
    let door = cairn_audit::oci::Door::new(&server.url, None).unwrap();
    let trust = cairn_audit::Trust {
        vkey: server.registry().note_verifier_key(),
        policy: None,
    };
    let report = cairn_audit::oci::check(&remote, &door, &trust, |_| {})
        .await
        .unwrap();
    assert!(report.references > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_release_is_refused_on_every_door_until_signed() {
    for db in TestDatabase::all().await {
        let w = world(db).await;
        let server = &w.server;
        // Logged as usual, and held in the same record.
        let entries = meta_entries(server, "acme:app").await;
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[0], ["manifest"], "not held retroactively");
        assert_eq!(entries[1], ["manifest", "releaseHeld"]);
        assert_held(&w).await;
        // An outside auditor finds the door agreeing with the logs: the held
        // release's refusal is what its hold says.
        audit_door(server).await;

        // The warg door: the release is in the log, its content refused.
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        client.update().await.unwrap();
        let error = download(&client, "acme:app", "1.0.0").await.unwrap_err();
        assert!(format!("{error:#}").contains(AWAITS), "{error:#}");
        assert_eq!(
            download(&client, "acme:app", "0.9.0").await.unwrap(),
            wit_package("acme:app", "0.9.0", "interface api { run: func(); }")
        );

        // A signature by a key the policy does not list is refused, and
        // releases nothing; so is one of another manifest.
        let session = OciSession::login(server, &w.sign, "acme/app").await;
        let stranger = cosign_key();
        let refused = attach(
            &session,
            &w.image,
            "sig",
            &[&keyed_layer(&stranger, &w.image)],
        )
        .await
        .unwrap_err();
        assert_eq!(refused.0, 403, "{refused:?}");
        let other = attach(&session, &w.older, "sig", &[&keyed_layer(&w.key, &w.older)])
            .await
            .unwrap();
        let entries = meta_entries(server, "acme:app").await;
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2], ["manifest"], "{other}");
        assert_held(&w).await;

        // The signature the policy asks for: released in the same record.
        let signature = attach(&session, &w.image, "sig", &[&keyed_layer(&w.key, &w.image)])
            .await
            .unwrap();
        let entries = meta_entries(server, "acme:app").await;
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[3], ["manifest", "releaseReleased"]);
        let view = package_view(server, "acme:app").await;
        assert_eq!(view["versions"][1]["hold"]["releasedBy"][0], signature);
        assert_served(&w).await;
        audit_door(server).await;
        client.update().await.unwrap();
        assert_eq!(
            download(&client, "acme:app", "1.0.0").await.unwrap(),
            w.wasm
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warg_door_cannot_publish_into_a_namespace_that_holds_releases() {
    let db = TestDatabase::sqlite();
    let w = world(db).await;
    let server = &w.server;
    let key = new_key();
    bind(server, "alice", &key).await;
    let before = log_length(server);
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client(dir.path(), &server.url).await;
    let error = publish_release(&client, &key, "acme:cli", "1.0.0", wasm("cli"))
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("holds new releases until they are signed"),
        "{error:#}"
    );
    assert_eq!(log_length(server), before, "nothing is logged");
}

/// A wasm-pkg-client 0.16 client for the server (the `wkg` 0.16 setup).
fn wkg_client(server: &TestServer) -> wkg::Client {
    let host = server.addr.to_string();
    let toml = format!(
        "default_registry = \"{host}\"\n\n[registry.\"{host}\".oci]\nprotocol = \"http\"\n"
    );
    wkg::Client::new(wkg::Config::from_toml(&toml).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wkg_gets_a_held_release_only_once_a_matching_signature_is_attached() {
    use futures_util::TryStreamExt as _;
    for db in TestDatabase::all().await {
        let w = world(db).await;
        let server = &w.server;
        let dir = tempfile::tempdir().unwrap();
        let warg = warg_client(dir.path(), &server.url).await;
        warg.update().await.unwrap();

        let wkg = wkg_client(server);
        let package: wkg::PackageRef = "acme:app".parse().unwrap();
        let version = "1.0.0".parse().unwrap();
        let error = wkg.get_release(&package, &version).await.unwrap_err();
        assert!(error.to_string().contains(AWAITS), "{error}");
        // `wkg get acme:app` resolves to what is served.
        let versions = wkg.list_all_versions(&package).await.unwrap();
        let listed: Vec<String> = versions.iter().map(|v| v.version.to_string()).collect();
        assert_eq!(listed, ["0.9.0"]);
        warg.update().await.unwrap();

        let session = OciSession::login(server, &w.sign, "acme/app").await;
        attach(&session, &w.image, "sig", &[&keyed_layer(&w.key, &w.image)])
            .await
            .unwrap();
        let release = wkg.get_release(&package, &version).await.unwrap();
        let chunks: Vec<bytes::Bytes> = wkg
            .stream_content(&package, &release)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(chunks.concat(), w.wasm);
        // The warg client follows (and verifies) the log throughout.
        warg.update().await.unwrap();
        assert_eq!(download(&warg, "acme:app", "1.0.0").await.unwrap(), w.wasm);
    }
}
