//! The registry: the sequencer and every use case of the warg API.
//!
//! [`Registry`] is a cheap handle shared by all request handlers. It talks to
//! storage only through [`cairn_store::Store`] and [`cairn_blob::BlobStore`],
//! signs only through [`cairn_crypto::Signer`], and reads time only through
//! [`Clock`]. One background [`sequencer`] task is the only writer of the
//! log.

pub mod access;
pub mod admin;
mod backfill;
mod bootstrap;
mod c2sp;
mod cache;
pub mod catalogue;
mod clock;
mod cluster;
mod error;
pub mod fsck;
mod hold;
pub mod identity;
mod keys;
pub mod leader;
mod locks;
pub mod log_state;
mod maps;
pub mod metrics;
pub mod oci;
pub mod oidc;
mod operator;
pub mod packages;
pub mod pins;
mod proofs;
mod publish;
mod reads;
pub mod search;
mod sequencer;
pub mod tile_publisher;
pub mod withhold;
mod witnessing;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cairn_blob::BlobStore;
use cairn_crypto::PublicKey;
use cairn_log::Hash;
use cairn_log::map::MapNode;
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::ext::registry::RegistryState;
use cairn_protocol::operator::OperatorState;
use cairn_protocol::package::PackageState;
use cairn_protocol::{LogId, PackageName};
use cairn_store::{LogKind, LogRow, Store, StoredCheckpoint};
use tokio::sync::{Notify, watch};

pub use bootstrap::{SequencerHandle, StartupError};
pub use c2sp::TileData;
pub use clock::{Clock, SystemClock};
pub use error::{ClientError, ServiceError};
pub use keys::{SignerResolver, SigningKeys, signer_uri_meta_key};
pub use metrics::Metrics;
pub use operator::{submit_operator_record, wait_for_record};
pub use proofs::MAX_INCLUSION_LEAVES;
pub use reads::ContentDownload;
pub use reads::{DEFAULT_FETCH_LIMIT, LEDGER_PAGE, MAX_FETCH_LIMIT, MAX_LOGS_PER_REQUEST};
pub use witnessing::{WitnessAnswer, WitnessClient, Witnessing};

use cache::TwoGen;

/// Tunables of the registry. [`ServiceConfig::default`] is the documented
/// default.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Absolute base URL clients reach this registry at, without a trailing
    /// slash (content and upload URLs are built from it).
    pub public_url: String,
    /// Largest accepted record (`contentBytes`), in bytes.
    pub max_record_bytes: usize,
    /// Largest accepted content upload, in bytes.
    pub max_content_bytes: u64,
    /// Most records per sequencer batch.
    pub max_batch: u32,
    /// Most records accepted but not yet sequenced before publishes get 503.
    pub max_backlog: u64,
    /// How long a record may wait for its content uploads.
    pub sourcing_timeout: Duration,
    /// How long rejected records stay visible to status queries.
    pub rejected_retention: Duration,
    /// Threads for map hashing in the sequencer.
    pub map_threads: usize,
    /// Namespaces defined in the operator log's first record.
    pub initial_namespaces: Vec<String>,
    /// Map nodes (of past checkpoints) and log states cached in memory.
    pub cache_entries: usize,
    /// Nodes of the latest map tree the sequencer keeps in memory (about
    /// two per log; ~150 bytes each). Beyond it, the copy is dropped and
    /// rebuilt from the store as needed.
    pub resident_map_nodes: usize,
    /// How often the sequencer looks for work inserted by other processes.
    pub poll_interval: Duration,
    /// The origin of the C2SP checkpoints (`c2sp.org/tlog-checkpoint`): a
    /// schema-less URL that never changes, also the note key's name.
    pub origin: String,
    /// Whether publishing needs a namespace with owners: namespaces
    /// without an ownership record (defined with `serve --namespace`) then
    /// refuse every publish.
    pub require_owners: bool,
    /// Whether anyone may read without credentials, on every door. When
    /// off, reads need a token allowing `read` in the namespace
    /// ([`access`]).
    pub anonymous_read: bool,
    /// Whether the log's own views (checkpoints, tiles, proofs, ledger,
    /// receipts: hashes only) stay public when reads are private, for
    /// auditors and witnesses.
    pub public_log: bool,
    /// Upload sessions one identity may have open at once (OCI); beyond
    /// it, starting one is answered 429. Default: 64.
    pub max_upload_sessions_per_caller: u64,
    /// Bytes one identity's open upload sessions may hold together, charged
    /// as chunks arrive; a chunk that would pass it is refused with 429 and
    /// leaves nothing. Default: 4 × the default `max_content_bytes` (400
    /// MiB), so a caller can stage a few of the largest blobs at once.
    pub max_upload_bytes_per_caller: u64,
    /// Manifest pushes one identity may have in progress at once; beyond
    /// it, 429 before the body is read. Default: 16.
    pub max_manifest_pushes_per_caller: usize,
    /// Serve authorised blob and content downloads as redirects to a URL
    /// of the blob store valid this long (a presigned S3 URL), when the
    /// store hands out such URLs. Default: `None` (bytes are streamed).
    pub blob_redirect: Option<Duration>,
    /// Run as one node of several on one database: sequence only while
    /// holding the sequencer lease ([`leader`]). Default: `None` (the only
    /// process on its database, guarded by the writer lock).
    pub leader_lease: Option<leader::LeaseConfig>,
    /// The Sigstore trusted root (Fulcio CAs, Rekor keys) keyless
    /// signatures are verified against; loaded at start, never fetched.
    /// `None`: only listed keys can verify.
    pub trusted_root: Option<Arc<cairn_sigstore::TrustedRoot>>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            max_record_bytes: 64 * 1024,
            max_content_bytes: 100 * 1024 * 1024,
            max_batch: 1024,
            max_backlog: 10_000,
            sourcing_timeout: Duration::from_secs(30 * 60),
            rejected_retention: Duration::from_secs(24 * 3600),
            map_threads: 2,
            initial_namespaces: Vec::new(),
            cache_entries: 200_000,
            resident_map_nodes: 4_000_000,
            poll_interval: Duration::from_millis(500),
            origin: "127.0.0.1:8080".into(),
            require_owners: false,
            anonymous_read: true,
            public_log: false,
            max_upload_sessions_per_caller: 64,
            max_upload_bytes_per_caller: 4 * 100 * 1024 * 1024,
            max_manifest_pushes_per_caller: 16,
            blob_redirect: None,
            leader_lease: None,
            trusted_root: None,
        }
    }
}

/// The validation state of a package or package metadata log.
#[derive(Clone, Debug)]
pub(crate) enum LogState {
    Package(PackageState),
    Meta(MetaState),
}

/// A package or metadata log's head and current validation state.
#[derive(Clone, Debug)]
pub(crate) struct CachedLog {
    /// The log's row, without its snapshot (`state` is the current state).
    pub(crate) row: LogRow,
    /// How many of the log's records its stored snapshot covers.
    pub(crate) snapshot_records: u64,
    pub(crate) state: LogState,
}

impl CachedLog {
    /// Loads a stored package or metadata log: its snapshot with the records
    /// after it replayed ([`log_state::log_state`]) against `operator`, the
    /// operator log's current state.
    pub(crate) async fn load(
        store: &dyn Store,
        mut row: LogRow,
        operator: &OperatorState,
    ) -> Result<Self, ServiceError> {
        let state = match row.kind {
            LogKind::PackageMeta => {
                LogState::Meta(log_state::log_state(store, &row, operator).await?)
            }
            _ => LogState::Package(log_state::log_state(store, &row, operator).await?),
        };
        let snapshot_records = row.snapshot.take().map_or(0, |s| s.records);
        Ok(Self {
            row,
            snapshot_records,
            state,
        })
    }

    /// Whether the batch that makes this the log's state should store a
    /// snapshot of it: [`log_state::SNAPSHOT_EVERY`] records since the last.
    pub(crate) fn due_snapshot(&self) -> bool {
        self.row.record_count - self.snapshot_records.min(self.row.record_count)
            >= log_state::SNAPSHOT_EVERY
    }

    pub(crate) fn package(&self) -> Option<&PackageState> {
        match &self.state {
            LogState::Package(state) => Some(state),
            LogState::Meta(_) => None,
        }
    }

    pub(crate) fn meta(&self) -> Option<&MetaState> {
        match &self.state {
            LogState::Meta(state) => Some(state),
            LogState::Package(_) => None,
        }
    }

    pub(crate) fn state_json(&self) -> Result<String, ServiceError> {
        match &self.state {
            LogState::Package(state) => serde_json::to_string(state),
            LogState::Meta(state) => serde_json::to_string(state),
        }
        .map_err(|e| ServiceError::Internal(e.to_string()))
    }
}

/// The OCI repository of a package: `namespace/name`.
pub fn oci_repository(package: &PackageName) -> String {
    format!("{}/{}", package.namespace(), package.name())
}

/// Health as reported by `/readyz`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// The last sequencer failure, cleared on success.
    pub sequencer_error: Option<String>,
    /// Whether the sequencer task is running.
    pub sequencer_running: bool,
    /// This node's part in the sequencer lease, when it is a node of a
    /// cluster ([`leader`]); `None` for the only process on its database.
    pub leadership: Option<leader::Leadership>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    /// The keys in use; replaced when the operator key is rotated.
    pub(crate) keys: RwLock<Arc<keys::ActiveKeys>>,
    pub(crate) resolver: Option<Arc<dyn SignerResolver>>,
    /// The publisher key (OCI pushes), if configured.
    pub(crate) publisher: Option<Arc<dyn cairn_crypto::Signer>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: ServiceConfig,
    /// The latest published checkpoint.
    pub(crate) latest: RwLock<Option<Arc<StoredCheckpoint>>>,
    /// The cosigned C2SP checkpoint to serve, when witnesses are configured.
    pub(crate) served: RwLock<Option<Arc<c2sp::ServedNote>>>,
    /// The operator log's state as of the sequenced tree.
    pub(crate) operator: RwLock<Arc<OperatorState>>,
    /// The registry log's state as of the sequenced tree.
    pub(crate) registry_log: RwLock<Arc<RegistryState>>,
    pub(crate) states: Mutex<TwoGen<LogId, Arc<CachedLog>>>,
    pub(crate) map_cache: Mutex<TwoGen<Hash, MapNode>>,
    /// What blobs are as WebAssembly, by digest (see
    /// [`Registry::inspected`]).
    pub(crate) inspected: Mutex<
        TwoGen<cairn_crypto::Sha256Digest, Result<cairn_wasm::WasmInfo, cairn_wasm::WasmError>>,
    >,
    /// What this process's sequencer did with recent records: their
    /// registry index, or why they were rejected (so waiting publishes need
    /// not poll the store).
    pub(crate) outcomes: Mutex<TwoGen<(LogId, cairn_protocol::RecordId), Result<u64, String>>>,
    pub(crate) wake: Notify,
    pub(crate) published: watch::Sender<u64>,
    pub(crate) backlog: AtomicU64,
    pub(crate) health: Mutex<Health>,
    /// Publishes hold it shared from reading a log's state until their
    /// record is stored; the sequencer holds it exclusively while it commits
    /// a batch and updates the cached states. So a publish validates against
    /// exactly the state its record will be sequenced on, or conflicts with
    /// the record ahead of it, and an accepted record is never rejected
    /// later for a race.
    pub(crate) commit_gate: tokio::sync::RwLock<()>,
    /// Serialises the refreshes of a node that does not sequence
    /// ([`cluster`]).
    pub(crate) follow_lock: tokio::sync::Mutex<()>,
    /// Per-caller OCI limits of requests in flight.
    pub(crate) oci_limits: oci::access::CallerLimits,
    /// One derivation at a time per (repository, version): concurrent
    /// reads of a release published over warg wait for the first one.
    pub(crate) derivations: locks::KeyedLocks<(String, String)>,
    /// OCI pushes waiting to be stored together in one commit.
    pub(crate) push_group: oci::manifests::group::PushGroup,
    /// The key that signs content URLs of a private registry (loaded from
    /// the store on first use).
    pub(crate) content_url_key: tokio::sync::OnceCell<ring::hmac::Key>,
}

/// A handle on the registry. Clones share everything.
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("public_url", &self.inner.config.public_url)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// The public key of the operator key that signs checkpoints now.
    pub fn operator_public_key(&self) -> PublicKey {
        self.keys().operator.public_key().clone()
    }

    /// The registry's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The latest published checkpoint.
    pub fn latest_checkpoint(&self) -> Option<Arc<StoredCheckpoint>> {
        self.inner.latest.read().ok().and_then(|l| l.clone())
    }

    pub(crate) fn latest_length(&self) -> u64 {
        self.latest_checkpoint()
            .map(|c| c.checkpoint.checkpoint.log_length)
            .unwrap_or(0)
    }

    pub(crate) fn operator_state(&self) -> Arc<OperatorState> {
        self.inner
            .operator
            .read()
            .map(|o| o.clone())
            .unwrap_or_default()
    }

    /// The registry log (identities, keys, namespace ownership) as
    /// sequenced.
    pub fn registry_log(&self) -> Arc<RegistryState> {
        self.inner
            .registry_log
            .read()
            .map(|o| o.clone())
            .unwrap_or_default()
    }

    /// Health of the sequencer.
    pub fn health(&self) -> Health {
        self.inner
            .health
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    pub(crate) fn set_health(&self, update: impl FnOnce(&mut Health)) {
        if let Ok(mut health) = self.inner.health.lock() {
            update(&mut health);
        }
    }

    /// Waits until a checkpoint covers at least `length` records.
    pub async fn wait_published(&self, length: u64, timeout: Duration) -> Result<(), ServiceError> {
        let mut rx = self.inner.published.subscribe();
        let wait = rx.wait_for(|published| *published >= length);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ServiceError::Internal("sequencer stopped".into())),
            Err(_) => Err(ServiceError::unavailable(format!(
                "no checkpoint covered {length} records within {timeout:?}"
            ))),
        }
    }

    pub(crate) fn wake_sequencer(&self) {
        self.inner.wake.notify_one();
    }

    pub(crate) fn backlog(&self) -> &AtomicU64 {
        &self.inner.backlog
    }

    pub(crate) fn cached_log(&self, log_id: &LogId) -> Option<Arc<CachedLog>> {
        self.inner.states.lock().ok()?.get(log_id)
    }

    pub(crate) fn cache_log(&self, log: Arc<CachedLog>) {
        if let Ok(mut states) = self.inner.states.lock() {
            states.insert(log.row.log_id, log);
        }
    }

    /// Number of records accepted and not yet sequenced (approximate).
    pub fn backlog_len(&self) -> u64 {
        self.inner.backlog.load(Ordering::Relaxed)
    }
}
