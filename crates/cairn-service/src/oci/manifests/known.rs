//! What the sequencer last learnt of the pending table, so that it need
//! not ask again before every batch of pushes.
//!
//! The store's [`cairn_store::PushStore::pending_generation`] changes after
//! every write through this process that makes a pending record live. An
//! answer "nothing queued" or "no live pending record on these logs" stays
//! true while the generation is unchanged, except for writes by other
//! processes sharing the database (the other nodes of a cluster, `cairn`
//! commands run beside the server): those change the generation too once
//! their notifications arrive, while the store's feed is live
//! ([`cairn_store::ChangeFeed`]); while it is not, an answer is trusted for
//! at most the poll interval, as long as an idle sequencer waits. A push built on a stale answer is never committed: the batch
//! commit refuses it when a live pending record is ahead of it
//! ([`cairn_store::StoreError::Moved`]), the answers are forgotten and the
//! pushes are built again.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_protocol::LogId;
use cairn_store::PendingRecord;

use crate::{Registry, ServiceError};

/// Answers of the store, valid at one generation, since one instant.
#[derive(Default)]
pub(crate) struct PendingKnown {
    inner: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    /// The generation and time these answers were given at.
    at: Option<(u64, Instant)>,
    /// Nothing was queued.
    none_queued: bool,
    /// Logs without a live pending record.
    clean: HashSet<LogId>,
}

impl Known {
    /// Forgets everything not learnt at `generation` within `fresh_for`.
    fn current(&mut self, generation: u64, fresh_for: Duration) -> &mut Self {
        if self
            .at
            .is_none_or(|(g, at)| g != generation || at.elapsed() >= fresh_for)
        {
            *self = Known {
                at: Some((generation, Instant::now())),
                ..Known::default()
            };
        }
        self
    }
}

impl PendingKnown {
    /// Forgets every answer (one turned out stale).
    pub(crate) fn forget(&self) {
        self.with(|k| *k = Known::default());
    }

    fn with<T>(&self, f: impl FnOnce(&mut Known) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Registry {
    /// The queued pending records, at most `limit`, in arrival order (the
    /// store is asked only if something may have been queued since it last
    /// answered that nothing was).
    pub(crate) async fn queued_records(
        &self,
        limit: u32,
    ) -> Result<Vec<PendingRecord>, ServiceError> {
        let store = &self.inner.store;
        let known = &self.inner.push_group.known;
        let fresh_for = self.pending_answers_fresh_for();
        let generation = store.pending_generation();
        if known.with(|k| k.current(generation, fresh_for).none_queued) {
            return Ok(Vec::new());
        }
        let queued = store.queued(limit).await?;
        if queued.is_empty() {
            known.with(|k| k.current(generation, fresh_for).none_queued = true);
        }
        Ok(queued)
    }

    /// Which of `log_ids` have a live pending record (the store is asked
    /// only about logs not known to be without one).
    pub(crate) async fn live_pending_logs(
        &self,
        log_ids: &[LogId],
    ) -> Result<Vec<LogId>, ServiceError> {
        let store = &self.inner.store;
        let known = &self.inner.push_group.known;
        let fresh_for = self.pending_answers_fresh_for();
        let generation = store.pending_generation();
        let unknown: Vec<LogId> = known.with(|k| {
            let k = k.current(generation, fresh_for);
            log_ids
                .iter()
                .filter(|id| !k.clean.contains(id))
                .copied()
                .collect()
        });
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let busy = store.live_pending_logs(&unknown).await?;
        known.with(|k| {
            let k = k.current(generation, fresh_for);
            k.clean
                .extend(unknown.iter().filter(|id| !busy.contains(id)).copied());
        });
        Ok(busy)
    }
}
