//! Group commit of OCI pushes.
//!
//! Every push is stored (manifest row, content row, pending records) before
//! the sequencer takes it, and every store commit is durable — an fsync on
//! SQLite. Pushes arriving together therefore share one commit: the first
//! push to find no commit running stores every push queued at that moment
//! in one transaction ([`cairn_store::PushStore::insert_pushes`]) and
//! answers each; pushes arriving meanwhile queue for the next one.
//!
//! Each push was built and signed on the heads of its package's logs. Under
//! the commit gate (shared), each head is checked again before anything is
//! stored: a push whose heads moved is answered [`Grouped::Moved`] and
//! rebuilt by its caller, exactly as without grouping. A push refused by a
//! uniqueness rule (another record of one of its logs is pending) fails
//! alone.
//!
//! The commit runs in its own task: a caller that goes away (a client that
//! disconnects) cannot abandon the pushes of the others half-way.

use std::sync::Mutex;

use cairn_protocol::{PackageName, RecordId};
use cairn_store::{NewPush, StoreError};
use tokio::sync::oneshot;

use crate::{Registry, ServiceError};

/// The heads (package log, metadata log) a push was built on.
pub(crate) type Heads = (Option<RecordId>, Option<RecordId>);

/// What became of a grouped push.
#[derive(Debug)]
pub(crate) enum Grouped {
    /// Stored: its records are pending.
    Stored,
    /// Its package's heads moved: rebuild it on the new heads.
    Moved,
    /// The store refused it (or failed).
    Failed(StoreError),
}

struct Waiting {
    package: PackageName,
    heads: Heads,
    push: NewPush,
    reply: oneshot::Sender<Grouped>,
}

/// The queue of pushes waiting for the next group commit.
#[derive(Default)]
pub(crate) struct PushGroup {
    queue: Mutex<Vec<Waiting>>,
    /// Held by the caller running a group commit.
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PushGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushGroup").finish_non_exhaustive()
    }
}

impl Registry {
    /// Stores `push` (built on `heads` of `package`'s logs) in the next
    /// group commit.
    pub(crate) async fn store_push_grouped(
        &self,
        package: &PackageName,
        heads: Heads,
        push: NewPush,
    ) -> Result<Grouped, ServiceError> {
        let group = &self.inner.push_group;
        let (reply, mut answer) = oneshot::channel();
        group
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Waiting {
                package: package.clone(),
                heads,
                push,
                reply,
            });
        loop {
            let turn = group.turn.lock().await;
            match answer.try_recv() {
                Ok(grouped) => return Ok(grouped),
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(ServiceError::Internal(
                        "a group commit ended without answering".into(),
                    ));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let waiting =
                std::mem::take(&mut *group.queue.lock().unwrap_or_else(|e| e.into_inner()));
            let registry = self.clone();
            let committed = tokio::spawn(async move { registry.commit_group(waiting).await }).await;
            drop(turn);
            if let Err(error) = committed {
                return Err(ServiceError::Internal(format!(
                    "group commit failed: {error}"
                )));
            }
        }
    }

    /// Stores the pushes of `waiting` whose heads still hold, in one
    /// transaction, and answers every one.
    async fn commit_group(&self, waiting: Vec<Waiting>) {
        if waiting.is_empty() {
            return;
        }
        let gate = self.inner.commit_gate.read().await;
        let mut ready = Vec::with_capacity(waiting.len());
        for item in waiting {
            match self.oci_states(&item.package).await {
                Ok((package, meta)) => {
                    let now = (
                        package.head().map(|h| h.record_id),
                        meta.head().map(|h| h.record_id),
                    );
                    if now == item.heads {
                        ready.push(item);
                    } else {
                        let _ = item.reply.send(Grouped::Moved);
                    }
                }
                Err(error) => {
                    let _ = item
                        .reply
                        .send(Grouped::Failed(StoreError::Unavailable(error.to_string())));
                }
            }
        }
        let (pushes, replies): (Vec<NewPush>, Vec<oneshot::Sender<Grouped>>) = ready
            .into_iter()
            .map(|item| (item.push, item.reply))
            .unzip();
        if pushes.is_empty() {
            return;
        }
        let stored = self.inner.store.insert_pushes(&pushes).await;
        drop(gate);
        match stored {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(match result {
                        Ok(_) => Grouped::Stored,
                        Err(error) => Grouped::Failed(error),
                    });
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Grouped::Failed(error.clone()));
                }
            }
        }
    }
}
