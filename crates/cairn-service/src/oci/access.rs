//! What one caller may hold at once on the OCI door, decided before any
//! body is read: push rights ([`Registry::oci_authorize_push`]), manifest
//! pushes in flight ([`Registry::oci_manifest_push_slot`]), and the bytes
//! its open upload sessions hold ([`UploadBudgets`]).
//!
//! Limits are per identity (not per token: minting tokens does not raise
//! them), answered `429 TOOMANYREQUESTS` with what was exceeded. The state
//! kept here is bounded by the requests in flight: an identity's entry
//! exists only while one of its requests is using it.
//!
//! Not here: the number of open sessions and their recorded bytes, which
//! are counted in the store (they outlive requests and restarts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{OciCode, OciError, Repository};
use crate::Registry;
use crate::identity::Caller;

/// Per-identity state of requests in flight.
#[derive(Debug, Default)]
pub(crate) struct CallerLimits {
    /// Manifest pushes in flight, per identity.
    pushes: Arc<Mutex<HashMap<String, usize>>>,
    /// Upload bytes charged, per identity with a chunk streaming.
    pub(crate) budgets: Arc<UploadBudgets>,
    /// One request at a time per upload session (id), from the check that
    /// the session exists to its last write: a finish (its last chunk, the
    /// hash, the publish and forgetting the session) is one step that no
    /// chunk can interleave with.
    pub(crate) sessions: crate::locks::KeyedLocks<String>,
}

/// A manifest push in flight; frees its slot when dropped.
#[derive(Debug)]
pub struct PushSlot {
    pushes: Arc<Mutex<HashMap<String, usize>>>,
    identity: String,
}

impl Drop for PushSlot {
    fn drop(&mut self) {
        let mut pushes = self.pushes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = pushes.get_mut(&self.identity) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                pushes.remove(&self.identity);
            }
        }
    }
}

/// 429 with `message`.
pub(crate) fn too_many(message: String) -> OciError {
    OciError::new(OciCode::TooManyRequests, message)
}

impl Registry {
    /// May `caller` push to `repository`? The same answer a push gets (401
    /// for anonymous callers, 403 without rights), asked before its body is
    /// read so that nobody without rights can make the server wait for one.
    pub fn oci_authorize_push(
        &self,
        caller: Option<&Caller>,
        repository: &str,
    ) -> Result<(), OciError> {
        let repository = Repository::parse(repository)?;
        self.oci_may_push(caller, &repository).map(|_| ())
    }

    /// Takes one of `caller`'s manifest-push slots (at most
    /// [`crate::ServiceConfig::max_manifest_pushes_per_caller`] at once, so
    /// one token cannot hold hundreds of slow pushes), or answers 429.
    pub fn oci_manifest_push_slot(&self, caller: &Caller) -> Result<PushSlot, OciError> {
        let max = self.inner.config.max_manifest_pushes_per_caller;
        let pushes = &self.inner.oci_limits.pushes;
        let mut map = pushes.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(caller.identity.clone()).or_insert(0);
        if *count >= max {
            if *count == 0 {
                map.remove(&caller.identity);
            }
            return Err(too_many(format!(
                "identity `{}` already has {max} manifest pushes in progress; retry when one is done",
                caller.identity
            )));
        }
        *count += 1;
        Ok(PushSlot {
            pushes: pushes.clone(),
            identity: caller.identity.clone(),
        })
    }
}

/// The bytes each identity's upload sessions hold, charged as chunks
/// arrive. An identity's entry starts from the bytes its sessions have on
/// record and lives while one of its chunks streams; every chunk charges
/// its bytes as they arrive (refused past the limit) and a failed chunk is
/// refunded, so concurrent chunks of one caller cannot together pass the
/// limit.
#[derive(Debug, Default)]
pub(crate) struct UploadBudgets {
    map: Mutex<HashMap<String, Budget>>,
}

#[derive(Debug)]
struct Budget {
    /// The bytes on record when the entry was made, plus charges, minus
    /// refunds and released sessions.
    bytes: u64,
    /// Chunks streaming.
    active: usize,
}

/// One streaming chunk's hold on its identity's budget.
#[derive(Debug)]
pub(crate) struct BudgetHold {
    budgets: Arc<UploadBudgets>,
    identity: String,
    limit: u64,
    charged: std::sync::atomic::AtomicU64,
}

impl UploadBudgets {
    /// Starts a chunk of `identity`, whose sessions hold `recorded` bytes.
    pub(crate) fn hold(self: &Arc<Self>, identity: &str, recorded: u64, limit: u64) -> BudgetHold {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let budget = map.entry(identity.to_owned()).or_insert(Budget {
            bytes: recorded,
            active: 0,
        });
        budget.active += 1;
        BudgetHold {
            budgets: self.clone(),
            identity: identity.to_owned(),
            limit,
            charged: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A session of `identity` holding `size` bytes is gone (finished or
    /// cancelled).
    pub(crate) fn release(&self, identity: &str, size: u64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(budget) = map.get_mut(identity) {
            budget.bytes = budget.bytes.saturating_sub(size);
        }
    }
}

impl BudgetHold {
    /// Charges `n` more bytes; `false` (nothing charged) past the limit.
    pub(crate) fn charge(&self, n: u64) -> bool {
        let mut map = self.budgets.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(budget) = map.get_mut(&self.identity) else {
            return false;
        };
        match budget.bytes.checked_add(n) {
            Some(total) if total <= self.limit => {
                budget.bytes = total;
                self.charged
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The chunk failed and left nothing: gives its charges back.
    pub(crate) fn refund(&self) {
        let charged = self.charged.swap(0, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.budgets.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(budget) = map.get_mut(&self.identity) {
            budget.bytes = budget.bytes.saturating_sub(charged);
        }
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        let mut map = self.budgets.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(budget) = map.get_mut(&self.identity) {
            budget.active = budget.active.saturating_sub(1);
            if budget.active == 0 {
                map.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_chunks_share_one_budget_and_failures_are_refunded() {
        let budgets = Arc::new(UploadBudgets::default());
        let a = budgets.hold("alice", 40, 100);
        // A second chunk of the same caller starts from the same entry (its
        // stale record is ignored).
        let b = budgets.hold("alice", 0, 100);
        assert!(a.charge(30));
        assert!(b.charge(30));
        assert!(!b.charge(1));
        b.refund();
        assert!(a.charge(30));
        budgets.release("alice", 70);
        assert!(a.charge(70));
        drop(a);
        drop(b);
        assert!(budgets.map.lock().unwrap().is_empty());
        let other = budgets.hold("bob", 0, 10);
        assert!(other.charge(10));
    }
}
