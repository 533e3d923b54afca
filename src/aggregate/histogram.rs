//! Latency statistics over time windows: an all-time HDR histogram plus a ring of per-second
//! histograms merged on demand for "last 10 s" and "last 1 min". Summaries (count, mean,
//! percentiles, max) and log-spaced buckets with `[lo, hi)` ranges for bar charts and drill-down.

use super::window::{SecondRing, Window, NS_PER_SEC};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Significant figures kept: 3 → values are exact to 0.1 %, plenty for latency and still a few
/// tens of KiB per histogram (they auto-resize to the largest value seen).
const SIGFIG: u8 = 3;

fn new_histogram() -> Histogram<u64> {
    Histogram::new(SIGFIG).expect("3 significant figures is a valid configuration")
}

/// Count, mean and percentiles of a set of latencies, in nanoseconds. All zero when `count == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ns: f64,
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            mean_ns: h.mean(),
            min_ns: h.min(),
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        }
    }
}

/// How bucket boundaries are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BucketScheme {
    /// 1, 2, 4, 8 … ns (like bcc funclatency and bpftrace `hist()`).
    PowersOfTwo,
    /// 1, 2, 5, 10, 20, 50 … ns: boundaries a human reads at a glance (1us, 2us, 5us).
    OneTwoFive,
}

/// One bar of a latency bar chart: samples with `lo_ns <= latency < hi_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub lo_ns: u64,
    pub hi_ns: u64,
    pub count: u64,
}

impl Bucket {
    /// Whether a latency falls in this bucket (the TUI's drill-down filter).
    pub fn contains(&self, latency_ns: u64) -> bool {
        latency_ns >= self.lo_ns && latency_ns < self.hi_ns
    }
}

impl BucketScheme {
    /// The bucket `[lo, hi)` holding `v`.
    pub fn bounds(self, v: u64) -> (u64, u64) {
        match self {
            BucketScheme::PowersOfTwo => {
                if v == 0 {
                    return (0, 1);
                }
                let lo = 1u64 << (63 - v.leading_zeros());
                (lo, lo.saturating_mul(2))
            }
            BucketScheme::OneTwoFive => {
                if v == 0 {
                    return (0, 1);
                }
                let mut decade = 1u64;
                while decade <= v / 10 {
                    decade *= 10;
                }
                // decade <= v < 10 * decade
                let (lo, hi) = if v < 2 * decade {
                    (decade, 2 * decade)
                } else if v < 5 * decade {
                    (2 * decade, 5 * decade)
                } else {
                    (5 * decade, decade.saturating_mul(10))
                };
                (lo, hi)
            }
        }
    }
}

/// Buckets of `h` from the lowest to the highest non-empty one, empty ones in between kept (a
/// bar chart shows the gaps). Empty histogram → no buckets.
pub fn buckets(h: &Histogram<u64>, scheme: BucketScheme) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    if h.is_empty() {
        return out;
    }
    for v in h.iter_recorded() {
        // The lowest value equivalent to a recorded one is ≤ every sample it stands for, and
        // power-of-two boundaries coincide with HDR sub-bucket boundaries, so samples land in
        // the right bucket.
        let value = h.lowest_equivalent(v.value_iterated_to());
        let (lo, hi) = scheme.bounds(value);
        let count = v.count_since_last_iteration();
        if let Some(last) = out.last_mut() {
            if last.lo_ns == lo {
                last.count += count;
                continue;
            }
            // Keep empty buckets between the last one and this one: a chart shows the gap.
            let mut next = last.hi_ns;
            while next < lo {
                let (a, b) = scheme.bounds(next);
                out.push(Bucket {
                    lo_ns: a,
                    hi_ns: b,
                    count: 0,
                });
                next = b;
            }
        }
        out.push(Bucket {
            lo_ns: lo,
            hi_ns: hi,
            count,
        });
    }
    out
}

/// Windowed latency statistics for one stream of samples.
#[derive(Debug, Clone)]
pub struct LatencyStats {
    all: Histogram<u64>,
    seconds: SecondRing<Histogram<u64>>,
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats::new()
    }
}

impl LatencyStats {
    pub fn new() -> Self {
        LatencyStats {
            all: new_histogram(),
            seconds: SecondRing::new(),
        }
    }

    /// Record a latency that completed at `ts_ns` (monotonic ns).
    pub fn record(&mut self, ts_ns: u64, latency_ns: u64) {
        self.record_n(ts_ns, latency_ns, 1);
    }

    /// Record `n` samples of one latency (e.g. from an in-kernel bucket).
    pub fn record_n(&mut self, ts_ns: u64, latency_ns: u64, n: u64) {
        // Auto-resizing histograms accept any u64, so recording cannot fail.
        let _ = self.all.record_n(latency_ns, n);
        let slot = self
            .seconds
            .slot_mut(ts_ns / NS_PER_SEC, new_histogram, |h| h.reset());
        let _ = slot.record_n(latency_ns, n);
    }

    /// All samples recorded so far.
    pub fn total(&self) -> u64 {
        self.all.len()
    }

    /// The merged histogram of a window ending at `now_ns`.
    pub fn histogram(&self, window: Window, now_ns: u64) -> Histogram<u64> {
        match window.secs() {
            None => self.all.clone(),
            Some(secs) => {
                let mut merged = new_histogram();
                for h in self.seconds.in_window(now_ns / NS_PER_SEC, secs) {
                    let _ = merged.add(h);
                }
                merged
            }
        }
    }

    pub fn summary(&self, window: Window, now_ns: u64) -> Summary {
        match window {
            Window::All => Summary::of(&self.all),
            _ => Summary::of(&self.histogram(window, now_ns)),
        }
    }

    pub fn buckets(&self, window: Window, now_ns: u64, scheme: BucketScheme) -> Vec<Bucket> {
        match window {
            Window::All => buckets(&self.all, scheme),
            _ => buckets(&self.histogram(window, now_ns), scheme),
        }
    }

    pub fn reset(&mut self) {
        *self = LatencyStats::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const US: u64 = 1_000;

    fn within(actual: u64, expected: u64, permille: u64) -> bool {
        actual.abs_diff(expected) * 1000 <= expected * permille
    }

    #[test]
    fn a_summary_of_one_to_a_thousand_microseconds_has_the_textbook_percentiles() {
        let mut s = LatencyStats::new();
        for i in 1..=1000 {
            s.record(0, i * US);
        }
        let sum = s.summary(Window::All, 0);
        assert_eq!(sum.count, 1000);
        assert!(within(sum.mean_ns as u64, 500_500, 2), "{sum:?}");
        assert!(within(sum.p50_ns, 500 * US, 2), "{sum:?}");
        assert!(within(sum.p90_ns, 900 * US, 2), "{sum:?}");
        assert!(within(sum.p99_ns, 990 * US, 2), "{sum:?}");
        assert!(within(sum.p999_ns, 999 * US, 2), "{sum:?}");
        assert!(within(sum.max_ns, 1000 * US, 2), "{sum:?}");
        assert!(within(sum.min_ns, US, 2), "{sum:?}");
    }

    #[test]
    fn an_empty_summary_is_all_zero_with_count_zero() {
        let s = LatencyStats::new();
        assert_eq!(
            s.summary(Window::Last10s, 5 * NS_PER_SEC),
            Summary::default()
        );
        assert!(s
            .buckets(Window::All, 0, BucketScheme::PowersOfTwo)
            .is_empty());
    }

    #[test]
    fn the_ten_second_window_forgets_what_the_minute_still_remembers() {
        let mut s = LatencyStats::new();
        s.record(100 * NS_PER_SEC, 9 * MS); // 30 s before "now"
        s.record(125 * NS_PER_SEC, MS);
        s.record(130 * NS_PER_SEC + 5, 2 * MS);
        let now = 130 * NS_PER_SEC + 500;
        assert_eq!(s.summary(Window::Last10s, now).count, 2);
        assert!(within(s.summary(Window::Last10s, now).max_ns, 2 * MS, 2));
        assert_eq!(s.summary(Window::Last1m, now).count, 3);
        assert!(within(s.summary(Window::Last1m, now).max_ns, 9 * MS, 2));
        assert_eq!(s.summary(Window::All, 1000 * NS_PER_SEC).count, 3);
        assert_eq!(s.summary(Window::Last1m, 1000 * NS_PER_SEC).count, 0);
    }

    #[test]
    fn powers_of_two_buckets_are_half_open_and_contiguous() {
        let mut s = LatencyStats::new();
        for v in [1000, 1023, 1024, 1500, 2047, 2048, 9000] {
            s.record(0, v);
        }
        let b = s.buckets(Window::All, 0, BucketScheme::PowersOfTwo);
        let shape: Vec<(u64, u64, u64)> = b.iter().map(|b| (b.lo_ns, b.hi_ns, b.count)).collect();
        assert_eq!(
            shape,
            vec![
                (512, 1024, 2),
                (1024, 2048, 3),
                (2048, 4096, 1),
                (4096, 8192, 0),
                (8192, 16384, 1)
            ]
        );
        for w in b.windows(2) {
            assert_eq!(w[0].hi_ns, w[1].lo_ns);
        }
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 7);
    }

    #[test]
    fn one_two_five_buckets_read_like_a_ruler() {
        assert_eq!(BucketScheme::OneTwoFive.bounds(1), (1, 2));
        assert_eq!(BucketScheme::OneTwoFive.bounds(3 * US), (2 * US, 5 * US));
        assert_eq!(BucketScheme::OneTwoFive.bounds(5 * MS), (5 * MS, 10 * MS));
        assert_eq!(BucketScheme::OneTwoFive.bounds(9_999), (5_000, 10_000));
        assert_eq!(BucketScheme::OneTwoFive.bounds(0), (0, 1));
        let mut s = LatencyStats::new();
        for v in [3 * MS, 4 * MS, 6 * MS, 30 * MS] {
            s.record(0, v);
        }
        let b = s.buckets(Window::All, 0, BucketScheme::OneTwoFive);
        let shape: Vec<(u64, u64)> = b.iter().map(|b| (b.lo_ns / MS, b.count)).collect();
        assert_eq!(shape, vec![(2, 2), (5, 1), (10, 0), (20, 1)]);
    }

    #[test]
    fn a_bucket_selects_exactly_the_latencies_in_its_range() {
        let b = Bucket {
            lo_ns: 1024,
            hi_ns: 2048,
            count: 1,
        };
        assert!(b.contains(1024) && b.contains(2047));
        assert!(!b.contains(1023) && !b.contains(2048));
    }

    #[test]
    fn zero_and_huge_latencies_do_not_panic() {
        let mut s = LatencyStats::new();
        s.record(0, 0);
        s.record(0, u64::MAX / 4);
        let b = s.buckets(Window::All, 0, BucketScheme::PowersOfTwo);
        assert_eq!(b.first().unwrap().lo_ns, 0);
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 2);
        let _ = s.buckets(Window::All, 0, BucketScheme::OneTwoFive);
    }
}
