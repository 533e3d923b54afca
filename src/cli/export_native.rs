//! The kernel's latency buckets as a Prometheus native histogram (served in the protobuf
//! exposition). The kernel's buckets are log-linear: 8 equal steps per power of two, so bucket
//! `[lo, hi)` has `hi - lo <= lo / 8`. A native histogram's buckets are exponential:
//! `(2^((i-1)/2^s), 2^(i/2^s)]` for schema `s`. The edges cannot coincide, so each kernel bucket's
//! count goes to the one native bucket that holds its midpoint, at schema [`SCHEMA`] (5: 32
//! buckets per power of two, each under 2.2 % wide; the 8 kernel midpoints of a power of two
//! fall in 8 different ones).
//!
//! Error: a latency `v` of kernel bucket `[lo, hi)` is served in a native bucket holding the
//! midpoint `m`; `|v - m| <= (hi - lo) / 2 <= lo / 16` and a quantile interpolated in the native
//! bucket is within 2.2 % of `m`, so within 6.25 % + 2.2 % of `v` (the classic series, whose
//! edges are the kernel's, are within one kernel bucket: 12.5 %). The kernel's first bucket
//! (below 288 ns) is the native zero bucket; its last (open above, from 2^40 ns) goes to the
//! native bucket of its lower edge.

/// The native histogram schema served.
pub const SCHEMA: i32 = 5;

/// A native histogram's buckets: the zero bucket and the positive buckets, sparse.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Native {
    /// Upper edge of the zero bucket, in seconds.
    pub zero_threshold: f64,
    pub zero_count: u64,
    /// (native bucket index, count), indices rising, counts above zero.
    pub buckets: Vec<(i32, u64)>,
}

/// The spans and deltas the exposition carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse {
    /// (offset from the end of the previous span, or the first index; length).
    pub spans: Vec<(i32, u32)>,
    /// Each bucket's count minus the previous bucket's.
    pub deltas: Vec<i64>,
}

/// The native bucket that holds `x` seconds at [`SCHEMA`] (upper edges are inclusive).
pub fn index_of(x: f64) -> i32 {
    (x.log2() * f64::from(1u32 << SCHEMA)).ceil() as i32
}

/// The upper edge of native bucket `i`, in seconds.
#[cfg(test)]
pub fn upper_edge(i: i32) -> f64 {
    (f64::from(i) / f64::from(1u32 << SCHEMA)).exp2()
}

/// The native histogram of a key's kernel buckets; `range(i)` is bucket `i`'s `[lo, hi)` in ns
/// (the last one's `hi` is `u64::MAX`).
pub fn native(kernel: &[u64], range: impl Fn(usize) -> (u64, u64)) -> Native {
    let last = kernel.len().saturating_sub(1);
    let mut out = Native {
        zero_threshold: range(0).1 as f64 / 1e9,
        zero_count: kernel.first().copied().unwrap_or(0),
        buckets: Vec::new(),
    };
    for (i, &n) in kernel.iter().enumerate().skip(1).filter(|(_, n)| **n > 0) {
        let (lo, hi) = range(i);
        let at_ns = if i == last {
            lo as f64
        } else {
            (lo as f64 + hi as f64) / 2.0
        };
        let index = index_of(at_ns / 1e9);
        match out.buckets.last_mut() {
            Some((prev, count)) if *prev == index => *count += n,
            _ => out.buckets.push((index, n)),
        }
    }
    out
}

impl Native {
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.zero_count + self.buckets.iter().map(|(_, n)| n).sum::<u64>()
    }

    /// The buckets as spans (runs of consecutive indices) and deltas.
    pub fn sparse(&self) -> Sparse {
        let mut out = Sparse::default();
        let mut prev: Option<(i32, u64)> = None;
        for &(i, n) in &self.buckets {
            match prev {
                Some((p, _)) if i == p + 1 => {
                    if let Some(span) = out.spans.last_mut() {
                        span.1 += 1;
                    }
                }
                Some((p, _)) => out.spans.push((i - p - 1, 1)),
                None => out.spans.push((i, 1)),
            }
            out.deltas
                .push(n as i64 - prev.map_or(0, |(_, c)| c as i64));
            prev = Some((i, n));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usdtop::probes::kernel::ktoplat::{bucket_range, BUCKETS};

    fn kernel_with(ns: &[u64]) -> Vec<u64> {
        let mut b = vec![0; BUCKETS];
        for &v in ns {
            let i = (0..BUCKETS)
                .find(|&i| {
                    let (lo, hi) = bucket_range(i);
                    lo <= v && v < hi
                })
                .unwrap();
            b[i] += 1;
        }
        b
    }

    #[test]
    fn every_kernel_bucket_of_a_power_of_two_gets_its_own_native_bucket() {
        // 8 latencies, one in each kernel bucket between 4.19 and 8.39 ms.
        let ns: Vec<u64> = (0..8).map(|j| (8 + j) << 19).collect();
        let n = native(&kernel_with(&ns), bucket_range);
        assert_eq!(n.buckets.len(), 8, "{n:?}");
        assert_eq!(n.count(), 8);
    }

    #[test]
    fn a_latency_is_served_within_a_sixteenth_plus_one_native_bucket() {
        for ns in [
            300u64,
            1_000,
            123_456,
            5_000_000,
            10_300_000,
            15_000_000,
            3_000_000_000,
        ] {
            let n = native(&kernel_with(&[ns]), bucket_range);
            let (i, count) = n.buckets[0];
            assert_eq!(count, 1);
            let (lo, hi) = (upper_edge(i - 1), upper_edge(i));
            let v = ns as f64 / 1e9;
            // Anywhere in the native bucket is within 1/16 + 2.2 % of the latency.
            for q in [lo, hi] {
                assert!(
                    (q - v).abs() <= v * (1.0 / 16.0 + 0.022),
                    "{ns} ns: [{lo}, {hi}]"
                );
            }
        }
    }

    #[test]
    fn the_first_kernel_bucket_is_the_zero_bucket_and_the_last_sits_at_its_lower_edge() {
        let mut k = vec![0; BUCKETS];
        k[0] = 2;
        k[BUCKETS - 1] = 1;
        let n = native(&k, bucket_range);
        assert_eq!(n.zero_count, 2);
        assert_eq!(n.zero_threshold, bucket_range(0).1 as f64 / 1e9);
        let lower = bucket_range(BUCKETS - 1).0 as f64 / 1e9;
        assert_eq!(n.buckets, [(index_of(lower), 1)]);
    }

    #[test]
    fn spans_join_consecutive_buckets_and_deltas_are_differences() {
        let n = Native {
            zero_threshold: 1e-9,
            zero_count: 0,
            buckets: vec![(-10, 2), (-9, 5), (-5, 1), (3, 4)],
        };
        let s = n.sparse();
        assert_eq!(s.spans, [(-10, 2), (3, 1), (7, 1)]);
        assert_eq!(s.deltas, [2, 3, -4, 3]);
    }
}
