//! A small log-linear latency histogram: bounded size, ~3% relative error.

/// Sub-buckets per power of two (2^SUB_BITS).
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered above the linear range: up to 2^44 ns (~4.9 h).
const TOP_BIT: u32 = 44;
const BUCKETS: usize = SUB + (TOP_BIT - SUB_BITS) as usize * SUB;

/// Durations in nanoseconds, bucketed. Values below 16 ns are exact, above
/// that each bucket spans 1/16 of its power of two (values are reported as
/// the bucket's midpoint, at most ~3% off). Longer than ~4.9 h counts as the
/// top bucket.
#[derive(Clone)]
pub struct LatencyHist {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl std::fmt::Debug for LatencyHist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHist")
            .field("count", &self.total)
            .field("max_ns", &self.max_ns)
            .finish()
    }
}

fn index(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let bit = 63 - ns.leading_zeros(); // >= SUB_BITS
    if bit >= TOP_BIT {
        return BUCKETS - 1;
    }
    let sub = ((ns >> (bit - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (bit - SUB_BITS) as usize * SUB + sub
}

/// The midpoint of bucket `i`.
fn value(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let bit = (i - SUB) / SUB + SUB_BITS as usize;
    let sub = ((i - SUB) % SUB) as u64;
    let width = 1u64 << (bit - SUB_BITS as usize);
    let low = (1u64 << bit) + sub * width;
    low + width / 2
}

impl LatencyHist {
    pub fn record(&mut self, ns: u64) {
        let c = &mut self.counts[index(ns)];
        *c = c.saturating_add(1);
        self.total += 1;
        self.sum_ns += ns as u128;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn mean_ns(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            (self.sum_ns / self.total as u128) as u64
        }
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The `q` quantile (0..=1), 0 when empty; never above the maximum seen.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += *c as u64;
            if seen >= rank {
                return value(i).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_bucket_error() {
        let mut h = LatencyHist::default();
        for ms in 1..=100u64 {
            h.record(ms * 1_000_000);
        }
        for (q, want) in [(0.5, 50e6), (0.95, 95e6), (0.99, 99e6)] {
            let got = h.quantile_ns(q) as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.mean_ns(), 50_500_000);
        assert_eq!(h.max_ns(), 100_000_000);
    }

    #[test]
    fn extremes_do_not_panic() {
        let mut h = LatencyHist::default();
        assert_eq!(h.quantile_ns(0.5), 0);
        for ns in [0, 1, 15, 16, 17, u64::MAX] {
            h.record(ns);
        }
        assert_eq!(h.quantile_ns(0.0), 0);
        assert_eq!(h.quantile_ns(1.0), value(BUCKETS - 1));
        for i in 0..BUCKETS {
            assert_eq!(index(value(i)), i, "bucket {i}");
        }
    }
}
