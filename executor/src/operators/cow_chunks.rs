//! A vector in fixed-size chunks shared copy-on-write: cloning it clones
//! one pointer per chunk, and a write copies only the chunk it lands in
//! if a clone still shares it. A partition's keys rarely change once its
//! key space is known, so a copy taken for a snapshot costs almost nothing
//! and shares nearly all of its memory with the live state.

use std::ops::Index;
use std::sync::Arc;

/// Elements per chunk: a copy-on-write copies at most this many.
const CHUNK: usize = 4096;

/// A growable vector of `T` in shared chunks.
#[derive(Debug, Clone)]
pub struct CowChunks<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for CowChunks<T> {
    fn default() -> Self {
        CowChunks {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> CowChunks<T> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Makes room for `additional` more elements' chunk pointers.
    pub fn reserve(&mut self, additional: usize) {
        self.chunks.reserve(additional.div_ceil(CHUNK));
    }

    /// Appends `value`.
    pub fn push(&mut self, value: T) {
        if self.len % CHUNK == 0 {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        Arc::make_mut(last).push(value);
        self.len += 1;
    }

    /// Replaces the element at `i`, returning the old one.
    ///
    /// Panics if `i` is out of bounds, as slice indexing does.
    pub fn replace(&mut self, i: usize, value: T) -> T {
        let chunk = Arc::make_mut(&mut self.chunks[i / CHUNK]);
        std::mem::replace(&mut chunk[i % CHUNK], value)
    }
}

impl<T> Index<usize> for CowChunks<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_vector() {
        let mut v = CowChunks::default();
        assert_eq!(v.len(), 0);
        for i in 0..(3 * CHUNK + 5) {
            v.push(i);
        }
        assert_eq!(v.len(), 3 * CHUNK + 5);
        assert_eq!(v[CHUNK + 7], CHUNK + 7);
        assert_eq!(v.replace(2 * CHUNK, 1), 2 * CHUNK);
        assert_eq!(v[2 * CHUNK], 1);
        assert_eq!(v[3 * CHUNK + 4], 3 * CHUNK + 4);
    }

    #[test]
    fn a_clone_keeps_its_values_and_shares_untouched_chunks() {
        let mut v = CowChunks::default();
        for i in 0..(2 * CHUNK) {
            v.push(i);
        }
        let frozen = v.clone();
        v.replace(3, 99);
        v.push(7);
        assert_eq!(frozen[3], 3, "the clone does not see later writes");
        assert_eq!(frozen.len(), 2 * CHUNK);
        assert_eq!(v[3], 99);
        // Only the written chunk was copied; the second is still shared.
        assert!(!Arc::ptr_eq(&v.chunks[0], &frozen.chunks[0]));
        assert!(Arc::ptr_eq(&v.chunks[1], &frozen.chunks[1]));
    }
}
