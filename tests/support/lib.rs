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

pub mod cluster;
mod oci_session;
pub mod private_pg;
pub use oci_session::{INDEX, OciFailure, OciSession, descriptor};

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
    /// An S3 blob store (bucket, prefix and client settings) instead of the
    /// one `extra` selects, applied at every start.
    pub blob_s3: Option<cairn_blob::S3Config>,
    /// Where tiles are published (a bucket with its client settings, or a
    /// directory) instead of what `extra` says, applied at every start.
    pub publish_tiles: Option<cairn_server::config::PublishTiles>,
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
            blob_s3: None,
            publish_tiles: None,
        }
    }

    /// The resolved settings of this server (as [`TestServer::try_boot`]
    /// starts it on `listen`).
    pub fn settings(&self, listen: SocketAddr) -> anyhow::Result<cairn_server::Settings> {
        let mut settings = cairn_server::config::resolve(&self.args(listen))?;
        if let Some(s3) = &self.blob_s3 {
            settings.blob_s3 = Some(s3.clone());
        }
        if let Some(target) = &self.publish_tiles {
            settings.publish_tiles = Some(target.clone());
        }
        Ok(settings)
    }

    async fn boot(&mut self, listen: SocketAddr) {
        let server = self.try_boot(listen).await.unwrap();
        self.addr = server.addr;
        self.url = server.public_url.clone();
        self.server = Some(server);
    }

    /// Starts the server on `listen`, returning the start-up error.
    pub async fn try_boot(&self, listen: SocketAddr) -> anyhow::Result<RunningServer> {
        let settings = self.settings(listen)?;
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
    warg_client_with_token(dir, url, None).await
}

/// [`warg_client`] sending `token` with every request (`warg login`).
pub async fn warg_client_with_token(
    dir: &Path,
    url: &str,
    token: Option<&str>,
) -> FileSystemClient {
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
    let token = token.map(|t| secrecy_08::Secret::new(t.to_owned()));
    match FileSystemClient::try_new_with_config(Some(url), &config, token)
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

/// A binary-encoded WIT package declaring `package <name>@<version>;` with
/// `wit` as its body (what `wkg build` makes and `wkg publish` sends).
pub fn wit_package(name: &str, version: &str, wit: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let source = format!("package {name}@{version};\n{wit}\n");
    let package = resolve.push_str("package.wit", &source).unwrap();
    wit_component::encode(&resolve, package, false).unwrap()
}

/// A minimal component that imports the instance `import` (an interface
/// name such as `wasi:sockets/tcp@0.2.0`).
pub fn component_importing(import: &str) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    let mut imports = ComponentImportSection::new();
    imports.import(import, ComponentTypeRef::Instance(0));
    let mut component = Component::new();
    component.section(&types).section(&imports);
    component.finish()
}

/// Creates identity `name` (a user) and returns an API token for it.
pub async fn identity_with_token(
    server: &TestServer,
    name: &str,
    namespaces: &[&str],
    actions: &[cairn_service::identity::Action],
) -> String {
    let registry = server.registry();
    let signer = registry.operator_signer();
    registry
        .admin("test", signer.as_ref())
        .create_identity(name, cairn_protocol::ext::registry::IdentityKind::User)
        .await
        .unwrap();
    token_for(server, name, namespaces, actions).await
}

/// A new API token for an existing identity.
pub async fn token_for(
    server: &TestServer,
    identity: &str,
    namespaces: &[&str],
    actions: &[cairn_service::identity::Action],
) -> String {
    let registry = server.registry();
    let signer = registry.operator_signer();
    registry
        .admin("test", signer.as_ref())
        .create_token(
            identity,
            &cairn_service::identity::TokenScope {
                namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
                actions: actions.to_vec(),
            },
            None,
            "test",
        )
        .await
        .unwrap()
        .secret
}

/// The registry's current log length (its latest checkpoint).
pub fn log_length(server: &TestServer) -> u64 {
    server
        .registry()
        .latest_checkpoint()
        .map_or(0, |c| c.checkpoint.checkpoint.log_length)
}

/// Claims `namespace` (defining it if new) with `owners` and `policy`.
pub async fn claim(
    server: &TestServer,
    namespace: &str,
    owners: &[&str],
    policy: cairn_protocol::ext::registry::PublishPolicy,
) {
    let registry = server.registry();
    let signer = registry.operator_signer();
    registry
        .admin("test", signer.as_ref())
        .set_namespace(
            namespace,
            cairn_service::admin::NamespaceSettings {
                owners: owners.iter().map(|s| (*s).to_owned()).collect(),
                policy,
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// Binds a warg key to an identity.
pub async fn bind(server: &TestServer, identity: &str, key: &PrivateKey) {
    let registry = server.registry();
    let signer = registry.operator_signer();
    let public: cairn_crypto::EcdsaPublicKey = key.public_key().to_string().parse().unwrap();
    registry
        .admin("test", signer.as_ref())
        .bind_key(identity, &public)
        .await
        .unwrap();
}

/// The wasm artifact config media type.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The OCI image manifest media type.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    cairn_crypto::Sha256Digest::of(bytes).to_string()
}

/// A wasm artifact's config, as oci-wasm writes it, telling the truth
/// about `wasm`.
pub fn wasm_config(wasm: &[u8]) -> Vec<u8> {
    let info = cairn_wasm::inspect(wasm).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "created": "2026-01-01T00:00:00Z",
        "author": null,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [digest_of(wasm)],
        "component": { "exports": info.exports, "imports": info.imports, "target": null },
    }))
    .unwrap()
}

/// The manifest of a wasm artifact with this layer and config.
pub fn wasm_manifest(wasm: &[u8], config: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": { "mediaType": WASM_CONFIG, "digest": digest_of(config), "size": config.len() },
        "layers": [{ "mediaType": "application/wasm", "digest": digest_of(wasm), "size": wasm.len() }],
    }))
    .unwrap()
}

/// `(status, Docker-Content-Digest)` of an anonymous manifest GET of
/// `repo` (`namespace/name`) by `reference`; the digest is empty when the
/// answer has none.
pub async fn manifest_status(server: &TestServer, repo: &str, reference: &str) -> (u16, String) {
    let response = reqwest::get(format!("{}/v2/{repo}/manifests/{reference}", server.url))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let digest = response
        .headers()
        .get("docker-content-digest")
        .map(|d| d.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, digest)
}

/// The one error of an OCI error response: status, code, message.
pub async fn oci_error(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    (
        status,
        errors[0]["code"].as_str().unwrap().to_owned(),
        errors[0]["message"].as_str().unwrap().to_owned(),
    )
}

/// Pushes `wasm` as `<repo>:<tag>` over OCI with `token` (Basic, through
/// the token endpoint), like an OCI client does. `Ok` is the manifest's
/// digest; `Err` the first error: status, code, message.
pub async fn oci_push(
    server: &TestServer,
    token: &str,
    repo: &str,
    tag: &str,
    wasm: &[u8],
) -> Result<String, (u16, String, String)> {
    let http = reqwest::Client::new();
    let response = http
        .get(format!(
            "{}/v2/token?service=cairn&scope=repository:{repo}:pull,push",
            server.url
        ))
        .basic_auth("user", Some(token))
        .send()
        .await
        .unwrap();
    if !response.status().is_success() {
        return Err(oci_error(response).await);
    }
    let body: serde_json::Value = response.json().await.unwrap();
    let session = body["token"].as_str().unwrap().to_owned();
    let config = wasm_config(wasm);
    for blob in [wasm, config.as_slice()] {
        let response = http
            .post(format!("{}/v2/{repo}/blobs/uploads/", server.url))
            .bearer_auth(&session)
            .send()
            .await
            .unwrap();
        if response.status() != reqwest::StatusCode::ACCEPTED {
            return Err(oci_error(response).await);
        }
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let response = http
            .put(format!(
                "{}{location}?digest={}",
                server.url,
                digest_of(blob)
            ))
            .bearer_auth(&session)
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        if response.status() != reqwest::StatusCode::CREATED {
            return Err(oci_error(response).await);
        }
    }
    let response = http
        .put(format!("{}/v2/{repo}/manifests/{tag}", server.url))
        .bearer_auth(&session)
        .header("content-type", MANIFEST)
        .body(wasm_manifest(wasm, &config))
        .send()
        .await
        .unwrap();
    if response.status() != reqwest::StatusCode::CREATED {
        return Err(oci_error(response).await);
    }
    Ok(response.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned())
}
