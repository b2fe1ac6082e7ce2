//! Two `cairn serve` processes on one PostgreSQL database: one sequences,
//! the other stands by, serves reads and accepts writes (forwarding those
//! that need the leader); a killed leader is replaced within
//! 10 seconds, and a paused one, once resumed, cannot extend or fork the
//! log (its lease is fenced).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use cairn_store::testing::TestDatabase;
use cairn_store::{LeaseStore as _, SqlStore, Store as _};
use cairn_tests::cluster::{Node, NodeSettings, checkpoint_length, checkpoints_extend};
use cairn_tests::*;

/// Publishes `name@version` through `url` (waiting until published).
async fn publish(url: &str, key: &warg_crypto::signing::PrivateKey, name: &str, version: &str) {
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client_fixed(dir.path(), url);
    publish_release(
        &client,
        key,
        name,
        version,
        wasm(&format!("{name}{version}")),
    )
    .await
    .unwrap();
}

/// Downloads `name@version` through `url`.
async fn fetch(url: &str, name: &str, version: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client_fixed(dir.path(), url);
    download(&client, name, version).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_and_a_paused_leader_is_fenced() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let settings = NodeSettings::new(&db.url);
    let key = new_key();

    // A initialises the registry and leads; B stands by and serves reads.
    let mut a = Node::start("a", &settings, data.path());
    a.wait_role(true, 60).await;
    let b = Node::start("b", &settings, data.path());
    b.wait_role(false, 60).await;
    publish(&a.url, &key, "test:one", "1.0.0").await;
    let length = checkpoint_length(&a.url).await;
    eventually(10, "B serving A's checkpoint", || async {
        (checkpoint_length(&b.url).await == length).then_some(())
    })
    .await;
    assert_eq!(
        fetch(&b.url, "test:one", "1.0.0").await,
        wasm("test:one1.0.0")
    );

    // Writes at the standby: a warg publish is judged there (a bad one is
    // a 400, not a refusal); an OCI manifest push is forwarded to A, whose
    // answer (here: no credentials) comes back naming it.
    let http = reqwest::Client::new();
    let judged = http
        .post(format!("{}/v1/package/sha256:00/record", b.url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(judged.status(), 400);
    assert!(!judged.headers().contains_key("cairn-leader"));
    let forwarded = http
        .put(format!("{}/v2/test/one/manifests/latest", b.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 401);
    assert_eq!(forwarded.headers()["cairn-leader"], a.url.as_str());
    let body: serde_json::Value = forwarded.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{body}");

    // SIGKILL the leader: B leads within 10 seconds and accepts publishes.
    let killed = Instant::now();
    a.kill();
    b.wait_role(true, 10).await;
    assert!(killed.elapsed() < Duration::from_secs(10));
    publish(&b.url, &key, "test:two", "1.0.0").await;
    assert_eq!(
        fetch(&b.url, "test:two", "1.0.0").await,
        wasm("test:two1.0.0")
    );

    // A new node stands by; then the leader is paused past its lease.
    let c = Node::start("c", &settings, data.path());
    c.wait_role(false, 60).await;
    b.signal("STOP");
    c.wait_role(true, 15).await;
    publish(&c.url, &key, "test:three", "1.0.0").await;
    let store = SqlStore::connect(&db.url, 2).await.unwrap();
    let before = checkpoints_extend(&store).await;
    let lease = store.lease().await.unwrap();
    assert_eq!((lease.epoch, lease.holder.as_str()), (3, "c"));

    // Resumed, the old leader finds its lease gone and stands by; it
    // stores nothing, and the log goes on from the new leader's tree.
    b.signal("CONT");
    b.wait_role(false, 15).await;
    let lease = store.lease().await.unwrap();
    assert_eq!((lease.epoch, lease.holder.as_str()), (3, "c"));
    assert_eq!(checkpoints_extend(&store).await, before);
    assert_eq!(
        store.tree_head().await.unwrap().unwrap().size,
        before,
        "nothing sequenced beyond the new leader's checkpoint"
    );
    publish(&c.url, &key, "test:four", "1.0.0").await;
    let length = checkpoint_length(&c.url).await;
    assert!(length > before);
    eventually(10, "the old leader serving the new checkpoint", || async {
        (checkpoint_length(&b.url).await == length).then_some(())
    })
    .await;
    assert_eq!(
        fetch(&b.url, "test:four", "1.0.0").await,
        wasm("test:four1.0.0")
    );
    assert_eq!(checkpoints_extend(&store).await, length);
    drop(b);
    drop(c);
    settings.fsck(data.path());
}
