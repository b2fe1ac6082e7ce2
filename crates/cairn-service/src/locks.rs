//! Per-key async locks (single flight): callers working on the same key
//! take turns, callers on different keys do not wait for each other. An
//! entry lives only while someone holds or waits for its lock, so the map
//! never grows beyond the work in progress.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// A map of per-key locks.
#[derive(Debug)]
pub(crate) struct KeyedLocks<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

/// A held lock; dropping it releases the lock and forgets the key when
/// nobody else waits for it.
pub(crate) struct KeyedGuard<'a, K: Eq + Hash + Clone> {
    owner: &'a KeyedLocks<K>,
    key: K,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    /// Waits for the lock of `key`.
    pub(crate) async fn lock(&self, key: K) -> KeyedGuard<'_, K> {
        let lock = match self.locks.lock() {
            Ok(mut locks) => locks.entry(key.clone()).or_default().clone(),
            // A poisoned map still serialises nothing wrongly: use a fresh
            // lock for this caller.
            Err(_) => Arc::default(),
        };
        let guard = lock.lock_owned().await;
        KeyedGuard {
            owner: self,
            key,
            guard: Some(guard),
        }
    }

    /// Keys with a holder or waiters (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.locks.lock().map_or(0, |l| l.len())
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyedGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Ok(mut locks) = self.owner.locks.lock()
            && locks
                .get(&self.key)
                .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_no_leftovers() {
        let locks = KeyedLocks::<u32>::default();
        let a = locks.lock(1).await;
        // Another key is free.
        let b = locks.lock(2).await;
        assert_eq!(locks.len(), 2);
        // The same key waits.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(1));
        assert!(waiting.await.is_err());
        drop(a);
        drop(b);
        assert_eq!(locks.len(), 0);
        let _again = locks.lock(1).await;
        assert_eq!(locks.len(), 1);
    }
}
