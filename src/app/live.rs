//! The live panes' state: the request log ring, the latency histogram of a start/done pair, the
//! top table of request keys, per-probe hit rates, and the drill-down filters over them.

use super::explorer::Cursor;
use super::pairing::KernelLatency;
use crate::aggregate::{
    arg_label, normalize_key, Bucket, BucketScheme, LatencyStats, PairLimits, Pairer, SortBy,
    Summary, TopRow, TopTable, Window,
};
use crate::probes::discovery::catalog::{Catalog, Pair};
use crate::probes::{ArgValue, Event, ProbeKey};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Log entries kept (older ones fall off); bounds memory at high event rates.
pub const LOG_CAP: usize = 10_000;
/// Recent latency samples kept for re-computing a drilled-into key's histogram.
pub const SAMPLE_CAP: usize = 100_000;
/// Distinct keys in the top table before the least recent fold into "other".
pub const TOP_CAP: usize = 500;
const NS_PER_SEC: u64 = 1_000_000_000;

/// One line of the request log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Arrival order, for pausing (entries after the pause point are hidden).
    pub seq: u64,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub probe: Arc<ProbeKey>,
    pub args: Vec<ArgValue>,
    /// The request's label (URL, query...) as traced, when the active pair names one.
    pub label: Option<Arc<str>>,
    /// The label with numbers and literals folded (`/users/42` → `/users/N`, see [`normalize_key`]): the top table
    /// and drill-down key.
    pub key: Option<Arc<str>>,
    /// For a done event matched with its start: the latency.
    pub latency_ns: Option<u64>,
}

/// One drill-down step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillDown {
    /// Only requests with this key (a top-table row).
    Key(String),
    /// Only completions whose latency is in `[lo_ns, hi_ns)` (a histogram bucket).
    Latency { lo_ns: u64, hi_ns: u64 },
}

impl DrillDown {
    fn admits(&self, e: &LogEntry) -> bool {
        match self {
            DrillDown::Key(k) => e.key.as_deref() == Some(k.as_str()),
            DrillDown::Latency { lo_ns, hi_ns } => {
                e.latency_ns.is_some_and(|l| l >= *lo_ns && l < *hi_ns)
            }
        }
    }
}

/// Hits of one probe and its recent rate.
#[derive(Debug, Clone, Copy, Default)]
pub struct HitRate {
    pub total: u64,
    pub per_sec: f64,
    prev_total: u64,
}

struct Sampled {
    ts_ns: u64,
    latency_ns: u64,
    key: Arc<str>,
}

pub struct Live {
    catalog: Arc<Catalog>,
    log: VecDeque<LogEntry>,
    next_seq: u64,
    /// When paused, the newest seq shown.
    pub paused_at: Option<u64>,
    /// Log lines scrolled away from the newest.
    pub log_scroll: usize,
    pairer: Option<Pairer>,
    latency: LatencyStats,
    /// The histogram of the key being drilled into, rebuilt from `samples` on entry.
    key_latency: Option<(String, LatencyStats)>,
    samples: VecDeque<Sampled>,
    top: TopTable,
    pub window: Window,
    pub top_sort: SortBy,
    pub top_cursor: Cursor,
    pub hist_cursor: Cursor,
    /// Rows the histogram has for bars (the runtime sets it from the layout).
    pub hist_rows: usize,
    pub filters: Vec<DrillDown>,
    pub now_ns: u64,
    hits: HashMap<Arc<ProbeKey>, HitRate>,
    last_rate_ns: u64,
    pub dropped: u64,
    /// String arguments the kernel could not read (bad pointers), all probes.
    pub unreadable: u64,
    /// Events dropped because the UI read them more slowly than the probes fired.
    pub too_slow: u64,
    /// Returns of a call-shaped pair paired in the kernel that did not pair with their own
    /// entry (exceptions, coroutine switches, calls entered before tracing, too deep).
    pub mismatched_returns: u64,
    pub events_total: u64,
    /// Events per second over the last rate interval (header).
    pub events_per_sec: f64,
    prev_events_total: u64,
    /// `Some(n)`: the followed pair is paired in the kernel, which feeds the histogram; the
    /// log, the top table and key drill-downs only see the 1-in-`n` streamed requests.
    pub sampling: Option<u32>,
    /// Interned keys, so thousands of log lines share one string per URL.
    interned: HashMap<String, Arc<str>>,
}

impl Live {
    /// The probes were taken out for a while (duty cycling): a start seen before must not
    /// pair with a done seen after.
    pub fn gap(&mut self) {
        if let Some(p) = self.pairer.as_mut() {
            p.forget_open();
        }
    }

    pub fn new(catalog: Arc<Catalog>) -> Live {
        Live {
            catalog,
            log: VecDeque::new(),
            next_seq: 0,
            paused_at: None,
            log_scroll: 0,
            pairer: None,
            latency: LatencyStats::new(),
            key_latency: None,
            samples: VecDeque::new(),
            top: TopTable::new(TOP_CAP),
            window: Window::Last10s,
            top_sort: SortBy::Count,
            top_cursor: Cursor::default(),
            hist_cursor: Cursor::default(),
            hist_rows: 16,
            filters: Vec::new(),
            now_ns: 0,
            hits: HashMap::new(),
            last_rate_ns: 0,
            dropped: 0,
            unreadable: 0,
            too_slow: 0,
            mismatched_returns: 0,
            events_total: 0,
            events_per_sec: 0.0,
            prev_events_total: 0,
            sampling: None,
            interned: HashMap::new(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The start/done pair the histogram and top table follow.
    pub fn pair(&self) -> Option<&Pair> {
        self.pairer.as_ref().map(|p| p.pair())
    }

    /// Follows `pair` from now on (aggregations restart).
    pub fn set_pair(&mut self, pair: Pair) {
        self.pairer = Some(Pairer::new(pair, PairLimits::default()));
        // A new pair starts in user space until the runtime moves it into the kernel.
        self.sampling = None;
        self.reset_aggregates();
    }

    /// Adopts the catalog pair of `probe` if no pair is followed yet.
    pub fn adopt_pair_of(&mut self, full_name: &str) {
        if self.pairer.is_none() {
            if let Some(pair) = self.catalog.pair_for(full_name).cloned() {
                self.set_pair(pair);
            }
        }
    }

    fn reset_aggregates(&mut self) {
        self.latency.reset();
        self.key_latency = None;
        self.samples.clear();
        self.top = TopTable::new(TOP_CAP);
        self.top_cursor = Cursor::default();
        self.hist_cursor = Cursor::default();
        self.filters.clear();
    }

    /// Clears the log and the aggregations (`c`).
    pub fn clear(&mut self) {
        self.log.clear();
        self.log_scroll = 0;
        self.paused_at = None;
        self.interned.clear();
        if let Some(p) = self.pairer.take() {
            self.pairer = Some(Pairer::new(p.pair().clone(), PairLimits::default()));
        }
        self.reset_aggregates();
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.interned.get(s) {
            return a.clone();
        }
        // Unbounded distinct keys (URLs with ids) must not grow memory without end.
        if self.interned.len() >= 4 * TOP_CAP {
            self.interned.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.interned.insert(s.to_string(), a.clone());
        a
    }

    pub fn push_events(&mut self, events: Vec<Event>) {
        // Hits are summed per batch with pointer comparisons (a batch holds a few probes and
        // thousands of events), then added to the map: no hashing per event.
        let mut batch_hits: Vec<(Arc<ProbeKey>, u64)> = Vec::new();
        for ev in events {
            match batch_hits
                .iter_mut()
                .find(|(k, _)| Arc::ptr_eq(k, &ev.probe))
            {
                Some((_, n)) => *n += 1,
                None => batch_hits.push((ev.probe.clone(), 1)),
            }
            self.push(ev);
        }
        for (k, n) in batch_hits {
            self.hits.entry(k).or_default().total += n;
        }
    }

    fn push(&mut self, ev: Event) {
        self.events_total += 1;
        self.now_ns = self.now_ns.max(ev.ts_ns);
        let mut label: Option<Arc<str>> = None;
        let mut key: Option<Arc<str>> = None;
        let mut latency_ns = None;
        if let Some(pairer) = self.pairer.as_mut().filter(|p| p.wants(&ev)) {
            let label_idx = pairer.pair().label;
            let is_start = is_named(&pairer.pair().start, &ev.probe);
            if let Some(sample) = pairer.push(&ev) {
                latency_ns = Some(sample.latency_ns);
                let text = sample.label.unwrap_or_else(|| pairer.pair().start.clone());
                label = Some(Arc::from(text.as_str()));
            } else if is_start {
                label = label_idx
                    .and_then(|i| arg_label(&ev.args, i))
                    .map(|s| Arc::from(s.as_str()));
            }
            key = label.as_deref().map(|l| self.intern(&normalize_key(l)));
            if let (Some(lat), Some(key)) = (latency_ns, key.clone()) {
                self.record_sample(ev.ts_ns, lat, key);
            }
        } else if self.pairer.is_none() {
            // Without a pair the top table ranks probes by hits.
            self.top.record(ev.ts_ns, &ev.probe.full_name(), None);
        }
        self.log.push_front(LogEntry {
            seq: self.next_seq,
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            tid: ev.tid,
            probe: ev.probe,
            args: ev.args,
            label,
            key,
            latency_ns,
        });
        self.next_seq += 1;
        if self.log.len() > LOG_CAP {
            self.log.pop_back();
        }
        if self.paused_at.is_none() && self.log_scroll > 0 {
            // Keep the lines being read in place while new ones arrive above them.
            self.log_scroll += 1;
        }
    }

    /// Switches the histogram's source between the kernel's aggregates (`Some(1-in-n)`) and
    /// the paired stream. What was recorded so far stays: neither source counts it twice.
    pub fn set_sampling(&mut self, sampling: Option<u32>) {
        self.sampling = sampling;
    }

    /// "sampled 1/n" while the log and top table see only a sample of the requests (the top
    /// table's counts are scaled back up by n).
    pub fn sampling_label(&self) -> Option<String> {
        self.sampling.map(|n| match n {
            0 => "paired in the kernel, log off".to_string(),
            n => format!("sampled 1/{n}"),
        })
    }

    /// Latencies paired in the kernel since the last report: the histogram's data. A report
    /// also means the followed pair is (still) paired in the kernel — e.g. after `P` re-selects
    /// the same pair, which restarts the aggregations but not the kernel's pairing.
    /// A call-shaped pair brings the top table's rows too (its calls are not streamed) and the
    /// returns that did not pair with their own entry.
    pub fn push_kernel_latency(&mut self, now_ns: u64, k: &KernelLatency) {
        self.sampling = Some(k.sample_every);
        self.now_ns = self.now_ns.max(now_ns);
        for &(latency_ns, n) in &k.samples {
            self.latency.record_n(self.now_ns, latency_ns, n);
        }
        for row in &k.keys {
            let key = normalize_key(&row.key);
            self.top
                .record_latencies(self.now_ns, &key, row.count, row.samples.iter().copied());
            if let Some((drilled, stats)) = self.key_latency.as_mut() {
                if *drilled == key {
                    for &(latency_ns, n) in &row.samples {
                        stats.record_n(self.now_ns, latency_ns, n);
                    }
                }
            }
        }
        self.mismatched_returns += k.mismatched;
    }

    fn record_sample(&mut self, ts_ns: u64, latency_ns: u64, key: Arc<str>) {
        if self.sampling.is_none() {
            self.latency.record(ts_ns, latency_ns);
        }
        // A request streamed 1 in n stands for n requests: the top table's counts and rates
        // stay estimates of the real traffic (its latencies are the sample's).
        let weight = self.sampling.unwrap_or(1).max(1) as u64;
        self.top.record_n(ts_ns, &key, weight, Some(latency_ns));
        if let Some((k, stats)) = self.key_latency.as_mut() {
            if **k == *key {
                stats.record(ts_ns, latency_ns);
            }
        }
        self.samples.push_back(Sampled {
            ts_ns,
            latency_ns,
            key,
        });
        if self.samples.len() > SAMPLE_CAP {
            self.samples.pop_front();
        }
    }

    /// Kernel hit counters (running totals), authoritative over events seen.
    pub fn set_hits(&mut self, hits: Vec<(Arc<ProbeKey>, u64)>, dropped: u64, too_slow: u64) {
        for (k, total) in hits {
            let h = self.hits.entry(k).or_default();
            h.total = h.total.max(total);
        }
        self.dropped = self.dropped.max(dropped);
        self.too_slow = self.too_slow.max(too_slow);
    }

    pub fn hit_rate(&self, probe: &ProbeKey) -> Option<HitRate> {
        self.hits.get(probe).copied()
    }

    pub fn tick(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        if let Some(p) = self.pairer.as_mut() {
            p.tick(self.now_ns);
        }
        let dt = self.now_ns.saturating_sub(self.last_rate_ns);
        if dt >= NS_PER_SEC {
            let secs = dt as f64 / 1e9;
            for h in self.hits.values_mut() {
                h.per_sec = (h.total - h.prev_total.min(h.total)) as f64 / secs;
                h.prev_total = h.total;
            }
            self.events_per_sec = (self.events_total - self.prev_events_total) as f64 / secs;
            self.prev_events_total = self.events_total;
            self.last_rate_ns = self.now_ns;
        }
    }

    // --- drill-down ---

    pub fn key_filter(&self) -> Option<&str> {
        self.filters.iter().rev().find_map(|f| match f {
            DrillDown::Key(k) => Some(k.as_str()),
            _ => None,
        })
    }

    pub fn push_filter(&mut self, f: DrillDown) {
        if let DrillDown::Key(k) = &f {
            // One key at a time: a new key replaces the previous drill-down.
            self.filters.clear();
            let mut stats = LatencyStats::new();
            for s in self.samples.iter().filter(|s| *s.key == **k) {
                stats.record(s.ts_ns, s.latency_ns);
            }
            self.key_latency = Some((k.clone(), stats));
            self.hist_cursor = Cursor::default();
        } else {
            self.filters.retain(|g| matches!(g, DrillDown::Key(_)));
        }
        self.filters.push(f);
        self.log_scroll = 0;
    }

    /// Steps back one drill-down; returns false when there was none.
    pub fn pop_filter(&mut self) -> bool {
        let popped = self.filters.pop();
        if matches!(popped, Some(DrillDown::Key(_))) {
            self.key_latency = None;
            self.hist_cursor = Cursor::default();
        }
        self.log_scroll = 0;
        popped.is_some()
    }

    fn admitted(&self, e: &LogEntry) -> bool {
        self.filters.iter().all(|f| f.admits(e)) && self.paused_at.is_none_or(|seq| e.seq <= seq)
    }

    /// Log entries to show, newest first, after filters, pause and scroll.
    pub fn log_view(&self, limit: usize) -> Vec<&LogEntry> {
        self.log
            .iter()
            .filter(|e| self.admitted(e))
            .skip(self.log_scroll)
            .take(limit)
            .collect()
    }

    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Entries that arrived since the log was paused.
    pub fn unseen_since_pause(&self) -> u64 {
        self.paused_at
            .map(|seq| self.next_seq.saturating_sub(seq + 1))
            .unwrap_or(0)
    }

    pub fn toggle_pause(&mut self) {
        self.paused_at = match self.paused_at {
            Some(_) => None,
            None => Some(self.next_seq.saturating_sub(1)),
        };
        self.log_scroll = 0;
    }

    fn stats(&self) -> &LatencyStats {
        match (&self.key_latency, self.key_filter()) {
            (Some((k, stats)), Some(f)) if k == f => stats,
            _ => &self.latency,
        }
    }

    /// The histogram summary for the current window and key filter.
    pub fn summary(&self) -> Summary {
        self.stats().summary(self.window, self.now_ns)
    }

    /// Log-spaced buckets, `[lo, hi)`, for the current window and key filter, at most
    /// `hist_rows` of them: neighbours are merged pairwise (×2 → ×4 → ×16 wide) until they fit,
    /// so the slowest requests are always on screen.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut b = self
            .stats()
            .buckets(self.window, self.now_ns, BucketScheme::PowersOfTwo);
        while b.len() > self.hist_rows.max(1) && b.len() > 1 {
            b = b
                .chunks(2)
                .map(|c| Bucket {
                    lo_ns: c[0].lo_ns,
                    hi_ns: c[c.len() - 1].hi_ns,
                    count: c.iter().map(|x| x.count).sum(),
                })
                .collect();
        }
        b
    }

    pub fn top_rows(&self, limit: usize) -> Vec<TopRow> {
        self.top
            .rows(self.now_ns, self.window, self.top_sort, limit)
    }

    pub fn top_len(&self) -> usize {
        self.top.len()
    }
}

/// Whether `probe` is `provider:name` (without formatting a string per event).
fn is_named(full_name: &str, probe: &ProbeKey) -> bool {
    full_name.split_once(':') == Some((probe.provider.as_str(), probe.name.as_str()))
}
