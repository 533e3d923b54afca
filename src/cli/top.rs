//! `usdtop top PROBE --by ARG`: the busiest values of a probe argument (URLs, queries, URIs),
//! with count, rate and, when the probe starts a pair, latency percentiles.

use super::headless;
use super::numbers;
use super::sampled::Interval;
use anyhow::Result;
use clap::{Args, ValueEnum};
use std::io::Write;
use usdtop::aggregate::{fit, format_duration_ns, PairLimits, SortBy, TopAgg, TopReport};
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::kernel::ktop::KEY_LEN;
use usdtop::probes::tracing::engine::Stats;
use usdtop::session::{plan_top, AggMode, Ask, Place, Step, TopAsk, TopKernel, TopPlan};

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
    #[command(flatten)]
    pub attach: headless::AttachFlags,
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
    /// the pair can be matched there (by thread or an integer key; call-shaped pairs on a
    /// stack per thread, see `usdtop latency --help`), else every
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
    let ask = TopAsk {
        ask: Ask {
            start: &args.probe,
            done: args.done.as_deref(),
            key: args.key.as_deref(),
            by: args.by.as_deref(),
            mode: args.mode,
        },
        no_pair: args.no_pair,
        fold: args.fold,
    };
    let place = Place {
        pid: args.pid,
        verbose: args.verbose,
    };
    let TopPlan {
        name,
        pair,
        by,
        plan,
    } = plan_top(&ask, place, &catalog, headless::notice)?;
    let in_kernel = plan.in_kernel;
    let how = args.attach.how(args.pid, args.queue_mb, args.verbose);
    let mut session = headless::attach_plan(&plan, &how)?;
    let sampling = session.sampling();
    let mut sampled_interval = Interval::start();
    let (start_ids, done_ids) = session.ids.split_at(plan.n_start);
    let (start_ids, done_ids) = (start_ids.to_vec(), done_ids.to_vec());
    let mut kernel = if in_kernel {
        Some(TopKernel::new(
            &mut session.engine,
            pair.as_ref(),
            start_ids,
            done_ids,
        )?)
    } else {
        None
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
    let (duration, interval) = (args.duration, args.interval);
    headless::run(&mut session, duration, interval, args.verbose, |step| {
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
            Step::Check => return Ok(()),
            Step::Gap => {
                agg.gap();
                if let Some(k) = &mut kernel {
                    k.gap();
                }
                return Ok(());
            }
        };
        agg.tick(now);
        let (kernel_overflow, kernel_pairing) = match &mut kernel {
            Some(k) => {
                let (overflow, pairing) = k.record(&mut agg, now, stats, last);
                (Some(overflow), pairing)
            }
            None => (None, None),
        };
        let mismatches = kernel.as_ref().and_then(TopKernel::call_mismatches);
        let mut report = agg.report(now, args.sort.into(), args.limit);
        if kernel_pairing.is_some() {
            report.pairing = kernel_pairing;
        }
        let elapsed = now.saturating_sub(agg.origin_ns()) as f64 / 1e9;
        let sampled = sampling.as_deref().map(|s| sampled_interval.end(s, last));
        let seen = report.total;
        if let Some(s) = &sampled {
            report.total = s.count(report.total);
            for row in &mut report.rows {
                row.count = s.count(row.count);
                row.rate_per_s = s.rate(row.rate_per_s);
            }
        }
        if args.json {
            let mut v = serde_json::to_value(&report)?;
            if let Some(o) = v.as_object_mut() {
                if let Some(s) = &sampled {
                    o.insert("sampled".into(), s.json(seen));
                }
                o.insert("by_arg".into(), serde_json::json!(by.index));
                headless::insert_run_figures(o, elapsed, stats);
                let mode = if in_kernel { "kernel" } else { "stream" };
                o.insert("mode".into(), serde_json::json!(mode));
                if let Some(n) = kernel_overflow {
                    o.insert("kernel_overflow".into(), serde_json::json!(n));
                }
                if let Some(m) = mismatches {
                    o.insert("calls".into(), serde_json::to_value(m)?);
                }
            }
            writeln!(out, "{v}")?;
        } else {
            write!(out, "{}", text_report(&report, by.index, elapsed, stats))?;
            if let Some(s) = &sampled {
                write!(out, "{}", s.text())?;
            }
            if let Some(m) = mismatches {
                write!(out, "{}", super::latency::calls_note(&m))?;
            }
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
