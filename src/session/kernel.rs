//! The in-kernel side of a session. A latency pair (`usdtop latency`, the TUI's histogram): the
//! kernel pairs starts with dones and keeps the histogram; a sample of requests is streamed for
//! the table by key, in auto mode at a rate adapted to stay near `TARGET_STREAM_RATE` events per
//! second. A top table: the kernel counts hits (and latencies, with a pair) by string key.

use super::SessionError;
use crate::aggregate::{
    BucketScheme, LatencyAgg, LatencyReport, LatencyStats, PairStats, Summary, TopAgg, Window,
};
use crate::probes::discovery::catalog::Pair;
use crate::probes::kernel::kcalls::{CallMismatches, KernelCallStats, KernelCalls};
use crate::probes::kernel::kpair::{KernelPairStats, KernelPairs, KpairError, Role};
use crate::probes::kernel::ktop::{KernelTop, KernelTopCounts};
use crate::probes::kernel::ktoplat::KtoplatError;
use crate::probes::kernel::ktoplat::{KernelTopLat, KernelTopLatency};
use crate::probes::tracing::engine::{Engine, ProbeId, Stats};

/// Streamed events per second above which auto sampling streams fewer requests.
pub const TARGET_STREAM_RATE: f64 = 20_000.0;
const PAIR_ID: u16 = 0;

/// Pairing counters of a pair matched in the kernel, cumulative.
pub fn kernel_pairing(
    starts: u64,
    matched: u64,
    unmatched_done: u64,
    replaced: u64,
    open: u64,
) -> PairStats {
    PairStats {
        starts,
        dones: matched + unmatched_done,
        matched,
        unmatched_done,
        expired: 0,
        // Starts neither finished, replaced nor waiting were dropped by the LRU map.
        evicted: starts.saturating_sub(matched + replaced + open),
        replaced,
        bad_key: 0,
        open,
        gap_discarded: 0,
    }
}

pub struct KernelSide {
    pairs: KernelPairs,
    start_ids: Vec<ProbeId>,
    pub sample_every: u32,
    adaptive: bool,
    at_interval_start: KernelPairStats,
    last_tick: Option<(u64, u64)>,
    /// Starts forgotten at gaps of the attachment (duty cycling).
    gap_discarded: u64,
}

impl KernelSide {
    /// Gives the attached probes their roles. `sample`: a fixed 1-in-N stream, else adaptive
    /// starting from every request.
    pub fn new(
        engine: &mut Engine,
        pair: &Pair,
        start_ids: Vec<ProbeId>,
        done_ids: &[ProbeId],
        sample: Option<u32>,
        now_ns: u64,
    ) -> Result<KernelSide, KpairError> {
        let pairs = KernelPairs::new(engine)?;
        KernelSide::with_pairs(pairs, pair, start_ids, done_ids, sample, now_ns)
    }

    /// As [`KernelSide::new`], with maps already taken from the engine (they can be taken
    /// only once; the TUI moves pairs in and out of the kernel).
    pub fn with_pairs(
        mut pairs: KernelPairs,
        pair: &Pair,
        start_ids: Vec<ProbeId>,
        done_ids: &[ProbeId],
        sample: Option<u32>,
        now_ns: u64,
    ) -> Result<KernelSide, KpairError> {
        let sample_every = sample.unwrap_or(1);
        // Dones first: a start configured before its done could wait for a done that is
        // not yet recognised.
        for id in done_ids {
            pairs.set_role(*id, PAIR_ID, Role::Done, pair.done_key, sample_every)?;
        }
        for id in &start_ids {
            pairs.set_role(*id, PAIR_ID, Role::Start, pair.start_key, sample_every)?;
        }
        let at_interval_start = pairs.read(PAIR_ID);
        Ok(KernelSide {
            pairs,
            start_ids,
            sample_every,
            adaptive: sample.is_none(),
            at_interval_start,
            last_tick: Some((now_ns, 0)),
            gap_discarded: 0,
        })
    }

    /// Gives back the maps (the probes' roles are left to the caller to clear).
    pub fn into_pairs(self) -> KernelPairs {
        self.pairs
    }

    /// What the kernel paired since the previous call (or since the side was made).
    pub fn take_delta(&mut self) -> KernelPairStats {
        let total = self.pairs.read(PAIR_ID);
        let delta = total.since(&self.at_interval_start);
        self.at_interval_start = total;
        delta
    }

    /// The attachment had a gap (duty cycling): the starts waiting in the kernel are forgotten,
    /// never paired with a done after it.
    pub fn gap(&mut self) {
        self.gap_discarded += self.pairs.clear_starts(PAIR_ID);
    }

    /// On every tick: adapt the sampling to the rate of streamed events.
    pub fn tick(&mut self, now_ns: u64, stats: &Stats) -> Result<(), KpairError> {
        let prev = self.last_tick.replace((now_ns, stats.events));
        let Some((t0, e0)) = prev else { return Ok(()) };
        if !self.adaptive || now_ns <= t0 {
            return Ok(());
        }
        let rate = stats.events.saturating_sub(e0) as f64 / ((now_ns - t0) as f64 / 1e9);
        let mut next = self.sample_every;
        if rate > TARGET_STREAM_RATE {
            let factor = (rate / TARGET_STREAM_RATE).ceil() as u32;
            next = self
                .sample_every
                .saturating_mul(factor.next_power_of_two())
                .min(1 << 20);
        } else if rate < TARGET_STREAM_RATE / 4.0 && self.sample_every > 1 {
            next = self.sample_every / 2;
        }
        if next != self.sample_every {
            self.sample_every = next;
            for id in &self.start_ids {
                self.pairs.set_sampling(*id, next)?;
            }
        }
        Ok(())
    }

    /// Replaces the figures of a report built from streamed samples with the kernel's for the
    /// interval; the streamed figures move to `streamed`. Starts a new interval unless `last`.
    pub fn report(
        &mut self,
        mut report: LatencyReport,
        now_ns: u64,
        scheme: BucketScheme,
        last: bool,
    ) -> (LatencyReport, Summary, KernelPairStats) {
        let total = self.pairs.read(PAIR_ID);
        let delta = total.since(&self.at_interval_start);
        let streamed = kernel_figures(&mut report, &delta, now_ns, scheme);
        let open = self.pairs.open_starts(PAIR_ID);
        report.pairing = kernel_pairing(
            total.starts,
            total.matched,
            total.unmatched_done,
            total.replaced,
            open,
        );
        // Forgotten at a gap, not evicted by the LRU map.
        report.pairing.evicted = report.pairing.evicted.saturating_sub(self.gap_discarded);
        report.pairing.gap_discarded = self.gap_discarded;
        if !last {
            self.at_interval_start = total;
        }
        (report, streamed, delta)
    }
}

/// Puts the summary and buckets of `delta` (kernel buckets, this interval) into `report`;
/// returns the summary it had.
fn kernel_figures(
    report: &mut LatencyReport,
    delta: &KernelPairStats,
    now_ns: u64,
    scheme: BucketScheme,
) -> Summary {
    let mut stats = LatencyStats::new();
    for (mid, count) in delta.samples() {
        stats.record_n(now_ns, mid, count);
    }
    let mut summary = stats.summary(Window::All, now_ns);
    if delta.matched > 0 {
        summary.mean_ns = delta.sum_ns as f64 / delta.matched as f64;
    }
    report.buckets = stats.buckets(Window::All, now_ns, scheme);
    std::mem::replace(&mut report.summary, summary)
}

/// Pairing counters of a call-shaped pair paired in the kernel, cumulative: returns that found
/// no call of theirs are unmatched; the other mismatches are in [`CallMismatches`].
pub fn calls_pairing(total: &KernelCallStats, open: u64) -> PairStats {
    let m = &total.mismatches;
    let unmatched_done = m.no_open_call + m.not_on_stack;
    PairStats {
        starts: total.pair.starts,
        dones: total.pair.matched + unmatched_done,
        matched: total.pair.matched,
        unmatched_done,
        open,
        ..PairStats::default()
    }
}

/// The in-kernel side of a call-shaped pair (entry/return probes that nest): the kernel pairs
/// calls on a stack per thread and keeps the histogram and latencies per key; nothing is
/// streamed.
pub struct CallsSide {
    calls: KernelCalls,
    at_interval_start: KernelCallStats,
}

impl CallsSide {
    /// Gives the attached entry and return probes (attached with `Mode::Calls`) their roles.
    /// The attachment had a gap (duty cycling): open calls are forgotten, never paired with
    /// a return after it.
    pub fn gap(&mut self) {
        self.calls.forget_open();
    }

    pub fn new(
        engine: &mut Engine,
        start_ids: Vec<ProbeId>,
        done_ids: Vec<ProbeId>,
    ) -> Result<CallsSide, KtoplatError> {
        let calls = KernelCalls::new(engine, start_ids, done_ids)?;
        let at_interval_start = calls.read();
        Ok(CallsSide {
            calls,
            at_interval_start,
        })
    }

    /// Everything counted since the pair was configured.
    pub fn totals(&self) -> KernelCallStats {
        self.calls.read()
    }

    /// Calls open right now.
    pub fn open_calls(&self) -> u64 {
        self.calls.open_calls()
    }

    /// Moves this interval's calls per key into `agg`'s `by` table and returns its report with
    /// the kernel's figures, and the cumulative totals (mismatches). Starts a new interval
    /// unless `last`.
    pub fn report(
        &mut self,
        agg: &mut LatencyAgg,
        (now_ns, scheme, limit): (u64, BucketScheme, usize),
        last: bool,
    ) -> (LatencyReport, KernelCallStats) {
        let total = self.calls.read();
        let delta = total.since(&self.at_interval_start);
        agg.record_kernel_keys(now_ns, &delta.keys);
        agg.record_unkeyed(delta.unreadable + delta.overflow);
        let mut report = agg.report(Window::All, now_ns, scheme, limit);
        kernel_figures(&mut report, &delta.pair, now_ns, scheme);
        report.pairing = calls_pairing(&total, self.calls.open_calls());
        if !last {
            self.at_interval_start = total.clone();
        }
        (report, total)
    }
}

/// The in-kernel side of a top table: hits counted by key, or with a pair latencies by key too.
pub struct TopKernel {
    kind: TopKind,
    start_ids: Vec<ProbeId>,
}

/// What the kernel aggregates, and its cumulative figures at the start of the interval.
// One value per session: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum TopKind {
    Counts(KernelTop, KernelTopCounts),
    Latency(KernelTopLat, KernelTopLatency),
    Calls(KernelCalls, KernelCallStats),
}

/// What the kernel has counted since the attach (cumulative, for an exporter's counters).
pub enum TopTotals {
    Counts(KernelTopCounts),
    Latency(KernelTopLatency),
}

impl TopKernel {
    /// The attachment had a gap (duty cycling): requests and calls still open are forgotten,
    /// never paired with a done or return after it.
    pub fn gap(&mut self) {
        match &mut self.kind {
            TopKind::Counts(..) => {}
            TopKind::Latency(lat, _) => lat.clear_starts(),
            TopKind::Calls(calls, _) => calls.forget_open(),
        }
    }

    /// The kernel's figures since the attach, by key.
    pub fn totals(&self) -> TopTotals {
        match &self.kind {
            TopKind::Counts(top, _) => TopTotals::Counts(top.read(&self.start_ids)),
            TopKind::Latency(lat, _) => TopTotals::Latency(lat.read()),
            TopKind::Calls(calls, _) => {
                let c = calls.read();
                TopTotals::Latency(KernelTopLatency {
                    keys: c.keys,
                    unreadable: c.unreadable,
                    overflow: c.overflow,
                    unmatched_done: c.mismatches.total(),
                    replaced: 0,
                })
            }
        }
    }

    /// How the returns of a call-shaped pair that did not pair with their own entry were
    /// resolved, since the attach (`None` for other tables).
    pub fn call_mismatches(&self) -> Option<CallMismatches> {
        match &self.kind {
            TopKind::Calls(calls, _) => Some(calls.read().mismatches),
            _ => None,
        }
    }

    /// Takes the kernel's maps for the attached start (and, with `pair`, done) probes.
    pub fn new(
        engine: &mut Engine,
        pair: Option<&Pair>,
        start_ids: Vec<ProbeId>,
        done_ids: Vec<ProbeId>,
    ) -> Result<TopKernel, SessionError> {
        let kind = match pair {
            None => TopKind::Counts(KernelTop::new(engine)?, KernelTopCounts::default()),
            Some(p) if p.nested => {
                let calls = KernelCalls::new(engine, start_ids.clone(), done_ids)?;
                let before = calls.read();
                TopKind::Calls(calls, before)
            }
            Some(p) => TopKind::Latency(
                KernelTopLat::new(
                    engine,
                    start_ids.clone(),
                    done_ids,
                    (p.start_key, p.done_key),
                )?,
                KernelTopLatency::default(),
            ),
        };
        Ok(TopKernel { kind, start_ids })
    }

    /// Moves what the kernel aggregated this interval into `agg`; returns the requests or hits
    /// of keys the kernel had no room for, and with latency the pairing counters (since the
    /// start). Starts a new interval unless `last`.
    pub fn record(
        &mut self,
        agg: &mut TopAgg,
        now: u64,
        stats: &Stats,
        last: bool,
    ) -> (u64, Option<PairStats>) {
        match &mut self.kind {
            TopKind::Counts(top, before) => {
                let total = top.read(&self.start_ids);
                let delta = total.since(before);
                agg.record_counts(now, &delta.keys, delta.unreadable, delta.overflow);
                if !last {
                    *before = total;
                }
                (delta.overflow, None)
            }
            TopKind::Latency(lat, before) => {
                let total = lat.read();
                let delta = total.since(before);
                for (key, k) in &delta.keys {
                    agg.record_latencies(now, key, k.count, k.samples());
                }
                agg.record_counts(now, [], delta.unreadable, delta.overflow);
                let starts = stats
                    .probes
                    .iter()
                    .filter(|p| self.start_ids.contains(&p.id))
                    .map(|p| p.hits)
                    .sum::<u64>();
                let pairing = kernel_pairing(
                    starts,
                    total.matched(),
                    total.unmatched_done,
                    total.replaced,
                    lat.open_starts(),
                );
                if !last {
                    *before = total;
                }
                (delta.overflow, Some(pairing))
            }
            TopKind::Calls(calls, before) => {
                let total = calls.read();
                let delta = total.since(before);
                for (key, k) in &delta.keys {
                    agg.record_latencies(now, key, k.count, k.samples());
                }
                agg.record_counts(now, [], delta.unreadable, delta.overflow);
                let pairing = calls_pairing(&total, calls.open_calls());
                if !last {
                    *before = total;
                }
                (delta.overflow, Some(pairing))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::aggregate::{SortBy, TopTable, Window};
    use crate::probes::kernel::ktoplat::{bucket_of, KeyLatency, BUCKETS};

    #[test]
    fn percentiles_from_the_buckets_are_within_their_resolution() {
        // 1..=1000 us, one request each: p50 500 us, p99 990 us.
        let mut k = KeyLatency {
            count: 1000,
            sum_ns: 0,
            buckets: vec![0; BUCKETS],
        };
        for us in 1..=1000u64 {
            k.buckets[bucket_of(us * 1000)] += 1;
            k.sum_ns += us * 1000;
        }
        let mut t = TopTable::new(10);
        t.record_latencies(0, "/k", k.count, k.samples());
        let row = &t.rows(0, Window::All, SortBy::Count, 1)[0];
        assert_eq!(row.count, 1000);
        // Midpoints are within 1/16; the table's histograms add 1 %.
        let close = |got: u64, want: u64| got.abs_diff(want) <= want / 16 + want / 100;
        assert!(close(row.p50_ns.unwrap(), 500_000), "{row:?}");
        assert!(close(row.p99_ns.unwrap(), 990_000), "{row:?}");
    }
}
