//! Latency histograms: fixed log-spaced buckets (2 % wide), so recording a sample is one
//! increment with no allocation, and p50/p99 over millions of frames cost nothing to keep.
use serde::Serialize;
use std::time::Duration;

/// Buckets per factor e: 1/ln(1.02).
const PER_E: f64 = 50.5;
/// Covers 1 µs .. ~100 s.
const BUCKETS: usize = 940;

/// Latency histogram: fixed log-spaced buckets 2 % wide, 1 µs to about 100 s; no allocation per
/// sample.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    sum_us: f64,
    max_us: f64,
}

/// Quantiles of a histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean, ms (exact, not from buckets).
    pub mean_ms: f64,
    /// Median, ms (bucket centre, ±1 %).
    pub p50_ms: f64,
    /// 99th percentile, ms (bucket centre, ±1 %).
    pub p99_ms: f64,
    /// Largest sample, ms (exact).
    pub max_ms: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            n: 0,
            sum_us: 0.0,
            max_us: 0.0,
        }
    }

    /// Adds one sample (durations over ~100 s fall in the last bucket).
    pub fn record(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let i = if us <= 1.0 {
            0
        } else {
            ((us.ln() * PER_E) as usize).min(BUCKETS - 1)
        };
        self.counts[i] += 1;
        self.n += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The `q` quantile (0..=1) in milliseconds: the geometric centre of its bucket (±1 %).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let centre_us = ((i as f64 + 0.5) / PER_E).exp();
                return (centre_us / 1e3).min(self.max_us / 1e3);
            }
        }
        self.max_us / 1e3
    }

    /// Forgets every sample, keeping the buckets.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.n = 0;
        self.sum_us = 0.0;
        self.max_us = 0.0;
    }

    /// Count, mean, p50, p99 and max, in ms.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.n,
            mean_ms: if self.n > 0 {
                self.sum_us / self.n as f64 / 1e3
            } else {
                0.0
            },
            p50_ms: self.quantile_ms(0.5),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.max_us / 1e3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bucket_width() {
        let mut h = Histogram::new();
        // 1..=1000 ms: p50 = 500 ms, p99 = 990 ms.
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms / 500.0 - 1.0).abs() < 0.02, "{s:?}");
        assert!((s.p99_ms / 990.0 - 1.0).abs() < 0.02, "{s:?}");
        assert!((s.mean_ms - 500.5).abs() < 1e-6, "{s:?}");
        assert_eq!(s.max_ms, 1000.0);
        h.clear();
        assert_eq!(h.summary(), LatencySummary::default());
    }
}
