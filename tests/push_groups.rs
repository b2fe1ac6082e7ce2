//! Concurrent OCI pushes to one package: the sequencer logs the pushes of
//! a batch in shared records, yet each push is judged alone — a version
//! pushed twice at once is released once, each release is attributed to
//! the identity that pushed it, and a warg client verifies the result.
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
async fn concurrent_pushes_to_one_package_are_each_judged_and_attributed() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        let bob = identity_with_token(&server, "bob", &["acme"], &[Action::Publish]).await;
        claim(
            &server,
            "acme",
            &["alice", "bob"],
            PublishPolicy {
                allow_modules: true,
                ..PublishPolicy::default()
            },
        )
        .await;
        let repo = "acme/app";
        // The package exists first (its log's first record grants keys).
        oci_push(&server, &alice, repo, "0.1.0", &wasm("first"))
            .await
            .unwrap();

        // Distinct versions by two identities, a contested version, and a
        // mutable tag, all at once.
        let mut pushes = Vec::new();
        for n in 0..8 {
            let (who, token) = if n % 2 == 0 {
                ("alice", alice.clone())
            } else {
                ("bob", bob.clone())
            };
            pushes.push((format!("1.0.{n}"), who, token, wasm(&format!("v{n}"))));
        }
        for n in 0..3 {
            pushes.push((
                "2.0.0".to_owned(),
                "alice",
                alice.clone(),
                wasm(&format!("contested {n}")),
            ));
        }
        let tasks: Vec<_> = pushes
            .iter()
            .map(|(tag, _, token, bytes)| {
                let (server, token, tag, bytes) =
                    (&server, token.clone(), tag.clone(), bytes.clone());
                async move { oci_push(server, &token, repo, &tag, &bytes).await }
            })
            .collect();
        let results = futures_util::future::join_all(tasks).await;

        for (n, result) in results.iter().take(8).enumerate() {
            assert!(result.is_ok(), "{kind}: 1.0.{n}: {result:?}");
        }
        // Exactly one contested push wins; the others are refused alone.
        let contested = &results[8..];
        let won: Vec<usize> = (0..3).filter(|&i| contested[i].is_ok()).collect();
        assert_eq!(won.len(), 1, "{kind}: {contested:?}");
        for (i, result) in contested.iter().enumerate() {
            if let Err((_, code, message)) = result {
                assert_eq!(code, "DENIED", "{kind}: {message}");
                assert!(message.contains("2.0.0"), "{kind}: {message}");
            } else {
                assert_eq!(
                    manifest_status(&server, repo, "2.0.0").await,
                    (200, result.clone().unwrap()),
                    "{kind}: contested push {i}"
                );
            }
        }

        // Each release names the identity that pushed it.
        let app: serde_json::Value =
            reqwest::get(format!("{}/api/v1/packages/acme:app", server.url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        for (tag, who, _, _) in pushes.iter().take(8) {
            let version = app["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["version"] == tag.as_str())
                .unwrap_or_else(|| panic!("{kind}: {tag} is not listed: {app}"));
            assert_eq!(version["publishedBy"], *who, "{kind}: {tag}");
        }

        // A warg client verifies the package log and every release.
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        for (tag, _, _, bytes) in pushes.iter().take(8) {
            assert_eq!(
                download(&client, "acme:app", tag).await.unwrap(),
                *bytes,
                "{kind}: {tag}"
            );
        }
        let winner = &pushes[8 + won[0]].3;
        assert_eq!(
            download(&client, "acme:app", "2.0.0").await.unwrap(),
            *winner,
            "{kind}"
        );
    }
}
