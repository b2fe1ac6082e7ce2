//! Tags: any tag of the OCI grammar is accepted. A semantic version is a
//! release (immutable); any other tag is a pointer that moves, each move a
//! logged `tag` entry; a namespace's policy can make more tags immutable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_form_tags_move_and_policy_pins_them() {
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
        let first = wasm("tags-first");
        let second = wasm("tags-second");

        // Tags CI pipelines and the conformance suite use.
        let mut first_digest = String::new();
        for tag in ["v1.0.0", "main", "dev", "nightly", "tagtest0", "stable-1"] {
            first_digest = oci_push(&server, &token, repo, tag, &first)
                .await
                .unwrap_or_else(|e| panic!("{kind}: tag {tag}: {e:?}"));
        }
        for tag in ["v1.0.0", "main", "dev", "nightly", "tagtest0", "stable-1"] {
            assert_eq!(
                manifest_status(&server, repo, tag).await,
                (200, first_digest.clone()),
                "{kind}: {tag}"
            );
        }
        let (_, _, body) = get_bytes(&format!("{}/v2/{repo}/tags/list", server.url)).await;
        let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut tags: Vec<&str> = listed["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        tags.sort_unstable();
        assert_eq!(
            tags,
            ["dev", "main", "nightly", "stable-1", "tagtest0", "v1.0.0"],
            "{kind}"
        );

        // A pointer moves, and the move is in the metadata log.
        let length = log_length(&server);
        let second_digest = oci_push(&server, &token, repo, "main", &second)
            .await
            .unwrap();
        assert_ne!(second_digest, first_digest);
        assert_eq!(
            manifest_status(&server, repo, "main").await,
            (200, second_digest.clone()),
            "{kind}"
        );
        assert!(log_length(&server) > length, "{kind}: the move is logged");
        let (_, _, body) = get_bytes(&format!("{}/api/v1/packages/acme:app", server.url)).await;
        let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(view["tags"]["main"], second_digest.as_str(), "{kind}");
        assert_eq!(view["tags"]["dev"], first_digest.as_str(), "{kind}");
        // `v1.0.0` is not a semantic version (the `v`): a pointer too.
        oci_push(&server, &token, repo, "v1.0.0", &second)
            .await
            .unwrap();

        // A tag the policy pins does not move: refused, nothing logged.
        let length = log_length(&server);
        let (status, code, message) = oci_push(&server, &token, repo, "stable-1", &second)
            .await
            .unwrap_err();
        assert_eq!(
            (status, code.as_str()),
            (403, "DENIED"),
            "{kind}: {message}"
        );
        assert!(message.contains("immutable"), "{kind}: {message}");
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");
        assert_eq!(
            manifest_status(&server, repo, "stable-1").await,
            (200, first_digest.clone()),
            "{kind}"
        );
        // Pushing what it already names is fine.
        oci_push(&server, &token, repo, "stable-1", &first)
            .await
            .unwrap();

        // A tag outside the grammar: TAG_INVALID, nothing logged.
        let length = log_length(&server);
        for bad in ["-dash", ".dot", &"x".repeat(129)] {
            let (status, code, _) = oci_push(&server, &token, repo, bad, &first)
                .await
                .unwrap_err();
            assert_eq!(
                (status, code.as_str()),
                (400, "TAG_INVALID"),
                "{kind}: {bad}"
            );
        }
        assert_eq!(log_length(&server), length, "{kind}");

        // A warg client still verifies the package log throughout.
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        oci_push(&server, &token, repo, "1.0.0", &first)
            .await
            .unwrap();
        assert_eq!(
            download(&client, "acme:app", "1.0.0").await.unwrap(),
            first,
            "{kind}"
        );

        // And fsck finds the OCI tables as the metadata log says.
        let store = cairn_store::SqlStore::connect(&server.db.url, 2)
            .await
            .unwrap();
        let blobs =
            cairn_blob::FsBlobStore::open_existing(server.data.path().join("blobs")).unwrap();
        let report =
            cairn_service::fsck::fsck(&store, Some(&blobs as &dyn cairn_blob::BlobStore), |_| {})
                .await
                .unwrap();
        assert!(report.is_clean(), "{kind}: {:?}", report.problems);
    }
}
