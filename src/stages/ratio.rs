//! Trace-id ratio sampling: a pure function of the trace id and a ratio, so
//! every span of a trace, every stage and every agent (and every
//! OpenTelemetry SDK using the same rule) reaches the same decision.
//!
//! OpenTelemetry's specification of `TraceIdRatioBased` (trace/sdk.md) asks
//! for a deterministic decision that is monotonic in the ratio (a trace kept
//! at ratio r is kept at every r' >= r) but leaves the function itself open
//! (issue #1413), and the SDKs differ. Two rules are offered:
//!
//! - [`RatioAlgorithm::TraceIdRatio`] (default), the Go SDK's
//!   (`sdk/trace/sampling.go`): the trace id's last 8 bytes read big-endian,
//!   shifted right by one, kept when below `floor(ratio * 2^63)`. That is
//!   "the low 64 bits, as an unsigned number, below ratio * 2^64", which is
//!   also the Python SDK's rule (up to rounding of the bound's last bit).
//!   The Java SDK compares `|signed low 64 bits| < ratio * Long.MAX_VALUE`
//!   instead: the same fraction, a different set of traces, so a fleet
//!   mixing zt-trace with Java SDKs' own ratio decisions should let the
//!   services' `traceparent` sampled flag decide (parent-based sampling).
//! - [`RatioAlgorithm::Threshold`]: the consistent probability sampling of
//!   W3C Trace Context Level 2 and OpenTelemetry's
//!   `tracestate-probability-sampling.md` (OTEP 235): randomness R is the
//!   trace id's last 7 bytes (56 bits), the rejection threshold T is
//!   `(1 - ratio) * 2^56` rounded as the specification's
//!   `probability_to_threshold_with_precision` does at its recommended
//!   precision (4 hex digits, more for small ratios), and a trace is kept
//!   when `R >= T`. SDKs that implement it write T as `th` in the `ot`
//!   tracestate entry; a ratio here gives the same T as theirs.
//!
//! The two rules keep opposite ends of the id space (small low bits versus
//! large ones): pick the one the rest of the fleet uses.

use span_core::TraceId;
use std::fmt;

/// How a ratio becomes a decision from a trace id (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RatioAlgorithm {
    /// OpenTelemetry Go (and Python) SDK `TraceIdRatioBased`.
    #[default]
    TraceIdRatio,
    /// W3C Trace Context Level 2 randomness vs. rejection threshold (`th`).
    Threshold,
}

impl RatioAlgorithm {
    pub const ALL: [RatioAlgorithm; 2] = [RatioAlgorithm::TraceIdRatio, RatioAlgorithm::Threshold];

    pub fn as_str(self) -> &'static str {
        match self {
            RatioAlgorithm::TraceIdRatio => "traceidratio",
            RatioAlgorithm::Threshold => "threshold",
        }
    }
}

impl fmt::Display for RatioAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RatioAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RatioAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown sampling algorithm {s:?} (traceidratio or threshold)"))
    }
}

/// A ratio outside [0, 1] (or not a number).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sampling ratio {0} is not a number from 0.0 to 1.0")]
pub struct BadRatio(pub f64);

/// `2^56`: the exclusive upper limit of thresholds and randomness values.
const MAX_THRESHOLD: u64 = 1 << 56;

/// A ratio, prepared for one algorithm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceIdRatio {
    ratio: f64,
    algorithm: RatioAlgorithm,
    /// `TraceIdRatio`: keep when `low64 >> 1 < bound`. `Threshold`: keep
    /// when `low56 >= bound` (the rejection threshold; `MAX_THRESHOLD`
    /// keeps nothing).
    bound: u64,
}

impl TraceIdRatio {
    pub fn new(ratio: f64, algorithm: RatioAlgorithm) -> Result<TraceIdRatio, BadRatio> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(BadRatio(ratio));
        }
        let bound = match algorithm {
            // Go: `uint64(fraction * (1 << 63))`; 1.0 keeps everything
            // (handled in `keeps`).
            RatioAlgorithm::TraceIdRatio => (ratio * (1u64 << 63) as f64) as u64,
            RatioAlgorithm::Threshold => rejection_threshold(ratio),
        };
        Ok(TraceIdRatio {
            ratio,
            algorithm,
            bound,
        })
    }

    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    pub fn algorithm(&self) -> RatioAlgorithm {
        self.algorithm
    }

    /// The rejection threshold (56 bits) of the `Threshold` algorithm.
    pub fn threshold(&self) -> Option<u64> {
        (self.algorithm == RatioAlgorithm::Threshold).then_some(self.bound)
    }

    /// Whether the trace is kept.
    #[inline]
    pub fn keeps(&self, trace_id: TraceId) -> bool {
        let low64 = trace_id.0 as u64;
        match self.algorithm {
            RatioAlgorithm::TraceIdRatio => self.ratio >= 1.0 || (low64 >> 1) < self.bound,
            RatioAlgorithm::Threshold => (low64 & (MAX_THRESHOLD - 1)) >= self.bound,
        }
    }
}

/// The rejection threshold of `probability`, rounded as OpenTelemetry's
/// `probability_to_threshold_with_precision(probability, 4)` does
/// (tracestate-probability-sampling.md): 4 hex digits, one more per 4
/// halvings of the probability, at most 12; round half up. 0 keeps
/// everything; `2^56` keeps nothing (probability 0, or below 2^-56).
fn rejection_threshold(probability: f64) -> u64 {
    if probability >= 1.0 {
        return 0;
    }
    if probability < 1.0 / MAX_THRESHOLD as f64 {
        return MAX_THRESHOLD;
    }
    // frexp: probability = m * 2^exp with m in [0.5, 1); exp <= 0 here.
    let exp = ((probability.to_bits() >> 52) & 0x7ff) as i32 - 1022;
    let precision = (4 + (-exp) / 4).clamp(1, 12);
    let scale = 16f64.powi(precision);
    // As the specification computes it, float operation for float
    // operation: 1 + the rejection probability, plus half the last kept
    // hex digit, then the first `precision` hex digits of its fraction
    // (`r - 1.0` and the scaling are exact).
    let r = 2.0 - probability + 0.5 / scale;
    let digits = if r >= 2.0 {
        scale as u64 - 1
    } else {
        ((r - 1.0) * scale).floor() as u64
    };
    digits << (4 * (14 - precision))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_low(low64: u64) -> TraceId {
        TraceId((0x0123_4567_89ab_cdef_u128 << 64) | low64 as u128)
    }

    #[test]
    fn go_sdk_bound_and_comparison() {
        // Go: traceIDUpperBound = uint64(0.5 * (1 << 63)) = 2^62; the low
        // 8 bytes shifted right once must be below it.
        let s = TraceIdRatio::new(0.5, RatioAlgorithm::TraceIdRatio).unwrap();
        assert_eq!(s.bound, 1 << 62);
        assert!(s.keeps(id_low((1 << 63) - 1))); // >> 1 = 2^62 - 1
        assert!(!s.keeps(id_low(1 << 63))); // >> 1 = 2^62
        assert!(s.keeps(id_low(0)));
        // Only the low 64 bits count.
        assert_eq!(s.keeps(TraceId(u128::MAX << 64)), s.keeps(TraceId(1 << 64)));
        let all = TraceIdRatio::new(1.0, RatioAlgorithm::TraceIdRatio).unwrap();
        let none = TraceIdRatio::new(0.0, RatioAlgorithm::TraceIdRatio).unwrap();
        for low in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(all.keeps(id_low(low)));
            assert!(!none.keeps(id_low(low)));
        }
        // The worked example of the Go SDK: the trace id
        // 4bf92f3577b34da6a3ce929d0e0e4736 has low bytes a3ce929d0e0e4736,
        // >> 1 = 0x51e7494e8707239b, which is 0.6399 of 2^63: kept at 0.65,
        // not at 0.63.
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert!(TraceIdRatio::new(0.65, RatioAlgorithm::TraceIdRatio)
            .unwrap()
            .keeps(t));
        assert!(!TraceIdRatio::new(0.63, RatioAlgorithm::TraceIdRatio)
            .unwrap()
            .keeps(t));
    }

    #[test]
    fn thresholds_match_the_specification_table() {
        // tracestate-probability-sampling.md, precision 4 column:
        // probability -> th (trailing zeros dropped).
        let th = |p: f64| {
            let t = rejection_threshold(p);
            let h = format!("{t:014x}");
            let h = h.trim_end_matches('0');
            if h.is_empty() {
                "0".to_owned()
            } else {
                h.to_owned()
            }
        };
        assert_eq!(th(1.0), "0");
        assert_eq!(th(0.5), "8");
        assert_eq!(th(1.0 / 3.0), "aaab");
        assert_eq!(th(0.25), "c");
        assert_eq!(th(0.2), "cccd");
        assert_eq!(th(0.125), "e");
        assert_eq!(th(0.1), "e666");
        assert_eq!(th(0.0625), "f");
        assert_eq!(th(0.01), "fd70a");
        assert_eq!(th(0.001), "ffbe77");
        assert_eq!(th(0.0001), "fff9724");
        assert_eq!(th(0.00001), "ffff583a");
        assert_eq!(th(0.000001), "ffffef39");
        assert_eq!(rejection_threshold(0.0), MAX_THRESHOLD);
    }

    #[test]
    fn threshold_rule_keeps_randomness_at_or_above_the_threshold() {
        let s = TraceIdRatio::new(0.25, RatioAlgorithm::Threshold).unwrap();
        assert_eq!(s.threshold(), Some(0xc << 52));
        assert!(s.keeps(id_low(0xc << 52)));
        assert!(!s.keeps(id_low((0xc << 52) - 1)));
        // The top byte of the low 64 bits is not randomness.
        assert!(s.keeps(id_low(0xff00_0000_0000_0000 | (0xc << 52))));
        assert!(!s.keeps(id_low(0xff00_0000_0000_0000)));
        let none = TraceIdRatio::new(0.0, RatioAlgorithm::Threshold).unwrap();
        assert!(!none.keeps(id_low(u64::MAX)));
        let all = TraceIdRatio::new(1.0, RatioAlgorithm::Threshold).unwrap();
        assert!(all.keeps(id_low(0)));
    }

    #[test]
    fn monotonic_in_the_ratio() {
        // A trace kept at r is kept at every larger r (the specification's
        // second requirement), for both rules.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let ratios = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.99, 1.0];
        for alg in RatioAlgorithm::ALL {
            let samplers: Vec<_> = ratios
                .iter()
                .map(|r| TraceIdRatio::new(*r, alg).unwrap())
                .collect();
            for _ in 0..20_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = TraceId(((x as u128) << 64) | (x.rotate_left(29) as u128));
                let kept: Vec<bool> = samplers.iter().map(|s| s.keeps(id)).collect();
                assert!(
                    kept.windows(2).all(|w| !w[0] || w[1]),
                    "{alg}: {id} {kept:?}"
                );
            }
        }
    }

    #[test]
    fn bad_ratios_are_refused() {
        for r in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert!(TraceIdRatio::new(r, RatioAlgorithm::TraceIdRatio).is_err());
        }
        assert_eq!(
            "threshold".parse::<RatioAlgorithm>(),
            Ok(RatioAlgorithm::Threshold)
        );
        assert!("random".parse::<RatioAlgorithm>().is_err());
    }
}
