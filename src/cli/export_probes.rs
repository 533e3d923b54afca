//! One probe `usdtop export` serves: planned in every `-p` process (or the files for all
//! processes), attached in an engine of its own, and read from the kernel's maps. An engine per
//! probe is what lets a reload detach one probe and attach another while the rest keep their
//! kernel counters untouched.

use super::export_config::{Kind, ProbeSpec};
use super::export_metrics::{by_label, Edges, Figures, Histogram, KernelLatency, KeyBound, Tally};
use super::export_native::native;
use super::headless;
use crate::stop;
use std::collections::{BTreeMap, HashSet};
use usdtop::probes::discovery::catalog::{Catalog, Pair};
use usdtop::probes::discovery::targets::Target;
use usdtop::probes::discovery::watch::{Change, Watch};
use usdtop::probes::kernel::ktoplat::{bucket_range, BUCKETS};
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::EngineOptions;
use usdtop::session::duty::DutyOptions;
use usdtop::session::{
    self, plan_top, AggMode, Ask, Place, Session, SessionError, SessionOptions, TopAsk, TopKernel,
    TopPlan, TopTotals, WatchFiles,
};

/// Ring buffer of a probe's engine: nothing is streamed in the kernel modes, so the smallest
/// the kernel takes (16 MiB each would add up over many probes).
const RING_BYTES: u32 = 64 << 10;
/// Decoded events queued (none are expected).
const QUEUE_BYTES: usize = 1 << 20;

/// What to attach for one probe, found but not attached.
pub struct Planned {
    pub spec: ProbeSpec,
    /// `provider:name` of the probe or the pair's start: the `pair` / `probe` label.
    pub name: String,
    pair: Option<Pair>,
    /// Start sites first (`n_start`), then done sites, each with its string arguments.
    targets: Vec<(Target, Vec<usize>)>,
    n_start: usize,
    mode: Mode,
}

/// Finds the sites of `spec` in each of its processes (every process without), once each.
pub fn plan(spec: &ProbeSpec, catalog: &Catalog, verbose: bool) -> Result<Planned, SessionError> {
    let ask = TopAsk {
        ask: Ask {
            start: &spec.probe,
            done: spec.done.as_deref(),
            key: spec.key.as_deref(),
            by: spec.by.as_deref(),
            // An exporter runs for weeks: never stream every event.
            mode: AggMode::Kernel,
        },
        no_pair: spec.kind == Kind::Count,
        // Folded in user space from the kernel's keys (see [`Served::read`]).
        fold: false,
    };
    let places: Vec<Option<u32>> = match spec.pids.is_empty() {
        true => vec![None],
        false => spec.pids.iter().copied().map(Some).collect(),
    };
    let mut starts: Vec<(Target, Vec<usize>)> = Vec::new();
    let mut dones: Vec<(Target, Vec<usize>)> = Vec::new();
    let mut first = None;
    for pid in places {
        let place = Place { pid, verbose };
        let TopPlan {
            name, pair, plan, ..
        } = plan_top(&ask, place, catalog, headless::notice)?;
        if spec.kind == Kind::Latency && pair.is_none() {
            return Err(SessionError::UnknownPair(name));
        }
        let mut targets = plan.targets;
        let done_part = targets.split_off(plan.n_start);
        // Processes running the same file share its probes: attach them once.
        add_new(&mut starts, targets);
        add_new(&mut dones, done_part);
        first.get_or_insert((name, pair, plan.mode));
    }
    let (name, pair, mode) = first.expect("at least one place");
    let n_start = starts.len();
    starts.append(&mut dones);
    Ok(Planned {
        spec: spec.clone(),
        name,
        pair,
        targets: starts,
        n_start,
        mode,
    })
}

fn add_new(to: &mut Vec<(Target, Vec<usize>)>, found: Vec<(Target, Vec<usize>)>) {
    for (t, strings) in found {
        let same = |(o, _): &(Target, Vec<usize>)| {
            o.open_path == t.open_path && o.probe().full_name() == t.probe().full_name()
        };
        if !to.iter().any(same) {
            to.push((t, strings));
        }
    }
}

/// An attached probe and what its series have shown so far.
pub struct Served {
    pub spec: ProbeSpec,
    pub name: String,
    session: Session,
    kernel: TopKernel,
    bound: KeyBound,
    edges: Edges,
    watch: Watch,
}

/// Attaches a planned probe in an engine of its own. A stop signal during the attach gives
/// [`SessionError::Interrupted`] (its engine, once dropped, has undone the attach).
pub fn attach(p: Planned, duty: Option<DutyOptions>) -> Result<Served, SessionError> {
    let options = SessionOptions {
        pids: p.spec.pids.clone(),
        exact_forks: false,
        mode: p.mode,
        engine: EngineOptions {
            ring_bytes: Some(RING_BYTES),
            queue_bytes: QUEUE_BYTES,
            ..EngineOptions::default()
        },
        watch: WatchFiles::Traced,
        duty,
    };
    let mut session = session::attach(&p.targets, options, &stop::REQUESTED)?;
    if !p.spec.pids.is_empty() {
        if let Err(why) = session.engine.fork_tracking() {
            eprintln!("usdtop: warning: processes forked from now on are not followed ({why})");
        }
    }
    let (start_ids, done_ids) = session.ids.split_at(p.n_start);
    let (start_ids, done_ids) = (start_ids.to_vec(), done_ids.to_vec());
    let kernel = TopKernel::new(&mut session.engine, p.pair.as_ref(), start_ids, done_ids)?;
    // Told of a replaced file (a deploy), as `trace` is; the processes' exit ends the exporter.
    let mut watch = Watch::new();
    if p.spec.pids.is_empty() {
        let files: HashSet<_> = p.targets.iter().map(|(t, _)| &t.open_path).collect();
        files
            .into_iter()
            .filter(|f| !f.starts_with("/proc"))
            .for_each(|f| watch.file(f));
    }
    Ok(Served {
        bound: KeyBound::new(p.spec.max_keys),
        spec: p.spec,
        name: p.name,
        session,
        kernel,
        edges: Edges::default(),
        watch,
    })
}

impl Served {
    pub fn sites(&self) -> usize {
        self.session.sites
    }

    /// Takes a new `max_keys` (a reload that changed only that): keys shown stay shown.
    pub fn set_max_keys(&mut self, max: usize) {
        self.spec.max_keys = max;
        self.bound.max = max;
    }

    /// What changed in the traced files since the last call.
    pub fn changes(&mut self) -> Vec<Change> {
        self.watch.changes()
    }

    /// Under an overhead budget: takes the probe out or puts it back as the duty cycle says;
    /// at a gap the kernel forgets its open starts.
    pub fn duty_tick(&mut self) {
        if self.session.duty_step() {
            self.kernel.gap();
        }
    }

    /// Adds this probe's figures, cumulative since its attach, to `f`.
    pub fn read(&mut self, f: &mut Figures) {
        if let Some(s) = self.session.sampling() {
            let attached = s.attached(std::time::Instant::now()).as_secs_f64();
            f.attached_seconds.insert(self.name.clone(), attached);
        }
        let stats = self.session.engine.stats();
        f.ring_drops += stats.drops;
        f.attached_sites += self.session.sites as u64;
        let mut hits: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        for p in &stats.probes {
            let key = (
                p.probe.path.clone(),
                p.probe.provider.clone(),
                p.probe.name.clone(),
            );
            *hits.entry(key).or_default() += p.hits;
        }
        // A probe two served probes attach counts its hits twice over: serve them once.
        for (key, n) in hits {
            let e = f.hits.entry(key).or_default();
            *e = (*e).max(n);
        }
        let overflow = match self.kernel.totals() {
            TopTotals::Counts(c) => {
                let keys = by_label(c.keys.into_iter().collect(), self.spec.fold);
                for (key, n) in self.bound.bound(keys) {
                    f.key_hits.insert((self.name.clone(), key), n);
                }
                c.overflow
            }
            TopTotals::Latency(l) => {
                let keys = l
                    .keys
                    .into_iter()
                    .map(|(key, k)| {
                        let t = KernelLatency {
                            sum_ns: k.sum_ns,
                            buckets: k.buckets,
                        };
                        (key, t)
                    })
                    .collect();
                let keys = by_label(keys, self.spec.fold);
                for (_, k) in &keys {
                    self.edges.note(&k.buckets);
                }
                for (key, k) in self.bound.bound(keys) {
                    let h = histogram(&k, &self.edges);
                    f.latency.insert((self.name.clone(), key), h);
                }
                l.overflow
            }
        };
        *f.keys_overflow.entry(self.name.clone()).or_default() += overflow;
    }
}

/// A key's kernel buckets as served: classic buckets at the edges used, and native.
fn histogram(k: &KernelLatency, edges: &Edges) -> Histogram {
    Histogram {
        count: k.count(),
        sum_s: k.sum_ns as f64 / 1e9,
        buckets: edges.served(&k.buckets, upper_edge_s),
        native: native(&k.buckets, bucket_range),
    }
}

/// The upper edge of a kernel bucket in seconds; the last one is open above.
fn upper_edge_s(i: usize) -> f64 {
    if i + 1 >= BUCKETS {
        f64::INFINITY
    } else {
        bucket_range(i).1 as f64 / 1e9
    }
}
