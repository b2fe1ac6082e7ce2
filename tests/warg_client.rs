//! The real `warg` client (crate `warg-client` 0.10, the code of the `warg`
//! CLI) publishing to, fetching from and verifying a real cairn server, on
//! SQLite and on PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use warg_client::ClientError;
use warg_client::storage::PublishEntry;
use warg_protocol::registry::PackageName;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_more_versions_yank_and_download_verified() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let alice = tempfile::tempdir().unwrap();
        let client = warg_client(alice.path(), &server.url).await;
        let key = new_key();

        // Auto-init publish, then more versions, then a yank.
        publish_release(&client, &key, "test:foo", "1.0.0", wasm("one"))
            .await
            .unwrap();
        publish_release(&client, &key, "test:foo", "1.1.0", wasm("two"))
            .await
            .unwrap();
        publish_release(&client, &key, "test:foo", "2.0.0", wasm("three"))
            .await
            .unwrap();
        let name = PackageName::new("test:foo").unwrap();
        publish_entries(
            &client,
            &key,
            &name,
            vec![PublishEntry::Yank {
                version: "1.1.0".parse().unwrap(),
            }],
        )
        .await
        .unwrap();

        // A fresh client downloads with full verification.
        let bob = tempfile::tempdir().unwrap();
        let fresh = warg_client(bob.path(), &server.url).await;
        assert_eq!(
            download(&fresh, "test:foo", "2.0.0").await.unwrap(),
            wasm("three"),
            "{kind}"
        );
        assert_eq!(
            download(&fresh, "test:foo", "1.0.0").await.unwrap(),
            wasm("one"),
            "{kind}"
        );
        let info = fresh.fetch_package(&name).await.unwrap();
        let releases: Vec<(String, bool)> = info
            .state
            .releases()
            .map(|r| (r.version.to_string(), r.yanked()))
            .collect();
        assert_eq!(
            releases,
            vec![
                ("1.0.0".into(), false),
                ("1.1.0".into(), true),
                ("2.0.0".into(), false)
            ],
            "{kind}"
        );
        assert!(
            fresh
                .download_exact(&name, &"1.1.0".parse().unwrap())
                .await
                .is_err(),
            "yanked: {kind}"
        );
        let latest = fresh
            .download(&name, &"*".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.version.to_string(), "2.0.0");

        // Unknown packages and undefined namespaces are reported as such.
        let missing = PackageName::new("test:nope").unwrap();
        assert!(matches!(
            fresh.fetch_package(&missing).await,
            Err(ClientError::PackageDoesNotExist { .. })
        ));
        let err = publish_release(&client, &key, "other:pkg", "1.0.0", wasm("x"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("namespace"), "{kind}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_to_many_packages_and_to_one() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let key = new_key();

        // Sixteen packages published concurrently, each by its own client.
        let dirs: Vec<tempfile::TempDir> = (0..16).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut clients = Vec::new();
        for dir in &dirs {
            clients.push(warg_client(dir.path(), &server.url).await);
        }
        let publishes = clients.iter().enumerate().map(|(i, client)| {
            let key = copy_key(&key);
            async move {
                publish_release(
                    client,
                    &key,
                    &format!("test:pkg{i}"),
                    "1.0.0",
                    wasm(&format!("p{i}")),
                )
                .await
            }
        });
        for result in futures_util::future::join_all(publishes).await {
            result.unwrap();
        }

        // Three clients publish to one package at once: the registry holds
        // one pending record per log (409 to the others), and every client
        // waits, re-signs on the new head and gets through.
        publish_release(&clients[0], &key, "test:shared", "0.1.0", wasm("s0"))
            .await
            .unwrap();
        let racing = clients[..3].iter().enumerate().map(|(i, client)| {
            let key = copy_key(&key);
            async move {
                publish_release(
                    client,
                    &key,
                    "test:shared",
                    &format!("1.{i}.0"),
                    wasm(&format!("s{i}")),
                )
                .await
            }
        });
        for result in futures_util::future::join_all(racing).await {
            result.unwrap();
        }

        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = warg_client(fresh_dir.path(), &server.url).await;
        for i in 0..16 {
            assert_eq!(
                download(&fresh, &format!("test:pkg{i}"), "1.0.0")
                    .await
                    .unwrap(),
                wasm(&format!("p{i}")),
                "{kind}"
            );
        }
        let shared = fresh
            .fetch_package(&PackageName::new("test:shared").unwrap())
            .await
            .unwrap();
        assert_eq!(shared.state.releases().count(), 4, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_keep_verifying_across_restarts() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let key = new_key();
        let dir = tempfile::tempdir().unwrap();

        // Publish, restart, then a fresh client fetches and verifies.
        {
            let client = warg_client_fixed(dir.path(), &server.url);
            publish_release(&client, &key, "test:a", "1.0.0", wasm("a1"))
                .await
                .unwrap();
        }
        let seen = {
            let client = warg_client_fixed(dir.path(), &server.url);
            stored_checkpoint_length(&client).await
        };
        assert!(seen >= 2, "{kind}: the client stored checkpoint {seen}");
        server.restart().await;
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = warg_client(fresh_dir.path(), &server.url).await;
        assert_eq!(
            download(&fresh, "test:a", "1.0.0").await.unwrap(),
            wasm("a1"),
            "{kind}"
        );

        // More is published after the restart; the client that saw
        // checkpoint `seen` before it verifies the new checkpoint by a
        // consistency proof from `seen`.
        publish_release(&fresh, &key, "test:b", "1.0.0", wasm("b1"))
            .await
            .unwrap();
        let client = warg_client_fixed(dir.path(), &server.url);
        client.update().await.unwrap();
        client
            .fetch_package(&PackageName::new("test:b").unwrap())
            .await
            .unwrap();
        let now = stored_checkpoint_length(&client).await;
        assert!(now > seen, "{kind}: checkpoint moved from {seen} to {now}");
        publish_release(&client, &key, "test:a", "2.0.0", wasm("a2"))
            .await
            .unwrap();

        // And again across a second restart, with nothing new in between.
        server.restart().await;
        client.update().await.unwrap();
        assert_eq!(
            download(&client, "test:a", "2.0.0").await.unwrap(),
            wasm("a2"),
            "{kind}"
        );
    }
}
