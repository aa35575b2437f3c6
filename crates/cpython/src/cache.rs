//! A cache bounded both by entries and by bytes, for what is read from a
//! target and kept between samples (code objects, method names, endpoint
//! names). A target that keeps making new objects (exec, eval, templates
//! compiled per request, threads started every millisecond) must not grow
//! pyrometer's memory without limit, however large each object is.
//!
//! Two generations: entries go into the young one; when it holds its
//! limit of entries or bytes, the old generation is dropped and the young
//! one becomes old. A hit in the old generation moves the entry back to
//! the young one. What is in use keeps its place, what is not is dropped
//! within two turns, and the cache never holds more than twice its limits.

use std::hash::Hash;

use rustc_hash::FxHashMap;

/// What an entry costs, roughly, in bytes of pyrometer's memory.
pub trait Weigh {
    /// Bytes held by the value, its heap allocations included.
    fn weigh(&self) -> usize;
}

impl Weigh for std::sync::Arc<str> {
    fn weigh(&self) -> usize {
        // Shared strings are counted in full at each holder: an upper bound.
        std::mem::size_of::<Self>() + self.len() + 16
    }
}

impl<A: Weigh, B> Weigh for (A, B) {
    fn weigh(&self) -> usize {
        self.0.weigh() + std::mem::size_of::<B>()
    }
}

/// A map bounded by entries and bytes (see the module docs).
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    young: FxHashMap<K, V>,
    old: FxHashMap<K, V>,
    young_bytes: usize,
    old_bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// Times a generation was dropped.
    pub turns: u64,
}

impl<K: Hash + Eq + Copy, V: Weigh> BoundedMap<K, V> {
    /// A map that keeps about `max_entries` entries and `max_bytes` bytes
    /// (each at most twice that).
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        BoundedMap {
            young: FxHashMap::default(),
            old: FxHashMap::default(),
            young_bytes: 0,
            old_bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes: max_bytes.max(1),
            turns: 0,
        }
    }

    /// The entry for `key`, if cached (an old entry is made young again).
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.get_mut(key).map(|v| &*v)
    }

    /// The entry for `key` to update in place, if cached (an old entry is
    /// made young again). Unlike [`BoundedMap::insert`], the entry keeps its
    /// weight: the caller must not change what it weighs.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.young.contains_key(key) {
            let v = self.old.remove(key)?;
            let w = v.weigh();
            self.old_bytes = self.old_bytes.saturating_sub(w);
            self.insert_weighed(*key, v, w);
        }
        self.young.get_mut(key)
    }

    /// Whether `key` is cached (nothing moves).
    pub fn contains_key(&self, key: &K) -> bool {
        self.young.contains_key(key) || self.old.contains_key(key)
    }

    /// Cache `value` under `key`.
    pub fn insert(&mut self, key: K, value: V) {
        self.remove(&key);
        let w = value.weigh();
        self.insert_weighed(key, value, w);
    }

    fn insert_weighed(&mut self, key: K, value: V, weight: usize) {
        if self.young.len() >= self.max_entries
            || self.young_bytes.saturating_add(weight) > self.max_bytes
        {
            self.old = std::mem::take(&mut self.young);
            self.old_bytes = std::mem::replace(&mut self.young_bytes, 0);
            self.turns += 1;
        }
        if weight > self.max_bytes {
            // Larger than the whole budget: not kept at all.
            return;
        }
        self.young_bytes += weight;
        self.young.insert(key, value);
    }

    /// Drop the entry for `key`.
    pub fn remove(&mut self, key: &K) {
        if let Some(v) = self.young.remove(key) {
            self.young_bytes = self.young_bytes.saturating_sub(v.weigh());
        }
        if let Some(v) = self.old.remove(key) {
            self.old_bytes = self.old_bytes.saturating_sub(v.weigh());
        }
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
        self.young_bytes = 0;
        self.old_bytes = 0;
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, as the values weigh themselves.
    pub fn bytes(&self) -> usize {
        self.young_bytes + self.old_bytes
    }

    /// The limits: (entries, bytes) per generation.
    pub fn limits(&self) -> (usize, usize) {
        (self.max_entries, self.max_bytes)
    }

    /// Change the limits (what is held is dropped).
    pub fn set_limits(&mut self, max_entries: usize, max_bytes: usize) {
        self.max_entries = max_entries.max(1);
        self.max_bytes = max_bytes.max(1);
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn get_mut_updates_in_place_and_makes_old_entries_young() {
        let mut m: BoundedMap<u64, (Arc<str>, u64)> = BoundedMap::new(2, 1 << 20);
        m.insert(1, (Arc::from("a"), 0));
        m.insert(2, (Arc::from("b"), 0));
        // A third entry turns the generation: 1 and 2 are old now.
        m.insert(3, (Arc::from("c"), 0));
        let bytes = m.bytes();
        m.get_mut(&1).expect("cached").1 = 7;
        assert_eq!(m.get(&1).map(|v| v.1), Some(7));
        assert_eq!(m.bytes(), bytes, "moving an entry keeps its weight");
        assert!(m.get_mut(&9).is_none());
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn bounded_by_entries_and_bytes_and_keeps_what_is_used() {
        let mut m: BoundedMap<u64, Arc<str>> = BoundedMap::new(100, 1 << 20);
        let hot: Arc<str> = Arc::from("hot");
        m.insert(0, hot.clone());
        for k in 1..100_000u64 {
            m.insert(k, Arc::from(format!("value {k}")));
            // The hot entry is used all along: it stays.
            assert!(m.get(&0).is_some(), "the hot entry was dropped at {k}");
            assert!(m.len() <= 200, "{} entries", m.len());
        }
        assert!(m.turns > 100);
        // Bytes: few large values.
        let mut m: BoundedMap<u64, Arc<str>> = BoundedMap::new(1_000_000, 100_000);
        let big = "x".repeat(10_000);
        for k in 0..1_000u64 {
            m.insert(k, Arc::from(big.as_str()));
            assert!(m.bytes() <= 200_000, "{} bytes", m.bytes());
        }
        assert!(m.len() <= 20, "{}", m.len());
        // A value larger than the budget is not kept.
        m.insert(5_000, Arc::from("y".repeat(200_000).as_str()));
        assert!(!m.contains_key(&5_000));
        // Replacing and removing keep the byte count right.
        m.clear();
        m.insert(1, Arc::from("abc"));
        m.insert(1, Arc::from("abcdef"));
        assert_eq!(m.len(), 1);
        m.remove(&1);
        assert_eq!((m.len(), m.bytes()), (0, 0));
    }
}
