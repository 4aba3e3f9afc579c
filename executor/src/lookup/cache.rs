//! A lookup step's cache on one executor: the values of recently looked-up
//! keys (and the keys found missing), each kept for the step's `ttl` and
//! evicted least recently used first once the cache holds `max_entries`
//! keys or [`MAX_CACHE_BYTES`].
//!
//! Times are passed in, so that tests need no clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_plan::lookup::Values;

/// The bytes one step's cache may hold on one executor, keys and values
/// counted (`max_lookup_cache_bytes`): `max_entries` alone does not bound
/// memory when values are large.
pub const MAX_CACHE_BYTES: usize = 256 << 20;

/// What the cache knows of a key: its values, or that it is missing.
pub type Cached = Option<Arc<Values>>;

/// One cached key.
#[derive(Debug)]
struct Slot {
    name: Arc<str>,
    value: Cached,
    expires: Instant,
    /// The key's place in the recency order.
    tick: u64,
    bytes: usize,
}

/// An LRU cache with a time to live.
#[derive(Debug)]
pub struct LookupCache {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    slots: HashMap<Arc<str>, Slot>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, Arc<str>>,
    next_tick: u64,
    bytes: usize,
}

impl LookupCache {
    /// A cache keeping each key `ttl` and at most `max_entries` keys and
    /// `max_bytes` bytes.
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> Self {
        LookupCache {
            ttl,
            max_entries: max_entries.max(1),
            max_bytes,
            slots: HashMap::new(),
            order: BTreeMap::new(),
            next_tick: 0,
            bytes: 0,
        }
    }

    /// What the cache holds for `key` at `now`, if it holds it and it has
    /// not expired; a hit makes the key the most recently used.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Cached> {
        if self.slots.get(key)?.expires <= now {
            self.remove(key);
            return None;
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        let slot = self.slots.get_mut(key)?;
        self.order.remove(&slot.tick);
        slot.tick = tick;
        self.order.insert(tick, slot.name.clone());
        Some(slot.value.clone())
    }

    /// Keeps `value` for `key` from `now` on, evicting the least recently
    /// used keys beyond the limits. A value larger than the whole byte
    /// budget is not kept.
    pub fn put(&mut self, key: &str, value: Cached, now: Instant) {
        let bytes = entry_bytes(key, &value);
        self.remove(key);
        if bytes > self.max_bytes {
            return;
        }
        let name: Arc<str> = Arc::from(key);
        let tick = self.next_tick;
        self.next_tick += 1;
        self.order.insert(tick, name.clone());
        self.slots.insert(
            name.clone(),
            Slot {
                name,
                value,
                expires: now + self.ttl,
                tick,
                bytes,
            },
        );
        self.bytes += bytes;
        while self.slots.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.slots.remove(&oldest) {
                self.bytes -= slot.bytes;
            }
        }
    }

    /// Keys held (expired ones included until they are met or evicted).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held, as [`MAX_CACHE_BYTES`] counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.slots.remove(key) {
            self.order.remove(&slot.tick);
            self.bytes -= slot.bytes;
        }
    }
}

/// What an entry costs: its key and values, and a fixed overhead for the
/// maps' nodes.
fn entry_bytes(key: &str, value: &Cached) -> usize {
    const OVERHEAD: usize = 96;
    let values = value.as_ref().map_or(0, |v| {
        v.iter()
            .map(|s| std::mem::size_of::<Option<String>>() + s.as_ref().map_or(0, String::len))
            .sum()
    });
    OVERHEAD + 2 * key.len() + values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Cached {
        Some(Arc::new(vec![Some(text.to_string())]))
    }

    #[test]
    fn entries_live_for_the_ttl() {
        let t0 = Instant::now();
        let mut c = LookupCache::new(Duration::from_secs(10), 100, MAX_CACHE_BYTES);
        c.put("a", v("1"), t0);
        c.put("gone", None, t0);
        assert_eq!(c.get("a", t0 + Duration::from_secs(9)), Some(v("1")));
        assert_eq!(
            c.get("gone", t0 + Duration::from_secs(9)),
            Some(None),
            "a missing key is cached as missing"
        );
        assert_eq!(c.get("a", t0 + Duration::from_secs(10)), None, "expired");
        assert_eq!(c.len(), 1, "an expired entry is dropped when met");
        assert_eq!(c.get("b", t0), None);
        // Putting again restarts the ttl.
        c.put("gone", v("2"), t0 + Duration::from_secs(5));
        assert_eq!(c.get("gone", t0 + Duration::from_secs(14)), Some(v("2")));
    }

    #[test]
    fn the_least_recently_used_key_goes_first() {
        let t = Instant::now();
        let mut c = LookupCache::new(Duration::from_secs(60), 3, MAX_CACHE_BYTES);
        for k in ["a", "b", "c"] {
            c.put(k, v(k), t);
        }
        // "a" is used again: "b" is now the oldest.
        assert!(c.get("a", t).is_some());
        c.put("d", v("d"), t);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("b", t), None);
        for k in ["a", "c", "d"] {
            assert_eq!(c.get(k, t), Some(v(k)), "{k}");
        }
        // Replacing a key does not grow the cache.
        c.put("a", v("new"), t);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("a", t), Some(v("new")));
    }

    #[test]
    fn bytes_are_bounded_too() {
        let t = Instant::now();
        let one = entry_bytes("k0", &v(&"x".repeat(1000)));
        let mut c = LookupCache::new(Duration::from_secs(60), 1_000, 3 * one);
        for i in 0..10 {
            c.put(&format!("k{i}"), v(&"x".repeat(1000)), t);
            assert!(c.bytes() <= 3 * one, "{} bytes", c.bytes());
        }
        assert_eq!(c.len(), 3);
        assert!(c.get("k9", t).is_some() && c.get("k6", t).is_none());
        // A value over the whole budget is not kept, and evicts nothing.
        c.put("huge", v(&"x".repeat(10_000)), t);
        assert_eq!(c.get("huge", t), None);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn bookkeeping_stays_consistent() {
        let t = Instant::now();
        let mut c = LookupCache::new(Duration::from_millis(5), 7, 4_000);
        for i in 0..2_000u64 {
            let key = format!("k{}", (i * 7919) % 23);
            let now = t + Duration::from_millis(i % 13);
            if i % 3 == 0 {
                c.get(&key, now);
            } else {
                c.put(&key, if i % 5 == 0 { None } else { v(&key) }, now);
            }
            assert!(c.len() <= 7);
            assert_eq!(c.len(), c.order.len());
            let counted: usize = c.slots.values().map(|s| s.bytes).sum();
            assert_eq!(counted, c.bytes());
            assert!(c.bytes() <= 4_000);
        }
    }
}
