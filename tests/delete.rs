//! DELETE on the OCI door: a mutable tag, or a manifest that is not a
//! release, is deleted by a logged record (who, what it named); releases
//! are never deleted (405, with how to yank); blobs are never deleted over
//! HTTP (405); deleting needs push rights. Nothing is refused after a
//! record was logged, a warg client still verifies the package, and fsck
//! finds the tables as the logs say.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use base64::Engine as _;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use serde_json::Value;

/// A DELETE with an optional bearer token: `Ok(status)` for a 2xx, else
/// the OCI error.
async fn delete(
    server: &TestServer,
    token: Option<&str>,
    path: &str,
) -> Result<u16, (u16, String, String)> {
    let mut request = reqwest::Client::new().delete(format!("{}/v2/{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    if response.status().is_success() {
        return Ok(response.status().as_u16());
    }
    Err(oci_error(response).await)
}

async fn tag_list(server: &TestServer, repo: &str) -> Vec<String> {
    let (_, _, body) = get_bytes(&format!("{}/v2/{repo}/tags/list", server.url)).await;
    let listed: Value = serde_json::from_slice(&body).unwrap();
    listed["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every entry of `package`'s metadata log, in order.
async fn meta_entries(server: &TestServer, package: &str) -> Vec<Value> {
    let meta = cairn_protocol::LogId::package_meta(&package.parse().unwrap());
    let logs = server
        .registry()
        .fetch_logs(cairn_protocol::wire::FetchLogsRequest {
            log_length: log_length(server),
            limit: Some(1000),
            operator: None,
            packages: [(meta, None)].into(),
        })
        .await
        .unwrap();
    logs.packages[&meta]
        .iter()
        .flat_map(|record| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&record.envelope.content_bytes)
                .unwrap();
            let record: Value = serde_json::from_slice(&bytes).unwrap();
            record["entries"].as_array().unwrap().clone()
        })
        .collect()
}

/// Uploads `bytes` as a blob of `repo` (monolithic).
async fn upload_blob(server: &TestServer, token: &str, repo: &str, bytes: &[u8]) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v2/{repo}/blobs/uploads/?digest={}",
            server.url,
            digest_of(bytes)
        ))
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

/// Pushes a signature-like referrer of `subject` (one layer `payload`).
async fn push_referrer(
    server: &TestServer,
    token: &str,
    repo: &str,
    subject: &str,
    payload: &[u8],
) -> String {
    let empty = b"{}";
    upload_blob(server, token, repo, empty).await;
    upload_blob(server, token, repo, payload).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(empty), "size": 2 },
        "layers": [{ "mediaType": "application/octet-stream", "digest": digest_of(payload), "size": payload.len() }],
        "subject": { "mediaType": MANIFEST, "digest": subject, "size": 1 },
    }))
    .unwrap();
    let digest = digest_of(&manifest);
    let response = reqwest::Client::new()
        .put(format!("{}/v2/{repo}/manifests/{digest}", server.url))
        .bearer_auth(token)
        .header("content-type", MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    digest
}

async fn referrers(server: &TestServer, repo: &str, subject: &str) -> Vec<String> {
    let (status, _, body) =
        get_bytes(&format!("{}/v2/{repo}/referrers/{subject}", server.url)).await;
    assert_eq!(status, 200);
    let index: Value = serde_json::from_slice(&body).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

async fn fsck_clean(server: &TestServer) {
    let store = cairn_store::SqlStore::connect(&server.db.url, 2)
        .await
        .unwrap();
    let blobs = cairn_blob::FsBlobStore::open_existing(server.data.path().join("blobs")).unwrap();
    let report =
        cairn_service::fsck::fsck(&store, Some(&blobs as &dyn cairn_blob::BlobStore), |_| {})
            .await
            .unwrap();
    assert!(
        report.is_clean(),
        "{}: {:?}",
        server.kind(),
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_manifests_are_deleted_by_logged_records() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(
            &server,
            "acme",
            &["alice"],
            PublishPolicy {
                allow_modules: true,
                immutable_tags: vec!["stable-*".into()],
                ..PublishPolicy::default()
            },
        )
        .await;
        let repo = "acme/app";
        let (first, release, third) = (wasm("del-first"), wasm("del-release"), wasm("del-third"));
        let first_digest = oci_push(&server, &token, repo, "dev", &first)
            .await
            .unwrap();
        for tag in ["latest", "stable-1"] {
            oci_push(&server, &token, repo, tag, &first).await.unwrap();
        }
        let release_digest = oci_push(&server, &token, repo, "1.0.0", &release)
            .await
            .unwrap();
        let third_digest = oci_push(&server, &token, repo, "feature", &third)
            .await
            .unwrap();
        oci_push(&server, &token, repo, "nightly", &third)
            .await
            .unwrap();
        let signature = push_referrer(&server, &token, repo, &first_digest, b"sig-1").await;
        assert_eq!(
            referrers(&server, repo, &first_digest).await,
            vec![signature.clone()],
            "{kind}"
        );

        // A mutable tag: 202 once logged; then unknown, and unlisted.
        let length = log_length(&server);
        assert_eq!(
            delete(&server, Some(&token), &format!("{repo}/manifests/dev")).await,
            Ok(202),
            "{kind}"
        );
        assert!(log_length(&server) > length, "{kind}: logged");
        assert_eq!(manifest_status(&server, repo, "dev").await.0, 404, "{kind}");
        let response = reqwest::get(format!("{}/v2/{repo}/manifests/dev", server.url))
            .await
            .unwrap();
        assert_eq!(oci_error(response).await.1, "MANIFEST_UNKNOWN", "{kind}");
        let tags = tag_list(&server, repo).await;
        assert!(!tags.contains(&"dev".to_owned()), "{kind}: {tags:?}");
        assert!(tags.contains(&"latest".to_owned()), "{kind}: {tags:?}");
        // The manifest itself stays (other tags, its digest).
        assert_eq!(
            manifest_status(&server, repo, &first_digest).await,
            (200, first_digest.clone()),
            "{kind}"
        );
        // The metadata log says what went and who deleted it.
        let entries = meta_entries(&server, "acme:app").await;
        let untag = entries.last().unwrap();
        assert_eq!(untag["type"], "untag", "{kind}: {untag}");
        assert_eq!(untag["tag"], "dev", "{kind}");
        assert_eq!(untag["digest"], first_digest.as_str(), "{kind}");
        assert_eq!(untag["by"]["identity"], "alice", "{kind}");

        // Unknown tags and manifests: 404, nothing logged.
        let length = log_length(&server);
        for reference in [
            "dev".to_owned(),
            "never-pushed".to_owned(),
            digest_of(b"nothing"),
        ] {
            let (status, code, _) = delete(
                &server,
                Some(&token),
                &format!("{repo}/manifests/{reference}"),
            )
            .await
            .unwrap_err();
            assert_eq!(
                (status, code.as_str()),
                (404, "MANIFEST_UNKNOWN"),
                "{kind}: {reference}"
            );
        }
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");

        // Releases are never deleted, by tag or by digest; a tag the
        // policy pins neither. 405, nothing logged, still served.
        for reference in ["1.0.0", release_digest.as_str()] {
            let (status, code, message) = delete(
                &server,
                Some(&token),
                &format!("{repo}/manifests/{reference}"),
            )
            .await
            .unwrap_err();
            assert_eq!((status, code.as_str()), (405, "UNSUPPORTED"), "{kind}");
            assert!(
                message.contains("never deleted") && message.contains("yank"),
                "{kind}: {message}"
            );
        }
        let (status, code, message) =
            delete(&server, Some(&token), &format!("{repo}/manifests/stable-1"))
                .await
                .unwrap_err();
        assert_eq!((status, code.as_str()), (405, "UNSUPPORTED"), "{kind}");
        assert!(message.contains("immutable"), "{kind}: {message}");
        // ... nor a manifest the pinned tag names.
        let (status, _, message) = delete(
            &server,
            Some(&token),
            &format!("{repo}/manifests/{first_digest}"),
        )
        .await
        .unwrap_err();
        assert_eq!(status, 405, "{kind}: {message}");
        // Blobs: never over HTTP.
        let config = digest_of(&wasm_config(&first));
        let (status, code, message) =
            delete(&server, Some(&token), &format!("{repo}/blobs/{config}"))
                .await
                .unwrap_err();
        assert_eq!((status, code.as_str()), (405, "UNSUPPORTED"), "{kind}");
        assert!(message.contains("cairn gc"), "{kind}: {message}");
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");
        assert_eq!(
            manifest_status(&server, repo, "1.0.0").await,
            (200, release_digest.clone()),
            "{kind}"
        );
        assert_eq!(
            manifest_status(&server, repo, "stable-1").await.0,
            200,
            "{kind}"
        );

        // A manifest by digest: gone with the mutable tags naming it, in
        // one record.
        let length = log_length(&server);
        assert_eq!(
            delete(
                &server,
                Some(&token),
                &format!("{repo}/manifests/{third_digest}")
            )
            .await,
            Ok(202),
            "{kind}"
        );
        assert!(log_length(&server) > length, "{kind}");
        for reference in [third_digest.as_str(), "feature", "nightly"] {
            assert_eq!(
                manifest_status(&server, repo, reference).await.0,
                404,
                "{kind}: {reference}"
            );
        }
        let tags = tag_list(&server, repo).await;
        assert!(
            !tags.contains(&"feature".to_owned()) && !tags.contains(&"nightly".to_owned()),
            "{kind}: {tags:?}"
        );
        let entries = meta_entries(&server, "acme:app").await;
        let kinds: Vec<(&str, &str)> = entries
            .iter()
            .rev()
            .take(3)
            .map(|e| {
                (
                    e["type"].as_str().unwrap(),
                    e["tag"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("manifestDeleted", ""),
                ("untag", "nightly"),
                ("untag", "feature")
            ],
            "{kind}"
        );
        assert_eq!(entries.last().unwrap()["by"]["identity"], "alice");

        // A referrer deleted by digest leaves the referrers listing.
        assert_eq!(
            delete(
                &server,
                Some(&token),
                &format!("{repo}/manifests/{signature}")
            )
            .await,
            Ok(202),
            "{kind}"
        );
        assert!(
            referrers(&server, repo, &first_digest).await.is_empty(),
            "{kind}"
        );

        // Pushing a deleted manifest again records it again.
        assert_eq!(
            oci_push(&server, &token, repo, "feature", &third).await,
            Ok(third_digest.clone()),
            "{kind}"
        );
        assert_eq!(
            manifest_status(&server, repo, "feature").await,
            (200, third_digest.clone()),
            "{kind}"
        );
        // And a tag moves again after a delete.
        oci_push(&server, &token, repo, "dev", &third)
            .await
            .unwrap();

        // A warg client still verifies the package log and gets the release.
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        assert_eq!(
            download(&client, "acme:app", "1.0.0").await.unwrap(),
            release,
            "{kind}"
        );
        fsck_clean(&server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_needs_push_rights() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(
            &server,
            "acme",
            &["alice"],
            PublishPolicy {
                allow_modules: true,
                ..PublishPolicy::default()
            },
        )
        .await;
        let repo = "acme/app";
        let first = wasm("rights-first");
        let digest = oci_push(&server, &token, repo, "dev", &first)
            .await
            .unwrap();
        let reader = identity_with_token(&server, "bob", &["acme"], &[Action::Read]).await;
        // Publish rights, but not an owner or publisher of `acme`.
        let outsider = identity_with_token(&server, "eve", &["acme"], &[Action::Publish]).await;
        let signer = token_for(&server, "alice", &["acme"], &[Action::Sign]).await;

        let length = log_length(&server);
        for path in [
            format!("{repo}/manifests/dev"),
            format!("{repo}/manifests/{digest}"),
            format!("{repo}/manifests/unknown-tag"),
            format!("{repo}/blobs/{}", digest_of(&first)),
        ] {
            let (status, code, _) = delete(&server, None, &path).await.unwrap_err();
            assert_eq!(
                (status, code.as_str()),
                (401, "UNAUTHORIZED"),
                "{kind}: {path}"
            );
            for token in [&reader, &outsider] {
                let (status, code, _) = delete(&server, Some(token), &path).await.unwrap_err();
                assert_eq!((status, code.as_str()), (403, "DENIED"), "{kind}: {path}");
            }
        }
        // `sign` pushes attachments; it deletes nothing.
        let (status, _, _) = delete(&server, Some(&signer), &format!("{repo}/manifests/dev"))
            .await
            .unwrap_err();
        assert_eq!(status, 403, "{kind}");
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");
        assert_eq!(
            manifest_status(&server, repo, "dev").await,
            (200, digest.clone()),
            "{kind}"
        );
        fsck_clean(&server).await;
    }
}
