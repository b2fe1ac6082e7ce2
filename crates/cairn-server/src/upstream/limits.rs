//! The bounds of the pull-through mirror: a TTL map that never holds more
//! than its capacity (the oldest entry goes first), and a token bucket for
//! the rate of upstream syncs. Anonymous clients choose the repository
//! names the mirror remembers, so nothing here may grow with them.
//!
//! Time is an argument (`now`), never read here, so both are tested without
//! sleeping.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A map whose entries expire after `ttl` and which holds at most
/// `capacity` entries: inserting into a full map evicts the entry inserted
/// (or refreshed) longest ago.
#[derive(Debug)]
pub struct BoundedTtlMap<K, V> {
    capacity: usize,
    ttl: Duration,
    /// Key → (inserted at, value, insertion sequence).
    entries: HashMap<K, (Instant, V, u64)>,
    /// Keys in insertion order, with the sequence they were inserted with;
    /// a key refreshed later has a stale older item here, skipped on
    /// eviction and dropped on compaction.
    order: VecDeque<(K, u64)>,
    next: u64,
}

impl<K: Eq + Hash + Clone, V> BoundedTtlMap<K, V> {
    /// An empty map. A zero capacity is taken as one.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }

    /// The value of `key` if it was inserted less than `ttl` before `now`.
    /// An expired entry is removed.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<&V> {
        let expired = match self.entries.get(key) {
            None => return None,
            Some((at, _, _)) => now.saturating_duration_since(*at) >= self.ttl,
        };
        if expired {
            self.entries.remove(key);
            return None;
        }
        self.entries.get(key).map(|(_, value, _)| value)
    }

    /// Whether `key` holds a live entry at `now`.
    pub fn contains(&mut self, key: &K, now: Instant) -> bool {
        self.get(key, now).is_some()
    }

    /// Inserts or refreshes `key`, evicting the oldest entries while the map
    /// is over capacity.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        let seq = self.next;
        self.next += 1;
        self.entries.insert(key.clone(), (now, value, seq));
        self.order.push_back((key, seq));
        while self.entries.len() > self.capacity {
            let Some((oldest, seq)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&oldest).is_some_and(|(_, _, s)| *s == seq) {
                self.entries.remove(&oldest);
            }
        }
        // Refreshes and lazy expiry leave stale items in `order`: keep it
        // within twice the capacity.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order
                .retain(|(key, seq)| entries.get(key).is_some_and(|(_, _, s)| s == seq));
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// How many entries are held (live or not yet found expired).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many items the eviction queue holds (at most twice the
    /// capacity, plus one).
    pub fn queue_len(&self) -> usize {
        self.order.len()
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            at: now,
        }
    }

    /// Takes a token if one is there at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_names_never_exceed_the_capacity() {
        let start = Instant::now();
        let mut map = BoundedTtlMap::new(10_000, Duration::from_secs(60));
        for i in 0..1_000_000u32 {
            map.insert(format!("ns/name-{i}"), (), start);
            assert!(map.len() <= 10_000);
        }
        assert_eq!(map.len(), 10_000);
        assert!(map.queue_len() <= 20_001);
        // The newest are kept, the oldest evicted.
        assert!(map.contains(&"ns/name-999999".to_owned(), start));
        assert!(!map.contains(&"ns/name-0".to_owned(), start));
    }

    #[test]
    fn refreshing_one_key_keeps_the_queue_bounded() {
        let start = Instant::now();
        let mut map = BoundedTtlMap::new(3, Duration::from_secs(60));
        for _ in 0..1000 {
            map.insert("a", 1, start);
        }
        assert_eq!(map.len(), 1);
        assert!(map.queue_len() <= 7);
        map.insert("b", 2, start);
        map.insert("c", 3, start);
        map.insert("d", 4, start);
        // `a` was inserted (refreshed) first of the four.
        assert!(!map.contains(&"a", start));
        assert_eq!(map.get(&"d", start), Some(&4));
    }

    #[test]
    fn entries_expire() {
        let start = Instant::now();
        let mut map = BoundedTtlMap::new(10, Duration::from_secs(30));
        map.insert("missing", (), start);
        assert!(map.contains(&"missing", start + Duration::from_secs(29)));
        assert!(!map.contains(&"missing", start + Duration::from_secs(30)));
        assert!(map.is_empty());
    }

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20, 40, start);
        let taken = (0..100).filter(|_| bucket.try_take(start)).count();
        assert_eq!(taken, 40);
        let later = start + Duration::from_millis(500);
        let taken = (0..100).filter(|_| bucket.try_take(later)).count();
        assert_eq!(taken, 10);
        // Never more than the burst, however long it rested.
        let much_later = start + Duration::from_secs(3600);
        let taken = (0..100).filter(|_| bucket.try_take(much_later)).count();
        assert_eq!(taken, 40);
    }
}
