//! A session at run time: the probes attached with their event stream, and the loop that ends
//! on a duration, a stop request, or when the traced process exits, calling back for events
//! and for periodic reports. Signals are the caller's: it hands in the flag they raise.

use super::SessionError;
use crate::probes::discovery::process::is_alive;
use crate::probes::discovery::targets::Target;
use crate::probes::discovery::watch::Watch;
use crate::probes::tracing::bpf::Mode;
use crate::probes::tracing::clock::monotonic_ns;
use crate::probes::tracing::engine::{
    AttachOptions, Engine, EngineError, EngineOptions, ProbeId, ProcFilter, Stats,
};
use crate::probes::tracing::queue::EventStream;
use crate::probes::Event;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the loops look at the stop flag: well inside the 1 s a stop may take.
pub const POLL: Duration = Duration::from_millis(50);

/// A timer that never fires in practice: for sessions without a duration.
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

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
/// of events queued for the aggregation at most. `cancel` raised during the attach stops it:
/// [`SessionError::Interrupted`] hands back the engine, whose drop undoes what was attached.
pub fn attach(
    targets: &[(Target, Vec<usize>)],
    pid: Option<u32>,
    mode: Mode,
    queue_mb: usize,
    cancel: &'static AtomicBool,
) -> Result<Session, SessionError> {
    let mut engine = Engine::new(EngineOptions {
        queue_bytes: queue_mb << 20,
        ..EngineOptions::default()
    })?;
    engine.set_cancel(cancel);
    let events = engine.take_events().ok_or(SessionError::EventsTaken)?;
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
            Ok(id) => id,
            Err(EngineError::Interrupted) => {
                return Err(SessionError::Interrupted(super::Interrupted(Box::new(
                    engine,
                ))))
            }
            Err(source) => {
                return Err(SessionError::Attach {
                    probe: t.probe().full_name(),
                    path: t.open_path.clone(),
                    source: Box::new(source),
                })
            }
        };
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
    /// Raised to end the loop (by the caller's signal handlers).
    pub stop: &'static AtomicBool,
    /// Called once the intake is stopped, before the last report (to say why it stopped).
    pub on_stop: fn(),
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

/// Runs until --duration, the stop flag, or the -p process's exit, handing every event batch
/// and every report time to `step`. Then stops the intake, hands over what was already read
/// (within a bounded time; the rest is counted as dropped), and gives the last report.
/// Changes to the traced files or process are said through `notice`.
pub fn run_loop<E: From<std::io::Error>>(
    session: &mut Session,
    options: &LoopOptions,
    mut notice: impl FnMut(String),
    mut step: impl FnMut(Step) -> Result<(), E>,
) -> Result<(), E> {
    let duration = options.duration.map(Duration::from_secs_f64);
    let interval = options.interval.map(Duration::from_secs_f64);
    let requested = || options.stop.load(Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let deadline = tokio::time::sleep(duration.unwrap_or(FOREVER));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
        ticker.tick().await;
        let mut watch = tokio::time::interval(POLL);
        let mut second = tokio::time::interval(Duration::from_millis(250));
        second.tick().await;
        let until = duration.map(|d| Instant::now() + d);
        loop {
            // Checked on every pass as well: while batches keep arriving, the receive branch is
            // always ready and the timers may not be polled for seconds.
            if requested() || until.is_some_and(|u| Instant::now() >= u) {
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
                    if requested() || options.pid.is_some_and(|p| !is_alive(p)) {
                        break;
                    }
                    for change in session.changes.changes() {
                        notice(change.to_string());
                    }
                }
            }
        }
        Ok::<(), E>(())
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
    (options.on_stop)();
    let stats = session.engine.stats();
    step(Step::Report {
        now_ns: monotonic_ns(),
        stats: &stats,
        last: true,
    })?;
    Ok(())
}
