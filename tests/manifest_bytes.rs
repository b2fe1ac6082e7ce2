//! A pushed manifest's bytes are stored with the batch that logs the push,
//! and nowhere else: reads (by digest and by tag) serve that copy, the blob
//! store holds none, and a file at the manifest's blob path, whatever it
//! holds, is never what a read of the manifest serves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_blob::BlobStore as _;
use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_store::OciStore as _;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

async fn manifest_bytes(server: &TestServer, repo: &str, reference: &str) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(format!("{}/v2/{repo}/manifests/{reference}", server.url))
        .header("accept", MANIFEST)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_manifest_is_served_from_its_logged_copy_only() {
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
        let blobs =
            cairn_blob::FsBlobStore::open_existing(server.data.path().join("blobs")).unwrap();
        let pushed = oci_push(&server, &token, repo, "1.0.0", &wasm("durable"))
            .await
            .unwrap();
        let digest: Sha256Digest = pushed.parse().unwrap();
        let (status, original) = manifest_bytes(&server, repo, &pushed).await;
        assert_eq!(status, 200, "{kind}");
        assert_eq!(Sha256Digest::of(&original), digest, "{kind}");

        // The batch that logged the push holds the bytes; the blob store
        // was not written.
        let store = cairn_store::SqlStore::connect(&server.db.url, 2)
            .await
            .unwrap();
        assert_eq!(
            store.manifest_bytes(&digest).await.unwrap().as_deref(),
            Some(original.as_slice()),
            "{kind}"
        );
        assert_eq!(blobs.stat(&digest).await.unwrap(), None, "{kind}");

        // Something else at the manifest's blob path is never served: by
        // digest and by tag, the logged copy answers.
        let path = blobs.path(&digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{\"not\": \"the manifest\"}").unwrap();
        for reference in [pushed.as_str(), "1.0.0"] {
            assert_eq!(
                manifest_bytes(&server, repo, reference).await,
                (200, original.clone()),
                "{kind}: {reference}"
            );
        }
    }
}
