//! A small in-process cache whose entries expire a fixed time after they
//! were stored: answers of other services that may be a few seconds stale.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept before expired ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// A map whose entries expire `ttl` after they were stored.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached values, and the keys that were missing.
    pub fn get_many<'k>(&self, keys: impl IntoIterator<Item = &'k K>) -> (HashMap<K, V>, Vec<K>)
    where
        K: 'k,
    {
        let now = Instant::now();
        let entries = self.lock();
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for key in keys {
            match entries.get(key) {
                Some((stored, value)) if now.duration_since(*stored) < self.ttl => {
                    found.insert(key.clone(), value.clone());
                }
                _ => missing.push(key.clone()),
            }
        }
        (found, missing)
    }

    pub fn put_many(&self, values: impl IntoIterator<Item = (K, V)>) {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() > PRUNE_ABOVE {
            entries.retain(|_, (stored, _)| now.duration_since(*stored) < self.ttl);
        }
        entries.extend(values.into_iter().map(|(key, value)| (key, (now, value))));
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.get_many([key]).0.remove(key)
    }

    pub fn put(&self, key: K, value: V) {
        self.put_many([(key, value)]);
    }
}
