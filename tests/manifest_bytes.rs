//! A pushed manifest's bytes are stored with the batch that logs the push;
//! the blob store's copy is written without waiting for the disk. A copy
//! lost or damaged (a power failure before the file reached the disk) is
//! restored from the logged copy when the manifest is read, by digest and
//! by tag, so every acknowledged push stays servable.
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
async fn a_lost_or_damaged_manifest_blob_is_restored_from_its_logged_copy() {
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

        // The batch that logged the push holds the bytes.
        let store = cairn_store::SqlStore::connect(&server.db.url, 2)
            .await
            .unwrap();
        assert_eq!(
            store.manifest_bytes(&digest).await.unwrap().as_deref(),
            Some(original.as_slice()),
            "{kind}"
        );

        // Lost: served again by digest, and the file is back.
        let path = blobs.path(&digest);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            manifest_bytes(&server, repo, &pushed).await,
            (200, original.clone()),
            "{kind}"
        );
        assert_eq!(
            blobs.read_all(&digest, 1 << 20).await.unwrap().as_deref(),
            Some(original.as_slice()),
            "{kind}: the blob is restored"
        );

        // Damaged: never served as is; by tag, the logged copy answers.
        std::fs::write(&path, b"{\"not\": \"the manifest\"}").unwrap();
        assert_eq!(
            manifest_bytes(&server, repo, "1.0.0").await,
            (200, original.clone()),
            "{kind}"
        );
        assert_eq!(
            blobs.read_all(&digest, 1 << 20).await.unwrap().as_deref(),
            Some(original.as_slice()),
            "{kind}: the blob is restored"
        );
    }
}
