//! Several `cairn serve` processes (the real binary) on one database: the
//! nodes of a cluster, with what the cluster tests do to them (SIGKILL,
//! SIGSTOP/SIGCONT), `cairn fsck` and `cairn token create` run as an
//! operator would, and a client-side load balancer ([`Balancer`]) that
//! sends each write to the node its caller chose and, only when that node
//! answers 503 or cannot be reached, retries at the next node — counting
//! the writes each node accepted. Its OCI pushes are in `cluster_oci.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cairn_store::{CheckpointStore as _, SqlStore, Store as _};
use warg_crypto::signing::PrivateKey;
use warg_protocol::registry::{PackageName, RecordId};

use crate::{eventually, warg_client_fixed};

#[path = "cluster_oci.rs"]
mod oci;
pub use oci::{PreparedPush, Pushed, oci_push_at};

/// The `cairn` binary, built once (a no-op when `cargo test` built it), in
/// the profile of the running test.
pub fn cairn_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test>-…
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

/// What every node of one cluster shares: the database, the blob store,
/// and any further `cairn serve` options.
#[derive(Clone, Debug, Default)]
pub struct NodeSettings {
    pub database_url: String,
    /// `--blob-store` (e.g. `s3://BUCKET/PREFIX`); `None`: the data
    /// directory's.
    pub blob_store: Option<String>,
    /// Environment of every `cairn` process (the AWS settings that reach
    /// the bucket).
    pub env: Vec<(String, String)>,
    /// Further `cairn serve` options.
    pub serve_args: Vec<String>,
}

impl NodeSettings {
    /// On `database_url`, with blobs in the data directory.
    pub fn new(database_url: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            ..Self::default()
        }
    }

    /// With blobs in the S3 bucket `s3` names.
    pub fn with_s3(mut self, s3: &cairn_blob::S3Config) -> Self {
        self.blob_store = Some(format!("s3://{}/{}", s3.bucket, s3.prefix));
        self.env = s3.options.clone();
        self
    }

    /// `cairn SUBCOMMAND` on this cluster's database, blob store and `data`.
    pub fn command(&self, subcommand: &[&str], data: &Path) -> Command {
        let mut command = Command::new(cairn_bin());
        command
            .args(subcommand)
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--data-dir")
            .arg(data);
        if let Some(store) = &self.blob_store {
            command.arg("--blob-store").arg(store);
        }
        for variable in [
            "CAIRN_TOKEN",
            "CAIRN_CONFIG",
            "CAIRN_LISTEN",
            "CAIRN_NODE_ID",
        ] {
            command.env_remove(variable);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// `cairn fsck`: clean.
    pub fn fsck(&self, data: &Path) {
        let output = self.command(&["fsck"], data).output().unwrap();
        assert!(
            output.status.success(),
            "fsck: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A robot identity `name` (created through the CLI, as an operator
    /// would beside the running nodes) and a token for it that publishes in
    /// `namespace`.
    pub fn publish_token(&self, data: &Path, name: &str, namespace: &str) -> String {
        let output = self
            .command(&["identity", "create", name, "--robot"], data)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "identity create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let output = self
            .command(
                &[
                    "token",
                    "create",
                    "--identity",
                    name,
                    "--namespace",
                    namespace,
                    "--actions",
                    "publish",
                ],
                data,
            )
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

/// Copies the registry's three key files from one node's data directory to
/// another's (mode 0600), as provisioning a node does (ops/nodes.md).
pub fn copy_keys(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to).unwrap();
    for key in ["operator.key", "note.key", "publisher.key"] {
        let target = to.join(key);
        std::fs::copy(from.join(key), &target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A `cairn serve` process; killed when dropped.
pub struct Node {
    pub id: String,
    pub url: String,
    child: Child,
}

impl Node {
    /// Starts node `id` with namespace `test` defined, on a free loopback
    /// port, with its keys (and local files) in `data`.
    pub fn start(id: &str, settings: &NodeSettings, data: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = settings
            .command(&["serve", "--namespace", "test", "--node-id", id], data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&settings.serve_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            id: id.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// `/readyz` once it answers 200: whether this node leads.
    pub async fn ready(&self) -> Option<bool> {
        let response = reqwest::get(format!("{}/readyz", self.url)).await.ok()?;
        if response.status() != 200 {
            return None;
        }
        let body: serde_json::Value = response.json().await.ok()?;
        body["node"]["leader"].as_bool()
    }

    /// Waits until the node is ready in the given role.
    pub async fn wait_role(&self, leader: bool, seconds: u64) {
        let role = if leader { "leader" } else { "standby" };
        eventually(
            seconds,
            &format!("{} ({}) as {role}", self.id, self.url),
            || async { (self.ready().await == Some(leader)).then_some(()) },
        )
        .await;
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
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

/// The served warg checkpoint's length, if the node answers.
pub async fn served_length(url: &str) -> Option<u64> {
    let response = reqwest::get(format!("{url}/v1/fetch/checkpoint"))
        .await
        .ok()?;
    let body: serde_json::Value = response.json().await.ok()?;
    body["contents"]["logLength"].as_u64()
}

/// The served warg checkpoint's length.
pub async fn checkpoint_length(url: &str) -> u64 {
    served_length(url).await.unwrap()
}

/// The length of the latest stored checkpoint.
pub async fn stored_length(store: &SqlStore) -> u64 {
    store
        .latest_checkpoint()
        .await
        .unwrap()
        .map_or(0, |c| c.checkpoint.checkpoint.log_length)
}

/// Every stored checkpoint extends the one before it (strictly longer), and
/// the stored tree is exactly as long as the latest: the length.
pub async fn checkpoints_extend(store: &SqlStore) -> u64 {
    let mut last = 0;
    loop {
        let page = store
            .checkpoints((last > 0).then_some(last), 1_000)
            .await
            .unwrap();
        let Some(end) = page.last().map(|c| c.checkpoint.checkpoint.log_length) else {
            break;
        };
        for checkpoint in &page {
            let length = checkpoint.checkpoint.checkpoint.log_length;
            assert!(length > last, "checkpoint {length} after {last}");
            last = length;
        }
        assert_eq!(last, end);
    }
    assert_eq!(
        store.tree_head().await.unwrap().map_or(0, |h| h.size),
        last,
        "nothing sequenced beyond the latest checkpoint"
    );
    last
}

/// A warg publish a node acknowledged (its record accepted, its content
/// uploaded).
#[derive(Clone, Debug)]
pub struct Acknowledged {
    pub name: String,
    pub version: String,
    pub bytes: Vec<u8>,
    pub record: RecordId,
    /// The node (index) that accepted it.
    pub node: usize,
}

/// Why a write failed: its HTTP status (`None`: the node could not be
/// reached, or the answer was cut off) and what was said.
#[derive(Clone, Debug)]
pub struct WriteFailure {
    pub status: Option<u16>,
    pub message: String,
}

impl WriteFailure {
    /// Whether a load balancer retries it at another node: nothing was
    /// accepted (503), or the node is gone.
    fn retry_elsewhere(&self) -> bool {
        matches!(self.status, None | Some(503))
    }
}

/// A load balancer in front of the nodes, in the client: each write goes to
/// the node the caller chose, and to the next node (round the ring, skipping
/// nodes marked down) only when that node answers 503 or cannot be
/// reached; a whole round of refusals waits 200 ms (`Retry-After` is 1 s:
/// this is a more eager balancer). It counts the writes each node accepted.
pub struct Balancer {
    pub urls: Vec<String>,
    up: Vec<AtomicBool>,
    publishes: Vec<AtomicUsize>,
    pushes: Vec<AtomicUsize>,
    refusals: AtomicUsize,
    http: reqwest::Client,
}

impl Balancer {
    pub fn new(urls: Vec<String>) -> Self {
        let n = urls.len();
        Self {
            urls,
            up: (0..n).map(|_| AtomicBool::new(true)).collect(),
            publishes: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            pushes: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            refusals: AtomicUsize::new(0),
            // A client gives up on a node that does not answer (as the
            // warg and wasm-pkg clients of the tests do).
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// Marks node `i` down (its health check failed): no more writes go to it.
    pub fn down(&self, i: usize) {
        self.up[i].store(false, Ordering::SeqCst);
    }

    /// Marks node `i` up again.
    pub fn up(&self, i: usize) {
        self.up[i].store(true, Ordering::SeqCst);
    }

    /// Warg publishes each node accepted.
    pub fn publishes_accepted(&self) -> Vec<usize> {
        self.publishes
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }

    /// OCI pushes each node accepted.
    pub fn pushes_accepted(&self) -> Vec<usize> {
        self.pushes
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }

    /// Writes answered 503 or unreachable, then retried.
    pub fn refusals(&self) -> usize {
        self.refusals.load(Ordering::SeqCst)
    }

    /// Runs `attempt` on the chosen node, then round the ring while it
    /// fails with a failure worth retrying elsewhere, for at most 60 s:
    /// `Ok` is the node that accepted and what it answered. (For writes of
    /// clients a test drives itself; count them there.)
    pub async fn route<T, F, Fut>(
        &self,
        preferred: usize,
        mut attempt: F,
    ) -> Result<(usize, T), WriteFailure>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, WriteFailure>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let n = self.urls.len();
        let mut k = 0;
        loop {
            let node = (preferred + k) % n;
            k += 1;
            if self.up[node].load(Ordering::SeqCst) {
                match attempt(node).await {
                    Ok(value) => return Ok((node, value)),
                    Err(failure) if failure.retry_elsewhere() => {
                        self.refusals.fetch_add(1, Ordering::SeqCst);
                        if tokio::time::Instant::now() > deadline {
                            return Err(failure);
                        }
                    }
                    Err(failure) => return Err(failure),
                }
            }
            if k % n == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Publishes `name@version` with `warg-client` through the balancer,
    /// then waits (through any node that is up) until it is published. `Ok`
    /// once acknowledged and published; `Err` if never acknowledged.
    pub async fn publish(
        &self,
        preferred: usize,
        key: &PrivateKey,
        name: &str,
        version: &str,
        bytes: Vec<u8>,
    ) -> Result<Acknowledged, WriteFailure> {
        let package = PackageName::new(name).unwrap();
        let (node, record) = self
            .route(preferred, |node| {
                let (package, bytes) = (&package, bytes.clone());
                async move {
                    // A client gives up on a node that does not answer.
                    tokio::time::timeout(
                        Duration::from_secs(30),
                        warg_publish(&self.urls[node], key, package, version, bytes),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(WriteFailure {
                            status: None,
                            message: "no answer within 30 s".into(),
                        })
                    })
                }
            })
            .await?;
        self.publishes[node].fetch_add(1, Ordering::SeqCst);
        let acknowledged = Acknowledged {
            name: name.to_owned(),
            version: version.to_owned(),
            bytes,
            record,
            node,
        };
        self.wait_published(node, &package, &acknowledged.record)
            .await;
        Ok(acknowledged)
    }

    /// Waits until `record` is published, asking node `first`, then (after
    /// any error: this is a read, retried anywhere) the next node that is
    /// up, for at most 60 s.
    async fn wait_published(&self, first: usize, package: &PackageName, record: &RecordId) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut node = first;
        loop {
            if self.up[node].load(Ordering::SeqCst) {
                let dir = tempfile::tempdir().unwrap();
                let client = warg_client_fixed(dir.path(), &self.urls[node]);
                let waited = tokio::time::timeout(
                    Duration::from_secs(10),
                    client.wait_for_publish(package, record, Duration::from_millis(50)),
                )
                .await;
                match waited {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => assert!(
                        tokio::time::Instant::now() < deadline,
                        "{package} ({record}) never published: {e}"
                    ),
                    Err(_) => assert!(
                        tokio::time::Instant::now() < deadline,
                        "{package} ({record}) not published within 60 s"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            node = (node + 1) % self.urls.len();
        }
    }
}

/// The status a `warg-client` error carries (`None`: no answer).
pub fn warg_failure(error: &warg_client::ClientError) -> WriteFailure {
    use warg_client::api::ClientError as Api;
    let status = match error {
        warg_client::ClientError::Api(Api::Package(e)) => Some(e.status()),
        warg_client::ClientError::Api(Api::Communication(_)) => None,
        warg_client::ClientError::Api(Api::UnexpectedResponse { status, .. }) => {
            Some(status.as_u16())
        }
        _ => Some(0),
    };
    WriteFailure {
        status,
        message: error.to_string(),
    }
}

/// One `warg-client` publish (record and content) at `url`, not waiting.
async fn warg_publish(
    url: &str,
    key: &PrivateKey,
    package: &PackageName,
    version: &str,
    bytes: Vec<u8>,
) -> Result<RecordId, WriteFailure> {
    use warg_client::storage::ContentStorage as _;
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client_fixed(dir.path(), url);
    let digest = client
        .content()
        .store_content(
            Box::pin(futures_util::stream::iter([Ok::<_, anyhow::Error>(
                bytes::Bytes::from(bytes),
            )])),
            None,
        )
        .await
        .unwrap();
    client
        .publish_with_info(
            key,
            warg_client::storage::PublishInfo {
                name: package.clone(),
                head: None,
                entries: vec![warg_client::storage::PublishEntry::Release {
                    version: version.parse().unwrap(),
                    content: digest,
                }],
            },
        )
        .await
        .map_err(|e| warg_failure(&e))
}
