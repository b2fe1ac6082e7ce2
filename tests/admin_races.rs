//! Administrative state under concurrency and beside a running server:
//! concurrent namespace edits never lose each other's changes, and the
//! command line never migrates a database a server holds nor touches that
//! server's staging area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_protocol::ext::registry::{IdentityKind, PublishPolicy};
use cairn_server::config::{IdentityCommand, StoreArgs};
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_member_edits_are_all_kept() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let owner = identity_with_token(&server, "owner", &["acme"], &[Action::Publish]).await;
        claim(&server, "acme", &["owner"], PublishPolicy::default()).await;
        let registry = server.registry();
        let signer = registry.operator_signer();
        let names: Vec<String> = (0..8).map(|i| format!("member-{i}")).collect();
        for name in &names {
            registry
                .admin("test", signer.as_ref())
                .create_identity(name, IdentityKind::User)
                .await
                .unwrap();
        }
        // Eight owners' requests at once, each adding one publisher through
        // the API (read-modify-write of the namespace's entry).
        let http = reqwest::Client::new();
        let mut adds = Vec::new();
        for name in &names {
            let request = http
                .put(format!(
                    "{}/api/v1/namespaces/acme/publishers/{name}",
                    server.url
                ))
                .bearer_auth(&owner)
                .send();
            adds.push(request);
        }
        for response in futures_util::future::join_all(adds).await {
            let response = response.unwrap();
            assert_eq!(
                response.status(),
                200,
                "{kind}: {}",
                response.text().await.unwrap()
            );
        }
        let entry = registry.registry_log().namespace("acme").cloned().unwrap();
        for name in &names {
            assert!(
                entry.publishers.contains(name),
                "{kind}: {name} was lost: {:?}",
                entry.publishers
            );
        }
        // And the same from two direct edits racing with a policy change.
        let admin = registry.admin("test", signer.as_ref());
        let removed = ["member-0".to_owned()];
        let (a, b) = tokio::join!(
            admin.edit_members("acme", (&[], &[]), (&[], &removed)),
            admin.update_namespace("acme", false, |settings| {
                settings.policy.allow_modules = true;
                Ok(())
            })
        );
        a.unwrap();
        b.unwrap();
        let entry = registry.registry_log().namespace("acme").cloned().unwrap();
        assert!(!entry.publishers.contains(&"member-0".to_owned()), "{kind}");
        assert!(
            entry.policy.allow_modules,
            "{kind}: the policy change was lost"
        );
        assert_eq!(entry.publishers.len(), 7, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_never_migrates_under_a_running_server() {
    // A database some server holds (its writer lock taken) and that is not
    // migrated yet: a command must refuse, and change nothing.
    let db = TestDatabase::sqlite();
    let data = tempfile::tempdir().unwrap();
    let store = cairn_store::SqlStore::connect(&db.url, 2).await.unwrap();
    let lock = store.lock_writer().await.unwrap();
    let args = StoreArgs {
        data_dir: Some(data.path().to_path_buf()),
        database_url: Some(db.url.clone()),
        ..StoreArgs::default()
    };
    let error = cairn_server::manage::identity(IdentityCommand::Create {
        name: "late".into(),
        robot: false,
        store: args.clone(),
    })
    .await
    .unwrap_err();
    assert!(error.to_string().contains("needs migrations"), "{error:#}");
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&sqlx::SqlitePool::connect(&db.url).await.unwrap())
    .await
    .unwrap();
    assert!(tables.is_empty(), "migrated under a lock: {tables:?}");
    lock.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_leaves_a_running_servers_staging_area_alone() {
    let server = TestServer::start(TestDatabase::sqlite()).await;
    // A single-request upload of the server in progress.
    let staging = server.data.path().join("blobs").join("tmp");
    std::fs::create_dir_all(&staging).unwrap();
    let in_flight = staging.join("upload-in-flight");
    std::fs::write(&in_flight, b"half an upload").unwrap();
    let args = StoreArgs {
        data_dir: Some(server.data.path().to_path_buf()),
        database_url: Some(server.db.url.clone()),
        ..StoreArgs::default()
    };
    cairn_server::manage::identity(IdentityCommand::Create {
        name: "beside".into(),
        robot: false,
        store: args,
    })
    .await
    .unwrap();
    assert!(
        in_flight.exists(),
        "the command emptied the server's staging area"
    );
    assert!(
        server
            .registry()
            .registry_log()
            .identity("beside")
            .is_some()
    );
}
