//! `cairn gc` beyond withheld content: blobs that no live manifest or
//! release references (blobs only deleted manifests used,
//! uploads never referenced) and upload leftovers, older than the grace
//! period. A dry run reports; `--apply` deletes them and keeps everything
//! referenced and everything young; pushing works afterwards and fsck stays
//! clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use cairn_blob::BlobStore as _;
use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_server::gc::unreferenced::{Options, collect};
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

fn settings(server: &TestServer) -> cairn_server::Settings {
    cairn_server::config::resolve(&server.args(server.addr)).unwrap()
}

/// Makes a stored file look `age` old.
fn age(path: &Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

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

async fn blob_status(server: &TestServer, token: &str, repo: &str, digest: &str) -> u16 {
    reqwest::Client::new()
        .head(format!("{}/v2/{repo}/blobs/{digest}", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreferenced_old_blobs_and_upload_leftovers_are_collected() {
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
        let root = server.data.path().join("blobs");
        let blobs = cairn_blob::FsBlobStore::open_existing(&root).unwrap();
        let d = |s: &str| s.parse::<Sha256Digest>().unwrap();

        // Live: a release and a mutable tag.
        let (kept, release, gone) = (wasm("gc-kept"), wasm("gc-release"), wasm("gc-gone"));
        let kept_manifest = oci_push(&server, &token, repo, "dev", &kept).await.unwrap();
        let release_manifest = oci_push(&server, &token, repo, "1.0.0", &release)
            .await
            .unwrap();
        // Deleted: its config is no longer referenced (its wasm layer is
        // content, and is kept; its manifest's bytes are stored with the
        // records of its push, not in the blob store).
        let gone_manifest = oci_push(&server, &token, repo, "tmp", &gone).await.unwrap();
        let response = reqwest::Client::new()
            .delete(format!(
                "{}/v2/{repo}/manifests/{gone_manifest}",
                server.url
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{kind}");
        // Uploaded, never referenced: one old, one young.
        let (stray, young) = (b"stray blob".to_vec(), b"young blob".to_vec());
        upload_blob(&server, &token, repo, &stray).await;
        upload_blob(&server, &token, repo, &young).await;
        // Upload leftovers: a session file without a session (old), and an
        // open session (young).
        let leftover = root.join("uploads").join("0123456789abcdef");
        std::fs::write(&leftover, b"half an upload").unwrap();
        let response = reqwest::Client::new()
            .post(format!("{}/v2/{repo}/blobs/uploads/", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let open_session = response.headers()["docker-upload-uuid"]
            .to_str()
            .unwrap()
            .to_owned();

        // Everything stored so far is old, except the young blob.
        let day = Duration::from_secs(2 * 86_400);
        for entry in walk(&root.join("sha256")) {
            age(&entry, day);
        }
        age(&leftover, day);
        age(&blobs.path(&d(&digest_of(&young))), Duration::ZERO);
        let options = |apply| Options {
            apply,
            grace: Duration::from_secs(3600),
            // No push is in flight in this test.
            settle: Duration::ZERO,
        };
        let expected: BTreeSet<Sha256Digest> =
            [d(&digest_of(&wasm_config(&gone))), d(&digest_of(&stray))].into();

        // Dry run: reports, deletes nothing.
        let dry = collect(&settings(&server), &options(false)).await.unwrap();
        let found: BTreeSet<Sha256Digest> = dry.blobs.iter().map(|b| b.digest).collect();
        assert_eq!(found, expected, "{kind}");
        assert!(dry.blobs.iter().all(|b| !b.deleted), "{kind}");
        assert_eq!(dry.young, 1, "{kind}");
        assert_eq!(
            dry.uploads
                .iter()
                .map(|u| u.id.as_str())
                .collect::<Vec<_>>(),
            vec!["0123456789abcdef"],
            "{kind}"
        );
        assert!(dry.bytes(false) > 0, "{kind}");
        for digest in &expected {
            assert!(blobs.stat(digest).await.unwrap().is_some(), "{kind}");
        }
        assert!(leftover.exists(), "{kind}");

        // Apply: deletes exactly those.
        let applied = collect(&settings(&server), &options(true)).await.unwrap();
        let deleted: BTreeSet<Sha256Digest> = applied
            .blobs
            .iter()
            .filter(|b| b.deleted)
            .map(|b| b.digest)
            .collect();
        assert_eq!(deleted, expected, "{kind}");
        for digest in &expected {
            assert!(blobs.stat(digest).await.unwrap().is_none(), "{kind}");
        }
        assert!(!leftover.exists(), "{kind}");
        assert!(
            root.join("uploads").join(&open_session).exists(),
            "{kind}: an open session is kept"
        );
        for kept in [
            digest_of(&kept),
            digest_of(&wasm_config(&kept)),
            digest_of(&release),
            digest_of(&gone),
            digest_of(&young),
        ] {
            assert!(
                blobs.stat(&d(&kept)).await.unwrap().is_some(),
                "{kind}: {kept} kept"
            );
        }
        // The stray blob is no longer in the repository; the young one is.
        assert_eq!(
            blob_status(&server, &token, repo, &digest_of(&stray)).await,
            404,
            "{kind}"
        );
        assert_eq!(
            blob_status(&server, &token, repo, &digest_of(&young)).await,
            200,
            "{kind}"
        );
        // Nothing left to collect.
        let again = collect(&settings(&server), &options(true)).await.unwrap();
        assert!(again.blobs.is_empty() && again.uploads.is_empty(), "{kind}");

        // Live manifests are still served, the deleted one can be pushed
        // again (its blobs uploaded again), and the tables are as the logs
        // say.
        for (reference, digest) in [("dev", &kept_manifest), ("1.0.0", &release_manifest)] {
            let (status, _, body) =
                get_bytes(&format!("{}/v2/{repo}/manifests/{reference}", server.url)).await;
            assert_eq!((status, digest_of(&body)), (200, digest.clone()), "{kind}");
        }
        assert_eq!(
            oci_push(&server, &token, repo, "tmp", &gone).await,
            Ok(gone_manifest.clone()),
            "{kind}"
        );
        let store = cairn_store::SqlStore::connect(&server.db.url, 2)
            .await
            .unwrap();
        let report =
            cairn_service::fsck::fsck(&store, Some(&blobs as &dyn cairn_blob::BlobStore), |_| {})
                .await
                .unwrap();
        assert!(report.is_clean(), "{kind}: {:?}", report.problems);
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
