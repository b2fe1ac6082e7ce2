//! The cairn server as a library: [`start`] runs it on any address
//! (including an ephemeral port, for tests) and returns a handle.

pub mod config;
pub mod http;
pub mod keys;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use cairn_blob::FsBlobStore;
use cairn_crypto::signer::LocalKey;
use cairn_crypto::{LocalSigner, Signer};
use cairn_service::{Registry, SequencerHandle, ServiceConfig, SystemClock};
use cairn_store::{SqlStore, Store, WriterLock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Settings;

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The public URL.
    pub public_url: String,
    /// The registry.
    pub registry: Registry,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    sequencer: SequencerHandle,
    _lock: WriterLock,
}

impl RunningServer {
    /// Stops accepting requests, finishes in-flight ones, stops the
    /// sequencer and releases the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let served = self.http.await;
        self.sequencer.shutdown().await;
        self._lock.release().await;
        served.context("HTTP server task")?.context("HTTP server")?;
        Ok(())
    }

    /// Waits until the HTTP server stops (on a shutdown signal).
    pub async fn wait(self) -> anyhow::Result<()> {
        let RunningServer {
            http,
            sequencer,
            _lock,
            ..
        } = self;
        let served = http.await;
        sequencer.shutdown().await;
        _lock.release().await;
        served.context("HTTP server task")?.context("HTTP server")?;
        Ok(())
    }

    /// A sender that stops the server when `true` is sent.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the store, migrates it and takes the exclusive writer lock.
pub async fn open_store(settings: &Settings) -> anyhow::Result<(Arc<SqlStore>, WriterLock)> {
    if settings.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    let store = SqlStore::connect(&settings.database_url, settings.db_connections)
        .await
        .with_context(|| format!("cannot open database {}", settings.database_display()))?;
    // The lock first: never migrate a schema under a running server.
    let lock = store.lock_writer().await?;
    store.pending_migrations().await?;
    store.migrate().await?;
    Ok((Arc::new(store), lock))
}

/// Loads the operator key, creating it if (and only if) the store has never
/// been initialised.
pub async fn operator_signer(
    settings: &Settings,
    store: &dyn Store,
) -> anyhow::Result<Arc<dyn Signer>> {
    let path = &settings.operator_key;
    let key = if path.exists() {
        keys::read_key(path)?
    } else {
        let initialised =
            store.tree_head().await?.is_some() || store.meta("operator_init_key").await?.is_some();
        if initialised {
            anyhow::bail!(
                "the operator key {} is missing, but this registry is already initialised; \
                 restore the key file from backup (a new key cannot sign for this registry)",
                path.display()
            );
        }
        let key = keys::generate();
        keys::write_new_key(path, &key)?;
        println!("created operator key {} (mode 0600)", path.display());
        key
    };
    Ok(Arc::new(LocalSigner::new(
        LocalKey::EcdsaP256(key),
        format!("file:{}", path.display()),
    )))
}

fn discovery_document(public_url: &str) -> serde_json::Value {
    // SPEC: oci-wasm.md — wkg 0.16 must see `preferredProtocol: "oci"` and
    // no unknown top-level strings; old clients are configured with the warg
    // URL explicitly, and warg-client only reads `wargUrl` (absent = stay).
    let authority = public_url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .unwrap_or(public_url);
    serde_json::json!({
        "preferredProtocol": "oci",
        "oci": { "registry": authority, "namespacePrefix": "" },
        "warg": { "url": public_url },
    })
}

/// Starts the server: binds `settings.listen` (port 0 picks a free port),
/// opens and checks the store, starts the sequencer and serves HTTP.
pub async fn start(settings: Settings) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| {
        let host = if addr.ip().is_unspecified() {
            tracing::warn!(
                "listening on all interfaces; set --public-url to the address clients use"
            );
            "127.0.0.1".to_owned()
        } else {
            addr.ip().to_string()
        };
        format!("http://{host}:{}", addr.port())
    });

    let (store, lock) = open_store(&settings).await?;
    let signer = operator_signer(&settings, store.as_ref()).await?;
    let blobs = Arc::new(
        FsBlobStore::open(&settings.blob_dir)
            .await
            .with_context(|| {
                format!("cannot open blob directory {}", settings.blob_dir.display())
            })?,
    );
    let config = ServiceConfig {
        public_url: public_url.clone(),
        max_record_bytes: settings.max_record_bytes,
        max_content_bytes: settings.max_content_bytes,
        initial_namespaces: settings.namespaces.clone(),
        map_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..ServiceConfig::default()
    };
    let (registry, sequencer) =
        Registry::start(store, blobs, signer, Arc::new(SystemClock), config).await?;
    tracing::info!(operator_key = %registry.operator_public_key(), %public_url, "registry ready");

    let state = http::AppState {
        registry: registry.clone(),
        well_known: Arc::new(discovery_document(&public_url)),
    };
    let limits = http::HttpLimits {
        json_body_bytes: settings.max_record_bytes * 2 + 64 * 1024,
        request_timeout: settings.request_timeout,
        upload_timeout: settings.upload_timeout,
        max_in_flight: settings.max_in_flight,
    };
    let app = http::router(state, &limits);
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(RunningServer {
        addr,
        public_url,
        registry,
        shutdown,
        http,
        sequencer,
        _lock: lock,
    })
}
