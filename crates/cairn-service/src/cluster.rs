//! What a node of a cluster keeps in step with the store: the served
//! checkpoint and the in-memory states behind it, and where the leader is.
//!
//! Every node serves reads and accepts warg publishes and uploads (their
//! correctness is the database's: [`cairn_store::DecidedStore`]); the
//! leader alone sequences. A node that does not sequence holds copies of
//! what the sequencer changes, and replaces them from the store:
//!
//! * the latest checkpoint, the operator and registry logs' states, and
//!   the cached package and metadata log states — whenever the stored
//!   checkpoint has grown: read by the standby loop ([`crate::leader`]) as
//!   soon as the store's feed tells of a checkpoint stored by another node
//!   ([`cairn_store::ChangeFeed`], PostgreSQL's `NOTIFY`) and every poll
//!   interval besides (the fallback while the feed is not live), and on
//!   demand before a forwarded write is answered ([`Registry::catch_up`]);
//! * the operator and registry logs' states again when a publish finds
//!   that they moved under it ([`Registry::reload_log_states`]).
//!
//! Refreshes are serialised and read the store inside the lock, so a
//! slower refresh never replaces newer states with older ones. Map nodes
//! are content-addressed (never stale); tokens are read from the store on
//! every request (a revocation holds on every node at once).
//!
//! The leader's sequencer is woken the same way by pending records other
//! nodes insert ([`Registry::others_wrote`]), and trusts its answer
//! "nothing pending" for as long as the feed is live and nothing was heard
//! ([`Registry::pending_answers_fresh_for`]), for one poll interval
//! otherwise.
//!
//! This module writes nothing to the store.

use std::sync::Arc;
use std::time::Duration;

use cairn_store::{Changes, StoredCheckpoint};

use crate::bootstrap::{StartupError, load_registry_log};
use crate::{Registry, ServiceError};

/// Waits until the store's feed hears a write of another node (or turns
/// live or not); never returns without a feed (a single-process store).
pub(crate) async fn others_wrote(changes: &mut Option<Changes>) {
    match changes {
        Some(changes) => {
            changes.changed().await;
        }
        None => std::future::pending().await,
    }
}

impl Registry {
    /// The store's feed of other nodes' writes (`None`: no other node can
    /// write).
    pub(crate) fn changes(&self) -> Option<Changes> {
        self.inner.store.changes()
    }

    /// How long an answer of the store about pending records stays true
    /// while the pending generation is unchanged: while the feed is live,
    /// every other node's pending write changes the generation, so until
    /// then; otherwise one poll interval.
    pub(crate) fn pending_answers_fresh_for(&self) -> Duration {
        if self.changes().is_some_and(|c| c.now().live) {
            Duration::MAX
        } else {
            self.inner.config.poll_interval
        }
    }

    /// Serves the stored latest checkpoint if it is newer than the one
    /// served, with the logs' states as of it. On the leader (whose
    /// sequencer announces every checkpoint itself) nothing is read.
    pub async fn catch_up(&self) -> Result<(), ServiceError> {
        if !self.is_standby() {
            return Ok(());
        }
        self.follow_store().await.map_err(|e| match e {
            StartupError::Store(error) => error.into(),
            other => ServiceError::Internal(other.to_string()),
        })
    }

    /// [`Registry::catch_up`] without the leader check (the standby loop).
    pub(crate) async fn follow_store(&self) -> Result<(), StartupError> {
        let _serial = self.inner.follow_lock.lock().await;
        let Some(latest) = self.inner.store.latest_checkpoint().await? else {
            return Ok(());
        };
        if latest.checkpoint.checkpoint.log_length <= self.latest_length() {
            return Ok(());
        }
        self.refresh_locked(latest).await
    }

    /// Replaces the served checkpoint and the cached states by the stored
    /// ones (states first: a request that sees the new checkpoint reads
    /// states at least as new).
    pub(crate) async fn refresh(&self, latest: StoredCheckpoint) -> Result<(), StartupError> {
        let _serial = self.inner.follow_lock.lock().await;
        self.refresh_locked(latest).await
    }

    async fn refresh_locked(&self, latest: StoredCheckpoint) -> Result<(), StartupError> {
        self.load_log_states().await?;
        let inner = &self.inner;
        if let Ok(mut states) = inner.states.lock() {
            states.clear();
        }
        let length = latest.checkpoint.checkpoint.log_length;
        if let Ok(mut served) = inner.latest.write() {
            *served = Some(Arc::new(latest));
        }
        inner.published.send_replace(length);
        Ok(())
    }

    /// Reloads the operator and registry logs' states from the store, on a
    /// node that does not sequence (the leader's are its sequencer's, which
    /// are never behind the store).
    pub(crate) async fn reload_log_states(&self) -> Result<(), ServiceError> {
        if !self.is_standby() {
            return Ok(());
        }
        let _serial = self.inner.follow_lock.lock().await;
        self.load_log_states().await.map_err(|e| match e {
            StartupError::Store(error) => error.into(),
            other => ServiceError::Internal(other.to_string()),
        })
    }

    async fn load_log_states(&self) -> Result<(), StartupError> {
        let store = self.inner.store.as_ref();
        let operator = crate::log_state::operator_state(store)
            .await
            .map_err(crate::bootstrap::state_unreadable)?;
        let (registry_log, _) = load_registry_log(store).await?;
        if let Ok(mut shared) = self.inner.operator.write() {
            *shared = Arc::new(operator);
        }
        if let Ok(mut shared) = self.inner.registry_log.write() {
            *shared = Arc::new(registry_log);
        }
        Ok(())
    }

    /// The URL of the node that sequences, when this node is a standby and
    /// the lease is held by a live leader that recorded one.
    pub async fn leader_address(&self) -> Result<Option<String>, ServiceError> {
        if !self.is_standby() {
            return Ok(None);
        }
        let lease = self.inner.store.lease().await?;
        let own = self.health().leadership.map(|l| l.node);
        Ok(Some(lease.address)
            .filter(|a| !a.is_empty() && lease.remaining.is_some())
            .filter(|_| own.as_deref() != Some(lease.holder.as_str())))
    }
}
