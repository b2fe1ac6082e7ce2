//! A log's state is stored as a snapshot every `SNAPSHOT_EVERY` records and
//! loaded as that snapshot with the log's later records replayed. Packages
//! longer than that — one published with the warg client, one pushed over
//! OCI (its metadata log as long) — keep validating publishes from the
//! cached state and, after restarts, from the stored one; the warg client
//! verifies them; fsck checks them clean and reports a snapshot that
//! disagrees with the replay; records signed before an operator key
//! rotation replay after it. On SQLite and PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_crypto::signer::LocalKey;
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::{LogId, PackageName as CairnName};
use cairn_server::signers::KeyUri;
use cairn_service::fsck::fsck;
use cairn_service::identity::Action;
use cairn_service::log_state::SNAPSHOT_EVERY;
use cairn_store::Store as _;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use sqlx::Connection as _;
use warg_protocol::registry::PackageName;

/// Replaces the state of a log's stored snapshot; returns the rows changed.
async fn set_snapshot_state(db_url: &str, log_id: &LogId, state: &str) -> u64 {
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(db_url).await.unwrap();
    sqlx::query("UPDATE log_snapshots SET state = $1 WHERE log_id = $2")
        .bind(state.to_owned())
        .bind(log_id.0.0.to_vec())
        .execute(&mut connection)
        .await
        .unwrap()
        .rows_affected()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_longer_than_a_snapshot_interval_validate_verify_and_check() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;
        let releases = SNAPSHOT_EVERY + 3;

        // Over OCI: the package log and its metadata log grow together.
        for i in 0..releases {
            oci_push(
                &server,
                &token,
                "test/pushed",
                &format!("1.0.{i}"),
                &wasm(&format!("pushed {i}")),
            )
            .await
            .unwrap();
        }
        // With the warg client.
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        let key = new_key();
        for i in 0..releases {
            publish_release(
                &client,
                &key,
                "test:many",
                &format!("1.0.{i}"),
                wasm(&format!("many {i}")),
            )
            .await
            .unwrap();
        }

        // After a restart the states are loaded cold: the stored snapshot
        // with the records after it replayed. Each package takes one more
        // release, validated on that state.
        server.restart().await;
        oci_push(
            &server,
            &token,
            "test/pushed",
            &format!("1.0.{releases}"),
            &wasm(&format!("pushed {releases}")),
        )
        .await
        .unwrap();
        publish_release(
            &client,
            &key,
            "test:many",
            &format!("1.0.{releases}"),
            wasm(&format!("many {releases}")),
        )
        .await
        .unwrap();
        // A release that breaks the package's rules is still refused (the
        // version exists: the loaded state holds every release).
        assert!(
            publish_release(&client, &key, "test:many", "1.0.0", wasm("again"))
                .await
                .is_err(),
            "{kind}"
        );
        assert!(
            oci_push(&server, &token, "test/pushed", "1.0.0", &wasm("again"))
                .await
                .is_err(),
            "{kind}"
        );

        // A fresh warg client verifies both packages and downloads the
        // first and the last release.
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = warg_client(fresh_dir.path(), &server.url).await;
        for (name, tag) in [("test:many", "many"), ("test:pushed", "pushed")] {
            let info = fresh
                .fetch_package(&PackageName::new(name).unwrap())
                .await
                .unwrap();
            assert_eq!(
                info.state.releases().count() as u64,
                releases + 1,
                "{kind} {name}"
            );
            for i in [0, releases] {
                assert_eq!(
                    download(&fresh, name, &format!("1.0.{i}")).await.unwrap(),
                    wasm(&format!("{tag} {i}")),
                    "{kind} {name}"
                );
            }
        }

        server.stop().await;
        let url = server.db.url.clone();
        let store = cairn_store::SqlStore::connect(&url, 2).await.unwrap();
        // Every log longer than the interval has a snapshot, behind its
        // head by less than the interval.
        let many = LogId::package(&CairnName::new("test:many").unwrap());
        let pushed = CairnName::new("test:pushed").unwrap();
        for id in [many, LogId::package(&pushed), LogId::package_meta(&pushed)] {
            let row = store.log(&id).await.unwrap().unwrap();
            let snapshot = row.snapshot.as_ref().expect("a snapshot");
            assert!(row.record_count > SNAPSHOT_EVERY, "{kind} {id}");
            assert!(
                snapshot.records >= SNAPSHOT_EVERY
                    && snapshot.records <= row.record_count
                    && row.record_count - snapshot.records < SNAPSHOT_EVERY,
                "{kind} {id}: snapshot of {} records, {} records",
                snapshot.records,
                row.record_count
            );
        }
        let report = fsck(&store, None, |_| {}).await.unwrap();
        assert!(report.is_clean(), "{kind}: {:?}", report.problems);

        // A snapshot that says the first release has other content: it
        // loads, and the records after it replay on it, but the state
        // differs from the full replay's.
        let row = store.log(&many).await.unwrap().unwrap();
        let original = row.snapshot.unwrap().state;
        let first = digest_of(&wasm("many 0"));
        let other = digest_of(&wasm("other content"));
        assert!(original.contains(&first), "{kind}: {original}");
        let damaged = original.replace(&first, &other);
        assert_eq!(set_snapshot_state(&url, &many, &damaged).await, 1);
        let report = fsck(&store, None, |_| {}).await.unwrap();
        let expected = format!("log {many}: stored validation state");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains(&expected) && p.contains("differs from the replayed one")),
            "{kind}: {:?}",
            report.problems
        );
        // A snapshot that does not load is reported too.
        assert_eq!(set_snapshot_state(&url, &many, "{").await, 1);
        let report = fsck(&store, None, |_| {}).await.unwrap();
        let expected = format!("log {many}: its state does not load");
        assert!(
            report.problems.iter().any(|p| p.contains(&expected)),
            "{kind}: {:?}",
            report.problems
        );
        assert_eq!(set_snapshot_state(&url, &many, &original).await, 1);
        let report = fsck(&store, None, |_| {}).await.unwrap();
        assert!(report.is_clean(), "{kind}: {:?}", report.problems);
    }
}

/// A metadata log's records are checked against the operator log: after an
/// operator key rotation the records signed before it no longer validate
/// under the current operator state, and a cold load replays them against
/// the operator log as of each record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_signed_before_an_operator_key_rotation_replay_after_it() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;
        for i in 0..3 {
            oci_push(
                &server,
                &token,
                "test/app",
                &format!("1.0.{i}"),
                &wasm(&format!("app {i}")),
            )
            .await
            .unwrap();
        }

        let new_path = server.data.path().join("operator-2.key");
        let new_key = cairn_server::keys::generate();
        cairn_server::keys::write_new_key(&new_path, &LocalKey::EcdsaP256(new_key)).unwrap();
        let settings = cairn_server::config::resolve(&server.args(server.addr)).unwrap();
        cairn_server::admin::rotate_operator_key(&settings, &KeyUri::File(new_path.clone()))
            .await
            .unwrap();
        server.stop().await;
        server.extra.store.operator_key = Some(format!("file:{}", new_path.display()));
        server.restart().await;

        // Cold loads of the package's logs, then a push validated on them.
        oci_push(&server, &token, "test/app", "1.0.3", &wasm("app 3"))
            .await
            .unwrap();
        server.stop().await;
        let store = cairn_store::SqlStore::connect(&server.db.url, 2)
            .await
            .unwrap();
        let package = CairnName::new("test:app").unwrap();
        let operator = cairn_service::log_state::operator_state(&store)
            .await
            .unwrap();
        // The records pushed before the rotation are signed by a key the
        // operator log no longer lets sign them.
        let meta_id = LogId::package_meta(&package);
        let first = store
            .log_records(&meta_id, None, i64::MAX as u64, 1)
            .await
            .unwrap();
        assert!(
            !operator.has_permission(
                &cairn_crypto::KeyId::new(first[0].key_id.clone()),
                cairn_protocol::record::OperatorPermission::Commit
            ),
            "{kind}"
        );
        let (_, meta) = cairn_service::log_state::log_state_of::<MetaState>(
            &store,
            &LogId::package_meta(&package),
            &operator,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(meta.manifests().count(), 4, "{kind}");
        let report = fsck(&store, None, |_| {}).await.unwrap();
        assert!(report.is_clean(), "{kind}: {:?}", report.problems);
    }
}
