//! The cairn server as a library: [`start`] runs it on any address
//! (including an ephemeral port, for tests) and returns a handle.

pub mod admin;
pub mod blobs;
pub mod commands;
pub mod config;
pub mod gc;
pub mod http;
pub mod keys;
pub mod logging;
pub mod manage;
pub mod oidc;
pub mod progress;
pub mod registry_dir;
pub mod signers;
pub mod tiles;
pub mod trusted_root;
pub mod upstream;
pub mod verify;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use cairn_crypto::SignatureAlgorithm;
use cairn_service::pins::{PinnedKey, Pins};
use cairn_service::{
    Registry, SequencerHandle, ServiceConfig, SigningKeys, SystemClock, Witnessing,
};
use cairn_store::{MetaStore as _, SqlStore, Store, WriterLock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Settings;

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The bound metrics address, if metrics are served.
    pub metrics_addr: Option<SocketAddr>,
    /// The public URL.
    pub public_url: String,
    /// The registry.
    pub registry: Registry,
    /// The pull-through mirror (its `stats()` show what it holds).
    pub mirror: Arc<upstream::Mirror>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    sequencer: SequencerHandle,
    /// The tile publisher (`--publish-tiles`), stopped with the server.
    tile_publisher: Option<JoinHandle<()>>,
    /// The writer lock of a single-process database (`None` for a node of a
    /// cluster on PostgreSQL, which sequences under the lease instead).
    _lock: Option<WriterLock>,
}

impl RunningServer {
    /// Stops accepting requests, finishes in-flight ones, stops the
    /// sequencer and releases the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let served = self.http.await;
        if let Some(publisher) = self.tile_publisher {
            let _ = publisher.await;
        }
        self.sequencer.shutdown().await;
        release(self._lock).await;
        served.context("HTTP server task")?.context("HTTP server")?;
        Ok(())
    }

    /// Waits until the HTTP server stops (on a shutdown signal).
    pub async fn wait(self) -> anyhow::Result<()> {
        let RunningServer {
            http,
            sequencer,
            tile_publisher,
            _lock,
            ..
        } = self;
        let served = http.await;
        if let Some(publisher) = tile_publisher {
            let _ = publisher.await;
        }
        sequencer.shutdown().await;
        release(_lock).await;
        served.context("HTTP server task")?.context("HTTP server")?;
        Ok(())
    }

    /// A sender that stops the server when `true` is sent.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

async fn release(lock: Option<WriterLock>) {
    if let Some(lock) = lock {
        lock.release().await;
    }
}

/// Opens the store, migrates it and takes the exclusive writer lock —
/// except for a node of a cluster on PostgreSQL (`leader_lease`), which
/// shares its database with other nodes and sequences only under the
/// sequencer lease; there, concurrent migrations are serialised by the
/// migrator's own lock (upgrade a cluster migrations first).
pub async fn open_store(
    settings: &Settings,
) -> anyhow::Result<(Arc<SqlStore>, Option<WriterLock>)> {
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
    let lock = match settings.leader_lease {
        Some(_) => None,
        None => Some(store.lock_writer().await?),
    };
    store.pending_migrations().await?;
    store.migrate().await?;
    Ok((Arc::new(store), lock))
}

/// Opens the operator, note and publisher keys.
///
/// Local key files are created only when the registry is being initialised
/// (an empty database without a pin for that key). On an initialised
/// registry a missing key is refused with what the registry expects: a
/// node never invents keys, it is given the registry's (see
/// [`cairn_service::pins`]). Whether a key that is present is the right
/// one is checked by [`Registry::start`].
pub async fn signing_keys(settings: &Settings, store: &dyn Store) -> anyhow::Result<SigningKeys> {
    let pins = Pins::read(store).await?;
    let operator = open_pinned(
        &settings.operator_key,
        SignatureAlgorithm::EcdsaP256Sha256,
        &pins,
        PinnedKey::Operator,
    )
    .await?;
    let note = open_pinned(
        &settings.note_key,
        SignatureAlgorithm::Ed25519,
        &pins,
        PinnedKey::Note,
    )
    .await?;
    // Packages created by OCI pushes grant only the publisher key, so a
    // lost one must be restored, never replaced.
    let publisher = open_pinned(
        &settings.publisher_key,
        SignatureAlgorithm::EcdsaP256Sha256,
        &pins,
        PinnedKey::Publisher,
    )
    .await?;
    Ok(SigningKeys {
        operator,
        note,
        publisher: Some(publisher),
        resolver: Some(Arc::new(signers::UriResolver)),
    })
}

/// Opens `key` at `uri`, creating a missing key file only where `pins`
/// allow it.
async fn open_pinned(
    uri: &signers::KeyUri,
    algorithm: SignatureAlgorithm,
    pins: &Pins,
    key: PinnedKey,
) -> anyhow::Result<Arc<dyn cairn_crypto::Signer>> {
    if let Some(path) = uri.file()
        && !path.exists()
        && !pins.may_create(key)
    {
        anyhow::bail!("{}", pins.missing(key, &uri.to_string()));
    }
    signers::open_or_create(uri, algorithm, true, key.name()).await
}

/// The C2SP origin: as configured, else the one the registry was first
/// started with, else the public URL without its scheme.
pub async fn origin(
    settings: &Settings,
    store: &dyn Store,
    public_url: &str,
) -> anyhow::Result<String> {
    if let Some(origin) = &settings.origin {
        return Ok(origin.clone());
    }
    if let Some(origin) = store.meta("origin").await? {
        return Ok(origin);
    }
    Ok(public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_owned())
}

/// The witnesses of a tlog-policy file, each with its submission URL.
pub fn witnessing(path: &std::path::Path) -> anyhow::Result<Witnessing> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read witness policy {}", path.display()))?;
    let policy = cairn_log::policy::Policy::parse(&text)
        .with_context(|| format!("invalid witness policy {}", path.display()))?;
    let mut clients: Vec<Arc<dyn cairn_service::WitnessClient>> = Vec::new();
    for witness in policy.witnesses() {
        let url = witness.url.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "witness `{}` in {} has no URL: write `witness <name> <vkey> <submission URL>`",
                witness.name,
                path.display()
            )
        })?;
        clients.push(Arc::new(
            cairn_audit::witness_client::HttpWitness::new(url).map_err(anyhow::Error::msg)?,
        ));
    }
    Ok(Witnessing { policy, clients })
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

/// Serves `app` on `listener` over HTTP/1.1 until `shutdown` turns true,
/// then stops accepting and waits for the connections' requests in flight.
///
/// A connection must send a request's headers within `header_read_timeout`
/// or it is closed, so connections that never finish their headers do not
/// pile up (bodies are bounded by the per-route timeouts and deadlines).
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    header_read_timeout: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors or a connection reset before it
                    // was accepted: keep serving the others, briefly
                    // backing off so a full descriptor table can drain.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Opens the keys (unless given) and starts the registry on `store`.
async fn open_registry(
    settings: &Settings,
    store: Arc<SqlStore>,
    keys: Option<SigningKeys>,
    public_url: &str,
) -> anyhow::Result<(Registry, SequencerHandle)> {
    // Checked before anything else starts: a bad file stops the server.
    let trusted_root = settings
        .trusted_root
        .as_deref()
        .map(trusted_root::load)
        .transpose()?;
    let keys_from_settings = keys.is_none();
    let keys = match keys {
        Some(keys) => keys,
        None => signing_keys(settings, store.as_ref()).await?,
    };
    let origin = origin(settings, store.as_ref(), public_url).await?;
    let blobs = blobs::open(settings).await?;
    let config = ServiceConfig {
        public_url: public_url.to_owned(),
        max_record_bytes: settings.max_record_bytes,
        max_content_bytes: settings.max_content_bytes,
        initial_namespaces: settings.namespaces.clone(),
        map_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        origin,
        require_owners: settings.require_owners,
        anonymous_read: settings.anonymous_read,
        public_log: settings.public_log,
        max_upload_sessions_per_caller: settings.max_upload_sessions,
        max_upload_bytes_per_caller: settings.max_upload_bytes,
        max_manifest_pushes_per_caller: settings.max_manifest_pushes,
        blob_redirect: settings.blob_redirect.then_some(blobs::REDIRECT_TTL),
        leader_lease: settings.leader_lease.clone(),
        trusted_root,
        ..ServiceConfig::default()
    };
    let meta_store = store.clone();
    let (registry, sequencer) =
        Registry::start(store, blobs, keys, Arc::new(SystemClock), config).await?;
    let finished = async {
        registry.ensure_publisher_identity().await?;
        // Where the signing operator key lives, so that a later rotation or
        // a start with the wrong key can name it.
        if keys_from_settings {
            meta_store
                .set_meta(
                    &cairn_service::signer_uri_meta_key(&registry.operator_key_id()),
                    &settings.operator_key.absolute()?.to_string(),
                )
                .await?;
        }
        anyhow::Ok(())
    }
    .await;
    match finished {
        Ok(()) => Ok((registry, sequencer)),
        Err(error) => {
            sequencer.shutdown().await;
            Err(error)
        }
    }
}

/// Starts the server: binds `settings.listen` (port 0 picks a free port),
/// opens and checks the store, starts the sequencer and serves HTTP.
pub async fn start(settings: Settings) -> anyhow::Result<RunningServer> {
    start_with_keys(settings, None).await
}

/// [`start`] with signing keys given by the caller instead of opened from
/// the settings' key URIs (for embedding, and for tests that put a KMS
/// behind a proxy).
pub async fn start_with_keys(
    settings: Settings,
    keys: Option<SigningKeys>,
) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let mut settings = settings;
    if let Some(lease) = settings.leader_lease.as_mut()
        && lease.address.is_empty()
    {
        // The other nodes forward writes here while this node leads.
        if addr.ip().is_unspecified() {
            tracing::warn!(
                "listening on all interfaces; set --advertise-url to the address the other \
                 nodes reach this one at"
            );
        }
        lease.address = format!("http://{addr}");
    }
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

    let witnessing = match &settings.witness_policy {
        Some(path) => Some(witnessing(path)?),
        None => None,
    };
    let tile_sink = match &settings.publish_tiles {
        Some(target) => Some(tiles::open_sink(target).await?),
        None => None,
    };
    let (store, lock) = open_store(&settings).await?;
    // A refused start releases the database at once (a PostgreSQL lock
    // would otherwise linger until the server notices the closed socket).
    // Boxed: start-up nests many futures, and callers that embed this one
    // in their own would otherwise exceed the compiler's layout depth.
    let opened = Box::pin(open_registry(&settings, store, keys, &public_url)).await;
    let (registry, sequencer) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            release(lock).await;
            return Err(error);
        }
    };
    tracing::info!(
        operator_key = %registry.operator_public_key(),
        note_key = %registry.note_verifier_key(),
        %public_url,
        "registry ready"
    );
    let (shutdown, shutdown_rx) = watch::channel(false);
    let metrics_addr = match settings.metrics_listen {
        Some(addr) => {
            Some(http::metrics::serve(addr, registry.clone(), shutdown.subscribe()).await?)
        }
        None => None,
    };

    let mirror = Arc::new(upstream::Mirror::default());
    let state = http::AppState {
        registry: registry.clone(),
        well_known: Arc::new(discovery_document(&public_url)),
        oidc: Arc::new(oidc::Verifier::new(settings.oidc_issuers.clone())),
        mirror: mirror.clone(),
    };
    let limits = http::HttpLimits {
        json_body_bytes: settings.max_record_bytes * 2 + 64 * 1024,
        request_timeout: settings.request_timeout,
        upload_timeout: settings.upload_timeout,
        max_in_flight: settings.max_in_flight,
    };
    let app = http::router(state, &limits);
    if let Some(witnessing) = witnessing {
        tokio::spawn(
            registry
                .clone()
                .run_witnessing(witnessing, shutdown.subscribe()),
        );
    }
    let tile_publisher = tile_sink.map(|sink| {
        tracing::info!(sink = %sink.location(), "publishing tiles");
        tokio::spawn(
            registry
                .clone()
                .run_tile_publisher(sink, shutdown.subscribe()),
        )
    });
    let http = tokio::spawn(serve(
        listener,
        app,
        settings.header_read_timeout,
        shutdown_rx,
    ));
    Ok(RunningServer {
        addr,
        metrics_addr,
        public_url,
        registry,
        mirror,
        shutdown,
        http,
        sequencer,
        tile_publisher,
        _lock: lock,
    })
}
