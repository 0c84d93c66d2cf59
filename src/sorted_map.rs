//! [`SortedMap`] and [`SortedSet`]: ordered maps kept as one sorted `Vec`,
//! for a worker's small tables (paused requests, callouts in flight, refresh
//! groups, written slots) and the keys of a live answer.
//!
//! Why not `std`'s `BTreeMap`: the filter module pays for each `(K, V)` a
//! `BTreeMap` is instantiated with, about 7 KB of Wasm apiece (insertion with
//! node splits, removal with rebalancing, building from an iterator with a
//! stable sort); eight of them were 53 KB, a tenth of the module. These
//! tables hold a handful of entries, at most one per request paused or
//! callout in flight, where a sorted `Vec` (a binary search, then a
//! `memmove` of the entries after it) is as fast and a few hundred bytes per
//! instantiation. Under load the worst case is linear per insertion: the
//! engine boxes every value larger than a pointer (paused requests,
//! callouts, refresh groups), so an entry is 8 to 16 bytes on wasm32 and
//! even 10,000 requests paused on one worker shift 160 KB per insertion
//! (callouts are further bounded by the authority cluster's circuit
//! breaker, 1,024 requests by Envoy's default). Answers that could be long
//! are bounded before they are collected (`protocol::MAX_VERSION_KEYS`).
//!
//! Iteration is in ascending key order, as a `BTreeMap`'s: nothing a worker
//! does depends on a hash seed, so a simulation run replays exactly.

use std::borrow::Borrow;

/// A map with unique keys, iterated in ascending key order.
#[derive(Clone, PartialEq, Eq)]
pub struct SortedMap<K, V> {
    /// Strictly ascending by key.
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap { entries: Vec::new() }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub const fn new() -> Self {
        SortedMap { entries: Vec::new() }
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `key` to `value`; the value it replaces, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// The value at `key`, inserted from `make` first when absent (what
    /// `BTreeMap`'s `entry(key).or_insert_with(make)` does).
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (key, make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Keeps the entries `keep` answers `true` for, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }
}

/// Collects pairs; a key given twice keeps its last value, as
/// `BTreeMap::from_iter` does.
impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = SortedMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

/// Serialized as a JSON object in key order, as a `BTreeMap` is (the
/// authority's side; serde is not in the filter module).
#[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for SortedMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

/// A set of unique values, iterated in ascending order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedSet<K> {
    map: SortedMap<K, ()>,
}

impl<K> Default for SortedSet<K> {
    fn default() -> Self {
        SortedSet { map: SortedMap::default() }
    }
}

impl<K: Ord> SortedSet<K> {
    pub const fn new() -> Self {
        SortedSet { map: SortedMap::new() }
    }

    /// `true` when `key` was not in the set.
    pub fn insert(&mut self, key: K) -> bool {
        self.map.insert(key, ()).is_none()
    }

    /// `true` when `key` was in the set.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.remove(key).is_some()
    }

    pub fn contains<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A tiny deterministic generator (no proptest on wasm32).
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Every operation, in long random sequences, answers as `BTreeMap` does
    /// and leaves the same entries in the same order.
    #[test]
    fn behaves_as_a_btreemap() {
        for start in 1..=40u64 {
            let mut seed = start.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut ours: SortedMap<u16, u64> = SortedMap::new();
            let mut model: BTreeMap<u16, u64> = BTreeMap::new();
            for step in 0..2_000u64 {
                let r = next(&mut seed);
                let key = (r % 97) as u16;
                match (r >> 8) % 6 {
                    0 | 1 => assert_eq!(ours.insert(key, step), model.insert(key, step)),
                    2 => assert_eq!(ours.remove(&key), model.remove(&key)),
                    3 if r & 0x1_0000 == 0 => {
                        *ours.get_or_insert_with(key, || step) += 1;
                        *model.entry(key).or_insert_with(|| step) += 1;
                    }
                    3 => {
                        if let (Some(a), Some(b)) = (ours.get_mut(&key), model.get_mut(&key)) {
                            *a += 1;
                            *b += 1;
                        }
                    }
                    4 => {
                        let cut = r >> 16;
                        ours.retain(|k, v| (u64::from(*k) + *v + cut) % 5 != 0);
                        model.retain(|k, v| (u64::from(*k) + *v + cut) % 5 != 0);
                    }
                    _ => {
                        assert_eq!(ours.get(&key), model.get(&key));
                        assert_eq!(ours.contains_key(&key), model.contains_key(&key));
                    }
                }
                assert_eq!(ours.len(), model.len());
                assert_eq!(ours.is_empty(), model.is_empty());
            }
            assert!(ours.iter().eq(model.iter()), "seed {start}: same entries, same order");
            assert!(ours.keys().eq(model.keys()));
            assert!(ours.values().eq(model.values()));
        }
    }

    #[test]
    fn a_set_behaves_as_a_btreeset() {
        let mut seed = 7u64;
        let mut ours: SortedSet<u8> = SortedSet::new();
        let mut model: BTreeSet<u8> = BTreeSet::new();
        for _ in 0..5_000 {
            let r = next(&mut seed);
            let key = (r % 31) as u8;
            if r & 0x100 == 0 {
                assert_eq!(ours.insert(key), model.insert(key));
            } else {
                assert_eq!(ours.remove(&key), model.remove(&key));
            }
            assert_eq!(ours.contains(&key), model.contains(&key));
            assert_eq!(ours.len(), model.len());
        }
    }

    #[test]
    fn collecting_keeps_the_last_value_of_a_repeated_key_as_btreemap_does() {
        let pairs = [("b", 1), ("a", 2), ("b", 3)];
        let ours: SortedMap<&str, i32> = pairs.into_iter().collect();
        let model: BTreeMap<&str, i32> = pairs.into_iter().collect();
        assert!(ours.iter().eq(model.iter()));
    }

    #[test]
    fn lookups_take_borrowed_keys() {
        let mut m: SortedMap<String, u64> = SortedMap::new();
        m.insert("sub:alice".to_string(), 3);
        assert_eq!(m.get("sub:alice"), Some(&3));
        assert!(m.contains_key("sub:alice"));
        assert_eq!(m.remove("sub:alice"), Some(3));
        assert!(m.is_empty());
    }
}
