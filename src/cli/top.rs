//! `usdtop top PROBE --by ARG`: the busiest values of a probe argument (URLs, queries, URIs),
//! with count, rate and, when the probe starts a pair, latency percentiles.

use super::headless;
use super::numbers;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use usdtop::aggregate::{
    fit, format_duration_ns, PairLimits, PairStats, SortBy, TopAgg, TopReport,
};
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::kernel::ktop::{KernelTop, KernelTopCounts, KEY_LEN};
use usdtop::probes::kernel::ktoplat::{KernelTopLat, KernelTopLatency};
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::{ProbeId, Stats};
use usdtop::session::{
    build_pair, check_arg, done_spec, kernel_pairing, kernel_unsupported, parse_arg_ref, parse_key,
    strings_for, AggMode, Step,
};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  usdtop top -p $(pgrep -n php8.2) php:request__startup            # by uri, with latency
  usdtop top postgresql:query__start --by query --sort p99
  usdtop top -p $(pgrep -o postgres) postgresql:query__start --fold   # by statement shape
  usdtop top /srv/app:app:req__start --done app:req__done --key arg0 --by arg1
  usdtop top /usr/bin/python3.11:python:function__entry --by arg1 --no-pair")]
pub struct TopArgs {
    /// The probe: `provider:name` or `PATH:provider:name`; PATH may be a glob matching copies of
    /// one program.
    pub probe: String,
    /// The argument to group by: `argN`, or a catalog argument name (default: the catalog
    /// pair's label, else the probe's first string argument). A string unless the catalog says
    /// otherwise; append `:int` for an integer.
    #[arg(long)]
    pub by: Option<String>,
    /// The done probe of a pair the catalog does not know (`provider:name`, in the same object
    /// as PROBE unless it names a path): rows get latency percentiles from PROBE to it.
    #[arg(long, conflicts_with = "no_pair")]
    pub done: Option<String>,
    /// Pair a start with its done by an argument instead of by thread: `argN` (the same index
    /// on both probes), `argN:argM` (start:done), or a catalog argument name such as `fd`.
    #[arg(long, conflicts_with = "no_pair")]
    pub key: Option<String>,
    /// Trace only this process (and the processes it forks).
    #[arg(short, long)]
    pub pid: Option<u32>,
    /// Say which files a PATH glob matched.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the table every this many seconds, each covering that interval only.
    #[arg(short, long, value_parser = numbers::seconds)]
    pub interval: Option<f64>,
    /// Stop after this many seconds (default: until Ctrl-C or the -p process exits).
    #[arg(short, long, value_parser = numbers::seconds)]
    pub duration: Option<f64>,
    /// Rows shown.
    #[arg(long, default_value_t = 20, value_parser = numbers::at_least_one::<usize>)]
    pub limit: usize,
    #[arg(long, value_enum, default_value_t = Sort::Count)]
    pub sort: Sort,
    /// Count hits only, even when the probe starts a known pair.
    #[arg(long)]
    pub no_pair: bool,
    /// One row per kind of key, as the TUI's top table: numbers become N and quoted literals
    /// '?', so `/users/42` and `/users/7` are `/users/N` and SQL statements differing only in
    /// their values are one row. With --mode auto this streams (the kernel would keep every
    /// distinct raw string and run out of keys).
    #[arg(long)]
    pub fold: bool,
    /// Most distinct keys kept; the least recently seen beyond it are folded into "other".
    #[arg(long, default_value_t = 10_000, value_parser = numbers::at_least_one::<usize>)]
    pub max_keys: usize,
    /// One JSON object per report instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where hits are counted. auto: in the kernel when the key is a string and, with a pair,
    /// the pair can be matched there (by thread or an integer key, not nested), else every
    /// event is streamed; stream: always stream; kernel: as auto, or an error. In the kernel
    /// keys are cut at 63 bytes (marked …; bpftrace str() also keeps 64); without a pair at
    /// most 16384 distinct keys are kept, with one 2048 keys and 16384 requests in flight, and
    /// latencies are kept in buckets 1/8 of a power of two wide (percentiles within ~7 %).
    /// Hits of further keys show as "other".
    #[arg(long, value_enum, default_value_t = AggMode::Auto)]
    pub mode: AggMode,
    /// Most MiB of decoded events waiting to be aggregated (stream mode); beyond it events are
    /// dropped and counted as "dropped (too slow)".
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = numbers::queue_mb)]
    pub queue_mb: usize,
}

/// What the kernel aggregates, and its cumulative figures at the start of the interval.
// One value per run: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Kernel {
    Counts(KernelTop, KernelTopCounts),
    Latency(KernelTopLat, KernelTopLatency),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sort {
    Count,
    Rate,
    P99,
    Key,
}

impl From<Sort> for SortBy {
    fn from(s: Sort) -> Self {
        match s {
            Sort::Count => SortBy::Count,
            Sort::Rate => SortBy::Rate,
            Sort::P99 => SortBy::P99,
            Sort::Key => SortBy::Key,
        }
    }
}

pub fn run(args: TopArgs) -> Result<u8> {
    let catalog = Catalog::builtin();
    let spec = headless::probe(&args.probe)?;
    let name = spec.full_name();
    let end = args.done.as_deref().map(headless::probe).transpose()?;
    let pair = if args.no_pair {
        None
    } else if end.is_some() || args.key.is_some() {
        Some(build_pair(
            &spec,
            end.as_ref(),
            args.key.as_deref(),
            &catalog,
        )?)
    } else {
        catalog.pairs().iter().find(|p| p.start == name).cloned()
    };
    let by = match &args.by {
        Some(b) => parse_arg_ref(b, &name, &catalog, true)?,
        None => {
            let index = pair
                .as_ref()
                .and_then(|p| p.label)
                .or_else(|| catalog.string_args(&name).first().copied());
            match index {
                Some(index) => parse_arg_ref(&index.to_string(), &name, &catalog, true)?,
                None => bail!("which argument of {name} should rows be keyed by? give --by argN"),
            }
        }
    };
    let key = match (&args.key, &pair) {
        (Some(k), Some(p)) => Some(parse_key(k, p, &catalog)?),
        _ => None,
    };
    let pair_key_is_str = key.is_some_and(|(s, d)| s.is_str || d.is_str);

    let done = pair
        .as_ref()
        .map(|p| done_spec(p, &spec, end.as_ref()))
        .transpose()?;
    // The kernel counts rows by string; with a pair it must also be able to match it.
    let unsupported = if by.is_str {
        pair.as_ref()
            .and_then(|p| kernel_unsupported(p, &catalog, pair_key_is_str))
    } else {
        Some("integer keys are grouped in user space".into())
    };
    // Folding in the kernel would keep every distinct raw string and run out of keys.
    let in_kernel = match args.mode.in_kernel(unsupported, args.fold) {
        Ok(k) => k,
        Err(why) => bail!("cannot count {name} in the kernel: {why}"),
    };
    let mut specs = vec![&spec];
    specs.extend(done.as_ref());
    let mut found = headless::resolve(&specs, args.pid, args.verbose)?.into_iter();
    let start_targets = found.next().unwrap_or_default();
    let done_targets = found.next().unwrap_or_default();
    let by_option = match &args.by {
        Some(text) => format!("--by {text}"),
        None => format!("the default key arg{} (give --by)", by.index),
    };
    check_arg(&start_targets, by, &by_option)?;
    if let (Some((s, d)), Some(text)) = (key, &args.key) {
        check_arg(&start_targets, s, &format!("--key {text}"))?;
        check_arg(&done_targets, d, &format!("--key {text}"))?;
    }
    let mut targets: Vec<_> = start_targets
        .into_iter()
        .map(|t| {
            // In the kernel the key is the site's only string argument.
            let strings = if in_kernel {
                vec![by.index]
            } else {
                strings_for(&name, &catalog, &[by])
            };
            (t, strings)
        })
        .collect();
    let n_start = targets.len();
    if let Some(p) = &pair {
        for t in done_targets {
            // The kernel reads no string at a done (its key is an integer or the thread).
            let strings = if in_kernel {
                Vec::new()
            } else {
                catalog.string_args(&p.done)
            };
            targets.push((t, strings));
        }
    }
    let mode = match (in_kernel, &pair) {
        (false, _) => Mode::Stream,
        (true, None) => Mode::Top,
        (true, Some(_)) => Mode::TopLat,
    };
    let mut session = headless::attach(&targets, args.pid, mode, args.queue_mb)?;
    let (start_ids, done_ids) = session.ids.split_at(n_start);
    let (start_ids, done_ids) = (start_ids.to_vec(), done_ids.to_vec());
    let mut kernel = match (in_kernel, &pair) {
        (false, _) => None,
        (true, None) => Some(Kernel::Counts(
            KernelTop::new(&mut session.engine)?,
            KernelTopCounts::default(),
        )),
        (true, Some(p)) => Some(Kernel::Latency(
            KernelTopLat::new(
                &mut session.engine,
                start_ids.clone(),
                done_ids,
                (p.start_key, p.done_key),
            )?,
            KernelTopLatency::default(),
        )),
    };
    eprintln!(
        "Tracing {name} by arg{}{} ({} sites{}, counted in {})... Hit Ctrl-C to end.",
        by.index,
        pair.as_ref()
            .map(|p| format!(", latency to {}", p.done))
            .unwrap_or_default(),
        session.sites,
        args.pid.map(|p| format!(", pid {p}")).unwrap_or_default(),
        if in_kernel {
            "the kernel"
        } else {
            "user space"
        }
    );

    let mut agg = TopAgg::new(
        &name,
        by.index,
        pair.map(|p| (p, PairLimits::default())),
        args.max_keys,
        session.started_ns,
    )
    .folding(args.fold);
    let mut out = std::io::stdout().lock();
    let (duration, interval, pid) = (args.duration, args.interval, args.pid);
    headless::run(&mut session, duration, interval, pid, |step| {
        let (now, stats, last) = match step {
            Step::Events(batch) => {
                for ev in batch {
                    agg.push(ev);
                }
                return Ok(());
            }
            Step::Tick { now_ns, .. } => {
                agg.tick(now_ns);
                return Ok(());
            }
            Step::Report {
                now_ns,
                stats,
                last,
            } => (now_ns, stats, last),
        };
        agg.tick(now);
        let (kernel_overflow, kernel_pairing) = match &mut kernel {
            Some(k) => {
                let (overflow, pairing) = record_kernel(k, &mut agg, now, stats, &start_ids, last);
                (Some(overflow), pairing)
            }
            None => (None, None),
        };
        let mut report = agg.report(now, args.sort.into(), args.limit);
        if kernel_pairing.is_some() {
            report.pairing = kernel_pairing;
        }
        let elapsed = now.saturating_sub(agg.origin_ns()) as f64 / 1e9;
        if args.json {
            let mut v = serde_json::to_value(&report)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("by_arg".into(), serde_json::json!(by.index));
                headless::insert_run_figures(o, elapsed, stats);
                let mode = if in_kernel { "kernel" } else { "stream" };
                o.insert("mode".into(), serde_json::json!(mode));
                if let Some(n) = kernel_overflow {
                    o.insert("kernel_overflow".into(), serde_json::json!(n));
                }
            }
            writeln!(out, "{v}")?;
        } else {
            write!(out, "{}", text_report(&report, by.index, elapsed, stats))?;
            if kernel_overflow.is_some() {
                let what = if report.done.is_some() {
                    "paired and counted"
                } else {
                    "counted"
                };
                writeln!(
                    out,
                    "{what} in the kernel; keys cut at {} bytes\n",
                    KEY_LEN - 1
                )?;
            }
        }
        out.flush()?;
        if !last {
            agg.reset_interval(now);
        }
        Ok(())
    })
}

/// Moves what the kernel aggregated this interval into `agg`; returns the requests or hits of
/// keys the kernel had no room for, and with latency the pairing counters (since the start).
fn record_kernel(
    kernel: &mut Kernel,
    agg: &mut TopAgg,
    now: u64,
    stats: &Stats,
    start_ids: &[ProbeId],
    last: bool,
) -> (u64, Option<PairStats>) {
    match kernel {
        Kernel::Counts(top, before) => {
            let total = top.read(start_ids);
            let delta = total.since(before);
            agg.record_counts(now, &delta.keys, delta.unreadable, delta.overflow);
            if !last {
                *before = total;
            }
            (delta.overflow, None)
        }
        Kernel::Latency(lat, before) => {
            let total = lat.read();
            let delta = total.since(before);
            for (key, k) in &delta.keys {
                agg.record_latencies(now, key, k.count, k.samples());
            }
            agg.record_counts(now, [], delta.unreadable, delta.overflow);
            let starts = stats
                .probes
                .iter()
                .filter(|p| start_ids.contains(&p.id))
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
    }
}

pub fn text_report(r: &TopReport, by: usize, elapsed_s: f64, stats: &Stats) -> String {
    let d = format_duration_ns;
    let mut t = format!(
        "{} by arg{by}{}  ({elapsed_s:.1}s, {} hits)\n",
        r.probe,
        r.done
            .as_ref()
            .map(|d| format!(", latency to {d}"))
            .unwrap_or_default(),
        r.total
    );
    let paired = r.done.is_some();
    t.push_str(&format!("{:<48} {:>9} {:>10}", "KEY", "COUNT", "RATE/s"));
    if paired {
        t.push_str(&format!(" {:>9} {:>9}", "P50", "P99"));
    }
    t.push('\n');
    for row in &r.rows {
        t.push_str(&format!(
            "{:<48} {:>9} {:>10.1}",
            fit(&row.key, 48),
            row.count,
            row.rate_per_s
        ));
        if paired {
            t.push_str(&format!(
                " {:>9} {:>9}",
                row.p50_ns.map(d).unwrap_or_default(),
                row.p99_ns.map(d).unwrap_or_default()
            ));
        }
        t.push('\n');
    }
    let mut notes = Vec::new();
    if r.other.keys_evicted > 0 {
        notes.push(format!(
            "other: {} keys, {} hits",
            r.other.keys_evicted, r.other.count
        ));
    }
    if r.unreadable > 0 {
        notes.push(format!("unreadable key: {}", r.unreadable));
    }
    if let Some(p) = &r.pairing {
        notes.push(format!(
            "unmatched done {}, waiting {}",
            p.unmatched_done, p.open
        ));
    }
    notes.push(format!("ring drops {}", stats.drops));
    if stats.slow_drops > 0 {
        notes.push(format!("dropped (too slow) {}", stats.slow_drops));
    }
    if stats.unreadable > 0 {
        notes.push(format!("strings unreadable {}", stats.unreadable));
    }
    t.push_str(&format!("({})\n\n", notes.join("; ")));
    t
}
