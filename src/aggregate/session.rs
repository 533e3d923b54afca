//! Ready-made aggregations of an event stream, as the headless `latency` and `top` commands (and
//! any pane that wants the same figures) use them: events in, serialisable reports out.

use super::histogram::{Bucket, BucketScheme, LatencyStats, Summary};
use super::key::{arg_label, normalize_key};
use super::pairing::{PairLimits, PairStats, Pairer, Sample};
use super::toptable::{Other, SortBy, TopRow, TopTable};
use super::window::Window;
use crate::probes::discovery::catalog::Pair;
use crate::probes::kernel::ktoplat::KeyLatency;
use crate::probes::tracing::event::Event;
use serde::Serialize;
use std::collections::HashMap;

/// Latency of one start/done pair, optionally split by an argument of the start event.
pub struct LatencyAgg {
    pairer: Pairer,
    stats: LatencyStats,
    by: Option<(usize, TopTable)>,
    by_cap: usize,
    unkeyed: u64,
}

/// What [`LatencyAgg::report`] returns: all figures of one window, ready for text or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub start: String,
    pub done: String,
    #[serde(flatten)]
    pub summary: Summary,
    pub buckets: Vec<Bucket>,
    pub pairing: PairStats,
    /// Per-key rows when split `--by` an argument (largest count first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<Vec<TopRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_other: Option<Other>,
    /// Samples whose split argument was missing or unreadable.
    pub by_unreadable: u64,
}

impl LatencyAgg {
    /// `by`: index of a start-event argument to split latencies by. `by_cap`: most keys kept.
    pub fn new(pair: Pair, limits: PairLimits, by: Option<usize>, by_cap: usize) -> LatencyAgg {
        LatencyAgg {
            pairer: Pairer::new(pair, limits),
            stats: LatencyStats::new(),
            by: by.map(|i| (i, TopTable::new(by_cap))),
            by_cap,
            unkeyed: 0,
        }
    }

    /// Feed one event; a completed sample is recorded and returned.
    pub fn push(&mut self, ev: &Event) -> Option<Sample> {
        let sample = self.pairer.push(ev)?;
        self.record_sample(&sample);
        Some(sample)
    }

    fn record_sample(&mut self, sample: &Sample) {
        self.stats.record(sample.done_ts_ns, sample.latency_ns);
        if let Some((index, table)) = &mut self.by {
            match arg_label(&sample.start.args, *index) {
                Some(k) => table.record(sample.done_ts_ns, &k, Some(sample.latency_ns)),
                None => self.unkeyed += 1,
            }
        }
    }

    /// Let stale starts expire when no events come.
    /// The attachment had a gap (duty cycling): waiting starts are forgotten, never paired
    /// with a done seen after it.
    pub fn gap(&mut self) {
        self.pairer.forget_open();
    }

    pub fn tick(&mut self, now_ns: u64) {
        self.pairer.tick(now_ns);
    }

    /// Requests paired in the kernel for the current interval, for the `by` table, per key.
    pub fn record_kernel_keys(&mut self, now_ns: u64, keys: &HashMap<String, KeyLatency>) {
        if let Some((_, table)) = &mut self.by {
            for (key, k) in keys {
                table.record_latencies(now_ns, key, k.count, k.samples());
            }
        }
    }

    /// Requests paired in the kernel whose key could not be read (or had no room there).
    pub fn record_unkeyed(&mut self, n: u64) {
        self.unkeyed += n;
    }

    pub fn stats(&self) -> &LatencyStats {
        &self.stats
    }

    /// Start a new interval: latency figures restart, waiting starts and pairing counters stay.
    pub fn reset_interval(&mut self) {
        self.stats.reset();
        if let Some((_, table)) = &mut self.by {
            *table = TopTable::new(self.by_cap);
        }
        self.unkeyed = 0;
    }

    pub fn report(
        &self,
        window: Window,
        now_ns: u64,
        scheme: BucketScheme,
        limit: usize,
    ) -> LatencyReport {
        let pair = self.pairer.pair();
        LatencyReport {
            start: pair.start.clone(),
            done: pair.done.clone(),
            summary: self.stats.summary(window, now_ns),
            buckets: self.stats.buckets(window, now_ns, scheme),
            pairing: self.pairer.stats(),
            by: self
                .by
                .as_ref()
                .map(|(_, t)| t.rows(now_ns, window, SortBy::Count, limit)),
            by_other: self.by.as_ref().map(|(_, t)| t.other()),
            by_unreadable: self.unkeyed,
        }
    }
}

/// Hits of one probe grouped by an argument, with latency per key when the probe starts a pair
/// (then a hit is counted when its request completes, so count and latency describe the same
/// requests).
pub struct TopAgg {
    probe: String,
    by: usize,
    table: TopTable,
    pairer: Option<Pairer>,
    cap: usize,
    unreadable: u64,
    origin_ns: u64,
    /// Fold numbers and quoted literals out of keys (see `normalize_key`).
    fold: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopReport {
    pub probe: String,
    /// The done probe when hits are paired for latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
    pub total: u64,
    pub rows: Vec<TopRow>,
    pub other: Other,
    /// Hits whose key argument was missing or unreadable.
    pub unreadable: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairing: Option<PairStats>,
}

impl TopAgg {
    /// `probe`: `provider:name`; `by`: argument index of that probe; `pair`: its start/done pair
    /// (the probe must be the pair's start). `origin_ns`: when tracing began (monotonic), the
    /// start of the first rate window.
    pub fn new(
        probe: &str,
        by: usize,
        pair: Option<(Pair, PairLimits)>,
        cap: usize,
        origin_ns: u64,
    ) -> TopAgg {
        TopAgg {
            probe: probe.to_string(),
            by,
            table: TopTable::with_origin(cap, origin_ns),
            pairer: pair.map(|(p, l)| Pairer::new(p, l)),
            cap,
            unreadable: 0,
            origin_ns,
            fold: false,
        }
    }

    /// Rows by the shape of the key, as the TUI's top table: `/users/42` and `/users/7` are
    /// both `/users/N`, queries differing only in literals are one row.
    pub fn folding(mut self, fold: bool) -> TopAgg {
        self.fold = fold;
        self
    }

    fn row_key<'a>(&self, key: &'a str) -> std::borrow::Cow<'a, str> {
        if self.fold {
            normalize_key(key).into()
        } else {
            key.into()
        }
    }

    pub fn push(&mut self, ev: &Event) {
        if let Some(p) = &mut self.pairer {
            if let Some(sample) = p.push(ev) {
                match arg_label(&sample.start.args, self.by) {
                    Some(k) => {
                        let k = self.row_key(&k).into_owned();
                        self.table
                            .record(sample.done_ts_ns, &k, Some(sample.latency_ns))
                    }
                    None => self.unreadable += 1,
                }
            }
            return;
        }
        if ev.probe.full_name() != self.probe {
            return;
        }
        match arg_label(&ev.args, self.by) {
            Some(k) => {
                let k = self.row_key(&k).into_owned();
                self.table.record(ev.ts_ns, &k, None)
            }
            None => self.unreadable += 1,
        }
    }

    /// Figures counted in the kernel for the current interval: `n` hits per key, `unreadable`
    /// hits without a key, `overflow` hits of keys the kernel had no room for (shown as other).
    pub fn record_counts<'a>(
        &mut self,
        now_ns: u64,
        keys: impl IntoIterator<Item = (&'a String, &'a u64)>,
        unreadable: u64,
        overflow: u64,
    ) {
        for (k, n) in keys {
            let k = self.row_key(k).into_owned();
            self.table.record_n(now_ns, &k, *n, None);
        }
        self.unreadable += unreadable;
        self.table.add_other(overflow);
    }

    /// Requests paired in the kernel for the current interval: `n` completed requests of `key`
    /// with their latencies as (latency, how many) pairs.
    pub fn record_latencies(
        &mut self,
        now_ns: u64,
        key: &str,
        n: u64,
        latencies: impl IntoIterator<Item = (u64, u64)>,
    ) {
        let key = self.row_key(key).into_owned();
        self.table.record_latencies(now_ns, &key, n, latencies);
    }

    pub fn tick(&mut self, now_ns: u64) {
        if let Some(p) = &mut self.pairer {
            p.tick(now_ns);
        }
    }

    /// Start a new interval at `now_ns`: counts restart (waiting starts stay).
    /// The attachment had a gap (duty cycling): waiting starts are forgotten.
    pub fn gap(&mut self) {
        if let Some(p) = &mut self.pairer {
            p.forget_open();
        }
    }

    pub fn reset_interval(&mut self, now_ns: u64) {
        self.table = TopTable::with_origin(self.cap, now_ns);
        self.unreadable = 0;
        self.origin_ns = now_ns;
    }

    pub fn report(&self, now_ns: u64, sort: SortBy, limit: usize) -> TopReport {
        TopReport {
            probe: self.probe.clone(),
            done: self.pairer.as_ref().map(|p| p.pair().done.clone()),
            total: self.table.total(),
            rows: self.table.rows(now_ns, Window::All, sort, limit),
            other: self.table.other(),
            unreadable: self.unreadable,
            pairing: self.pairer.as_ref().map(|p| p.stats()),
        }
    }

    pub fn origin_ns(&self) -> u64 {
        self.origin_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::discovery::catalog::Catalog;
    use crate::probes::tracing::event::ArgValue;
    use crate::probes::tracing::event::ProbeKey;
    use std::sync::Arc;

    fn ev(probe: &str, ts_ns: u64, tid: u32, args: Vec<ArgValue>) -> Event {
        let (provider, name) = probe.split_once(':').unwrap();
        Event {
            ts_ns,
            pid: 1,
            tid,
            comm: "php".into(),
            probe: Arc::new(ProbeKey {
                path: "/usr/bin/php8.2".into(),
                provider: provider.into(),
                name: name.into(),
            }),
            args,
        }
    }

    fn php(probe: &str, ts: u64, tid: u32, uri: &str) -> Event {
        let s = |v: &str| ArgValue::Str(v.into());
        ev(probe, ts, tid, vec![s("/srv/r.php"), s(uri), s("GET")])
    }

    fn php_pair() -> Pair {
        Catalog::builtin()
            .pair_for("php:request__startup")
            .unwrap()
            .clone()
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn latency_split_by_uri_gives_each_uri_its_own_percentiles() {
        let mut agg = LatencyAgg::new(php_pair(), PairLimits::default(), Some(1), 100);
        let mut t = 0;
        for i in 0..30 {
            let (uri, ms) = if i % 3 == 0 {
                ("/slow", 5)
            } else {
                ("/fast", 1)
            };
            agg.push(&php("php:request__startup", t, 1, uri));
            t += ms * MS;
            agg.push(&php("php:request__shutdown", t, 1, uri));
            t += MS;
        }
        let r = agg.report(Window::All, t, BucketScheme::PowersOfTwo, 10);
        assert_eq!(r.summary.count, 30);
        assert_eq!(r.buckets.iter().map(|b| b.count).sum::<u64>(), 30);
        let by = r.by.unwrap();
        assert_eq!(by[0].key, "/fast");
        assert_eq!(by[0].count, 20);
        assert_eq!(by[1].key, "/slow");
        let p50 = by[1].p50_ns.unwrap();
        assert!((4_900_000..=5_100_000).contains(&p50), "{p50}");
        assert_eq!(r.pairing.matched, 30);
    }

    #[test]
    fn a_new_interval_restarts_the_figures_but_keeps_waiting_starts() {
        let mut agg = LatencyAgg::new(php_pair(), PairLimits::default(), None, 10);
        agg.push(&php("php:request__startup", 0, 1, "/a"));
        agg.push(&php("php:request__shutdown", MS, 1, "/a"));
        agg.push(&php("php:request__startup", 2 * MS, 1, "/b"));
        agg.reset_interval();
        assert_eq!(agg.stats().total(), 0);
        let s = agg
            .push(&php("php:request__shutdown", 5 * MS, 1, "/b"))
            .unwrap();
        assert_eq!(s.latency_ns, 3 * MS);
        assert_eq!(agg.stats().total(), 1);
    }

    #[test]
    fn folding_merges_keys_that_differ_only_in_numbers_and_literals() {
        let mut top = TopAgg::new("php:request__startup", 1, None, 100, 0).folding(true);
        for (i, uri) in ["/users/1", "/users/22", "/about"].iter().enumerate() {
            top.push(&php("php:request__startup", i as u64, 1, uri));
        }
        let counted = [("/users/7".to_string(), 5u64)];
        top.record_counts(3, counted.iter().map(|(k, n)| (k, n)), 0, 0);
        top.record_latencies(4, "/users/8", 2, [(1_000, 2)]);
        let r = top.report(1_000_000_000, SortBy::Count, 10);
        let rows: Vec<(&str, u64)> = r.rows.iter().map(|r| (r.key.as_str(), r.count)).collect();
        assert_eq!(rows, [("/users/N", 9), ("/about", 1)]);
    }

    #[test]
    fn top_without_a_pair_counts_every_hit_by_its_argument() {
        let mut top = TopAgg::new("php:request__startup", 1, None, 100, 0);
        for (i, uri) in ["/a", "/b", "/a"].iter().enumerate() {
            top.push(&php("php:request__startup", i as u64, 1, uri));
            top.push(&php("php:request__shutdown", i as u64 + 1, 1, uri));
        }
        let r = top.report(2 * 1_000_000_000, SortBy::Count, 10);
        assert_eq!(r.total, 3);
        assert_eq!((r.rows[0].key.as_str(), r.rows[0].count), ("/a", 2));
        assert_eq!(r.rows[0].p99_ns, None);
        assert!((r.rows[0].rate_per_s - 1.0).abs() < 1e-9, "2 hits in 2 s");
    }

    #[test]
    fn top_with_a_pair_counts_completed_requests_with_their_latency() {
        let mut top = TopAgg::new(
            "php:request__startup",
            1,
            Some((php_pair(), PairLimits::default())),
            100,
            0,
        );
        top.push(&php("php:request__startup", 0, 1, "/a"));
        top.push(&php("php:request__shutdown", 2 * MS, 1, "/a"));
        top.push(&php("php:request__startup", 3 * MS, 1, "/never-done"));
        let r = top.report(10 * MS, SortBy::Count, 10);
        assert_eq!(r.total, 1);
        assert_eq!(r.rows[0].key, "/a");
        assert!(r.rows[0].p50_ns.unwrap().abs_diff(2 * MS) < 20_000);
        assert_eq!(r.pairing.unwrap().open, 1);
    }

    #[test]
    fn an_unreadable_key_is_counted_not_dropped() {
        let mut top = TopAgg::new("php:request__startup", 7, None, 100, 0);
        top.push(&php("php:request__startup", 0, 1, "/a"));
        let r = top.report(0, SortBy::Count, 10);
        assert_eq!((r.total, r.unreadable), (0, 1));
    }
}
