//! A histogram of durations that never takes a lock.
//!
//! `prometheus_client`'s `Histogram` keeps its buckets behind a mutex and
//! adds `f64` seconds: every observation from any worker thread takes that
//! lock, and a profile of a 500-slot worker showed it among the largest
//! costs of metrics (two observations per task). Here each bucket is an
//! atomic count and the sum an atomic count of nanoseconds, so an
//! observation is two relaxed additions; the bucket is found by comparing
//! whole nanoseconds, not floats. A scrape reads each bucket once and
//! takes the count as their total, so `_count` always equals the `+Inf`
//! bucket even while tasks are observed (the sum may be one observation
//! ahead or behind, as Prometheus allows).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds in seconds, from a millisecond to an hour: tasks range from
/// no-ops to long batch jobs, and waits from none to a delay's length.
pub(crate) const BUCKETS: [f64; 19] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 1800.0, 3600.0,
];

/// [`BUCKETS`] in whole nanoseconds (every bound is a whole number of them;
/// rounded, as `0.005 * 1e9` may come out a hair below 5,000,000).
const BOUNDS_NS: [u64; BUCKETS.len()] = {
    let mut ns = [0u64; BUCKETS.len()];
    let mut i = 0;
    while i < BUCKETS.len() {
        ns[i] = (BUCKETS[i] * 1e9 + 0.5) as u64;
        i += 1;
    }
    ns
};

/// A Prometheus histogram of durations with the bounds of [`BUCKETS`] and a
/// last `+Inf` bucket. Clones share the same counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct DurationHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// The sum of every observation, in nanoseconds (584 years of task
    /// time before it wraps).
    sum_ns: AtomicU64,
}

impl DurationHistogram {
    /// Counts one duration.
    pub(crate) fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.inner.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(f64::INFINITY, 0u64); BUCKETS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            slot.0 = BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            slot.1 = self.inner.buckets[i].load(Ordering::Relaxed);
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::{Registry, Unit};

    use super::*;

    /// Whatever is observed, the exposition is the one the client's own
    /// histogram writes for the same seconds: bounds land in their own
    /// bucket (`le` is inclusive), past the last bound in `+Inf`.
    #[test]
    fn exposes_what_the_clients_histogram_exposes() {
        let ours = DurationHistogram::default();
        let theirs = Histogram::new(BUCKETS);
        let mut durations = vec![
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(1),
            Duration::from_nanos(1_000_001),
            Duration::from_nanos(2_500_000),
            Duration::from_nanos(5_000_000),
            Duration::from_nanos(5_000_001),
            Duration::from_millis(250),
            Duration::from_secs(3600),
            Duration::from_secs(3601),
            Duration::MAX,
        ];
        durations.extend((0..200).map(|i| Duration::from_micros(i * i * 37)));
        for d in &durations {
            ours.observe(*d);
            if *d != Duration::MAX {
                theirs.observe(d.as_secs_f64());
            }
        }
        // Duration::MAX counts in +Inf; the client's sum cannot take it.
        theirs.observe(f64::MAX);
        let text = |h: Box<dyn Fn(&mut Registry)>| {
            let mut registry = Registry::default();
            h(&mut registry);
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
            out.lines()
                .filter(|l| !l.contains("_sum"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let o = ours.clone();
        let t = theirs.clone();
        assert_eq!(
            text(Box::new(move |r| r.register_with_unit(
                "wait",
                "w",
                Unit::Seconds,
                o.clone()
            ))),
            text(Box::new(move |r| r.register_with_unit(
                "wait",
                "w",
                Unit::Seconds,
                t.clone()
            ))),
        );
    }

    #[test]
    fn sums_in_seconds() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_millis(1500));
        h.observe(Duration::from_millis(500));
        let mut registry = Registry::default();
        registry.register_with_unit("run", "r", Unit::Seconds, h);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.lines().any(|l| l == "run_seconds_sum 2.0"), "{out}");
        assert!(out.lines().any(|l| l == "run_seconds_count 2"), "{out}");
    }
}
