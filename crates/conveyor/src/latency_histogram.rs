//! The latency histogram behind job summaries and the pool's metrics.
//!
//! Durations are recorded in microseconds into an `hdrhistogram` (up to an
//! hour, two significant digits). Short tasks record two or three durations
//! each, and an `hdrhistogram` record costs about 70 instructions (bucket
//! index, bounds, minimum and maximum, total): a sixth of what the result
//! thread spends on a no-op task. So durations below [`EXACT_US`] µs, which
//! is where short tasks' durations fall, are first counted per microsecond
//! in a plain array (an increment), and folded into the histogram
//! (`record_n`, one call per distinct value) when percentiles are read. A
//! value counted `n` times lands in the same bucket, with the same minimum,
//! maximum and total, as `n` records of it: the percentiles are exactly the
//! histogram's own.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Percentiles of a set of durations (recorded with microsecond resolution and
/// two significant digits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyStats {
    /// How many durations were recorded.
    pub count: u64,
    /// Mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

/// Durations below this many microseconds are counted exactly first.
pub(crate) const EXACT_US: usize = 1024;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct LatencyHistogram {
    /// Counts of durations below [`EXACT_US`] µs, by microsecond, not yet
    /// in `histogram`.
    exact: Box<[u64; EXACT_US]>,
    histogram: Option<Histogram<u64>>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            exact: Box::new([0; EXACT_US]),
            histogram: new_histogram(),
        }
    }
}

/// An empty histogram of microseconds up to an hour, two significant digits
/// (1% precision): small enough (tens of KB) to keep a few per core.
fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).ok()
}

impl LatencyHistogram {
    pub(crate) fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        match self.exact.get_mut(us as usize) {
            Some(n) => *n += 1,
            None => {
                if let Some(h) = &mut self.histogram {
                    h.saturating_record(us);
                }
            }
        }
    }

    /// Adds another histogram's counts.
    pub(crate) fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.exact.iter_mut().zip(other.exact.iter()) {
            *mine += theirs;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.histogram, &other.histogram) {
            let _ = mine.add(theirs);
        }
    }

    /// The histogram with the exact counts folded in.
    fn folded(&self) -> Option<Histogram<u64>> {
        let mut h = self.histogram.clone()?;
        for (us, &n) in self.exact.iter().enumerate() {
            if n > 0 {
                let _ = h.record_n(us as u64, n);
            }
        }
        Some(h)
    }

    pub(crate) fn stats(&self) -> LatencyStats {
        self.folded().map(|h| stats_of(&h)).unwrap_or_default()
    }
}

/// The percentiles of a histogram in microseconds.
fn stats_of(h: &Histogram<u64>) -> LatencyStats {
    if h.is_empty() {
        return LatencyStats::default();
    }
    let us = Duration::from_micros;
    LatencyStats {
        count: h.len(),
        mean: Duration::from_secs_f64(h.mean() / 1e6),
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        max: us(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same durations recorded straight into an `hdrhistogram`.
    fn plain(durations: &[Duration]) -> LatencyStats {
        let mut h = new_histogram().expect("bounds");
        for d in durations {
            h.saturating_record((d.as_micros() as u64).max(1));
        }
        stats_of(&h)
    }

    #[test]
    fn percentiles_are_the_histograms_own_on_both_sides_of_the_exact_range() {
        // Below, at and above the exact range, zero, and far above it.
        let mut durations: Vec<Duration> = (0..5_000u64)
            .map(|i| Duration::from_nanos(i * 997 % 3_000_000))
            .collect();
        durations.extend([
            Duration::ZERO,
            Duration::from_micros(EXACT_US as u64 - 1),
            Duration::from_micros(EXACT_US as u64),
            Duration::from_secs(7_200),
        ]);
        let mut h = LatencyHistogram::default();
        for d in &durations {
            h.record(*d);
        }
        assert_eq!(h.stats(), plain(&durations));
        assert_eq!(h.stats().count, durations.len() as u64);
    }

    #[test]
    fn merged_histograms_count_both_and_reading_changes_nothing() {
        let a: Vec<Duration> = (1..300).map(Duration::from_micros).collect();
        let b: Vec<Duration> = (900..2_500).map(Duration::from_micros).collect();
        let (mut ha, mut hb) = (LatencyHistogram::default(), LatencyHistogram::default());
        a.iter().for_each(|d| ha.record(*d));
        b.iter().for_each(|d| hb.record(*d));
        let before = ha.stats();
        assert_eq!(ha.stats(), before, "reading folds into a copy");
        ha.merge(&hb);
        let all: Vec<Duration> = a.into_iter().chain(b).collect();
        assert_eq!(ha.stats(), plain(&all));
    }

    #[test]
    fn an_empty_histogram_reads_as_nothing() {
        assert_eq!(LatencyHistogram::default().stats(), LatencyStats::default());
    }
}
