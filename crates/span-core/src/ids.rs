//! Trace and span id generation (seeded by the caller: no clock, no OS RNG).

use crate::span::{SpanId, TraceId};

/// xoshiro256** seeded through splitmix64. Deterministic for a seed, which
/// makes replays reproducible; the live agent seeds it from the OS.
#[derive(Clone, Debug)]
pub struct IdGenerator {
    s: [u64; 4],
}

impl IdGenerator {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        IdGenerator {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A non-zero span id.
    pub fn span_id(&mut self) -> SpanId {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return SpanId(v);
            }
        }
    }

    /// A non-zero trace id.
    pub fn trace_id(&mut self) -> TraceId {
        loop {
            let v = ((self.next_u64() as u128) << 64) | self.next_u64() as u128;
            if v != 0 {
                return TraceId(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_distinct() {
        let mut a = IdGenerator::new(42);
        let mut b = IdGenerator::new(42);
        let xs: Vec<_> = (0..1000).map(|_| a.span_id()).collect();
        let ys: Vec<_> = (0..1000).map(|_| b.span_id()).collect();
        assert_eq!(xs, ys);
        let set: std::collections::HashSet<_> = xs.iter().collect();
        assert_eq!(set.len(), 1000);
        assert_ne!(
            IdGenerator::new(1).trace_id(),
            IdGenerator::new(2).trace_id()
        );
    }
}
