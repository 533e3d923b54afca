//! `usdtop top PROBE --by ARG`: the busiest values of a probe argument (URLs, queries, URIs),
//! with count, rate and, when the probe starts a known pair, latency percentiles.

use super::headless::{self, parse_arg_ref, LoopOptions, ProbeSpec, Step};
use super::latency::{strings_for, AggMode};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use usdtop::app::aggregate::{format_duration_ns, PairLimits, SortBy, TopAgg, TopReport};
use usdtop::probes::bpf::Mode;
use usdtop::probes::catalog::Catalog;
use usdtop::probes::engine::Stats;
use usdtop::probes::ktop::{KernelTop, KernelTopCounts, KEY_LEN};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  usdtop top -p $(pgrep -n php8.2) php:request__startup            # by uri, with latency
  usdtop top postgresql:query__start --by query --sort p99
  usdtop top /usr/bin/python3.11:python:function__entry --by arg1 --no-pair")]
pub struct TopArgs {
    /// The probe: `provider:name` or `PATH:provider:name`.
    pub probe: String,
    /// The argument to group by: `argN`, or a catalog argument name (default: the catalog
    /// pair's label, else the probe's first string argument). A string unless the catalog says
    /// otherwise; append `:int` for an integer.
    #[arg(long)]
    pub by: Option<String>,
    /// Trace only this process (and the processes it forks).
    #[arg(short, long)]
    pub pid: Option<u32>,
    /// Print the table every this many seconds, each covering that interval only.
    #[arg(short, long)]
    pub interval: Option<f64>,
    /// Stop after this many seconds (default: until Ctrl-C or the -p process exits).
    #[arg(short, long)]
    pub duration: Option<f64>,
    /// Rows shown.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long, value_enum, default_value_t = Sort::Count)]
    pub sort: Sort,
    /// Count hits only, even when the probe starts a known pair.
    #[arg(long)]
    pub no_pair: bool,
    /// Most distinct keys kept; the least recently seen beyond it are folded into "other".
    #[arg(long, default_value_t = 10_000)]
    pub max_keys: usize,
    /// One JSON object per report instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where hits are counted. auto: in the kernel when no latency is needed (no known pair,
    /// or --no-pair) and the key is a string, else every event is streamed; stream: always
    /// stream; kernel: as auto, or an error. In the kernel keys are cut at 63 bytes (marked …;
    /// bpftrace str() also keeps 64) and at most 16384 distinct keys are kept; hits of further
    /// keys show as "other".
    #[arg(long, value_enum, default_value_t = AggMode::Auto)]
    pub mode: AggMode,
}

/// Why `top` cannot count in the kernel, if it cannot.
fn kernel_unsupported(paired: bool, key_is_str: bool) -> Option<&'static str> {
    if paired {
        Some("latency per key pairs streamed start/done events (give --no-pair to count only)")
    } else if !key_is_str {
        Some("integer keys are grouped in user space")
    } else {
        None
    }
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

/// Shortens `s` to `width` characters, marking the cut.
pub fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub fn run(args: TopArgs) -> Result<u8> {
    let catalog = Catalog::builtin();
    let spec = ProbeSpec::parse(&args.probe)?;
    let name = spec.full_name();
    let pair = if args.no_pair {
        None
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

    let done = match &pair {
        Some(p) => {
            let mut done = ProbeSpec::parse(&p.done)?;
            done.path = spec.path.clone();
            Some(done)
        }
        None => None,
    };
    let in_kernel = match (args.mode, kernel_unsupported(pair.is_some(), by.is_str)) {
        (AggMode::Stream, _) => false,
        (AggMode::Kernel, Some(why)) => bail!("cannot count {name} in the kernel: {why}"),
        (AggMode::Kernel, None) | (AggMode::Auto, None) => true,
        (AggMode::Auto, Some(_)) => false,
    };
    let mut specs = vec![&spec];
    specs.extend(done.as_ref());
    let mut found = headless::resolve(&specs, args.pid)?.into_iter();
    let mut targets: Vec<_> = found
        .next()
        .unwrap_or_default()
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
    if let Some(p) = &pair {
        for t in found.next().unwrap_or_default() {
            targets.push((t, catalog.string_args(&p.done)));
        }
    }
    let mode = if in_kernel { Mode::Top } else { Mode::Stream };
    let mut session = headless::attach(&targets, args.pid, mode)?;
    let kernel = if in_kernel {
        Some(KernelTop::new(&mut session.engine)?)
    } else {
        None
    };
    let mut kernel_before = KernelTopCounts::default();
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
    );
    let options = LoopOptions {
        duration: args.duration,
        interval: args.interval,
        pid: args.pid,
    };
    let session_ids = session.ids.clone();
    let mut out = std::io::stdout().lock();
    headless::run_loop(&mut session, &options, |step| {
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
        let mut kernel_delta = None;
        if let Some(k) = &kernel {
            let total = k.read(&session_ids);
            let delta = total.since(&kernel_before);
            agg.record_counts(now, &delta.keys, delta.unreadable, delta.overflow);
            if !last {
                kernel_before = total;
            }
            kernel_delta = Some(delta);
        }
        let report = agg.report(now, args.sort.into(), args.limit);
        let elapsed = now.saturating_sub(agg.origin_ns()) as f64 / 1e9;
        if args.json {
            let mut v = serde_json::to_value(&report)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("by_arg".into(), serde_json::json!(by.index));
                o.insert("elapsed_s".into(), serde_json::json!(elapsed));
                o.insert("drops".into(), serde_json::json!(stats.drops));
                o.insert("events".into(), serde_json::json!(stats.events));
                let mode = if in_kernel { "kernel" } else { "stream" };
                o.insert("mode".into(), serde_json::json!(mode));
                if let Some(d) = &kernel_delta {
                    o.insert("kernel_overflow".into(), serde_json::json!(d.overflow));
                }
            }
            writeln!(out, "{v}")?;
        } else {
            write!(out, "{}", text_report(&report, by.index, elapsed, stats))?;
            if kernel_delta.is_some() {
                writeln!(
                    out,
                    "counted in the kernel; keys cut at {} bytes\n",
                    KEY_LEN - 1
                )?;
            }
        }
        out.flush()?;
        if !last {
            agg.reset_interval(now);
        }
        Ok(())
    })?;
    Ok(0)
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
            clip(&row.key, 48),
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
    t.push_str(&format!("({})\n\n", notes.join("; ")));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_clipped_with_a_mark() {
        assert_eq!(clip("SELECT abc", 6), "SELEC…");
        assert_eq!(clip("short", 6), "short");
    }
}
