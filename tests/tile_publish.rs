//! `cairn serve --publish-tiles`: after each checkpoint the log's full
//! tiles (written once), the partial tiles of the checkpoint's size and the
//! checkpoint (last) are published to an S3 bucket (`moto_server`) or a
//! directory, at the paths the HTTP API serves them. A reader of the bucket
//! alone verifies the checkpoint's signature and proofs computed from the
//! bucket's tiles; a restart catches up without rewriting full tiles; a
//! prefix holding another log is never written over.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};

use cairn_audit::Trust;
use cairn_audit::remote::Remote;
use cairn_audit::state::StateDir;
use cairn_blob::testing::S3Emulator;
use cairn_blob::{ObjectSink as _, S3ObjectSink};
use cairn_crypto::{EcdsaPrivateKey, Sha256Digest};
use cairn_log::hash::leaf_hash;
use cairn_log::proof::{inclusion_plan, inclusion_proof, verify_inclusion};
use cairn_log::tiles::{self, Tile, TileHashReader, TileKind, TileReader};
use cairn_log::tree::{fetch, root, root_nodes};
use cairn_protocol::record::{PackageEntry, PackageRecord};
use cairn_protocol::{Envelope, LogId, PackageName, Timestamp};
use cairn_server::config::{PublishTiles, ServeArgs};
use cairn_service::tile_publisher::{
    CHECKPOINT_HEADERS, CHECKPOINT_PATH, PROGRESS_PATH, TILE_HEADERS, new_full_tiles, partial_tiles,
};
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

/// Publishes `count` releases over warg (one record each: `init` and a
/// release of shared content), many at once, and waits until a checkpoint
/// covers them. Returns the log's size.
async fn publish_many(server: &TestServer, count: usize, run: &str) -> u64 {
    let before = log_length(server);
    let mut seed = [7u8; 32];
    seed[0] = 1;
    let key = EcdsaPrivateKey::from_scalar_bytes(&seed).unwrap();
    let content = wasm("published tiles");
    let digest = Sha256Digest::of(&content);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let http = reqwest::Client::new();
    let publish = |i: usize| {
        let (http, key, content) = (http.clone(), key.clone(), content.clone());
        let name = PackageName::new(format!("test:{run}-p{i}")).unwrap();
        async move {
            let record = PackageRecord {
                prev: None,
                version: 0,
                timestamp: Timestamp::from_unix(now, u32::try_from(i).unwrap()).unwrap(),
                entries: vec![
                    PackageEntry::Init {
                        key: key.public_key(),
                    },
                    PackageEntry::Release {
                        version: "1.0.0".parse().unwrap(),
                        content: digest,
                    },
                ],
            };
            let body = json!({
                "packageName": name.to_string(),
                "record": Envelope::sign(record, &key).to_body(),
            });
            let url = format!("{}/v1/package/{}/record", server.url, LogId::package(&name));
            let answer: Value = eventually(60, "a publish accepted", || {
                let request = http.post(&url).json(&body);
                async move {
                    let response = request.send().await.unwrap();
                    // 503: the backlog is full; the client retries.
                    if response.status() == 503 {
                        return None;
                    }
                    assert!(response.status().is_success(), "{}", response.status());
                    Some(response.json().await.unwrap())
                }
            })
            .await;
            if let Some(missing) = answer["missingContent"].as_object() {
                for how in missing.values() {
                    let upload = how["upload"][0]["url"].as_str().unwrap();
                    let upload = if upload.starts_with("http") {
                        upload.to_owned()
                    } else {
                        format!("{}{upload}", server.url)
                    };
                    let status = http.post(upload).body(content.clone()).send().await;
                    assert!(status.unwrap().status().is_success());
                }
            }
        }
    };
    // The content is uploaded once, with the first record.
    publish(0).await;
    futures_util::stream::iter(1..count)
        .map(publish)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let target = before + count as u64;
    eventually(
        60,
        "a checkpoint covering the releases",
        move || async move { (log_length(server) >= target).then_some(()) },
    )
    .await;
    log_length(server)
}

/// Every tile a reader of a checkpoint of `size` may fetch.
fn tiles_of(size: u64) -> Vec<Tile> {
    let mut all = new_full_tiles(0, size);
    all.extend(partial_tiles(size));
    all
}

/// Waits until the sink's checkpoint (read by `read`) is the one the
/// server serves; returns it.
async fn wait_for_checkpoint<F, Fut>(server: &TestServer, read: F) -> Vec<u8>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<Vec<u8>>>,
{
    let (status, _, served) = get_bytes(&format!("{}/checkpoint", server.url)).await;
    assert_eq!(status, 200);
    eventually(60, "the published checkpoint", || {
        let (read, served) = (read(), served.clone());
        async move { read.await.filter(|b| *b == served) }
    })
    .await
}

/// Lets anyone read `prefix` of `bucket`, as a bucket policy does for
/// readers of published tiles (the emulator takes it unsigned).
async fn public_read(moto: &S3Emulator, bucket: &str, prefix: &str) {
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{bucket}/{prefix}/*"),
        }],
    });
    let response = reqwest::Client::new()
        .put(format!("{}/{bucket}?policy", moto.url()))
        .body(policy.to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// `GET url`'s body if it answers 200.
async fn read_url(url: String) -> Option<Vec<u8>> {
    let (status, _, bytes) = get_bytes(&url).await;
    (status == 200).then_some(bytes)
}

/// From the bucket alone: the checkpoint verifies under the log's key,
/// the tiles give its root, and entries are proven included.
async fn verify_bucket(base: &str, trust: &Trust) -> u64 {
    let remote = Remote::new(base).unwrap();
    let verified = trust.verify(&remote.checkpoint().await.unwrap()).unwrap();
    let size = verified.checkpoint.size;
    assert_eq!(remote.root(size).await.unwrap(), verified.checkpoint.root);
    for index in [0, size / 2, size - 1] {
        let bundle = tiles::tile_at(size, TileKind::Entries, index / tiles::TILE_WIDTH).unwrap();
        let entries = tiles::decode_entries(&remote.tile(bundle).await.unwrap()).unwrap();
        let leaf = leaf_hash(&entries[usize::try_from(index % tiles::TILE_WIDTH).unwrap()]);
        let plan = inclusion_plan(index, size).unwrap();
        let hashes = remote.hashes(size, &plan).await.unwrap();
        let proof = inclusion_proof(index, size, &hashes).unwrap();
        verify_inclusion(index, size, &leaf, &proof, &verified.checkpoint.root).unwrap();
    }
    size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiles_and_checkpoints_are_published_to_a_bucket_once_and_verify_alone() {
    let Some(moto) = S3Emulator::start().await else {
        return;
    };
    for (n, db) in TestDatabase::all().await.into_iter().enumerate() {
        let bucket = format!("cairn-tiles-{n}");
        let s3 = moto.bucket(&bucket, "log/v1").await;
        public_read(&moto, &bucket, "log/v1").await;
        let base = format!("{}/{bucket}/log/v1", moto.url());
        let mut server = TestServer::prepare(db, ServeArgs::default());
        server.publish_tiles = Some(PublishTiles::S3(s3.clone()));
        server.restart().await;
        let kind = server.kind();
        let trust = Trust {
            vkey: server.registry().note_verifier_key(),
            policy: None,
        };

        // More than a full tile of entries.
        let size = publish_many(&server, 300, "a").await;
        assert!((256..512).contains(&size), "{kind}: {size}");
        let checkpoint =
            wait_for_checkpoint(&server, || read_url(format!("{base}/checkpoint"))).await;
        let (_, headers, _) = get_bytes(&format!("{base}/checkpoint")).await;
        assert_eq!(
            headers["cache-control"], CHECKPOINT_HEADERS.cache_control,
            "{kind}"
        );
        assert_eq!(
            headers["content-type"], CHECKPOINT_HEADERS.content_type,
            "{kind}"
        );
        assert_eq!(verify_bucket(&base, &trust).await, size, "{kind}");
        let state_dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(state_dir.path()).unwrap();
        let bucket_remote = Remote::new(&base).unwrap();
        let step = cairn_audit::follow::step(&bucket_remote, &trust, &state)
            .await
            .unwrap();
        assert_eq!(step.current, size, "{kind}");

        // Byte for byte what the HTTP API serves, with immutable headers.
        for tile in tiles_of(size) {
            let (status, headers, published) = get_bytes(&format!("{base}/{}", tile.path())).await;
            assert_eq!(status, 200, "{kind}: {}", tile.path());
            assert_eq!(headers["cache-control"], TILE_HEADERS.cache_control);
            assert_eq!(headers["content-type"], TILE_HEADERS.content_type);
            let (status, _, served) = get_bytes(&format!("{}/{}", server.url, tile.path())).await;
            assert_eq!(status, 200);
            assert_eq!(published, served, "{kind}: {}", tile.path());
        }
        let metrics = server.registry().metrics().clone();
        assert_eq!(
            metrics.tiles.full.get(),
            new_full_tiles(0, size).len() as u64,
            "{kind}: each full tile written once"
        );
        assert_eq!(metrics.tiles.published_size(), size, "{kind}");
        assert_eq!(metrics.tiles.errors.get(), 0, "{kind}");
        let text = server.registry().render_metrics(false).await;
        assert!(
            text.contains(&format!("cairn_tiles_published_size {size}\n")),
            "{kind}"
        );
        let (_, first_tile, _) = get_bytes(&format!("{base}/tile/0/000")).await;

        // The log grows while nothing publishes; the next start catches up,
        // writing only the full tiles completed meanwhile.
        server.publish_tiles = None;
        server.restart().await;
        let grown = publish_many(&server, 260, "b").await;
        assert!(grown >= 512, "{kind}: {grown}");
        server.publish_tiles = Some(PublishTiles::S3(s3.clone()));
        server.restart().await;
        let caught_up =
            wait_for_checkpoint(&server, || read_url(format!("{base}/checkpoint"))).await;
        assert_ne!(caught_up, checkpoint, "{kind}");
        let metrics = server.registry().metrics().clone();
        let expected = new_full_tiles(size, grown).len() as u64;
        assert!(expected >= 2, "{kind}");
        assert_eq!(
            metrics.tiles.full.get(),
            expected,
            "{kind}: only the new full tiles are written"
        );
        let (_, again, _) = get_bytes(&format!("{base}/tile/0/000")).await;
        assert_eq!(
            again["last-modified"], first_tile["last-modified"],
            "{kind}: tile/0/000 was not rewritten"
        );
        assert_eq!(verify_bucket(&base, &trust).await, grown, "{kind}");
        // Consistency from the earlier checkpoint, proven with the bucket's tiles.
        let step = cairn_audit::follow::step(&bucket_remote, &trust, &state)
            .await
            .unwrap();
        assert_eq!((step.previous, step.current), (Some(size), grown), "{kind}");
        for tile in tiles_of(grown) {
            let (_, _, published) = get_bytes(&format!("{base}/{}", tile.path())).await;
            let (_, _, served) = get_bytes(&format!("{}/{}", server.url, tile.path())).await;
            assert_eq!(published, served, "{kind}: {}", tile.path());
        }

        // A restart with nothing new writes no full tile.
        server.restart().await;
        let metrics = server.registry().metrics().clone();
        eventually(60, "the checkpoint rewritten after a restart", || {
            let done = metrics.tiles.published_size() == grown;
            async move { done.then_some(()) }
        })
        .await;
        assert_eq!(server.registry().metrics().tiles.full.get(), 0, "{kind}");
        server.stop().await;
    }
}

/// Tiles read from a directory.
struct Files(PathBuf);

impl TileReader for Files {
    type Error = cairn_log::Error;

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, cairn_log::Error> {
        Ok(tiles
            .iter()
            .map(|t| std::fs::read(self.0.join(t.path())).unwrap())
            .collect())
    }
}

fn read_file(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiles_are_published_to_a_directory_at_the_http_paths() {
    for db in TestDatabase::all().await {
        let dir = tempfile::tempdir().unwrap();
        let mut server = TestServer::prepare(db, ServeArgs::default());
        server.publish_tiles = Some(PublishTiles::Dir(dir.path().join("log")));
        server.restart().await;
        let kind = server.kind();
        let size = publish_many(&server, 260, "d").await;
        let root_dir = dir.path().join("log");
        let file = root_dir.join("checkpoint");
        let checkpoint = wait_for_checkpoint(&server, || {
            let bytes = read_file(&file);
            async move { bytes }
        })
        .await;
        let trust = Trust {
            vkey: server.registry().note_verifier_key(),
            policy: None,
        };
        let verified = trust.verify(&checkpoint).unwrap();
        assert_eq!(verified.checkpoint.size, size, "{kind}");
        let fetched = fetch(
            &TileHashReader::new(size, &Files(root_dir.clone())),
            &root_nodes(size),
        )
        .unwrap();
        assert_eq!(root(&fetched, size).unwrap(), verified.checkpoint.root);
        for tile in tiles_of(size) {
            let published = read_file(&root_dir.join(tile.path())).unwrap();
            let (_, _, served) = get_bytes(&format!("{}/{}", server.url, tile.path())).await;
            assert_eq!(published, served, "{kind}: {}", tile.path());
        }
        let progress = read_file(&root_dir.join(PROGRESS_PATH)).unwrap();
        assert!(
            String::from_utf8(progress)
                .unwrap()
                .ends_with(&format!("\n{size}\n")),
            "{kind}"
        );
        // Nothing but the log's objects (no staging files left behind).
        let mut names: Vec<String> = std::fs::read_dir(&root_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["cairn-tiles-published", "checkpoint", "tile"]);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prefix_holding_another_log_is_not_written_over() {
    let Some(moto) = S3Emulator::start().await else {
        return;
    };
    for (n, db) in TestDatabase::all().await.into_iter().enumerate() {
        let bucket = format!("cairn-other-{n}");
        let s3 = moto.bucket(&bucket, "shared").await;
        let sink = S3ObjectSink::new(&s3).unwrap();
        let theirs = b"other.example/log\n5\n";
        sink.put(
            PROGRESS_PATH,
            bytes::Bytes::from_static(theirs),
            CHECKPOINT_HEADERS,
        )
        .await
        .unwrap();
        let mut server = TestServer::prepare(db, ServeArgs::default());
        server.publish_tiles = Some(PublishTiles::S3(s3.clone()));
        server.restart().await;
        let kind = server.kind();
        publish_release(
            &warg_client(tempfile::tempdir().unwrap().path(), &server.url).await,
            &new_key(),
            "test:other",
            "1.0.0",
            wasm("not over theirs"),
        )
        .await
        .unwrap();
        let metrics = server.registry().metrics().clone();
        eventually(30, "the refusal counted", || {
            let refused = metrics.tiles.errors.get() >= 1;
            async move { refused.then_some(()) }
        })
        .await;
        assert_eq!(sink.get(CHECKPOINT_PATH).await.unwrap(), None, "{kind}");
        assert_eq!(sink.get("tile/0/000.p/1").await.unwrap(), None, "{kind}");
        assert_eq!(
            sink.get(PROGRESS_PATH).await.unwrap().unwrap(),
            &theirs[..],
            "{kind}"
        );
        assert_eq!(server.registry().metrics().tiles.full.get(), 0, "{kind}");
        assert_eq!(server.registry().metrics().tiles.published_size(), 0);
        server.stop().await;
    }
}
