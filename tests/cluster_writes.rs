//! Every node of a cluster accepts every write: three `cairn serve`
//! processes on one PostgreSQL database. Warg publishes through every node
//! at once, to one package and to several, are all acknowledged, served by
//! every node and never forked (`cairn fsck` is clean); an OCI push to a
//! standby is answered 201 (forwarded to the leader) and readable at once
//! on that standby, then on every node; a token revoked through one node is
//! refused by the others at once (tokens are read from the store on every
//! request).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_store::testing::TestDatabase;
use cairn_store::{SqlStore, Store as _};
use cairn_tests::cluster::{Node, NodeSettings, checkpoints_extend, oci_push_at};
use cairn_tests::*;

/// Publishes `name@version` through `url`, waiting until that node serves
/// it as published.
async fn publish(
    url: String,
    key: std::sync::Arc<warg_crypto::signing::PrivateKey>,
    name: String,
    version: String,
) -> anyhow::Result<(String, String)> {
    let dir = tempfile::tempdir()?;
    let client = warg_client_fixed(dir.path(), &url);
    publish_release(
        &client,
        &key,
        &name,
        &version,
        wasm(&format!("{name}{version}")),
    )
    .await?;
    Ok((name, version))
}

/// Downloads `name@version` through `url` (verified by the client).
async fn fetch(url: &str, name: &str, version: &str) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client_fixed(dir.path(), url);
    download(&client, name, version).await.ok()
}

/// A robot identity `name` with a token of `actions` in `namespace`.
fn token(settings: &NodeSettings, data: &std::path::Path, name: &str, actions: &str) -> String {
    let run = |args: &[&str]| {
        let output = settings.command(args, data).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    run(&["identity", "create", name, "--robot"]);
    run(&[
        "token",
        "create",
        "--identity",
        name,
        "--namespace",
        "*",
        "--actions",
        actions,
    ])
}

/// The id of a token (`cairn_<id>_<secret>`).
fn token_id(token: &str) -> &str {
    token
        .strip_prefix("cairn_")
        .and_then(|rest| rest.split_once('_'))
        .unwrap()
        .0
}

/// Whether `token` logs in to the OCI door of `url`.
async fn logs_in(http: &reqwest::Client, url: &str, token: &str) -> bool {
    let response = http
        .get(format!(
            "{url}/v2/token?service=cairn&scope=repository:test/oci:pull,push"
        ))
        .basic_auth("user", Some(token))
        .send()
        .await
        .unwrap();
    match response.status().as_u16() {
        200 => true,
        401 => false,
        other => panic!("logging in at {url}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_accepts_every_write() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let settings = NodeSettings::new(&db.url);
    let a = Node::start("a", &settings, data.path());
    a.wait_role(true, 60).await;
    let b = Node::start("b", &settings, data.path());
    let c = Node::start("c", &settings, data.path());
    b.wait_role(false, 60).await;
    c.wait_role(false, 60).await;
    let urls = [a.url.clone(), b.url.clone(), c.url.clone()];
    let key = std::sync::Arc::new(new_key());

    // Concurrently through every node: two releases each of one shared
    // package, and two of a package of its own.
    let mut publishes = tokio::task::JoinSet::new();
    for (i, url) in urls.iter().enumerate() {
        for v in 0..2 {
            publishes.spawn(publish(
                url.clone(),
                key.clone(),
                "test:shared".into(),
                format!("{i}.{v}.0"),
            ));
            publishes.spawn(publish(
                url.clone(),
                key.clone(),
                format!("test:own{i}"),
                format!("1.{v}.0"),
            ));
        }
    }
    let mut acknowledged = Vec::new();
    while let Some(done) = publishes.join_next().await {
        acknowledged.push(done.unwrap().expect("every node accepts publishes"));
    }
    assert_eq!(acknowledged.len(), 12);

    // Every acknowledged release is served by every node.
    for (name, version) in &acknowledged {
        for url in &urls {
            let bytes = eventually(10, &format!("{name}@{version} at {url}"), || async {
                fetch(url, name, version).await
            })
            .await;
            assert_eq!(bytes, wasm(&format!("{name}{version}")));
        }
    }

    // An OCI push to a standby: forwarded, answered 201, readable at once
    // there, and on every node.
    let http = reqwest::Client::new();
    let pusher = settings.publish_token(data.path(), "pusher", "test");
    let layer = wasm("pushed through a standby");
    let digest = oci_push_at(&http, &b.url, &pusher, "test/oci", "1.0.0", &layer)
        .await
        .expect("a standby accepts OCI pushes");
    let manifest = |url: &str| {
        http.get(format!("{url}/v2/test/oci/manifests/1.0.0"))
            .header("accept", MANIFEST)
            .send()
    };
    let at_standby = manifest(&b.url).await.unwrap();
    assert_eq!(at_standby.status(), 200);
    assert_eq!(
        at_standby.headers()["docker-content-digest"],
        digest.as_str()
    );
    for url in &urls {
        eventually(10, &format!("the pushed manifest at {url}"), || async {
            let response = manifest(url).await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }
    // The leader's answers come back through the standby naming it.
    let forwarded = http
        .put(format!("{}/v2/test/oci/manifests/2.0.0", c.url))
        .header("content-type", MANIFEST)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 401);
    assert_eq!(forwarded.headers()["cairn-leader"], a.url.as_str());
    assert!(forwarded.headers()["via"].to_str().unwrap().contains('c'));

    // A token revoked through one node (here a standby, which forwards the
    // revocation) is refused by every node at once.
    let admin = token(&settings, data.path(), "ops", "admin");
    for url in &urls {
        assert!(logs_in(&http, url, &pusher).await);
    }
    let revoked = http
        .delete(format!(
            "{}/api/v1/admin/tokens/{}",
            b.url,
            token_id(&pusher)
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    for url in &urls {
        assert!(!logs_in(&http, url, &pusher).await, "{url}");
    }

    // No fork: every checkpoint extends the one before, fsck is clean.
    let store = SqlStore::connect(&db.url, 2).await.unwrap();
    let length = checkpoints_extend(&store).await;
    assert!(store.tree_head().await.unwrap().unwrap().size == length);
    drop((a, b, c));
    settings.fsck(data.path());
}
