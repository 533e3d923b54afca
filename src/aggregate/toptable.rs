//! Top-N by key (a string label such as a URL or a query): count, rate over a window, and
//! latency percentiles per key when a pair supplies latencies. The number of keys is bounded:
//! beyond the cap the least recently seen keys are folded into "other", which is counted.

use super::window::{SecondRing, Window, NS_PER_SEC};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;

/// How rows are ordered (the numeric orders are largest first, key is A→Z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SortBy {
    Count,
    Rate,
    P99,
    Key,
}

impl SortBy {
    /// The next order, for a toggle key.
    pub fn next(self) -> SortBy {
        match self {
            SortBy::Count => SortBy::Rate,
            SortBy::Rate => SortBy::P99,
            SortBy::P99 => SortBy::Key,
            SortBy::Key => SortBy::Count,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopRow {
    pub key: String,
    /// All hits of this key since it entered the table.
    pub count: u64,
    /// Hits per second over the chosen window.
    pub rate_per_s: f64,
    /// Latency percentiles over all samples of this key; `None` without latencies.
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub last_seen_ns: u64,
}

/// Keys folded into "other" when the table was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Other {
    pub keys_evicted: u64,
    /// Hits those keys had when they were evicted.
    pub count: u64,
}

struct Entry {
    count: u64,
    per_sec: SecondRing<u64>,
    /// Two significant figures: per-key tables can hold many keys, and 1 % is enough to rank.
    latency: Option<Histogram<u32>>,
    last_seen_ns: u64,
}

pub struct TopTable {
    cap: usize,
    entries: HashMap<String, Entry>,
    other: Other,
    first_ns: Option<u64>,
    /// Whether `first_ns` is when tracing began (then even a short span is a true span).
    origin_known: bool,
}

impl TopTable {
    /// A table of at most `cap` keys (at least 1).
    pub fn new(cap: usize) -> TopTable {
        TopTable {
            cap: cap.max(1),
            entries: HashMap::new(),
            other: Other::default(),
            first_ns: None,
            origin_known: false,
        }
    }

    /// A table whose rates count from `origin_ns` (when tracing began) rather than from its
    /// first hit, so a key hit once in a quiet interval is not reported as one per second.
    pub fn with_origin(cap: usize, origin_ns: u64) -> TopTable {
        TopTable {
            first_ns: Some(origin_ns),
            origin_known: true,
            ..TopTable::new(cap)
        }
    }

    /// Count one hit of `key` at `ts_ns`, with its latency if it completed a pair.
    pub fn record(&mut self, ts_ns: u64, key: &str, latency_ns: Option<u64>) {
        self.record_n(ts_ns, key, 1, latency_ns);
    }

    /// Count `n` hits of `key` at `ts_ns` at once (counts aggregated elsewhere, e.g. in the
    /// kernel), with one latency sample if any.
    pub fn record_n(&mut self, ts_ns: u64, key: &str, n: u64, latency_ns: Option<u64>) {
        self.record_latencies(ts_ns, key, n, latency_ns.map(|l| (l, 1)));
    }

    /// Count `n` hits of `key` at `ts_ns` at once, with latencies aggregated elsewhere as
    /// (latency, how many) pairs, e.g. midpoints of in-kernel buckets.
    pub fn record_latencies(
        &mut self,
        ts_ns: u64,
        key: &str,
        n: u64,
        latencies: impl IntoIterator<Item = (u64, u64)>,
    ) {
        self.first_ns = Some(self.first_ns.map_or(ts_ns, |f| f.min(ts_ns)));
        if !self.entries.contains_key(key) && self.entries.len() >= self.cap {
            self.evict();
        }
        let entry = self
            .entries
            .entry(key.to_string())
            .or_insert_with(|| Entry {
                count: 0,
                per_sec: SecondRing::new(),
                latency: None,
                last_seen_ns: ts_ns,
            });
        entry.count += n;
        *entry.per_sec.slot_mut(ts_ns / NS_PER_SEC, || 0, |c| *c = 0) += n;
        entry.last_seen_ns = entry.last_seen_ns.max(ts_ns);
        for (l, count) in latencies {
            let h = entry.latency.get_or_insert_with(|| {
                Histogram::new(2).expect("2 significant figures is a valid configuration")
            });
            // Counts are u32 to keep per-key tables small; beyond 4e9 the shape is kept anyway.
            let _ = h.record_n(l, u32::try_from(count).unwrap_or(u32::MAX));
        }
    }

    /// Make room: fold the least recently seen sixteenth of the keys (fewest hits first among
    /// equals) into "other". Evicting in batches keeps the scan amortised for streams with
    /// endless distinct keys.
    fn evict(&mut self) {
        let n = (self.cap / 16).max(1);
        let mut victims: Vec<(u64, u64, String)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.last_seen_ns, e.count, k.clone()))
            .collect();
        victims.sort_unstable();
        for (_, _, k) in victims.into_iter().take(n) {
            if let Some(e) = self.entries.remove(&k) {
                self.other.keys_evicted += 1;
                self.other.count += e.count;
            }
        }
    }

    /// Count `hits` of keys that were never in the table (dropped before it saw them).
    pub fn add_other(&mut self, hits: u64) {
        self.other.count += hits;
    }

    pub fn other(&self) -> Other {
        self.other
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All hits recorded, including those of evicted keys.
    pub fn total(&self) -> u64 {
        self.entries.values().map(|e| e.count).sum::<u64>() + self.other.count
    }

    /// The first `limit` rows in `sort` order; rates are over `window` ending at `now_ns`,
    /// divided by the part of the window the table has existed for, so a table started 3 s ago
    /// does not report a tenth of the true rate over 30 s. Without a known origin the span counts
    /// from the first hit and is at least one second (one early hit is not "1000/s").
    pub fn rows(&self, now_ns: u64, window: Window, sort: SortBy, limit: usize) -> Vec<TopRow> {
        let now_sec = now_ns / NS_PER_SEC;
        let age_ns = now_ns.saturating_sub(self.first_ns.unwrap_or(now_ns));
        let span_s = match window.secs() {
            Some(w) => (age_ns as f64 / 1e9).min(w as f64),
            None => age_ns as f64 / 1e9,
        }
        .max(if self.origin_known { 1e-3 } else { 1.0 });
        let mut rows: Vec<TopRow> = self
            .entries
            .iter()
            .map(|(k, e)| {
                let in_window = match window.secs() {
                    Some(w) => e.per_sec.in_window(now_sec, w).sum::<u64>(),
                    None => e.count,
                };
                let pct = |q: f64| e.latency.as_ref().map(|h| h.value_at_quantile(q));
                TopRow {
                    key: k.clone(),
                    count: e.count,
                    rate_per_s: in_window as f64 / span_s,
                    p50_ns: pct(0.50),
                    p99_ns: pct(0.99),
                    last_seen_ns: e.last_seen_ns,
                }
            })
            .collect();
        match sort {
            SortBy::Count => rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key))),
            SortBy::Rate => rows.sort_by(|a, b| {
                b.rate_per_s
                    .total_cmp(&a.rate_per_s)
                    .then(a.key.cmp(&b.key))
            }),
            SortBy::P99 => rows.sort_by(|a, b| b.p99_ns.cmp(&a.p99_ns).then(a.key.cmp(&b.key))),
            SortBy::Key => rows.sort_by(|a, b| a.key.cmp(&b.key)),
        }
        rows.truncate(limit);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_SEC;

    fn keys(rows: &[TopRow]) -> Vec<&str> {
        rows.iter().map(|r| r.key.as_str()).collect()
    }

    #[test]
    fn keys_are_ranked_by_count_and_ties_by_name() {
        let mut t = TopTable::new(100);
        for k in ["/a", "/b", "/b", "/c", "/c", "/c", "/a"] {
            t.record(0, k, None);
        }
        let rows = t.rows(0, Window::All, SortBy::Count, 10);
        assert_eq!(keys(&rows), vec!["/c", "/a", "/b"]);
        assert_eq!(rows[0].count, 3);
        assert_eq!(t.total(), 7);
    }

    #[test]
    fn limit_keeps_only_the_top_rows() {
        let mut t = TopTable::new(100);
        for i in 0..20 {
            for _ in 0..=i {
                t.record(0, &format!("k{i:02}"), None);
            }
        }
        let rows = t.rows(0, Window::All, SortBy::Count, 3);
        assert_eq!(keys(&rows), vec!["k19", "k18", "k17"]);
    }

    #[test]
    fn rate_is_hits_in_the_window_per_second() {
        let mut t = TopTable::new(100);
        // 5 hits a second for 20 seconds on /steady; /burst only in the first second.
        for sec in 0..20 {
            for i in 0..5 {
                t.record(sec * S + i, "/steady", None);
            }
        }
        for i in 0..50 {
            t.record(i, "/burst", None);
        }
        let now = 19 * S + S / 2;
        let rows = t.rows(now, Window::Last10s, SortBy::Rate, 10);
        assert_eq!(keys(&rows), vec!["/steady", "/burst"]);
        assert!((rows[0].rate_per_s - 5.0).abs() < 0.01, "{rows:?}");
        assert_eq!(rows[1].rate_per_s, 0.0);
        let all = t.rows(now, Window::All, SortBy::Count, 10);
        assert_eq!(keys(&all), vec!["/steady", "/burst"]);
    }

    #[test]
    fn a_young_table_divides_by_its_age_not_by_the_whole_window() {
        let mut t = TopTable::new(10);
        for i in 0..30 {
            t.record(100 * S + i * S / 10, "/x", None); // 10 a second for 3 s
        }
        let rows = t.rows(103 * S, Window::Last1m, SortBy::Rate, 1);
        assert!((rows[0].rate_per_s - 10.0).abs() < 0.5, "{rows:?}");
    }

    #[test]
    fn with_a_known_origin_a_short_run_reports_its_true_rate() {
        let mut t = TopTable::with_origin(10, 10 * S);
        for i in 0..100 {
            t.record(10 * S + i * S / 250, "/x", None); // 250 a second for 0.4 s
        }
        let rows = t.rows(10 * S + 4 * S / 10, Window::All, SortBy::Rate, 1);
        assert!((rows[0].rate_per_s - 250.0).abs() < 1.0, "{rows:?}");
    }

    #[test]
    fn latency_percentiles_appear_only_for_keys_with_latencies() {
        let mut t = TopTable::new(10);
        for i in 1..=100 {
            t.record(0, "/slow", Some(i * 1_000_000));
        }
        t.record(0, "/count-only", None);
        let rows = t.rows(0, Window::All, SortBy::P99, 10);
        assert_eq!(keys(&rows), vec!["/slow", "/count-only"]);
        let p50 = rows[0].p50_ns.unwrap();
        let p99 = rows[0].p99_ns.unwrap();
        assert!((49_000_000..=51_000_000).contains(&p50), "{p50}");
        assert!((98_000_000..=100_000_000).contains(&p99), "{p99}");
        assert_eq!(rows[1].p99_ns, None);
    }

    #[test]
    fn sorting_by_key_is_alphabetical() {
        let mut t = TopTable::new(10);
        for k in ["b", "c", "a"] {
            t.record(0, k, None);
        }
        assert_eq!(
            keys(&t.rows(0, Window::All, SortBy::Key, 10)),
            vec!["a", "b", "c"]
        );
        assert_eq!(SortBy::Key.next(), SortBy::Count);
    }

    #[test]
    fn beyond_the_cap_the_least_recent_keys_are_folded_into_other_and_counted() {
        let mut t = TopTable::new(16);
        t.record(0, "/old", None);
        t.record(0, "/old", None);
        for i in 1..=15 {
            t.record(i, &format!("/k{i}"), None);
        }
        assert_eq!(t.len(), 16);
        t.record(100, "/new", None);
        assert_eq!(t.len(), 16, "bounded");
        assert_eq!(
            t.other(),
            Other {
                keys_evicted: 1,
                count: 2
            }
        );
        assert!(t
            .rows(100, Window::All, SortBy::Key, 100)
            .iter()
            .all(|r| r.key != "/old"));
        assert_eq!(t.total(), 18, "evicted hits still add up");
    }

    #[test]
    fn endless_distinct_keys_keep_the_table_bounded() {
        let mut t = TopTable::new(64);
        for i in 0..10_000u64 {
            t.record(i, &format!("/u/{i}"), None);
        }
        assert!(t.len() <= 64);
        assert_eq!(t.total(), 10_000);
        assert_eq!(t.other().keys_evicted as usize + t.len(), 10_000);
    }
}
