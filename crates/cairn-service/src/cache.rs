//! A small bounded cache with two generations: recently used entries survive
//! a generation flip, cold ones are dropped wholesale. O(1) per operation,
//! no per-entry bookkeeping.

use std::collections::HashMap;
use std::hash::Hash;

/// A two-generation cache holding at most about `capacity` entries.
#[derive(Debug)]
pub(crate) struct TwoGen<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TwoGen<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            capacity: capacity.max(2),
        }
    }

    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        if let Some(value) = self.young.get(key) {
            return Some(value.clone());
        }
        let value = self.old.remove(key)?;
        self.insert(key.clone(), value.clone());
        Some(value)
    }

    /// Forgets every entry (the values changed elsewhere).
    pub(crate) fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.young.insert(key, value);
        if self.young.len() >= self.capacity / 2 {
            self.old = std::mem::take(&mut self.young);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_hot_entries_and_bounds_size() {
        let mut cache = TwoGen::new(10);
        cache.insert(0u32, 0u32);
        for i in 1..100u32 {
            cache.insert(i, i);
            assert_eq!(cache.get(&0), Some(0), "hot entry survives at {i}");
            assert!(cache.young.len() + cache.old.len() <= 10);
        }
        assert_eq!(cache.get(&50), None);
    }
}
