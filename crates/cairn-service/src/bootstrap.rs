//! Start-up: initialise an empty store, or check and recover an existing one.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cairn_blob::BlobStore;
use cairn_log::LogWriter;
use cairn_log::tree::{self, NodeId};
use cairn_protocol::LogId;
use cairn_protocol::ext::registry::RegistryState;
use cairn_protocol::operator::OperatorState;
use cairn_protocol::record::OperatorEntry;
use cairn_store::{Store, StoreError};
use thiserror::Error;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::cache::TwoGen;
use crate::keys::{ActiveKeys, SigningKeys, ecdsa_key_id, note_verifier};
use crate::operator::{build_operator_record, pending_for};
use crate::pins;
use crate::sequencer::Sequencer;
use crate::{Clock, Health, Inner, Registry, ServiceConfig, ServiceError};

/// How many blobs' inspection results are kept (see
/// [`Registry::inspected`]).
const INSPECTED_ENTRIES: usize = 1024;

/// Why the registry refused to start. Every message says what to do.
#[derive(Debug, Error)]
pub enum StartupError {
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Store(#[from] StoreError),
    /// The stored data is inconsistent or half-initialised.
    #[error(
        "the store is inconsistent: {0}. Run `cairn fsck` to see every problem; restore from backup if it confirms them"
    )]
    Inconsistent(String),
    /// A configured key (or the origin) does not belong to this registry.
    #[error("{0}")]
    WrongKey(String),
    /// Initialisation failed.
    #[error("cannot initialise the registry: {0}")]
    Service(#[from] ServiceError),
}

/// The running sequencer (or, for a node of a cluster, its leader
/// election, which runs the sequencer while it leads); stop it with
/// [`SequencerHandle::shutdown`].
#[derive(Debug)]
pub struct SequencerHandle {
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) task: JoinHandle<()>,
}

impl SequencerHandle {
    /// Stops the sequencer after its current step.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

impl Registry {
    /// Opens the registry on `store`: initialises an empty store (operator
    /// log `init` record, first checkpoint) or checks an existing one,
    /// finishes anything a crash interrupted, and starts the sequencer.
    ///
    /// Start-up reads O(log n) state: the tree head, the right edge of the
    /// log, the operator log and the latest checkpoint.
    ///
    /// The checkpoint origin and the keys are fixed when a registry is
    /// initialised: a start with another origin, operator key (one that
    /// does not hold `commit`), note key or publisher key is refused with a
    /// message naming the key (see [`crate::pins`]).
    ///
    /// With [`ServiceConfig::leader_lease`], the registry is one node of
    /// several on one database and runs the sequencer only while it holds
    /// the sequencer lease ([`crate::leader`]); the handle then stops the
    /// node's leader election too.
    pub async fn start(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        keys: SigningKeys,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
    ) -> Result<(Registry, SequencerHandle), StartupError> {
        if let Some(lease) = config.leader_lease.clone() {
            return crate::leader::start_node(store, blobs, keys, clock, config, lease).await;
        }
        let (registry, sequencer) = Self::open(store, blobs, keys, clock, config).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(sequencer.run(shutdown_rx));
        let handle = SequencerHandle { shutdown, task };
        registry.spawn_backfill();
        if registry.latest_length() == 0 {
            // A new registry serves nothing until its first checkpoint exists.
            registry
                .wait_published(1, Duration::from_secs(60))
                .await
                .map_err(StartupError::Service)?;
        }
        Ok((registry, handle))
    }

    /// Checks the store and the keys, initialises an empty store, and
    /// builds the registry and its sequencer (not started).
    pub(crate) async fn open(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        keys: SigningKeys,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
    ) -> Result<(Registry, Sequencer), StartupError> {
        let SigningKeys {
            operator: signer,
            note,
            publisher,
            resolver,
        } = keys;
        let key_id = ecdsa_key_id(signer.as_ref())?;
        let note_verifier =
            note_verifier(note.as_ref(), &config.origin).map_err(StartupError::WrongKey)?;
        pins::check_origin(store.as_ref(), &config.origin).await?;
        pins::check_note(store.as_ref(), &note_verifier.to_string(), note.as_ref()).await?;
        let head = store.tree_head().await?;
        let (writer, map_root, operator, operator_row) = match head {
            None => {
                if !store.records_range(0, 1).await?.is_empty() {
                    return Err(StartupError::Inconsistent(
                        "records exist but the tree head is missing".into(),
                    ));
                }
                pins::check_initialising_operator(store.as_ref(), &key_id, signer.as_ref()).await?;
                if store
                    .live_pending_for_log(&LogId::operator())
                    .await?
                    .is_none()
                {
                    let mut entries = vec![OperatorEntry::Init {
                        key: match signer.public_key() {
                            cairn_crypto::PublicKey::EcdsaP256(key) => key.clone(),
                            cairn_crypto::PublicKey::Ed25519(_) => {
                                return Err(StartupError::WrongKey(
                                    "the operator key must be ECDSA P-256".into(),
                                ));
                            }
                        },
                    }];
                    entries.extend(config.initial_namespaces.iter().map(|ns| {
                        OperatorEntry::DefineNamespace {
                            namespace: ns.clone(),
                        }
                    }));
                    let envelope = build_operator_record(
                        &OperatorState::new(),
                        signer.as_ref(),
                        clock.as_ref(),
                        entries,
                    )
                    .await?;
                    store
                        .insert_pending(&pending_for(&envelope, clock.as_ref()))
                        .await?;
                    tracing::info!(operator_key = %signer.public_key(), "initialising a new registry");
                }
                (
                    LogWriter::new(),
                    cairn_log::map::empty_root(),
                    OperatorState::new(),
                    None,
                )
            }
            Some(head) => {
                let (writer, operator, row) = restore_log(store.as_ref(), &head).await?;
                pins::check_operator(store.as_ref(), &key_id, signer.as_ref(), &operator).await?;
                (writer, head.map_root, operator, Some(row))
            }
        };

        let (registry_log, registry_row) = load_registry_log(store.as_ref()).await?;
        if let Some(publisher) = &publisher {
            pins::check_publisher(store.as_ref(), publisher.as_ref(), &registry_log).await?;
        }
        let latest = store.latest_checkpoint().await?;
        if let Some(latest) = &latest {
            let length = latest.checkpoint.checkpoint.log_length;
            if length > writer.size() {
                return Err(StartupError::Inconsistent(format!(
                    "the latest checkpoint covers {length} records but only {} are sequenced",
                    writer.size()
                )));
            }
            let plan = tree::root_nodes(length);
            let hashes = store.log_nodes(&plan).await?;
            let source: std::collections::HashMap<NodeId, cairn_log::Hash> =
                plan.into_iter().zip(hashes).collect();
            let root = tree::root(&source, length)
                .map_err(|e| StartupError::Inconsistent(e.to_string()))?;
            if root != latest.checkpoint.checkpoint.log_root {
                return Err(StartupError::Inconsistent(format!(
                    "the stored log gives root {root} at length {length}, but the latest checkpoint says {}",
                    latest.checkpoint.checkpoint.log_root
                )));
            }
        }
        let published_length = latest
            .as_ref()
            .map_or(0, |c| c.checkpoint.checkpoint.log_length);
        let resident_limit = config.resident_map_nodes;
        let (published, _) = watch::channel(published_length);
        let inner = Arc::new(Inner {
            store,
            blobs,
            keys: RwLock::new(Arc::new(ActiveKeys {
                operator: signer,
                operator_key_id: key_id,
                note,
                note_verifier,
            })),
            resolver,
            publisher,
            metrics: Arc::new(crate::Metrics::default()),
            clock,
            latest: RwLock::new(latest.map(Arc::new)),
            served: RwLock::new(None),
            operator: RwLock::new(Arc::new(operator.clone())),
            registry_log: RwLock::new(Arc::new(registry_log.clone())),
            states: Mutex::new(TwoGen::new(config.cache_entries)),
            map_cache: Mutex::new(TwoGen::new(config.cache_entries)),
            inspected: Mutex::new(TwoGen::new(INSPECTED_ENTRIES)),
            outcomes: Mutex::new(TwoGen::new(100_000)),
            wake: Notify::new(),
            published,
            backlog: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
            config,
            commit_gate: tokio::sync::RwLock::new(()),
            follow_lock: tokio::sync::Mutex::new(()),
            oci_limits: Default::default(),
            derivations: Default::default(),
            push_group: Default::default(),
            content_url_key: tokio::sync::OnceCell::new(),
        });
        let registry = Registry { inner };
        let sequencer = Sequencer {
            registry: registry.clone(),
            writer,
            map_root,
            operator,
            operator_row,
            registry_log,
            registry_row,
            resident: crate::maps::ResidentMap::new(resident_limit),
            term: None,
        };
        Ok((registry, sequencer))
    }

    /// Work that once-per-version migrations of derived data need, run in
    /// the background by the node that sequences.
    pub(crate) fn spawn_backfill(&self) {
        // Content released before released content was linked to its
        // package's repository: linked once, in the background.
        let backfill = self.clone();
        tokio::spawn(async move {
            if let Err(error) = backfill.backfill_content_links().await {
                tracing::warn!(%error, "linking earlier released content failed; retried at the next start");
            }
            // Releases sequenced before the search index existed.
            if let Err(error) = backfill.backfill_search_index().await {
                tracing::warn!(%error, "indexing earlier releases failed; retried at the next start");
            }
        });
    }
}

/// The log writer (the right edge of the stored tree of `head`) and the
/// operator log, as stored.
pub(crate) async fn restore_log(
    store: &dyn Store,
    head: &cairn_store::TreeHead,
) -> Result<(LogWriter, OperatorState, cairn_store::LogRow), StartupError> {
    let plan: Vec<NodeId> = tree::root_nodes(head.size);
    let hashes = store.log_nodes(&plan).await.map_err(|e| match e {
        StoreError::Corrupt(m) => StartupError::Inconsistent(m),
        other => StartupError::Store(other),
    })?;
    let source: std::collections::HashMap<NodeId, cairn_log::Hash> =
        plan.into_iter().zip(hashes).collect();
    let writer = LogWriter::restore(head.size, &source)
        .map_err(|e| StartupError::Inconsistent(e.to_string()))?;
    if writer.root() != head.log_root {
        return Err(StartupError::Inconsistent(format!(
            "the stored log nodes give root {} at size {}, but the tree head says {}",
            writer.root(),
            head.size,
            head.log_root
        )));
    }
    let row = store
        .log(&LogId::operator())
        .await?
        .ok_or_else(|| StartupError::Inconsistent("the operator log is missing".into()))?;
    let operator: OperatorState =
        crate::log_state::log_state(store, &row, &OperatorState::default())
            .await
            .map_err(state_unreadable)?;
    Ok((writer, operator, row))
}

/// A log state that does not load: damaged data is an inconsistent store.
pub(crate) fn state_unreadable(error: ServiceError) -> StartupError {
    match error {
        ServiceError::Internal(reason) => StartupError::Inconsistent(reason),
        other => StartupError::Service(other),
    }
}

/// The registry log's state and row, as stored.
pub(crate) async fn load_registry_log(
    store: &dyn Store,
) -> Result<(RegistryState, Option<cairn_store::LogRow>), StartupError> {
    let registry_row = store.log(&LogId::registry()).await?;
    let registry_log: RegistryState = match &registry_row {
        Some(row) => {
            // The operator log is read only when records are replayed.
            let operator = if row.snapshot_is_current() {
                OperatorState::default()
            } else {
                crate::log_state::operator_state(store)
                    .await
                    .map_err(state_unreadable)?
            };
            crate::log_state::log_state(store, row, &operator)
                .await
                .map_err(state_unreadable)?
        }
        None => RegistryState::new(),
    };
    Ok((registry_log, registry_row))
}
