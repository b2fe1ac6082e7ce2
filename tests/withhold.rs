//! Withheld content (a legal takedown, a secret leaked inside a component):
//! `cairn content withhold` and the admin API log the decision in the
//! registry log; every door then answers 451 with the reason while the log
//! still audits clean; `cairn gc --apply` deletes the withheld bytes and
//! nothing else; `cairn content restore` serves the content again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_audit::Trust;
use cairn_audit::remote::Remote;
use cairn_blob::BlobStore as _;
use cairn_crypto::Sha256Digest;
use cairn_server::config::{ContentCommand, StoreArgs};
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use serde_json::{Value, json};

const REASON: &str = "court order 2026-17 (leaked credentials)";

fn trust(server: &TestServer) -> Trust {
    Trust {
        vkey: server.registry().note_verifier_key(),
        policy: None,
    }
}

fn store_args(server: &TestServer) -> StoreArgs {
    server.args(server.addr).store
}

fn settings(server: &TestServer) -> cairn_server::Settings {
    cairn_server::config::resolve(&server.args(server.addr)).unwrap()
}

/// A cairn API call with a bearer token: status and JSON body.
async fn api(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut request = http.post(format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn withhold_api(
    server: &TestServer,
    token: &str,
    digest: &str,
    reason: &str,
) -> (u16, Value) {
    api(
        server,
        &format!("/api/v1/admin/content/{digest}/withhold"),
        Some(token),
        Some(json!({ "reason": reason })),
    )
    .await
}

async fn restore_api(server: &TestServer, token: &str, digest: &str) -> (u16, Value) {
    api(
        server,
        &format!("/api/v1/admin/content/{digest}/restore"),
        Some(token),
        None,
    )
    .await
}

async fn cli(command: ContentCommand) -> anyhow::Result<()> {
    cairn_server::manage::content(command).await.map(|_| ())
}

/// `GET` (or `HEAD`) of an OCI blob: status and, for `GET` errors, the
/// OCI error's code and message.
async fn oci_blob(
    server: &TestServer,
    method: reqwest::Method,
    repo: &str,
    digest: &str,
) -> (u16, Option<(String, String)>, Vec<u8>) {
    let response = reqwest::Client::new()
        .request(
            method.clone(),
            format!("{}/v2/{repo}/blobs/{digest}", server.url),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if method == reqwest::Method::GET && status >= 400 {
        let (_, code, message) = oci_error(response).await;
        (status, Some((code, message)), Vec::new())
    } else {
        (status, None, response.bytes().await.unwrap().to_vec())
    }
}

fn component(name: &str, version: &str) -> Vec<u8> {
    wit_package(
        name,
        version,
        "interface greet { hello: func() -> string; }\nworld w { export greet; }",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_content_is_451_on_every_door_while_the_log_still_audits() {
    // Doors (warg content, OCI manifests) still serving withheld content,
    // over every database: checked at the end, so that everything else is
    // exercised first.
    let mut warg_doors = Vec::new();
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let root = identity_with_token(&server, "root", &["*"], &[Action::Admin]).await;
        let alice = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;

        // A release over warg, another one that stays, and a push over OCI.
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        let key = new_key();
        let secret = wasm("a component with a leaked secret");
        let kept = wasm("a component nobody minds");
        publish_release(&client, &key, "test:secret", "1.0.0", secret.clone())
            .await
            .unwrap();
        publish_release(&client, &key, "test:kept", "1.0.0", kept.clone())
            .await
            .unwrap();
        let pushed = component("test:pushed", "1.0.0");
        oci_push(&server, &alice, "test/pushed", "1.0.0", &pushed)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let secret_digest = digest_of(&secret);
        let pushed_digest = digest_of(&pushed);
        let secret_hex = &secret_digest["sha256:".len()..];
        let (status, _, bytes) =
            oci_blob(&server, reqwest::Method::GET, "test/pushed", &pushed_digest).await;
        assert_eq!((status, bytes), (200, pushed.clone()), "{kind}");

        // Refusals: no admin, unknown content, a bad reason.
        let (status, _) = withhold_api(&server, &alice, &pushed_digest, REASON).await;
        assert_eq!(status, 403, "{kind}");
        let unknown = Sha256Digest::of(b"never stored here").to_string();
        let (status, body) = withhold_api(&server, &root, &unknown, REASON).await;
        assert_eq!(status, 404, "{kind}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&unknown) && message.contains("nothing to withhold"),
            "{message}"
        );
        let error = cli(ContentCommand::Withhold {
            digest: unknown.clone(),
            reason: REASON.into(),
            store: store_args(&server),
        })
        .await
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("nothing to withhold"),
            "{error:#}"
        );
        let (status, _) = withhold_api(&server, &root, &pushed_digest, " ").await;
        assert_eq!(status, 400, "{kind}");
        let (status, _) = restore_api(&server, &root, &pushed_digest).await;
        assert_eq!(status, 409, "{kind}: nothing withheld yet");
        let before = log_length(&server);

        // Withhold: the warg release's content from the command line, the
        // OCI push's layer through the admin API.
        cli(ContentCommand::Withhold {
            digest: format!("sha256-{secret_hex}"),
            reason: REASON.into(),
            store: store_args(&server),
        })
        .await
        .unwrap();
        let (status, body) = withhold_api(&server, &root, &pushed_digest, REASON).await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body["withheld"], true);
        assert_eq!(body["reason"], REASON);
        let (status, body) = withhold_api(&server, &root, &pushed_digest, "again").await;
        assert_eq!(status, 409, "{kind}: {body}");
        assert_eq!(
            log_length(&server),
            before + 2,
            "{kind}: two registry-log records"
        );
        eventually(10, "the withholding to reach the server", || async {
            server
                .registry()
                .withheld(&secret_digest.parse().unwrap())
                .map(|_| ())
        })
        .await;
        assert_eq!(
            server
                .registry()
                .withheld(&pushed_digest.parse().unwrap())
                .unwrap()
                .reason,
            REASON
        );

        // The OCI door: 451 with the reason, for GET and HEAD, in the
        // pushed repository and for the warg release's repository.
        for (repo, digest) in [
            ("test/pushed", &pushed_digest),
            ("test/secret", &secret_digest),
        ] {
            let (status, error, _) = oci_blob(&server, reqwest::Method::GET, repo, digest).await;
            assert_eq!(status, 451, "{kind}: GET {repo} {digest}");
            let (code, message) = error.unwrap();
            assert_eq!(code, "DENIED");
            assert!(
                message.contains(REASON) && message.contains(digest.as_str()),
                "{message}"
            );
            let (status, _, _) = oci_blob(&server, reqwest::Method::HEAD, repo, digest).await;
            assert_eq!(status, 451, "{kind}: HEAD {repo} {digest}");
        }
        // Unrelated content is still served.
        let (status, _, body) = get_bytes(&format!(
            "{}/content/sha256-{}",
            server.url,
            &digest_of(&kept)["sha256:".len()..]
        ))
        .await;
        assert_eq!((status, body), (200, kept.clone()), "{kind}");

        // The warg doors (`/content/…`, `/v1/content/…`): 451 with the
        // reason, so a fresh warg client cannot download the release.
        for url in [
            format!("{}/content/sha256-{secret_hex}", server.url),
            format!("{}/v1/content/{secret_digest}", server.url),
        ] {
            let (status, _, body) = get_bytes(&url).await;
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let message = body["message"].as_str().unwrap_or("");
            if status != 451 || !message.contains(REASON) {
                warg_doors.push(format!("{kind}: GET {url}: {status} {body}"));
            }
        }
        // The manifests naming withheld content: the derived one of the warg
        // release and the pushed one.
        for repo in ["test/secret", "test/pushed"] {
            let response = reqwest::Client::new()
                .get(format!("{}/v2/{repo}/manifests/1.0.0", server.url))
                .header("accept", MANIFEST)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if status != 451 || !body.contains(REASON) {
                warg_doors.push(format!(
                    "{kind}: GET /v2/{repo}/manifests/1.0.0: {status} {body}"
                ));
            }
        }
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = warg_client(fresh_dir.path(), &server.url).await;
        if download(&fresh, "test:secret", "1.0.0").await.is_ok() {
            warg_doors.push(format!(
                "{kind}: a fresh warg client downloaded the release"
            ));
        }

        // The log keeps the records and still audits clean.
        let remote = Remote::new(&server.url).unwrap();
        let summary = cairn_audit::fsck::fsck(&remote, &trust(&server), |_| {})
            .await
            .unwrap_or_else(|e| panic!("{kind}: audit failed: {e}"));
        assert_eq!(summary.size, log_length(&server), "{kind}");
        let state_dir = tempfile::tempdir().unwrap();
        let state = cairn_audit::state::StateDir::open(state_dir.path()).unwrap();
        cairn_audit::follow::step(&remote, &trust(&server), &state)
            .await
            .unwrap();
        let trusted = trust(&server)
            .verify(&state.trusted().unwrap().unwrap())
            .unwrap();
        let report = cairn_audit::package::verify_package(
            &remote,
            &trusted,
            &cairn_protocol::PackageName::new("test:secret").unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(report.releases, vec![("1.0.0".to_owned(), false)]);

        // Restore: served again, byte for byte.
        let (status, body) = restore_api(&server, &root, &pushed_digest).await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body["withheld"], false);
        let (status, _, bytes) =
            oci_blob(&server, reqwest::Method::GET, "test/pushed", &pushed_digest).await;
        assert_eq!((status, bytes), (200, pushed.clone()), "{kind}");

        // The admin audit log has both decisions.
        let audit: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/admin/audit?limit=1000", server.url))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let actions: Vec<&str> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        assert_eq!(
            actions.iter().filter(|a| **a == "content.withhold").count(),
            2,
            "{actions:?}"
        );
        assert!(actions.contains(&"content.restore"), "{actions:?}");

        // gc: lists only what is withheld now; --apply deletes only that.
        let blobs = cairn_blob::FsBlobStore::open_existing(settings(&server).blob_dir).unwrap();
        let secret_d: Sha256Digest = secret_digest.parse().unwrap();
        let dry = cairn_server::gc::gc(&settings(&server), false)
            .await
            .unwrap();
        assert_eq!(dry.withheld, 1, "{kind}");
        assert_eq!(
            dry.collected
                .iter()
                .map(|c| (c.digest, c.deleted))
                .collect::<Vec<_>>(),
            vec![(secret_d, false)],
            "{kind}"
        );
        assert!(
            blobs.stat(&secret_d).await.unwrap().is_some(),
            "dry run deleted"
        );
        let applied = cairn_server::gc::gc(&settings(&server), true)
            .await
            .unwrap();
        assert_eq!(applied.collected.len(), 1, "{kind}");
        assert!(applied.collected[0].deleted);
        assert!(blobs.stat(&secret_d).await.unwrap().is_none(), "{kind}");
        for other in [&kept, &pushed] {
            let d = Sha256Digest::of(other);
            assert!(
                blobs.stat(&d).await.unwrap().is_some(),
                "{kind}: {d} deleted"
            );
        }
        let again = cairn_server::gc::gc(&settings(&server), true)
            .await
            .unwrap();
        assert!(again.collected.is_empty(), "{kind}: nothing left");
        // Still 451 (not a missing-blob error) after the bytes are gone,
        // and the server's own fsck knows why the blob is missing.
        let (status, _, _) =
            oci_blob(&server, reqwest::Method::GET, "test/secret", &secret_digest).await;
        assert_eq!(status, 451, "{kind}");
        let store = cairn_store::SqlStore::connect(&server.db.url, 2)
            .await
            .unwrap();
        let fsck = cairn_service::fsck::fsck(&store, Some(&blobs), |_| {})
            .await
            .unwrap();
        assert!(fsck.is_clean(), "{kind}: {:?}", fsck.problems);

        // Restoring after gc logs the decision; the bytes stay gone.
        cli(ContentCommand::Restore {
            digest: secret_digest.clone(),
            store: store_args(&server),
        })
        .await
        .unwrap();
        eventually(10, "the restore to reach the server", || async {
            server
                .registry()
                .withheld(&secret_d)
                .is_none()
                .then_some(())
        })
        .await;
        assert!(blobs.stat(&secret_d).await.unwrap().is_none());
        let error = cli(ContentCommand::Restore {
            digest: secret_digest.clone(),
            store: store_args(&server),
        })
        .await
        .unwrap_err();
        assert!(format!("{error:#}").contains("not withheld"), "{error:#}");
    }
    assert!(
        warg_doors.is_empty(),
        "withheld content served: {warg_doors:#?}"
    );
}
