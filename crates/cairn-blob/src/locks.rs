//! Keyed async locks: one mutex per key (an upload session, a blob digest),
//! held across awaits, so that every operation on one key runs alone.
//!
//! The map holds an entry only while someone holds or waits for its lock;
//! the last one out removes it, so the map is bounded by the operations in
//! flight, never by the keys ever seen. A waiter that gives up (its future
//! is dropped, e.g. on a request timeout) cleans up the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

type Entry = Arc<tokio::sync::Mutex<()>>;

/// A set of keyed locks.
#[derive(Debug, Default)]
pub(crate) struct KeyedLocks {
    map: Mutex<HashMap<String, Entry>>,
}

/// A held lock; released (and its entry removed when unused) on drop.
#[derive(Debug)]
pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    entry: Option<Entry>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// Waits for the lock of `key`.
    pub(crate) async fn lock(&self, key: String) -> KeyGuard<'_> {
        let entry = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        // The guard exists before the wait, so a cancelled wait still
        // removes an entry nobody uses.
        let mut held = KeyGuard {
            locks: self,
            key,
            entry: Some(entry.clone()),
            guard: None,
        };
        held.guard = Some(entry.lock_owned().await);
        held
    }

    /// How many keys have an entry (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        // Release first, then drop this holder's reference: an entry whose
        // only reference is the map's is unused (every holder and waiter
        // clones it under the map's lock).
        self.guard.take();
        self.entry.take();
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|e| Arc::strong_count(e) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn serialises_one_key_and_forgets_unused_keys() {
        let locks = Arc::new(KeyedLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let locks = locks.clone();
            let inside = inside.clone();
            tasks.push(tokio::spawn(async move {
                let _held = locks.lock("a".into()).await;
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(locks.len(), 0);
        // Other keys do not wait; a cancelled waiter leaves nothing behind.
        let held = locks.lock("a".into()).await;
        let _other = locks.lock("b".into()).await;
        let waiting = tokio::time::timeout(Duration::from_millis(20), locks.lock("a".into())).await;
        assert!(waiting.is_err());
        drop(held);
        drop(_other);
        assert_eq!(locks.len(), 0);
    }
}
