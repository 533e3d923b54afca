//! `usdtop latency START [END]`: latency between a start and a done probe (like bcc's
//! funclatency, for any USDT pair), as percentiles and a log-bucket bar chart.

use super::headless;
use super::numbers;
use super::sampled::{Interval, Sampled};
use anyhow::Result;
use clap::{Args, ValueEnum};
use std::io::Write;
use usdtop::aggregate::{
    fit, format_duration_ns, render_bars, BucketScheme, LatencyAgg, LatencyReport, PairLimits,
    Window,
};
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::kernel::kcalls::{CallMismatches, KernelCallStats, DEPTH};
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::Stats;
use usdtop::session::{
    plan_latency, AggMode, Ask, CallsSide, KernelSide, LatencyPlan, Place, Step,
};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  usdtop latency postgresql:query__start                 # a catalog pair, named by its start
  usdtop latency -p $(pgrep -n php8.2) php:request__startup --by uri
  usdtop latency /srv/app:app:req__start app:req__done --key arg0 --interval 1
  usdtop latency node:http__server__request --json --duration 10
  usdtop latency -p PID php:function__entry --by function   # per function (USE_ZEND_DTRACE=1)
  usdtop latency -p PID python:function__entry --by function   # attaches python:line too

Call-shaped pairs (entry/return probes whose calls nest: catalog pairs marked nested, and any
P:...entry with its P:...return) are paired in the kernel on a stack per thread (32 calls
deep), with latency per --by key; returns that do not pair with their own entry (exceptions or
longjmps the runtime does not report, coroutine switches, calls entered before tracing, calls
deeper than 32) are counted as mismatched returns, never timed under a wrong call.
PHP fires its function probes only with USE_ZEND_DTRACE=1 in its environment. CPython 3.11
fires them only while python:line is attached too (gh-98894): usdtop then attaches python:line
as well, and every line of Python takes a uprobe trap (counted, not streamed).")]
pub struct LatencyArgs {
    /// Start probe: `provider:name` or `PATH:provider:name`; PATH may be a glob matching copies
    /// of one program. A pair from the catalog, or an entry probe `P:...entry` (paired with
    /// `P:...return`), may be named by its start alone.
    pub start: String,
    /// Done probe (`provider:name`, in the same object as START unless it names a path).
    pub end: Option<String>,
    /// Trace only this process (and the processes it forks).
    #[arg(short, long)]
    pub pid: Option<u32>,
    #[command(flatten)]
    pub attach: headless::AttachFlags,
    /// Say which files a PATH glob matched.
    #[arg(short, long)]
    pub verbose: bool,
    /// Pair a start with its done by an argument instead of by thread: `argN` (the same index on
    /// both probes), `argN:argM` (start:done), or a catalog argument name such as `fd`.
    #[arg(long)]
    pub key: Option<String>,
    /// Also split the latencies by an argument of the start probe (a string unless the catalog
    /// says otherwise; append `:int` for an integer), e.g. `--by arg1` or `--by uri`.
    #[arg(long)]
    pub by: Option<String>,
    /// Stop after this many seconds (default: until Ctrl-C or the -p process exits).
    #[arg(short, long, value_parser = numbers::seconds)]
    pub duration: Option<f64>,
    /// Print a report every this many seconds, each covering that interval only.
    #[arg(short, long, value_parser = numbers::seconds)]
    pub interval: Option<f64>,
    /// One JSON object per report instead of text.
    #[arg(long)]
    pub json: bool,
    /// Rows of the --by table.
    #[arg(long, default_value_t = 20, value_parser = numbers::at_least_one::<usize>)]
    pub limit: usize,
    /// Bucket boundaries of the bar chart.
    #[arg(long, value_enum, default_value_t = Buckets::Pow2)]
    pub buckets: Buckets,
    /// Most starts waiting for their done (stream mode); the oldest beyond it are dropped and
    /// counted. In kernel mode the bound is the kernel map's 65536 entries.
    #[arg(long, default_value_t = 10_000, value_parser = numbers::at_least_one::<usize>)]
    pub max_open: usize,
    /// Where starts are paired with dones. auto: in the kernel when the pair allows it (keyed
    /// by thread or by an integer, with a sampled stream whose rate adapts to the event rate;
    /// call-shaped pairs on a stack per thread, keyed by a string, nothing streamed); stream:
    /// every event goes to user space; kernel: as auto, or an error.
    #[arg(long, value_enum, default_value_t = AggMode::Auto)]
    pub mode: AggMode,
    /// In kernel mode, stream 1 request in N (start and done events) for the --by table,
    /// instead of adapting N to the event rate. 0 streams none (the default without --by).
    #[arg(long)]
    pub sample: Option<u32>,
    /// Most MiB of decoded events waiting to be aggregated; beyond it events are dropped and
    /// counted as "dropped (too slow)".
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = numbers::queue_mb)]
    pub queue_mb: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Buckets {
    /// Powers of two (1, 2, 4, 8 ... ns), like funclatency and bpftrace hist().
    Pow2,
    /// 1-2-5 steps (1us, 2us, 5us, 10us ...).
    #[value(name = "1-2-5")]
    OneTwoFive,
}

impl From<Buckets> for BucketScheme {
    fn from(b: Buckets) -> Self {
        match b {
            Buckets::Pow2 => BucketScheme::PowersOfTwo,
            Buckets::OneTwoFive => BucketScheme::OneTwoFive,
        }
    }
}

pub fn run(args: LatencyArgs) -> Result<u8> {
    let catalog = Catalog::builtin();
    let ask = Ask {
        start: &args.start,
        done: args.end.as_deref(),
        key: args.key.as_deref(),
        by: args.by.as_deref(),
        mode: args.mode,
    };
    let place = Place {
        pid: args.pid,
        verbose: args.verbose,
    };
    let LatencyPlan { pair, by, plan } = plan_latency(&ask, place, &catalog, headless::notice)?;
    let (in_kernel, n_start) = (plan.in_kernel, plan.n_start);
    let how = args.attach.how(args.pid, args.queue_mb, args.verbose);
    let mut session = headless::attach_plan(&plan, &how)?;
    let sampling = session.sampling();
    // The sampled stream only feeds the --by table: without one, stream nothing (it cost
    // the traced program a ring-buffer write per sampled event for figures nobody sees).
    let sample = args.sample.or(by.is_none().then_some(0));
    let mut calls = if plan.mode == Mode::Calls {
        let (starts, dones) = session.ids.split_at(n_start);
        Some(CallsSide::new(
            &mut session.engine,
            starts.to_vec(),
            dones.to_vec(),
        )?)
    } else {
        None
    };
    let mut kernel = if in_kernel && calls.is_none() {
        let (starts, dones) = session.ids.split_at(n_start);
        Some(KernelSide::new(
            &mut session.engine,
            &pair,
            starts.to_vec(),
            dones,
            sample,
            session.started_ns,
        )?)
    } else {
        None
    };
    eprintln!(
        "Tracing latency {} -> {} ({} sites{}, paired in {})... Hit Ctrl-C to end.",
        pair.start,
        pair.done,
        session.sites,
        args.pid.map(|p| format!(", pid {p}")).unwrap_or_default(),
        if in_kernel {
            "the kernel"
        } else {
            "user space"
        }
    );

    let limits = PairLimits {
        max_open: args.max_open,
        ..PairLimits::default()
    };
    let mut agg = LatencyAgg::new(pair, limits, by.map(|b| b.index), 1000);
    let mut interval_start = session.started_ns;
    let mut sampled_interval = Interval::start();
    let scheme = BucketScheme::from(args.buckets);
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
            Step::Tick { now_ns, stats } => {
                agg.tick(now_ns);
                if let Some(k) = &mut kernel {
                    k.tick(now_ns, stats)?;
                }
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
                if let Some(c) = &mut calls {
                    c.gap();
                }
                return Ok(());
            }
        };
        agg.tick(now);
        let elapsed = now.saturating_sub(interval_start) as f64 / 1e9;
        let mut extra = serde_json::Map::new();
        let (mut report, mut note) = match &mut calls {
            Some(c) => {
                let (report, total) = c.report(&mut agg, (now, scheme, args.limit), last);
                extra.insert("mode".into(), "kernel".into());
                extra.insert("calls".into(), calls_json(&total)?);
                (report, calls_note(&total.mismatches))
            }
            None => {
                let report = agg.report(Window::All, now, scheme, args.limit);
                pair_report(report, &mut kernel, &mut extra, (now, scheme, last))?
            }
        };
        let sampled = sampling.as_deref().map(|s| sampled_interval.end(s, last));
        if let Some(s) = &sampled {
            extra.insert("sampled".into(), s.json(report.summary.count));
            scale_report(s, &mut report);
        }
        if args.json {
            writeln!(out, "{}", json_report(&report, elapsed, stats, extra))?;
        } else {
            if let Some(s) = &sampled {
                note.push_str(&s.text());
            }
            writeln!(out, "{}{note}", text_report(&report, elapsed, stats))?;
        }
        out.flush()?;
        if !last {
            agg.reset_interval();
            interval_start = now;
        }
        Ok(())
    })
}

/// The report of a start/done pair: the kernel's figures when it pairs (the streamed ones
/// move to `streamed`), and the note saying how.
fn pair_report(
    mut report: LatencyReport,
    kernel: &mut Option<KernelSide>,
    extra: &mut serde_json::Map<String, serde_json::Value>,
    (now, scheme, last): (u64, BucketScheme, bool),
) -> Result<(LatencyReport, String)> {
    let Some(k) = kernel else {
        extra.insert("mode".into(), "stream".into());
        return Ok((report, String::new()));
    };
    let (r, streamed, delta) = k.report(report, now, scheme, last);
    report = r;
    extra.insert("mode".into(), "kernel".into());
    extra.insert("sample_every".into(), k.sample_every.into());
    extra.insert("streamed".into(), serde_json::to_value(streamed)?);
    let note = if k.sample_every == 0 {
        "paired in the kernel; nothing streamed\n".to_string()
    } else {
        format!(
            "paired in the kernel; {} requests streamed for the KEY table (1 in {} now)\n",
            delta.sampled, k.sample_every
        )
    };
    Ok((report, note))
}

/// The kernel's figures of a call-shaped pair beyond the report's: how returns that did not
/// pair with their own entry were resolved, and keys it could not split by.
fn calls_json(total: &KernelCallStats) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(total.mismatches)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("mismatches".into(), total.mismatches.total().into());
        o.insert("depth".into(), DEPTH.into());
        o.insert("unreadable_keys".into(), total.unreadable.into());
        o.insert("keys_overflow".into(), total.overflow.into());
    }
    Ok(v)
}

/// How the returns of a call-shaped pair that did not pair with their own entry were resolved
/// (cumulative since the start), in one line.
pub fn calls_note(m: &CallMismatches) -> String {
    format!(
        "calls paired in the kernel on a stack per thread (depth {DEPTH}); mismatched returns {}: \
         no open call {}, not on the stack {}, calls unwound {}, too deep {}, no room {}\n",
        m.total(),
        m.no_open_call,
        m.not_on_stack,
        m.unwound,
        m.too_deep,
        m.no_room
    )
}

pub fn json_report(
    r: &LatencyReport,
    elapsed_s: f64,
    stats: &Stats,
    extra: serde_json::Map<String, serde_json::Value>,
) -> String {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.extend(extra);
        headless::insert_run_figures(o, elapsed_s, stats);
    }
    v.to_string()
}

pub fn text_report(r: &LatencyReport, elapsed_s: f64, stats: &Stats) -> String {
    let s = &r.summary;
    let d = format_duration_ns;
    let mut t = format!("{} -> {}  ({elapsed_s:.1}s)\n", r.start, r.done);
    if s.count == 0 {
        t.push_str("no completed pairs\n");
    } else {
        t.push_str(&format!(
            "count {}  mean {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
            s.count,
            d(s.mean_ns as u64),
            d(s.p50_ns),
            d(s.p90_ns),
            d(s.p99_ns),
            d(s.p999_ns),
            d(s.max_ns)
        ));
    }
    let p = &r.pairing;
    t.push_str(&format!(
        "unmatched done {}  expired starts {}  evicted starts {}  waiting {}  ring drops {}  dropped (too slow) {}  strings unreadable {}\n",
        p.unmatched_done, p.expired, p.evicted, p.open, stats.drops, stats.slow_drops, stats.unreadable
    ));
    if s.count > 0 {
        t.push('\n');
        t.push_str(&render_bars(&r.buckets, 40));
    }
    if let Some(rows) = &r.by {
        t.push_str(&format!(
            "\n{:<40} {:>8} {:>9} {:>9}\n",
            "KEY", "COUNT", "P50", "P99"
        ));
        for row in rows {
            t.push_str(&format!(
                "{:<40} {:>8} {:>9} {:>9}\n",
                fit(&row.key, 40),
                row.count,
                row.p50_ns.map(d).unwrap_or_default(),
                row.p99_ns.map(d).unwrap_or_default()
            ));
        }
        if r.by_unreadable > 0 {
            t.push_str(&format!("(unreadable key: {})\n", r.by_unreadable));
        }
    }
    t
}

/// Scales the count and the `by` rows' counts and rates by the time attached. Percentiles
/// and buckets stay those of the requests seen.
fn scale_report(s: &Sampled, r: &mut LatencyReport) {
    r.summary.count = s.count(r.summary.count);
    for row in r.by.iter_mut().flatten() {
        row.count = s.count(row.count);
        row.rate_per_s = s.rate(row.rate_per_s);
    }
}
