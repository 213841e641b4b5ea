//! Latency histograms of the graph stage.
//!
//! - [`LogHist`]: quantiles for the graph (p50, p95, p99). Buckets are
//!   HDR-style: each power of two of nanoseconds is cut into 16 equal
//!   parts, so a bucket is at most 1/16 of its lower bound wide and the
//!   midpoint it reports is within 3.2% of any value in it. Sparse: only
//!   buckets that were hit take memory (a few dozen for a real edge).
//! - [`FixedHist`]: the explicit-bounds histogram Prometheus and OTLP
//!   expose (counts per bucket, sum, count).

/// Sub-buckets per power of two (a power of two itself).
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;

/// The bucket of `ns`.
fn index(ns: u64) -> u16 {
    if ns < SUB {
        return ns as u16;
    }
    let msb = 63 - ns.leading_zeros();
    let sub = (ns >> (msb - SUB_BITS)) & (SUB - 1);
    ((msb - SUB_BITS + 1) as u64 * SUB + sub) as u16
}

/// `[low, high)` of bucket `i`.
fn bounds(i: u16) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i + 1);
    }
    let octave = i / SUB - 1; // shift applied to (SUB + sub)
    let sub = i % SUB;
    ((SUB + sub) << octave, (SUB + sub + 1) << octave)
}

/// A sparse log-bucketed histogram of nanosecond durations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogHist {
    /// (bucket, count), sorted by bucket.
    buckets: Vec<(u16, u32)>,
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
}

impl LogHist {
    pub fn record(&mut self, ns: u64) {
        let i = index(ns);
        match self.buckets.binary_search_by_key(&i, |b| b.0) {
            Ok(p) => self.buckets[p].1 = self.buckets[p].1.saturating_add(1),
            Err(p) => self.buckets.insert(p, (i, 1)),
        }
        if self.count == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        self.max_ns = self.max_ns.max(ns);
        self.count += 1;
        self.sum_ns += ns as u128;
    }

    /// Add every value of `other`.
    pub fn merge(&mut self, other: &LogHist) {
        if other.count == 0 {
            return;
        }
        for &(i, n) in &other.buckets {
            match self.buckets.binary_search_by_key(&i, |b| b.0) {
                Ok(p) => self.buckets[p].1 = self.buckets[p].1.saturating_add(n),
                Err(p) => self.buckets.insert(p, (i, n)),
            }
        }
        if self.count == 0 || other.min_ns < self.min_ns {
            self.min_ns = other.min_ns;
        }
        self.max_ns = self.max_ns.max(other.max_ns);
        self.count += other.count;
        self.sum_ns += other.sum_ns;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean in nanoseconds (0 when empty).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// The `q` quantile (0..=1) in nanoseconds: the midpoint of the bucket
    /// holding the value of rank ceil(q * count), clamped to the smallest
    /// and largest values seen; the largest value itself when that rank is
    /// the last. 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank >= self.count {
            return self.max_ns as f64;
        }
        let mut seen = 0u64;
        for &(i, n) in &self.buckets {
            seen += n as u64;
            if seen >= rank {
                let (lo, hi) = bounds(i);
                let mid = (lo as f64 + hi as f64) / 2.0;
                return mid.clamp(self.min_ns as f64, self.max_ns as f64);
            }
        }
        self.max_ns as f64
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u16, u32)>()
    }
}

/// Bucket upper bounds (seconds) of the service-graph histograms: the
/// OpenTelemetry servicegraph connector's defaults (2 ms to 15 s), with
/// 1 ms and finer steps from 10 to 50 ms added, where loopback and LAN
/// calls fall.
pub const GRAPH_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4,
    2.0, 5.0, 10.0, 15.0,
];

/// Bucket upper bounds (seconds) the OpenTelemetry semantic conventions
/// advise for `http.server.request.duration` and the other duration
/// metrics.
pub const SEMCONV_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// An explicit-bounds histogram: `counts[i]` values `<= bounds[i]` (and
/// above the bound before), `counts[bounds.len()]` values above the last.
#[derive(Clone, Debug, PartialEq)]
pub struct FixedHist {
    pub bounds: &'static [f64],
    pub counts: Box<[u64]>,
    pub sum_s: f64,
    pub count: u64,
}

impl FixedHist {
    pub fn new(bounds: &'static [f64]) -> Self {
        FixedHist {
            bounds,
            counts: vec![0; bounds.len() + 1].into_boxed_slice(),
            sum_s: 0.0,
            count: 0,
        }
    }

    pub fn record_ns(&mut self, ns: u64) {
        let s = ns as f64 / 1e9;
        let i = self.bounds.partition_point(|b| *b < s);
        self.counts[i] += 1;
        self.sum_s += s;
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_and_stay_narrow() {
        let mut last = 0u16;
        for ns in (0..5000u64).chain([1 << 20, 123_456_789, u64::MAX / 3, u64::MAX]) {
            let i = index(ns);
            let (lo, hi) = bounds(i);
            assert!(
                lo <= ns && (ns < hi || hi < lo),
                "{ns} not in [{lo},{hi}) of {i}"
            );
            if ns < 5000 {
                assert!(i >= last);
                last = i;
            }
            if lo >= SUB && hi > lo {
                assert!((hi - lo) * SUB <= lo, "bucket {i} too wide");
            }
        }
    }

    #[test]
    fn quantiles_within_the_bucket_error() {
        let mut h = LogHist::default();
        for v in 1..=1000u64 {
            h.record(v * 1_000_000); // 1..1000 ms
        }
        for (q, want) in [(0.5, 500e6), (0.95, 950e6), (0.99, 990e6)] {
            let got = h.quantile_ns(q);
            assert!((got - want).abs() / want < 0.033, "q{q}: {got} vs {want}");
        }
        assert!((h.mean_ns() - 500.5e6).abs() < 1.0);
        let mut one = LogHist::default();
        one.record(12_345_678);
        assert_eq!(one.quantile_ns(0.99), 12_345_678.0);
        assert_eq!(LogHist::default().quantile_ns(0.5), 0.0);
    }

    #[test]
    fn merge_is_recording_both() {
        let (mut a, mut b, mut both) = (LogHist::default(), LogHist::default(), LogHist::default());
        for v in [5u64, 70, 900, 12_000_000] {
            a.record(v);
            both.record(v);
        }
        for v in [6u64, 71_000, 3] {
            b.record(v);
            both.record(v);
        }
        a.merge(&b);
        assert_eq!(a, both);
    }

    #[test]
    fn fixed_buckets_are_upper_inclusive() {
        let mut h = FixedHist::new(&[0.001, 0.01]);
        for ns in [1_000_000, 1_000_001, 10_000_000, 20_000_000] {
            h.record_ns(ns);
        }
        assert_eq!(&*h.counts, &[1, 2, 1]);
        assert_eq!(h.count, 4);
    }
}
