//! Harness for the end-to-end tests: a real server on an ephemeral loopback
//! port over a real database, and real warg clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cairn_server::RunningServer;
use cairn_server::config::ServeArgs;
use cairn_store::testing::TestDatabase;
use warg_client::storage::{
    ContentStorage as _, FileSystemContentStorage, FileSystemNamespaceMapStorage,
    FileSystemRegistryStorage,
};
use warg_client::{Client, FileSystemClient};
use warg_crypto::signing::PrivateKey;
use warg_protocol::registry::{PackageName, RecordId};

pub use cairn_store::testing;

/// Polls `check` every 20 ms until it returns `Some`, failing after
/// `seconds` with `what`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET url` as bytes, with the status and headers.
pub async fn get_bytes(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// A server under test; `restart` keeps its data and its port.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub url: String,
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    pub db: TestDatabase,
    pub namespaces: Vec<String>,
    /// Settings beyond the defaults (origin, keys, witness policy, …),
    /// applied at every start.
    pub extra: ServeArgs,
}

impl TestServer {
    /// The settings this server starts with.
    pub fn args(&self, listen: SocketAddr) -> ServeArgs {
        let mut args = self.extra.clone();
        args.store.data_dir = Some(self.data.path().to_path_buf());
        args.store.database_url = Some(self.db.url.clone());
        args.listen = Some(listen);
        args.namespaces = self.namespaces.clone();
        args.max_content_bytes = args.max_content_bytes.or(Some(1024 * 1024));
        args
    }

    /// Starts a server on `db` with namespace `test` defined.
    pub async fn start(db: TestDatabase) -> Self {
        Self::start_with(db, ServeArgs::default()).await
    }

    /// Starts a server on `db` with namespace `test` defined and `extra`
    /// settings.
    pub async fn start_with(db: TestDatabase, extra: ServeArgs) -> Self {
        let mut this = Self::prepare(db, extra);
        this.boot(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        this
    }

    /// A server that is not started yet (to place key files in its data
    /// directory first); start it with [`TestServer::restart`].
    pub fn prepare(db: TestDatabase, extra: ServeArgs) -> Self {
        Self {
            server: None,
            url: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: tempfile::tempdir().unwrap(),
            db,
            namespaces: vec!["test".into()],
            extra,
        }
    }

    async fn boot(&mut self, listen: SocketAddr) {
        let server = self.try_boot(listen).await.unwrap();
        self.addr = server.addr;
        self.url = server.public_url.clone();
        self.server = Some(server);
    }

    /// Starts the server on `listen`, returning the start-up error.
    pub async fn try_boot(&self, listen: SocketAddr) -> anyhow::Result<RunningServer> {
        let settings = cairn_server::config::resolve(&self.args(listen))?;
        cairn_server::start(settings).await
    }

    /// Stops the server (gracefully) and starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.boot(self.addr).await;
    }

    /// Stops the server.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }

    pub fn registry(&self) -> &cairn_service::Registry {
        &self.server.as_ref().unwrap().registry
    }

    pub fn kind(&self) -> &'static str {
        self.db.kind
    }
}

/// A warg client (the `warg` CLI's code) with its own storage under `dir`,
/// built like the CLI does: it fetches `.well-known` first.
pub async fn warg_client(dir: &Path, url: &str) -> FileSystemClient {
    let config = warg_client::Config {
        home_url: Some(url.to_owned()),
        registries_dir: Some(dir.join("registries")),
        content_dir: Some(dir.join("content")),
        namespace_map_path: Some(dir.join("namespaces.json")),
        keyring_auth: false,
        disable_interactive: true,
        ignore_federation_hints: true,
        ..Default::default()
    };
    match FileSystemClient::try_new_with_config(Some(url), &config, None)
        .await
        .unwrap()
    {
        warg_client::StorageLockResult::Acquired(client) => client,
        warg_client::StorageLockResult::NotAcquired(path) => {
            panic!("client storage locked: {}", path.display())
        }
    }
}

/// A warg client whose stored state does not depend on the server's port.
pub fn warg_client_fixed(dir: &Path, url: &str) -> FileSystemClient {
    Client::new(
        url,
        FileSystemRegistryStorage::lock(dir.join("registries").join("cairn")).unwrap(),
        FileSystemContentStorage::lock(dir.join("content")).unwrap(),
        FileSystemNamespaceMapStorage::new(dir.join("namespaces.json")),
        None,
        true,
        true,
        false,
        true,
        None,
        Default::default(),
    )
    .unwrap()
}

pub fn new_key() -> PrivateKey {
    warg_crypto::signing::generate_p256_pair().1
}

pub fn copy_key(key: &PrivateKey) -> PrivateKey {
    PrivateKey::decode(key.encode().to_string()).unwrap()
}

/// Stores `bytes` in the client's content store and publishes a release,
/// waiting until it is published (with a deadline).
pub async fn publish_release(
    client: &FileSystemClient,
    key: &PrivateKey,
    name: &str,
    version: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<RecordId> {
    let name = PackageName::new(name)?;
    let digest = client
        .content()
        .store_content(
            Box::pin(futures_util::stream::iter([Ok::<_, anyhow::Error>(
                bytes::Bytes::from(bytes),
            )])),
            None,
        )
        .await?;
    publish_entries(
        client,
        key,
        &name,
        vec![warg_client::storage::PublishEntry::Release {
            version: version.parse()?,
            content: digest,
        }],
    )
    .await
}

/// Publishes entries and waits until published.
pub async fn publish_entries(
    client: &FileSystemClient,
    key: &PrivateKey,
    name: &PackageName,
    entries: Vec<warg_client::storage::PublishEntry>,
) -> anyhow::Result<RecordId> {
    let record_id = client
        .publish_with_info(
            key,
            warg_client::storage::PublishInfo {
                name: name.clone(),
                head: None,
                entries,
            },
        )
        .await?;
    tokio::time::timeout(
        Duration::from_secs(60),
        client.wait_for_publish(name, &record_id, Duration::from_millis(20)),
    )
    .await??;
    Ok(record_id)
}

/// Downloads an exact version with full verification and returns the bytes.
pub async fn download(
    client: &FileSystemClient,
    name: &str,
    version: &str,
) -> anyhow::Result<Vec<u8>> {
    let name = PackageName::new(name)?;
    client.fetch_package(&name).await?;
    let download = client.download_exact(&name, &version.parse()?).await?;
    Ok(tokio::fs::read(&download.path).await?)
}

/// The client's stored checkpoint length.
pub async fn stored_checkpoint_length(client: &FileSystemClient) -> usize {
    use warg_client::storage::RegistryStorage as _;
    client
        .registry()
        .load_checkpoint(None)
        .await
        .unwrap()
        .map(|cp| cp.as_ref().checkpoint.log_length)
        .unwrap_or(0)
}

/// A small valid WebAssembly module with some distinguishing bytes.
pub fn wasm(tag: &str) -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    // A custom section: id 0, size, name length, name, payload.
    let name = b"cairn-test";
    let payload = tag.as_bytes();
    let size = 1 + name.len() + payload.len();
    bytes.push(0);
    bytes.push(u8::try_from(size).unwrap());
    bytes.push(u8::try_from(name.len()).unwrap());
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}
