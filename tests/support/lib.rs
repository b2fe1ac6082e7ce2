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
use cairn_server::config::{ServeArgs, StoreArgs};
use cairn_store::testing::TestDatabase;
use warg_client::storage::{
    ContentStorage as _, FileSystemContentStorage, FileSystemNamespaceMapStorage,
    FileSystemRegistryStorage,
};
use warg_client::{Client, FileSystemClient};
use warg_crypto::signing::PrivateKey;
use warg_protocol::registry::{PackageName, RecordId};

pub use cairn_store::testing;

/// A server under test; `restart` keeps its data and its port.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub url: String,
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    pub db: TestDatabase,
    pub namespaces: Vec<String>,
}

impl TestServer {
    fn args(&self, listen: SocketAddr) -> ServeArgs {
        ServeArgs {
            store: StoreArgs {
                data_dir: Some(self.data.path().to_path_buf()),
                database_url: Some(self.db.url.clone()),
                ..StoreArgs::default()
            },
            listen: Some(listen),
            namespaces: self.namespaces.clone(),
            max_content_bytes: Some(1024 * 1024),
            ..ServeArgs::default()
        }
    }

    /// Starts a server on `db` with namespace `test` defined.
    pub async fn start(db: TestDatabase) -> Self {
        let mut this = Self {
            server: None,
            url: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: tempfile::tempdir().unwrap(),
            db,
            namespaces: vec!["test".into()],
        };
        this.boot(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        this
    }

    async fn boot(&mut self, listen: SocketAddr) {
        let settings = cairn_server::config::resolve(&self.args(listen)).unwrap();
        let server = cairn_server::start(settings).await.unwrap();
        self.addr = server.addr;
        self.url = server.public_url.clone();
        self.server = Some(server);
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
