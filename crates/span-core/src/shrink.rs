//! Giving back what a burst grew a table to.
//!
//! Vectors, queues and hash tables keep the capacity of their peak. After
//! a 10-second burst at ~120k requests/s the agent's heap stayed at 80-136
//! MiB (benches/burst_memory.sh): the reorder window, the request-timeout
//! queue, the span table and the check queues sized for the burst. The
//! assembler's periodic sweep (every 10 s of event time) shrinks each one
//! that holds less than a quarter of its capacity to twice what it holds.

use std::collections::{BinaryHeap, VecDeque};
use std::hash::{BuildHasher, Hash};

/// Capacity below which a table is left as it is.
const MIN: usize = 1024;

#[inline]
fn oversized(capacity: usize, len: usize) -> bool {
    capacity > MIN && capacity / 4 > len
}

pub(crate) fn deque<T>(v: &mut VecDeque<T>) {
    if oversized(v.capacity(), v.len()) {
        v.shrink_to(2 * v.len());
    }
}

pub(crate) fn heap<T: Ord>(h: &mut BinaryHeap<T>) {
    if oversized(h.capacity(), h.len()) {
        h.shrink_to(2 * h.len());
    }
}

pub(crate) fn map<K: Eq + Hash, V, S: BuildHasher>(m: &mut hashbrown::HashMap<K, V, S>) {
    if oversized(m.capacity(), m.len()) {
        m.shrink_to(2 * m.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_far_below_its_peak_shrinks_and_keeps_its_entries() {
        let mut q: VecDeque<u32> = (0..100_000).collect();
        q.drain(..99_000);
        deque(&mut q);
        assert!(q.capacity() < 4_000, "{}", q.capacity());
        assert!(q.iter().copied().eq(99_000..100_000));
        let mut m: hashbrown::HashMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
        m.retain(|k, _| *k < 500);
        map(&mut m);
        assert!(m.capacity() < 4_000, "{}", m.capacity());
        assert_eq!(m.get(&499), Some(&499));
        let mut h: BinaryHeap<u32> = (0..100_000).collect();
        while h.len() > 10 {
            h.pop();
        }
        heap(&mut h);
        assert!(h.capacity() < 4_000);
        assert_eq!(h.peek(), Some(&9));
        // A table near its peak, or a small one, is left alone.
        let mut busy: VecDeque<u32> = (0..100_000).collect();
        busy.drain(..50_000);
        let cap = busy.capacity();
        deque(&mut busy);
        assert_eq!(busy.capacity(), cap);
    }
}
