//! `cairn fsck` compares the OCI tables with the metadata logs: a registry
//! with OCI pushes and a warg release (its manifest derived) checks clean,
//! and each row changed directly in the database — a release tag
//! repointed, a manifest hidden, a blob's size, a tag no log sets, a
//! derived manifest, a `published` flag — is reported, and is clean again
//! once undone. On SQLite and PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_crypto::Sha256Digest;
use cairn_service::fsck::{FsckReport, fsck};
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use sqlx::Connection as _;

/// Runs `sql` with `binds` (digests, as stored) and returns the rows it
/// changed.
async fn execute(db_url: &str, sql: &str, binds: &[&Sha256Digest]) -> u64 {
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(db_url).await.unwrap();
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(bind.0.to_vec());
    }
    query
        .execute(&mut connection)
        .await
        .unwrap()
        .rows_affected()
}

struct Checked {
    store: cairn_store::SqlStore,
    blobs: cairn_blob::FsBlobStore,
}

impl Checked {
    /// fsck with the blob store, and without.
    async fn run(&self) -> (FsckReport, FsckReport) {
        let with = fsck(
            &self.store,
            Some(&self.blobs as &dyn cairn_blob::BlobStore),
            |_| {},
        )
        .await
        .unwrap();
        let without = fsck(&self.store, None, |_| {}).await.unwrap();
        (with, without)
    }

    async fn assert_clean(&self, kind: &str, after: &str) {
        let (with, without) = self.run().await;
        assert!(with.is_clean(), "{kind} {after}: {:?}", with.problems);
        assert!(without.is_clean(), "{kind} {after}: {:?}", without.problems);
        assert!(with.oci_rows > 0, "{kind}: the OCI tables were read");
    }
}

fn reported(report: &FsckReport, needle: &str) -> bool {
    report.problems.iter().any(|p| p.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_changed_in_the_database_are_reported() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(
            &server,
            "alice",
            &["test"],
            &[Action::Publish, Action::Yank],
        )
        .await;

        // Two releases pushed over OCI, one `latest` moved by a push.
        let one = wasm("app 1.0.0");
        let two = wasm("app 1.1.0");
        let first = oci_push(&server, &token, "test/app", "1.0.0", &one)
            .await
            .unwrap();
        let second = oci_push(&server, &token, "test/app", "1.1.0", &two)
            .await
            .unwrap();
        oci_push(&server, &token, "test/app", "latest", &two)
            .await
            .unwrap();
        // A release yanked with a reason: its yank referrer is derived
        // from the logged reason.
        oci_push(&server, &token, "test/app", "0.9.0", &wasm("app 0.9.0"))
            .await
            .unwrap();
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/packages/test:app/yank", server.url))
            .bearer_auth(&token)
            .json(&serde_json::json!({"version": "0.9.0", "reason": "broken"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "{kind}: {}",
            response.text().await.unwrap()
        );
        let first: Sha256Digest = first.parse().unwrap();
        let second: Sha256Digest = second.parse().unwrap();

        // A release published over warg, its manifest derived on a pull.
        let dir = tempfile::tempdir().unwrap();
        let warg = warg_client(dir.path(), &server.url).await;
        publish_release(&warg, &new_key(), "test:lib", "2.0.0", wasm("lib"))
            .await
            .unwrap();
        let (status, _, derived) =
            get_bytes(&format!("{}/v2/test/lib/manifests/2.0.0", server.url)).await;
        assert_eq!(status, 200, "{kind}");
        let derived = Sha256Digest::of(&derived);

        server.stop().await;
        let url = server.db.url.clone();
        let checked = Checked {
            store: cairn_store::SqlStore::connect(&url, 2).await.unwrap(),
            blobs: cairn_blob::FsBlobStore::open_existing(server.data.path().join("blobs"))
                .unwrap(),
        };
        checked.assert_clean(kind, "before any change").await;
        let layer = Sha256Digest::of(&one);

        // A release tag repointed at another pushed manifest.
        let sql = "UPDATE oci_tags SET digest = $1 WHERE repository = 'test/app' AND tag = '1.0.0'";
        assert_eq!(execute(&url, sql, &[&second]).await, 1);
        let (with, without) = checked.run().await;
        let expected = format!(
            "tag 1.0.0 of test/app names {second} in the database but the log says {first}"
        );
        for report in [&with, &without] {
            assert!(reported(report, &expected), "{kind}: {:?}", report.problems);
            assert_eq!(report.problem_count, 1, "{kind}: {:?}", report.problems);
        }
        assert_eq!(execute(&url, sql, &[&first]).await, 1);
        checked.assert_clean(kind, "tag restored").await;

        // A logged manifest hidden.
        let sql =
            "UPDATE oci_manifests SET visible = $1 WHERE repository = 'test/app' AND digest = $2";
        let hide = sql.replace("$1", "0").replace("$2", "$1");
        assert_eq!(execute(&url, &hide, &[&first]).await, 1);
        let (with, _) = checked.run().await;
        assert!(
            reported(
                &with,
                &format!("manifest {first} of test/app is recorded in its log but not visible")
            ),
            "{kind}: {:?}",
            with.problems
        );
        let show = sql.replace("$1", "1").replace("$2", "$1");
        assert_eq!(execute(&url, &show, &[&first]).await, 1);
        checked.assert_clean(kind, "manifest visible again").await;

        // A blob link's size.
        let sql =
            "UPDATE oci_blobs SET size = size + 1 WHERE repository = 'test/app' AND digest = $1";
        assert_eq!(execute(&url, sql, &[&layer]).await, 1);
        let (with, without) = checked.run().await;
        let size = one.len();
        assert!(
            reported(
                &with,
                &format!(
                    "blob {layer} linked to test/app is recorded as {} bytes, the blob store holds {size}",
                    size + 1
                )
            ),
            "{kind}: {:?}",
            with.problems
        );
        // Without blobs, the released content's recorded size still says so.
        assert!(
            reported(
                &without,
                &format!(
                    "blob {layer} linked to test/app is recorded as {} bytes, released content as {size}",
                    size + 1
                )
            ),
            "{kind}: {:?}",
            without.problems
        );
        let sql =
            "UPDATE oci_blobs SET size = size - 1 WHERE repository = 'test/app' AND digest = $1";
        assert_eq!(execute(&url, sql, &[&layer]).await, 1);
        checked.assert_clean(kind, "size restored").await;

        // A tag no log sets.
        let sql = "INSERT INTO oci_tags (repository, tag, digest) VALUES ('test/app', 'rogue', $1)";
        assert_eq!(execute(&url, sql, &[&first]).await, 1);
        let (with, without) = checked.run().await;
        for report in [&with, &without] {
            assert!(
                reported(
                    report,
                    &format!(
                        "tag rogue of test/app names {first} in the database but no log sets it"
                    )
                ),
                "{kind}: {:?}",
                report.problems
            );
        }
        let sql = "DELETE FROM oci_tags WHERE repository = 'test/app' AND tag = 'rogue'";
        assert_eq!(execute(&url, sql, &[]).await, 1);
        checked.assert_clean(kind, "rogue tag removed").await;

        // A tag row the log sets, deleted.
        let sql = "DELETE FROM oci_tags WHERE repository = 'test/app' AND tag = 'latest'";
        assert_eq!(execute(&url, sql, &[]).await, 1);
        let (with, _) = checked.run().await;
        assert!(
            reported(
                &with,
                &format!("tag latest of test/app names {second} in the log but has no row")
            ),
            "{kind}: {:?}",
            with.problems
        );
        let sql =
            "INSERT INTO oci_tags (repository, tag, digest) VALUES ('test/app', 'latest', $1)";
        assert_eq!(execute(&url, sql, &[&second]).await, 1);
        checked.assert_clean(kind, "latest restored").await;

        // The derived manifest of the warg release named as another one:
        // recomputing it from the release's bytes tells.
        let sql = "UPDATE oci_derived SET digest = $1 WHERE repository = 'test/lib' AND version = '2.0.0'";
        assert_eq!(execute(&url, sql, &[&first]).await, 1);
        let (with, _) = checked.run().await;
        assert!(
            reported(
                &with,
                &format!(
                    "the derived manifest of test/lib 2.0.0 is {first} in the database, but the release derives {derived}"
                )
            ),
            "{kind}: {:?}",
            with.problems
        );
        assert_eq!(execute(&url, sql, &[&derived]).await, 1);
        checked.assert_clean(kind, "derived restored").await;

        // The yank referrer's reason changed.
        let yank = "application/vnd.cairn.yank.v1+json";
        let sql = format!(
            "UPDATE oci_manifests SET annotations = REPLACE(annotations, '\"broken\"', '\"fine\"') \
             WHERE repository = 'test/app' AND artifact_type = '{yank}'"
        );
        assert_eq!(execute(&url, &sql, &[]).await, 1);
        let (with, _) = checked.run().await;
        assert!(
            reported(
                &with,
                "says \"fine\" by \"alice\", but the log says \"broken\""
            ),
            "{kind}: {:?}",
            with.problems
        );
        let sql = format!(
            "UPDATE oci_manifests SET annotations = REPLACE(annotations, '\"fine\"', '\"broken\"') \
             WHERE repository = 'test/app' AND artifact_type = '{yank}'"
        );
        assert_eq!(execute(&url, &sql, &[]).await, 1);
        checked.assert_clean(kind, "yank reason restored").await;

        // A released content's `published` flag cleared.
        let sql = "UPDATE contents SET published = 0 WHERE digest = $1";
        assert_eq!(execute(&url, sql, &[&layer]).await, 1);
        let (with, without) = checked.run().await;
        for report in [&with, &without] {
            assert!(
                reported(
                    report,
                    &format!("released content {layer} is not marked published")
                ),
                "{kind}: {:?}",
                report.problems
            );
        }
        let sql = "UPDATE contents SET published = 1 WHERE digest = $1";
        assert_eq!(execute(&url, sql, &[&layer]).await, 1);
        checked.assert_clean(kind, "published restored").await;

        // And a config (never released) marked published.
        let config = Sha256Digest::of(&wasm_config(&one));
        let sql = "INSERT INTO contents (digest, size, published) VALUES ($1, 1, 1) \
                   ON CONFLICT (digest) DO UPDATE SET published = 1";
        assert_eq!(execute(&url, sql, &[&config]).await, 1);
        let (with, _) = checked.run().await;
        assert!(
            reported(
                &with,
                &format!(
                    "content {config} is marked published but no sequenced record references it"
                )
            ),
            "{kind}: {:?}",
            with.problems
        );
    }
}
