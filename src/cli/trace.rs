//! `usdtop trace`: print every hit of the chosen probes, one line (or JSON object) per event.

use super::output::{Output, Written, OUTPUT_QUEUE_BYTES};
use super::sampled::{Interval, Sampled};
use super::trace_output::Printer;
use super::{headless, numbers};
use crate::stop;
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::discovery::select::ProbePattern;
use usdtop::probes::discovery::targets::{self, check_arg_index, Scope, Target};
use usdtop::probes::discovery::watch::Change;
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::{Engine, EngineOptions, FaultStrings, Stats};
use usdtop::session::{Attacher, End, Flow, Session, SessionOptions, Step, WatchFiles};

const AFTER_HELP: &str = "\
PROBE is `provider:name`, `PATH:provider:name`, or a glob such as `postgresql:query__*`.
A glob in PATH (quoted: '/srv/app/bin/worker*:app:req__*') names every regular file it matches;
-v lists them.
With -p, the objects mapped by those processes are searched and only they (and the processes they
fork from now on) are traced; tracing ends when they have all exited. Without -p, a PROBE with a
PATH is traced in every process running that file; a PROBE without a PATH is looked up in the
objects of all running processes. Attaching raises the probes' semaphores; exiting lowers them.
A probe silent for 5 s whose runtime needs a switch that is off (PHP's USE_ZEND_DTRACE=1, the
JVM's -XX:+DTraceMethodProbes, ...) gets a `usdtop: hint:` line naming it.
String arguments come from the built-in catalog; --str marks more. At exit, events printed,
received, dropped (ring buffer full), strings unreadable (bad pointers) and per-probe hits go to
stderr.

Examples:
  usdtop trace -p $(pgrep -o postgres) 'postgresql:query__start'
  usdtop trace /usr/bin/python3.11:python:gc__start --count 10
  usdtop trace --json --duration 5 'php:request__*'
  usdtop trace -v '/srv/app/bin/worker*:app:req__start'";

#[derive(Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct TraceArgs {
    /// Probes: `provider:name`, `PATH:provider:name` or a glob such as `postgresql:query__*`.
    #[arg(required = true)]
    pub probes: Vec<String>,
    /// Trace only this process and its children (repeatable).
    #[arg(short = 'p', long = "pid")]
    pub pids: Vec<u32>,
    #[command(flatten)]
    pub attach: headless::AttachFlags,
    /// Also read these argument indices (0-based) as C strings, e.g. `--str 0,2`; `N:LEN` reads
    /// argN as a string given by pointer and length (not NUL-terminated) whose length in bytes
    /// is argLEN, e.g. `--str 0:1`. Each must be an argument of every probe traced.
    #[arg(long = "str", value_name = "N[:LEN]", value_delimiter = ',', value_parser = parse_str_arg)]
    pub strings: Vec<StrArg>,
    /// One JSON object per event: ts_ns, pid, tid, comm, provider, name, args.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = numbers::seconds)]
    pub duration: Option<f64>,
    /// Stop after this many events.
    #[arg(long, value_name = "N", value_parser = numbers::at_least_one::<u64>)]
    pub count: Option<u64>,
    /// Say which files a PATH glob matched.
    #[arg(short, long)]
    pub verbose: bool,
    /// Ring buffer size in MiB (a power of two). A bigger ring rides out longer stalls of the
    /// reader before the kernel has to drop events.
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    pub ring_mb: u32,
    /// Most MiB of decoded events waiting for stdout. When stdout is slower than the probes,
    /// what does not fit is dropped and counted as "dropped (output too slow)".
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = numbers::queue_mb)]
    pub queue_mb: usize,
    /// When a file named by PATH is replaced on disk (a deploy), attach the same probes in the
    /// new file too (the old one stays traced for the processes still running it). Without it,
    /// the replacement is only reported.
    #[arg(long)]
    pub follow: bool,
    /// A string in a page the traced process has not touched yet (a literal it has never
    /// read) is read by faulting the page in, as the process's own read would (`always`), or
    /// left unreadable and counted (`never`: the process's memory is left as it is).
    #[arg(long, value_name = "WHEN", default_value = "always")]
    pub fault_strings: FaultStringsArg,
}

/// One `--str` item: an argument read as a string, and the argument holding its length if it
/// is given by pointer and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrArg {
    pub index: usize,
    pub len: Option<usize>,
}

fn parse_str_arg(text: &str) -> Result<StrArg, String> {
    let number = |t: &str| {
        t.parse::<usize>()
            .map_err(|_| format!("`{text}` is not N or N:LEN (argument indices, e.g. 0 or 0:1)"))
    };
    let (index, len) = match text.split_once(':') {
        Some((i, l)) => (number(i)?, Some(number(l)?)),
        None => (number(text)?, None),
    };
    if len == Some(index) {
        return Err(format!("`{text}`: a string cannot be its own length"));
    }
    Ok(StrArg { index, len })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FaultStringsArg {
    Always,
    Never,
}

impl From<FaultStringsArg> for FaultStrings {
    fn from(a: FaultStringsArg) -> FaultStrings {
        match a {
            FaultStringsArg::Always => FaultStrings::Always,
            FaultStringsArg::Never => FaultStrings::Never,
        }
    }
}

pub fn run(args: TraceArgs) -> anyhow::Result<u8> {
    stop::install().context("installing signal handlers")?;
    let catalog = Catalog::builtin();
    let (found, named_files) = find_targets(&args)?;
    let strings_of = |t: &Target| {
        let mut strings = catalog.string_args(&t.probe().full_name());
        strings.extend(args.strings.iter().map(|s| s.index));
        strings
    };
    let targets: Vec<(Target, Vec<usize>)> = found
        .into_iter()
        .map(|t| {
            let strings = strings_of(&t);
            (t, strings)
        })
        .collect();
    let ring_bytes = args
        .ring_mb
        .checked_mul(1 << 20)
        .filter(|b| b.is_power_of_two())
        .context("--ring-mb must be a power of two of at most 2048")?;
    let options = SessionOptions {
        pids: args.pids.clone(),
        exact_forks: args.attach.exact_forks,
        mode: Mode::default(),
        engine: EngineOptions {
            ring_bytes: Some(ring_bytes),
            queue_bytes: args.queue_mb << 20,
            fault_strings: args.fault_strings.into(),
            ..EngineOptions::default()
        },
        // What may change under us: the -p processes (an exec) and the files named by PATH
        // (a deploy that renames a new build over them).
        watch: WatchFiles::These(named_files),
        duty: args.attach.duty(),
    };
    let mut session = Session::new(options, &stop::REQUESTED)?;
    session.engine.set_str_lengths(
        args.strings
            .iter()
            .filter_map(|s| s.len.map(|l| (s.index, l)))
            .collect(),
    );
    if !args.pids.is_empty() {
        if let Err(why) = session.engine.fork_tracking() {
            eprintln!("usdtop: warning: processes forked from now on are not followed ({why})");
        }
    }
    let mut session = headless::attached(session.attach_all(&targets))?;
    headless::say_attached(&session, args.verbose);
    if args.fault_strings == FaultStringsArg::Always {
        if let Err(why) = session.engine.fault_strings() {
            eprintln!("usdtop: warning: strings in pages not yet touched stay unreadable ({why})");
        }
    }
    eprintln!(
        "usdtop: tracing {} probe(s), {} site(s); Ctrl-C to stop",
        targets.len(),
        session.sites
    );

    let mut printer = Printer::new(&catalog, args.json);
    let mut out = Output::stdout(OUTPUT_QUEUE_BYTES).context("starting the stdout writer")?;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut seen = 0u64;
    let mut stdout_closed = false;
    let attacher = session.attacher();
    let on_change = |change: &Change, engine: &mut Engine| {
        headless::notice(change.to_string());
        match (change, args.follow) {
            (Change::Replaced { path }, true) => {
                follow(engine, &attacher, &strings_of, &targets, path);
                true
            }
            _ => false,
        }
    };
    // Formats each batch and queues it for stdout, as much as --count lets through; stops
    // once that is reached or stdout is closed.
    let step = |step: Step| {
        match step {
            Step::Events(batch) => {
                let take = batch.len().min((limit - seen) as usize);
                let mut text = Vec::with_capacity(take * 128);
                for e in &batch[..take] {
                    // Writing into a Vec cannot fail.
                    let _ = printer.write(&mut text, e);
                }
                seen += take as u64;
                out.send(text, take as u64);
            }
            Step::Check if out.closed() => {
                stdout_closed = true;
                return Ok(Flow::Stop);
            }
            _ => {}
        }
        Ok(if seen >= limit {
            Flow::Stop
        } else {
            Flow::Continue
        })
    };
    let ended = headless::run_quietly(&mut session, args.duration, DRAIN_BUDGET, on_change, step)?;
    // The intake is stopped and what was in the ring printed (within the drain budget): let
    // the writer finish, then say why it ended and what was lost.
    let written = out.finish(Duration::from_millis(300));
    let mut stats = ended.stats_at_stop;
    stats.slow_drops = session.engine.stats().slow_drops;
    match ended.why {
        End::TargetsExited => eprintln!("usdtop: traced process(es) exited"),
        End::Requested => eprintln!(
            "usdtop: stopping on {}",
            stop::signal_name().unwrap_or("a signal")
        ),
        End::Asked if stdout_closed => eprintln!("usdtop: stdout was closed"),
        _ => {}
    }
    let sampled = session
        .sampling()
        .map(|s| Interval::start_at(session.attach_began()).end(&s, true));
    report(written, &stats, sampled.as_ref());
    headless::detach(&mut session, args.verbose);
    Ok(stop::exit_status())
}

/// How long the events already in the ring may take to print once a stop is asked for.
const DRAIN_BUDGET: Duration = Duration::from_millis(300);

/// Attaches, in the new file now at `path`, the probes that were traced in the old one.
fn follow(
    engine: &mut Engine,
    attacher: &Attacher,
    strings_of: &impl Fn(&Target) -> Vec<usize>,
    targets: &[(Target, Vec<usize>)],
    path: &Path,
) {
    let patterns: Vec<ProbePattern> = targets
        .iter()
        .map(|(t, _)| t)
        .filter(|t| t.open_path == path)
        .map(|t| ProbePattern {
            path: Some(path.display().to_string()),
            provider: t.probe().provider.clone(),
            name: t.probe().name.clone(),
        })
        .collect();
    let found = match targets::resolve(&patterns, &Scope::AllProcesses) {
        Ok(found) => found,
        Err(e) => return eprintln!("usdtop: cannot follow {}: {e}", path.display()),
    };
    let mut sites = 0;
    for t in &found {
        match attacher.attach(engine, t, strings_of(t)) {
            Ok(_) => sites += t.probe().sites.len(),
            Err(e) => eprintln!(
                "usdtop: cannot attach {} in the new {}: {e}",
                t.probe().full_name(),
                path.display()
            ),
        }
    }
    eprintln!(
        "usdtop: following {}: {} probe(s), {sites} site(s) attached in the new file",
        path.display(),
        found.len()
    );
}

fn report(written: Written, stats: &Stats, sampled: Option<&Sampled>) {
    eprintln!(
        "usdtop: {} events printed, {} received, {} dropped (ring buffer full), {} dropped (output too slow), {} strings unreadable",
        written.printed,
        stats.events,
        stats.drops,
        stats.slow_drops + written.too_slow,
        stats.unreadable
    );
    for p in &stats.probes {
        let unreadable = match p.unreadable {
            0 => String::new(),
            n => format!("  {n} strings unreadable"),
        };
        let hits = match sampled {
            Some(s) => format!("{} hits (scaled; {} seen)", s.count(p.hits), p.hits),
            None => format!("{} hits", p.hits),
        };
        eprintln!(
            "usdtop:   {hits}  {} ({}){unreadable}",
            p.probe.full_name(),
            p.probe.path
        );
    }
    if let Some(s) = sampled {
        eprint!("usdtop: {}", s.text());
    }
}

/// Resolves the PROBE arguments to (object, probe) pairs, each once, and checks that every
/// --str index is an argument of at least one of them. Also returns the files the PATHs named.
fn find_targets(args: &TraceArgs) -> anyhow::Result<(Vec<Target>, Vec<PathBuf>)> {
    let patterns: Vec<ProbePattern> = args
        .probes
        .iter()
        .map(|p| ProbePattern::parse_text(p))
        .collect::<Result<_, _>>()?;
    let scope = if args.pids.is_empty() {
        Scope::AllProcesses
    } else {
        Scope::Pids(args.pids.clone())
    };
    let resolved = targets::resolve_patterns(&patterns, &scope)?;
    for line in resolved.report(&patterns, args.verbose) {
        eprintln!("usdtop: {line}");
    }
    let files = resolved.files.iter().flatten().flatten().cloned().collect();
    let found = targets::distinct(resolved.targets);
    // A glob may match probes of different shapes: --str N applies to those that have argN,
    // and is refused only when none of them has it.
    let indices = args.strings.iter().flat_map(|s| {
        let option = match s.len {
            Some(l) => format!("--str {}:{l}", s.index),
            None => format!("--str {}", s.index),
        };
        std::iter::once((s.index, option.clone())).chain(s.len.map(|l| (l, option)))
    });
    for (i, option) in indices {
        let has = |t: &Target| check_arg_index(std::slice::from_ref(t), i, &option).is_ok();
        if !found.iter().any(has) {
            check_arg_index(&found, i, &option)?;
        }
        if args.verbose {
            for t in found.iter().filter(|t| !has(t)) {
                eprintln!(
                    "usdtop: {option} does not apply to {}: it has no arg{i}",
                    t.probe().full_name()
                );
            }
        }
    }
    Ok((found, files))
}
