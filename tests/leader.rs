//! Two `cairn serve` processes on one PostgreSQL database: one sequences,
//! the other stands by and serves reads; a killed leader is replaced within
//! 10 seconds, and a paused one, once resumed, cannot extend or fork the
//! log (its lease is fenced).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cairn_store::testing::TestDatabase;
use cairn_store::{LeaseStore as _, SqlStore, Store as _};
use cairn_tests::*;

/// The `cairn` binary, built once (a no-op when `cargo test` built it).
fn cairn_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/leader-…
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target = profile_dir.parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "-q", "-p", "cairn-server", "--bin", "cairn"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().unwrap() == "release" {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "building cairn");
        profile_dir.join("cairn")
    })
}

/// A `cairn serve` process; killed when dropped.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    /// Starts node `id` on `db`, sharing `data` (keys and blobs) with the
    /// other nodes, as copies of the keys and one bucket would be.
    fn start(id: &str, db: &TestDatabase, data: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(cairn_bin())
            .args(["serve", "--namespace", "test", "--node-id", id])
            .arg("--database-url")
            .arg(&db.url)
            .arg("--data-dir")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("CAIRN_TOKEN")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `/readyz` once it answers 200: whether this node leads.
    async fn ready(&self) -> Option<bool> {
        let response = reqwest::get(format!("{}/readyz", self.url)).await.ok()?;
        if response.status() != 200 {
            return None;
        }
        let body: serde_json::Value = response.json().await.ok()?;
        body["node"]["leader"].as_bool()
    }

    /// Waits until the node is ready in the given role.
    async fn wait_role(&self, leader: bool, seconds: u64) {
        let role = if leader { "leader" } else { "standby" };
        eventually(seconds, &format!("{} as {role}", self.url), || async {
            (self.ready().await == Some(leader)).then_some(())
        })
        .await;
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A stopped process must be resumed to die promptly.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        self.kill();
    }
}

/// The served warg checkpoint's length.
async fn checkpoint_length(url: &str) -> u64 {
    let body: serde_json::Value = reqwest::get(format!("{url}/v1/fetch/checkpoint"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["contents"]["logLength"].as_u64().unwrap()
}

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

/// `cairn fsck` on the database: clean.
fn fsck(db: &TestDatabase, data: &Path) {
    let output = Command::new(cairn_bin())
        .arg("fsck")
        .arg("--database-url")
        .arg(&db.url)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fsck: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every stored checkpoint extends the one before it (strictly longer) and
/// its root is the stored tree's at that length.
async fn checkpoints_extend(store: &SqlStore) -> u64 {
    let all = store.checkpoints(None, 10_000).await.unwrap();
    let mut last = 0;
    for checkpoint in &all {
        let length = checkpoint.checkpoint.checkpoint.log_length;
        assert!(length > last, "checkpoint {length} after {last}");
        last = length;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_and_a_paused_leader_is_fenced() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let key = new_key();

    // A initialises the registry and leads; B stands by and serves reads.
    let mut a = Node::start("a", &db, data.path());
    a.wait_role(true, 60).await;
    let b = Node::start("b", &db, data.path());
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

    // Writes at the standby: 503 with Retry-After, in each door's format.
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{}/v1/package/sha256:00/record", b.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("standby"),
        "{body}"
    );
    let refused = http
        .put(format!("{}/v2/test/one/manifests/latest", b.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("standby"),
        "{body}"
    );

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
    let c = Node::start("c", &db, data.path());
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
    fsck(&db, data.path());
}
