//! Leader election among the nodes of one PostgreSQL database, with
//! fencing.
//!
//! Every node serves reads and accepts writes (see [`crate::cluster`] and
//! `cairn_store::DecidedStore`); exactly one — the node holding the
//! **sequencer lease** ([`cairn_store::LeaseStore`]) — runs the sequencer
//! and signs checkpoints, and records with the lease the URL the other
//! nodes forward leader-only writes to ([`LeaseConfig::address`]). The life of a node:
//!
//! 1. **Start.** It tries to take the lease. If it gets it, it starts like
//!    a single process (initialising an empty registry if need be) and
//!    leads. Otherwise it waits until the registry has a checkpoint and
//!    starts as a **standby**: it checks the store and its keys exactly as
//!    a leader would, and serves reads.
//! 2. **Standby.** Every [`LeaseConfig::renew_every`] it tries to take the
//!    lease, which succeeds only once the leader's lease has expired (or
//!    was released); whenever the leader stores a checkpoint (told by the
//!    store's feed, `NOTIFY` on PostgreSQL) and every poll interval besides
//!    it reads the latest checkpoint, and when it has grown, the operator
//!    and registry logs' states, drops its cached log states, and serves
//!    the new checkpoint.
//! 3. **Takeover.** With the lease (a new epoch), it restores the
//!    sequencer from the store *after* taking the lease — a write of the
//!    previous leader either committed before the takeover (and is read
//!    here) or is refused by the fence — and starts it.
//! 4. **Leading.** It renews the lease every `renew_every`. Every batch
//!    commit and every stored checkpoint carries the lease's [`Fence`] and
//!    is checked against the lease row in its own transaction, so a leader
//!    that was paused, partitioned or lost its database session past its
//!    lease cannot write once another node has taken over: its commit is
//!    refused with nothing stored.
//! 5. **Stepping down.** When a renewal is refused (taken over), when no
//!    renewal has succeeded for a whole lease, or when a fenced write is
//!    refused, the node answers the OCI pushes queued for its next batch
//!    with 503 (retry) at once — a batch the fence refused answers its own
//!    — stops its sequencer (waiting at most one lease for a database call
//!    in flight), and becomes a standby. Warg
//!    publishes never wait in memory: their pending rows are sequenced by
//!    the next leader.
//!
//! # Crash points
//!
//! * A leader dies (or is paused) holding the lease: nothing is written
//!   until its lease expires; then another node takes over with the next
//!   epoch and restores everything committed, as a restart would (the
//!   sequencer's crash points 1–4 apply unchanged). A paused leader that
//!   resumes may still *compute* a signature for a batch it had prepared,
//!   but the fenced commit refuses it, so it is never stored or served
//!   (like crash point 1).
//! * A node dies between taking the lease and restoring: the lease expires
//!   and the next node takes it; nothing was written.
//!
//! This module decides nothing about records; it only starts, fences and
//! stops the sequencer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_blob::BlobStore;
use cairn_store::{Batch, Fence, Store, StoreError, StoredCheckpoint};
use tokio::sync::watch;

use crate::bootstrap::{StartupError, load_registry_log, restore_log};
use crate::sequencer::Sequencer;
use crate::{Clock, Registry, SequencerHandle, ServiceConfig, ServiceError, SigningKeys};

/// How a node takes part in leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The node's name, recorded as the lease's holder (shown in `/readyz`
    /// and the logs).
    pub node: String,
    /// How long the lease lasts without renewal: a dead leader is replaced
    /// after at most this plus `renew_every`. Default: 6 s.
    pub duration: Duration,
    /// How often the leader renews and standbys try to take the lease.
    /// Must be well below `duration`. Default: 2 s.
    pub renew_every: Duration,
    /// The URL the other nodes reach this node at, recorded with the lease
    /// when it leads (standbys forward to it the writes that need the
    /// sequencer's memory). Empty: none (standbys then answer those
    /// writes 503).
    pub address: String,
}

impl LeaseConfig {
    /// The defaults for `node`: takeover within 8 s of a leader's death.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            duration: Duration::from_secs(6),
            renew_every: Duration::from_secs(2),
            address: String::new(),
        }
    }
}

/// A node's part in the lease, as `/readyz` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// This node's name.
    pub node: String,
    /// Whether this node holds the lease and runs the sequencer.
    pub leader: bool,
    /// The epoch this node leads with, or the latest it has seen.
    pub epoch: u64,
}

/// One term of leadership: the fence every write carries, and whether it
/// is over.
#[derive(Debug)]
pub(crate) struct Term {
    fence: Fence,
    lost: AtomicBool,
}

impl Term {
    fn new(fence: Fence) -> Arc<Self> {
        Arc::new(Self {
            fence,
            lost: AtomicBool::new(false),
        })
    }

    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }
}

impl Sequencer {
    /// Whether this sequencer's term is over (it must stop at once).
    pub(crate) fn deposed(&self) -> bool {
        self.term.as_ref().is_some_and(|t| t.is_lost())
    }

    /// Commits `batch`, fenced with this sequencer's term if it has one.
    pub(crate) async fn commit(&self, batch: &mut Batch) -> Result<(), ServiceError> {
        batch.fence = self.term.as_ref().map(|t| t.fence.clone());
        let committed = self.registry.inner.store.commit_batch(batch).await;
        if let Err(StoreError::Moved(reason)) = &committed {
            // A pending record (of this node or another) is ahead of a push
            // built on its log's head: the pushes wait for it.
            tracing::debug!(%reason, "batch refused: a pending record is ahead of a push");
            self.registry.pushes_met_pending();
        }
        committed.map_err(|e| self.refused(e))
    }

    /// Stores a signed checkpoint, fenced with this sequencer's term if it
    /// has one.
    pub(crate) async fn store_checkpoint(
        &self,
        stored: &StoredCheckpoint,
    ) -> Result<(), ServiceError> {
        let store = &self.registry.inner.store;
        let result = match &self.term {
            Some(term) => store.store_checkpoint_fenced(stored, &term.fence).await,
            None => store.store_checkpoint(stored).await,
        };
        result.map_err(|e| self.refused(e))
    }

    /// A refused fence ends the term.
    fn refused(&self, error: StoreError) -> ServiceError {
        if let (StoreError::Fenced(reason), Some(term)) = (&error, &self.term) {
            tracing::warn!(%reason, epoch = term.fence.epoch, "deposed: another node sequences now");
            term.lose();
        }
        error.into()
    }
}

/// Starts a node: leader if it can take the lease, else standby.
pub(crate) async fn start_node(
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    keys: SigningKeys,
    clock: Arc<dyn Clock>,
    config: ServiceConfig,
    lease: LeaseConfig,
) -> Result<(Registry, SequencerHandle), StartupError> {
    if lease.renew_every.is_zero() || lease.renew_every * 2 > lease.duration {
        return Err(StartupError::Service(ServiceError::Internal(format!(
            "the lease renewal interval ({:?}) must be at most half the lease duration ({:?})",
            lease.renew_every, lease.duration
        ))));
    }
    let mut announced_wait = false;
    // Only a leader may initialise an empty registry; a standby waits for
    // the registry to exist (or for the lease to expire, and leads).
    let initial = loop {
        if let Some(fence) = store
            .try_acquire_lease_at(&lease.node, &lease.address, lease.duration)
            .await?
        {
            break Some(fence);
        }
        if store.latest_checkpoint().await?.is_some() {
            break None;
        }
        if !announced_wait {
            tracing::info!("another node is initialising the registry; waiting");
            announced_wait = true;
        }
        tokio::time::sleep(lease.renew_every.min(Duration::from_millis(500))).await;
    };
    let lease_store = store.clone();
    let opened = Registry::open(store, blobs, keys, clock, config).await;
    let (registry, mut sequencer) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            if let Some(fence) = &initial {
                release(lease_store.as_ref(), fence).await;
            }
            return Err(error);
        }
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let node = Node {
        registry: registry.clone(),
        lease,
    };
    let leading = initial.map(|fence| {
        let term = Term::new(fence);
        sequencer.term = Some(term.clone());
        (sequencer, term)
    });
    let first_leader = leading.is_some();
    match &leading {
        Some((_, term)) => node.set_role(true, term.fence.epoch),
        None => {
            node.set_role(false, 0);
            registry.close_pushes();
        }
    }
    let task = tokio::spawn(node.run(leading, shutdown_rx));
    let handle = SequencerHandle { shutdown, task };
    if first_leader {
        registry.spawn_backfill();
        if registry.latest_length() == 0 {
            // A new registry serves nothing until its first checkpoint exists.
            if let Err(error) = registry.wait_published(1, Duration::from_secs(60)).await {
                handle.shutdown().await;
                return Err(StartupError::Service(error));
            }
        }
    }
    Ok((registry, handle))
}

/// Gives the lease up (best effort: it expires anyway).
async fn release(store: &dyn Store, fence: &Fence) {
    if let Err(error) = store.release_lease(fence).await {
        tracing::warn!(%error, "releasing the sequencer lease");
    }
}

/// Why a term ended.
enum Ended {
    /// The node is shutting down.
    Shutdown,
    /// Another node took over, or the lease could not be renewed.
    Lost(String),
}

struct Node {
    registry: Registry,
    lease: LeaseConfig,
}

impl Node {
    fn store(&self) -> &dyn Store {
        self.registry.inner.store.as_ref()
    }

    fn set_role(&self, leader: bool, epoch: u64) {
        let node = self.lease.node.clone();
        self.registry.set_health(|h| {
            h.leadership = Some(super::leader::Leadership {
                node,
                leader,
                epoch,
            });
        });
    }

    /// Leads while `leading` is given, stands by otherwise, until shutdown.
    async fn run(
        self,
        mut leading: Option<(Sequencer, Arc<Term>)>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if let Some((sequencer, term)) = leading.take() {
                match self.lead(sequencer, &term, &mut shutdown).await {
                    Ended::Shutdown => {
                        release(self.store(), &term.fence).await;
                        return;
                    }
                    Ended::Lost(reason) => {
                        tracing::warn!(%reason, epoch = term.fence.epoch, "stepped down: now a standby");
                        self.set_role(false, term.fence.epoch);
                        // The leader counts the backlog; a standby does not.
                        self.registry.backlog().store(0, Ordering::Relaxed);
                    }
                }
            }
            let Some(fence) = self.stand_by(&mut shutdown).await else {
                return;
            };
            let term = Term::new(fence);
            match self.restore(term.clone()).await {
                Ok(sequencer) => {
                    tracing::info!(epoch = term.fence.epoch, node = %self.lease.node, "took the sequencer lease: leading");
                    self.set_role(true, term.fence.epoch);
                    leading = Some((sequencer, term));
                }
                Err(error) => {
                    tracing::error!(%error, "cannot restore the sequencer after taking the lease; giving it up");
                    release(self.store(), &term.fence).await;
                    tokio::select! {
                        _ = tokio::time::sleep(self.lease.duration) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    /// Runs `sequencer` and renews the lease until the term ends.
    async fn lead(
        &self,
        sequencer: Sequencer,
        term: &Term,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (stop, stop_rx) = watch::channel(false);
        self.registry.open_pushes();
        let mut task = tokio::spawn(sequencer.run(stop_rx));
        let mut finished = false;
        let mut renewed = Instant::now();
        let mut tick = tokio::time::interval(self.lease.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            tokio::select! {
                _ = shutdown.changed() => break Ended::Shutdown,
                _ = &mut task => {
                    finished = true;
                    break Ended::Lost("the sequencer's commit was fenced".into());
                }
                _ = tick.tick() => {
                    let sent = Instant::now();
                    match self.store().renew_lease(&term.fence, self.lease.duration).await {
                        Ok(()) => renewed = sent,
                        Err(StoreError::Fenced(reason)) => break Ended::Lost(reason),
                        Err(error) if renewed.elapsed() + self.lease.renew_every >= self.lease.duration => {
                            break Ended::Lost(format!("the sequencer lease could not be renewed: {error}"));
                        }
                        Err(error) => tracing::warn!(%error, "renewing the sequencer lease failed; retrying"),
                    }
                }
            }
        };
        if matches!(ended, Ended::Lost(_)) {
            term.lose();
        }
        // The pushes waiting for a batch are answered now, not once the
        // sequencer has stopped: none of them will be stored by this term
        // (a batch in flight is fenced, and answers its own).
        self.registry.close_pushes();
        let _ = stop.send(true);
        if !finished
            && tokio::time::timeout(self.lease.duration, &mut task)
                .await
                .is_err()
        {
            // A database call that does not return: abandon it (its
            // transaction rolls back; a commit would be fenced anyway).
            task.abort();
        }
        self.registry.set_health(|h| h.sequencer_running = false);
        ended
    }

    /// Serves reads and follows the log until the lease can be taken;
    /// `None` on shutdown.
    async fn stand_by(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Fence> {
        let poll = self
            .registry
            .inner
            .config
            .poll_interval
            .min(self.lease.renew_every);
        let mut last_try: Option<Instant> = None;
        // A checkpoint stored by the leader is served at once; the poll
        // is the fallback while the store's feed is not live.
        let mut changes = self.registry.changes();
        loop {
            if *shutdown.borrow() {
                return None;
            }
            if let Err(error) = self.registry.follow_store().await {
                tracing::warn!(%error, "standby: reading the latest checkpoint failed");
            }
            if last_try.is_none_or(|t| t.elapsed() >= self.lease.renew_every) {
                last_try = Some(Instant::now());
                match self
                    .store()
                    .try_acquire_lease_at(
                        &self.lease.node,
                        &self.lease.address,
                        self.lease.duration,
                    )
                    .await
                {
                    Ok(Some(fence)) => return Some(fence),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "standby: reading the sequencer lease failed")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = crate::cluster::others_wrote(&mut changes) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// The sequencer for a new term, from the store as it is now (read
    /// after the lease was taken, so it holds every write of the previous
    /// leader that will ever be stored).
    async fn restore(&self, term: Arc<Term>) -> Result<Sequencer, StartupError> {
        let store = self.store();
        let head = store.tree_head().await?.ok_or_else(|| {
            StartupError::Inconsistent("a checkpoint exists but the tree head is missing".into())
        })?;
        let (writer, operator, operator_row) = restore_log(store, &head).await?;
        let (registry_log, registry_row) = load_registry_log(store).await?;
        if let Some(latest) = store.latest_checkpoint().await? {
            if latest.checkpoint.checkpoint.log_length > writer.size() {
                return Err(StartupError::Inconsistent(format!(
                    "the latest checkpoint covers {} records but only {} are sequenced",
                    latest.checkpoint.checkpoint.log_length,
                    writer.size()
                )));
            }
            self.registry.refresh(latest).await?;
        }
        Ok(Sequencer {
            registry: self.registry.clone(),
            writer,
            map_root: head.map_root,
            operator,
            operator_row: Some(operator_row),
            registry_log,
            registry_row,
            resident: crate::maps::ResidentMap::new(self.registry.inner.config.resident_map_nodes),
            term: Some(term),
        })
    }
}

impl Registry {
    /// Whether this registry is a standby node of a cluster: it serves
    /// reads and the writes the database decides, and forwards the others
    /// to the leader.
    pub fn is_standby(&self) -> bool {
        self.inner
            .health
            .lock()
            .ok()
            .and_then(|h| h.leadership.as_ref().map(|l| !l.leader))
            .unwrap_or(false)
    }
}
