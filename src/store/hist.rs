//! Fixed latency buckets shared by the rollup tables and the live windows.
//!
//! Trade-off: percentiles from fixed buckets are estimates (linear interpolation inside the
//! bucket, the top bucket capped by the observed maximum), with an error bounded by the bucket
//! width — about ±25% of the value between 5 ms and 300 s. In exchange they add up across
//! minutes, hours, models and replicas, so p95 over four weeks costs a few thousand row reads.

/// Upper bounds (inclusive) in microseconds; one more bucket counts everything above the last.
pub const BOUNDS_US: [u64; 25] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    150_000,
    200_000,
    300_000,
    400_000,
    500_000,
    750_000,
    1_000_000,
    1_500_000,
    2_000_000,
    3_000_000,
    4_000_000,
    5_000_000,
    7_500_000,
    10_000_000,
    15_000_000,
    20_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
];

/// Number of buckets (the columns `h0..h25`).
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Which bucket a latency falls in.
pub fn bucket_of(latency_us: u64) -> usize {
    BOUNDS_US.partition_point(|&b| b < latency_us)
}

/// A latency histogram in the fixed buckets, plus the maximum seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS],
    pub max_us: u64,
}

impl Histogram {
    /// Counts one latency.
    pub fn record(&mut self, latency_us: u64) {
        self.counts[bucket_of(latency_us)] += 1;
        self.max_us = self.max_us.max(latency_us);
    }

    /// Adds another histogram into this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0..=1) in seconds, or 0 when empty.
    ///
    /// The rank `q·n` is located in its bucket and interpolated linearly between the bucket's
    /// lower and upper bound; the upper bound is capped by the maximum seen.
    pub fn quantile(&self, q: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).max(1.0);
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= rank {
                let lo = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
                let hi = BOUNDS_US
                    .get(i)
                    .copied()
                    .unwrap_or(u64::MAX)
                    .min(self.max_us);
                let hi = hi.max(lo);
                let frac = (rank - below as f64) / c as f64;
                return (lo as f64 + frac * (hi - lo) as f64) / 1e6;
            }
            below += c;
        }
        self.max_us as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(5_000), 0);
        assert_eq!(bucket_of(5_001), 1);
        assert_eq!(bucket_of(300_000_000), 24);
        assert_eq!(bucket_of(300_000_001), 25);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut h = Histogram::default();
        for _ in 0..100 {
            h.record(150_000); // all in (100ms, 150ms]
        }
        // rank 50 of 100 in bucket (100_000, 150_000] → 125 ms.
        assert!((h.quantile(0.5) - 0.125).abs() < 1e-9);
        assert!((h.quantile(1.0) - 0.150).abs() < 1e-9);
        assert_eq!(Histogram::default().quantile(0.5), 0.0);
    }

    #[test]
    fn top_bucket_is_capped_by_the_maximum() {
        let mut h = Histogram::default();
        h.record(400_000_000);
        assert!((h.quantile(0.99) - 400.0).abs() < 1e-6);
        assert!((h.quantile(0.5) - 400.0).abs() < 1e-6);
    }
}
