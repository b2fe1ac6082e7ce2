//! Operator key rotation (`cairn operator rotate`) on a running server: the
//! rotation is an operator record signed by the old key, later checkpoints
//! are signed by the new key, and a warg client that followed the registry
//! before the rotation keeps verifying after it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_crypto::signer::LocalKey;
use cairn_server::signers::KeyUri;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warg_clients_keep_verifying_across_an_operator_key_rotation() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let key = new_key();
        let dir = tempfile::tempdir().unwrap();
        let old_key_id = server.registry().operator_key_id();
        {
            let client = warg_client_fixed(dir.path(), &server.url);
            publish_release(&client, &key, "test:a", "1.0.0", wasm("a1"))
                .await
                .unwrap();
        }

        // Rotate while the server runs.
        let new_path = server.data.path().join("operator-2.key");
        let new_key_file = cairn_server::keys::generate();
        cairn_server::keys::write_new_key(&new_path, &LocalKey::EcdsaP256(new_key_file.clone()))
            .unwrap();
        let settings = cairn_server::config::resolve(&server.args(server.addr)).unwrap();
        let rotation =
            cairn_server::admin::rotate_operator_key(&settings, &KeyUri::File(new_path.clone()))
                .await
                .unwrap();
        let new_key_id = new_key_file.public_key().key_id();
        assert_eq!(rotation.old_key_id, old_key_id.to_string());
        let checkpoint = server.registry().fetch_checkpoint().unwrap();
        assert_eq!(checkpoint.key_id, new_key_id.to_string(), "{kind}");
        assert_eq!(server.registry().operator_key_id(), new_key_id);

        // The client that saw the old key verifies the new checkpoints.
        {
            let client = warg_client_fixed(dir.path(), &server.url);
            client.update().await.unwrap();
            publish_release(&client, &key, "test:a", "2.0.0", wasm("a2"))
                .await
                .unwrap();
        }
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = warg_client(fresh_dir.path(), &server.url).await;
        assert_eq!(
            download(&fresh, "test:a", "2.0.0").await.unwrap(),
            wasm("a2")
        );

        // Restarting with the old key is refused, naming the new one.
        server.stop().await;
        let error = server.try_boot(server.addr).await.unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains(&new_key_id.to_string()),
            "{kind}: {message}"
        );
        assert!(
            message.contains(&new_path.display().to_string()),
            "{kind}: {message}"
        );
        // With the new key configured it starts, and clients go on.
        server.extra.store.operator_key = Some(format!("file:{}", new_path.display()));
        server.restart().await;
        {
            let client = warg_client_fixed(dir.path(), &server.url);
            client.update().await.unwrap();
            assert_eq!(
                download(&client, "test:a", "1.0.0").await.unwrap(),
                wasm("a1")
            );
        }
        // Every checkpoint verifies under the key that held `commit` then.
        server.stop().await;
        let store = cairn_store::SqlStore::connect(&server.db.url, 2)
            .await
            .unwrap();
        let report = cairn_service::fsck::fsck(&store, None, |_| {})
            .await
            .unwrap();
        assert!(report.is_clean(), "{kind}: {:?}", report.problems);
    }
}
