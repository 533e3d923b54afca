//! What the headless aggregating commands (`latency`, `top`) share: finding a probe by name,
//! attaching it, and an event loop that ends on --duration, Ctrl-C/SIGTERM, or when the traced
//! process exits, calling back for events and for periodic reports.

use super::stop;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use std::time::Instant;
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::discovery::select::ProbePattern;
use usdtop::probes::discovery::targets::{self, check_arg_index, Scope};
use usdtop::probes::discovery::watch::Watch;
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::{
    AttachOptions, Engine, EngineError, EngineOptions, ProbeId, ProcFilter, Stats,
};
use usdtop::probes::tracing::queue::EventStream;
use usdtop::probes::Event;

pub use usdtop::probes::discovery::targets::Target;

/// CLOCK_MONOTONIC in nanoseconds: the clock of `Event::ts_ns` (bpf_ktime_get_ns).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A probe named on the command line: `provider:name` or `PATH:provider:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub path: Option<PathBuf>,
    pub provider: String,
    pub name: String,
}

impl ProbeSpec {
    pub fn parse(text: &str) -> Result<ProbeSpec> {
        let parts: Vec<&str> = text.rsplitn(3, ':').collect();
        // The shared resolver takes globs; these commands aggregate one probe (or one pair).
        if parts.iter().take(2).any(|p| p.contains(['*', '?'])) {
            bail!(
                "`{text}` is a glob: name exactly one probe (provider:name; only a PATH may be \
                 a glob, matching copies of one program)"
            );
        }
        match parts.as_slice() {
            [name, provider] if !name.is_empty() && !provider.is_empty() => Ok(ProbeSpec {
                path: None,
                provider: provider.to_string(),
                name: name.to_string(),
            }),
            [name, provider, path] if !name.is_empty() && !provider.is_empty() => Ok(ProbeSpec {
                path: Some(PathBuf::from(path)),
                provider: provider.to_string(),
                name: name.to_string(),
            }),
            _ => bail!("`{text}` is not a probe: write provider:name or PATH:provider:name"),
        }
    }

    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }

    /// The same probe as a pattern for the shared resolver.
    fn pattern(&self) -> ProbePattern {
        ProbePattern {
            path: self.path.as_ref().map(|p| p.display().to_string()),
            provider: self.provider.clone(),
            name: self.name.clone(),
        }
    }
}

/// Finds every object holding each probe of `specs`: in the named file (or the files a PATH glob
/// matches, listed on stderr when `verbose`), else in the objects the process maps, else in the
/// objects any running process maps. One list per spec, never empty.
pub fn resolve(specs: &[&ProbeSpec], pid: Option<u32>, verbose: bool) -> Result<Vec<Vec<Target>>> {
    let patterns: Vec<ProbePattern> = specs.iter().map(|s| s.pattern()).collect();
    let scope = match pid {
        Some(pid) => Scope::Pids(vec![pid]),
        None => Scope::AllProcesses,
    };
    let resolved = targets::resolve_patterns(&patterns, &scope)?;
    for line in resolved.report(&patterns, verbose) {
        eprintln!("usdtop: {line}");
    }
    Ok(resolved.targets)
}

/// Checks an argument the user named (`option`, e.g. `--by arg9`) against every site of the
/// probes it is read from, before anything is attached.
pub fn check_arg(targets: &[Target], arg: ArgRef, option: &str) -> Result<()> {
    Ok(check_arg_index(targets, arg.index, option)?)
}

/// Which argument, as typed by the user: `argN`, `N`, or a catalog argument name of `probe`.
/// A trailing `:int` / `:str` says how to read it (default: the catalog's type, else `default_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgRef {
    pub index: usize,
    pub is_str: bool,
}

pub fn parse_arg_ref(
    text: &str,
    probe: &str,
    catalog: &Catalog,
    default_str: bool,
) -> Result<ArgRef> {
    let (name, forced) = match text.rsplit_once(':') {
        Some((n, "int")) => (n, Some(false)),
        Some((n, "str")) => (n, Some(true)),
        _ => (text, None),
    };
    let digits = name.strip_prefix("arg").unwrap_or(name);
    let index = match digits.parse::<usize>() {
        Ok(i) => i,
        Err(_) => catalog
            .args(probe)
            .and_then(|args| args.iter().position(|a| a.name == name))
            .with_context(|| {
                format!("`{text}` is not an argument of {probe}: write argN (N from 0) or a catalog argument name")
            })?,
    };
    let catalog_str = catalog
        .args(probe)
        .and_then(|args| args.get(index))
        .map(|a| a.is_str);
    Ok(ArgRef {
        index,
        is_str: forced.or(catalog_str).unwrap_or(default_str),
    })
}

/// Attached probes and their event stream.
pub struct Session {
    pub engine: Engine,
    events: EventStream,
    pub sites: usize,
    pub started_ns: u64,
    /// The attached probes, in the order of the targets.
    pub ids: Vec<ProbeId>,
    /// The -p process (for an exec) or, without -p, the traced files (for a replacement).
    changes: Watch,
}

/// Attach `targets`, each with the string arguments to read, in `mode`, with `queue_mb` MiB
/// of events queued for the aggregation at most. A stop signal during the attach undoes it and
/// ends the process.
pub fn attach(
    targets: &[(Target, Vec<usize>)],
    pid: Option<u32>,
    mode: Mode,
    queue_mb: usize,
) -> Result<Session> {
    stop::install().context("installing signal handlers")?;
    let mut engine = Engine::new(EngineOptions {
        queue_bytes: queue_mb << 20,
        ..EngineOptions::default()
    })?;
    engine.set_cancel(&stop::REQUESTED);
    let events = engine
        .take_events()
        .context("the engine's event stream was already taken")?;
    let mut sites = 0;
    let mut ids = Vec::new();
    for (t, strings) in targets {
        let options = AttachOptions {
            strings: strings.clone(),
            filter: pid.map_or(ProcFilter::All, |p| ProcFilter::Pids(vec![p])),
            mode,
            open_path: Some(t.open_path.clone()),
        };
        let id = match engine.attach(&t.object, t.probe(), &options) {
            Err(EngineError::Interrupted) => stop::interrupted_attach(engine),
            other => other,
        }
        .with_context(|| {
            format!(
                "attaching {} in {}",
                t.probe().full_name(),
                t.open_path.display()
            )
        })?;
        ids.push(id);
        sites += t.probe().sites.len();
    }
    let mut changes = Watch::new();
    match pid {
        Some(pid) => changes.process(pid),
        None => targets
            .iter()
            .map(|(t, _)| &t.open_path)
            .filter(|p| !p.starts_with("/proc"))
            .for_each(|p| changes.file(p)),
    }
    Ok(Session {
        engine,
        events,
        sites,
        started_ns: monotonic_ns(),
        ids,
        changes,
    })
}

pub struct LoopOptions {
    pub duration: Option<f64>,
    pub interval: Option<f64>,
    /// End when this process has exited (after the events already in flight are read).
    pub pid: Option<u32>,
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
}

/// What the loop hands its caller.
pub enum Step<'a> {
    Events(&'a [Event]),
    /// Four times a second, whatever happens (housekeeping such as adapting a sampling rate
    /// before a hot probe fills the ring buffer).
    Tick {
        now_ns: u64,
        stats: &'a Stats,
    },
    /// Time for a report (every interval, and once more, `last`, at the end).
    Report {
        now_ns: u64,
        stats: &'a Stats,
        last: bool,
    },
}

/// How long the events already read may take to aggregate once a stop is asked for.
const DRAIN_BUDGET: Duration = Duration::from_millis(400);

/// Runs until --duration, a stop signal, or the -p process's exit, handing every event batch
/// and every report time to `step`. Then stops the intake, hands over what was already read
/// (within a bounded time; the rest is counted as dropped), and gives the last report. Returns
/// the exit status: 0, or 128 + the signal that stopped it.
pub fn run_loop(
    session: &mut Session,
    options: &LoopOptions,
    mut step: impl FnMut(Step) -> Result<()>,
) -> Result<u8> {
    let duration = options.duration.map(Duration::from_secs_f64);
    let interval = options.interval.map(Duration::from_secs_f64);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let deadline = tokio::time::sleep(duration.unwrap_or(stop::FOREVER));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
        ticker.tick().await;
        let mut watch = tokio::time::interval(stop::POLL);
        let mut second = tokio::time::interval(Duration::from_millis(250));
        second.tick().await;
        let until = duration.map(|d| Instant::now() + d);
        loop {
            // Checked on every pass as well: while batches keep arriving, the receive branch is
            // always ready and the timers may not be polled for seconds.
            if stop::requested() || until.is_some_and(|u| Instant::now() >= u) {
                break;
            }
            tokio::select! {
                batch = session.events.recv() => match batch {
                    Some(batch) => step(Step::Events(&batch))?,
                    None => break,
                },
                _ = ticker.tick(), if interval.is_some() => {
                    let stats = session.engine.stats();
                    step(Step::Report { now_ns: monotonic_ns(), stats: &stats, last: false })?;
                }
                _ = second.tick() => {
                    let stats = session.engine.stats();
                    step(Step::Tick { now_ns: monotonic_ns(), stats: &stats })?;
                }
                _ = &mut deadline, if duration.is_some() => break,
                _ = watch.tick() => {
                    if stop::requested() || options.pid.is_some_and(|p| !alive(p)) {
                        break;
                    }
                    for change in session.changes.changes() {
                        eprintln!("usdtop: {change}");
                    }
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    })?;
    session.engine.stop_intake(Duration::from_millis(500));
    let drain_until = Instant::now() + DRAIN_BUDGET;
    while Instant::now() < drain_until {
        let Some(batch) = session.events.try_recv() else {
            break;
        };
        step(Step::Events(&batch))?;
    }
    session.events.discard();
    if let Some(name) = stop::signal_name() {
        eprintln!("usdtop: stopping on {name}");
    }
    let stats = session.engine.stats();
    step(Step::Report {
        now_ns: monotonic_ns(),
        stats: &stats,
        last: true,
    })?;
    Ok(stop::exit_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_specs_take_an_optional_path() {
        let p = ProbeSpec::parse("postgresql:query__start").unwrap();
        assert_eq!(
            (p.path.clone(), p.full_name()),
            (None, "postgresql:query__start".into())
        );
        let p = ProbeSpec::parse("/usr/bin/php8.2:php:request__startup").unwrap();
        assert_eq!(p.path.unwrap(), PathBuf::from("/usr/bin/php8.2"));
        assert_eq!(p.name, "request__startup");
        assert!(ProbeSpec::parse("nocolon").is_err());
        assert!(ProbeSpec::parse("a:").is_err());
    }

    #[test]
    fn a_probe_spec_names_one_probe_not_a_glob() {
        assert!(ProbeSpec::parse("postgresql:query__*").is_err());
        assert!(ProbeSpec::parse("/usr/bin/php8.2:php:request__?tartup").is_err());
        assert!(ProbeSpec::parse("/opt/a*b/x:php:request__startup").is_ok());
    }

    #[test]
    fn arguments_are_named_by_index_or_by_catalog_name() {
        let c = Catalog::builtin();
        let fd = parse_arg_ref("fd", "node:http__server__request", &c, true).unwrap();
        assert_eq!(
            fd,
            ArgRef {
                index: 6,
                is_str: false
            }
        );
        let url = parse_arg_ref("arg5", "node:http__server__request", &c, false).unwrap();
        assert_eq!(
            url,
            ArgRef {
                index: 5,
                is_str: true
            }
        );
        let unknown = parse_arg_ref("1", "x:y", &c, true).unwrap();
        assert_eq!(
            unknown,
            ArgRef {
                index: 1,
                is_str: true
            }
        );
        let forced = parse_arg_ref("arg1:int", "x:y", &c, true).unwrap();
        assert!(!forced.is_str);
        assert!(parse_arg_ref("nope", "node:http__server__request", &c, true).is_err());
    }
}
