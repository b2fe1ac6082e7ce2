//! [`ChangeFeed`]: what the other processes sharing the database commit,
//! told as it happens, so that a node need not poll for it.
//!
//! Several processes write one PostgreSQL database: the nodes of a cluster,
//! and `cairn` commands run beside them. Two kinds of their writes concern
//! the others at once:
//!
//! * a pending record made live or queued (a publish accepted at a
//!   standby, or its content uploaded there): the leader's sequencer takes
//!   it in its next batch;
//! * a checkpoint stored (by the leader): the standbys serve it.
//!
//! The store tells each of them to every other store value listening on the
//! same database. This module says what a listener may rely on; it decides
//! nothing about what to do then, and replaces no check: the heads a publish
//! was decided on, the fence and the commit gate are still checked in the
//! writing transactions.

use tokio::sync::watch;

/// What a [`Changes`] feed has heard so far. The counts only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    /// Writes of other store values that made a pending record live or
    /// queued, plus one each time the feed began listening.
    pub pending: u64,
    /// Checkpoints stored by other store values, plus one each time the
    /// feed began listening.
    pub checkpoints: u64,
    /// Whether the feed listens now: while it does, the counts miss no
    /// write (see [`ChangeFeed`]).
    pub live: bool,
}

/// A subscription to a store's [`ChangeCounts`]; clones share the feed.
#[derive(Clone, Debug)]
pub struct Changes {
    counts: watch::Receiver<ChangeCounts>,
}

impl Changes {
    /// A subscription to the counts `counts` receives.
    pub fn new(counts: watch::Receiver<ChangeCounts>) -> Self {
        Self { counts }
    }

    /// The counts now.
    pub fn now(&self) -> ChangeCounts {
        *self.counts.borrow()
    }

    /// Waits until the counts (or the liveness) differ from what this
    /// subscription last returned, and returns them. A feed that ended
    /// (its store was dropped) never changes again.
    pub async fn changed(&mut self) -> ChangeCounts {
        if self.counts.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.counts.borrow_and_update()
    }
}

/// Notifications of other processes' writes.
///
/// # Contract
///
/// * [`ChangeFeed::changes`] is `None` when no other process can write the
///   database (SQLite, whose writer lock admits one process): there is
///   nothing to hear. Otherwise it starts listening (once per store value;
///   later calls share the feed) and returns a subscription.
/// * **Only committed writes.** A write that makes a pending record live or
///   queued ([`crate::DecidedStore::insert_pending_decided`],
///   [`crate::Store::insert_pending`], content arriving for a sourcing
///   record) or stores a checkpoint ([`crate::Store::commit_batch`] with a
///   checkpoint, [`crate::Store::store_checkpoint`],
///   [`crate::LeaseStore::store_checkpoint_fenced`]) sends its notification
///   in its own transaction: it is delivered once the transaction commits,
///   after the write is visible to every reader, and never for a write that
///   was rolled back.
/// * **Others' writes.** The counts grow for writes through other store
///   values (of this process or another); writes through the listening
///   value itself are not counted (its caller knows them:
///   [`crate::PushStore::pending_generation`] counts them).
/// * **Live means complete.** While [`ChangeCounts::live`] is true, every
///   such write committed since the feed last became live is counted
///   within about one notification round trip. When the listening
///   connection is lost or stops answering, `live` turns false and writes
///   may go uncounted until the feed listens again; when it does, both
///   counts grow by one (whatever happened meanwhile must be read again)
///   and `live` turns true. A caller that needs every write therefore
///   polls while the feed is not live.
/// * [`crate::PushStore::pending_generation`] includes
///   [`ChangeCounts::pending`] once the feed was started.
pub trait ChangeFeed: Send + Sync {
    /// The feed of other processes' writes (see the contract).
    fn changes(&self) -> Option<Changes>;
}
