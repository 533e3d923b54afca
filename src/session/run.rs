//! A session at run time: the probes attached with their event stream, and the loop that ends
//! on a duration, a stop request, the traced processes' exit, the stream's end or the caller's
//! say-so, calling back for events, periodic reports and changes to what is traced. Signals are
//! the caller's: it hands in the flag they raise.

use super::duty::{DutyCycle, DutyOptions, Sampling, Toggle};
use super::SessionError;
use crate::probes::discovery::process::is_alive;
use crate::probes::discovery::targets::Target;
use crate::probes::discovery::watch::{Change, Watch};
use crate::probes::tracing::bpf::Mode;
use crate::probes::tracing::clock::monotonic_ns;
use crate::probes::tracing::engine::{
    AttachOptions, AttachRequest, Engine, EngineError, EngineOptions, ProbeId, ProcFilter, Stats,
};
use crate::probes::tracing::queue::EventStream;
use crate::probes::Event;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the loops look at the stop flag: well inside the 1 s a stop may take.
pub const POLL: Duration = Duration::from_millis(50);

/// A timer that never fires in practice: for sessions without a duration.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long the events already read may take to be handled once a stop is asked for (the
/// aggregating commands' budget; see [`LoopOptions::drain`]).
pub const DRAIN_BUDGET: Duration = Duration::from_millis(400);

/// What a session traces and how.
pub struct SessionOptions {
    /// Trace only these processes and their children; empty: every process.
    pub pids: Vec<u32>,
    /// With `pids`: attach for every process running the files and filter in BPF, so that no
    /// hit of a forked child is missed (see [`ProcFilter::PidsInBpf`]).
    pub exact_forks: bool,
    pub mode: Mode,
    pub engine: EngineOptions,
    /// Which files are watched for a replacement (the `pids` are always watched for an exec).
    pub watch: WatchFiles,
    /// Keep the cost to the traced processes within a budget by attaching for a slice of
    /// each period (see [`super::duty`]); needs the uprobe-multi path.
    pub duty: Option<DutyOptions>,
}

/// Which traced files a session watches for a replacement.
pub enum WatchFiles {
    /// Without pids, every traced file not under /proc; with pids, none (their exec says it).
    Traced,
    /// These files (those a command's PATHs named), whatever the pids.
    These(Vec<PathBuf>),
}

/// Attached probes and their event stream.
pub struct Session {
    pub engine: Engine,
    events: EventStream,
    pub sites: usize,
    /// How long attaching took (all targets).
    pub attach_time: Duration,
    pub started_ns: u64,
    /// The attached probes, in the order of the targets.
    pub ids: Vec<ProbeId>,
    filter: ProcFilter,
    mode: Mode,
    /// The processes whose exit ends the loop (all of them gone); empty: none.
    pids: Vec<u32>,
    /// The pids (for an exec) and the files chosen by [`WatchFiles`] (for a replacement).
    changes: Watch,
    watch: WatchFiles,
    /// The budget and the measured cost of a hit, until the attach starts the cycle.
    duty_options: Option<(DutyOptions, Duration)>,
    duty: Option<DutyCycle>,
}

/// Attach `targets`, each with the string arguments to read (see [`Session::new`] and
/// [`Session::attach_all`]).
pub fn attach(
    targets: &[(Target, Vec<usize>)],
    options: SessionOptions,
    cancel: &'static AtomicBool,
) -> Result<Session, SessionError> {
    Session::new(options, cancel)?.attach_all(targets)
}

impl Session {
    /// A session with nothing attached yet: the engine is loaded (so whether forks are
    /// followed is known) and its event stream taken. `cancel` raised during an attach stops
    /// it.
    pub fn new(
        options: SessionOptions,
        cancel: &'static AtomicBool,
    ) -> Result<Session, SessionError> {
        let mut engine = Engine::new(options.engine)?;
        engine.set_cancel(cancel);
        let duty_options = match options.duty {
            Some(d) => match engine.measure_hit_cost() {
                Ok(cost) => Some((d, cost)),
                Err(EngineError::NotMulti) => {
                    return Err(SessionError::BudgetNeedsMulti(
                        engine.attach_path().to_string(),
                    ))
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let events = engine.take_events().ok_or(SessionError::EventsTaken)?;
        let mut changes = Watch::new();
        options.pids.iter().for_each(|&p| changes.process(p));
        Ok(Session {
            engine,
            events,
            sites: 0,
            attach_time: Duration::ZERO,
            started_ns: monotonic_ns(),
            ids: Vec::new(),
            filter: match (options.pids.is_empty(), options.exact_forks) {
                (true, _) => ProcFilter::All,
                (false, false) => ProcFilter::Pids(options.pids.clone()),
                (false, true) => ProcFilter::PidsInBpf(options.pids.clone()),
            },
            mode: options.mode,
            pids: options.pids,
            changes,
            watch: options.watch,
            duty_options,
            duty: None,
        })
    }

    /// Attaches `targets`, each with the string arguments to read, and starts watching the
    /// files chosen. A stop during the attach gives [`SessionError::Interrupted`], which hands
    /// back the engine, whose drop undoes what was attached.
    pub fn attach_all(self, targets: &[(Target, Vec<usize>)]) -> Result<Session, SessionError> {
        let began = Instant::now();
        let mode = self.mode;
        let mut s = self.attach_in(targets, mode)?;
        s.attach_time = began.elapsed();
        s.duty = s.duty_options.map(|(options, cost)| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            DutyCycle::new(options, cost, cpus, Instant::now())
        });
        match &s.watch {
            WatchFiles::Traced if s.pids.is_empty() => targets
                .iter()
                .map(|(t, _)| &t.open_path)
                .filter(|p| !p.starts_with("/proc"))
                .for_each(|p| s.changes.file(p)),
            WatchFiles::Traced => {}
            WatchFiles::These(files) => files.iter().for_each(|f| s.changes.file(f)),
        }
        Ok(s)
    }

    /// Attaches `targets` only to count their hits: probes that must be attached for a runtime
    /// to fire the ones traced (their ids are not in `ids`, and duty cycling leaves them be).
    pub fn attach_counted(self, targets: &[Target]) -> Result<Session, SessionError> {
        let targets: Vec<(Target, Vec<usize>)> =
            targets.iter().map(|t| (t.clone(), Vec::new())).collect();
        let ids = self.ids.len();
        let mut s = self.attach_in(&targets, Mode::Count)?;
        s.ids.truncate(ids);
        Ok(s)
    }

    fn attach_in(
        mut self,
        targets: &[(Target, Vec<usize>)],
        mode: Mode,
    ) -> Result<Session, SessionError> {
        // All at once: the probes of one object share their links (one link to make and to
        // close for `postgresql:*`, not 57).
        let attacher = Attacher {
            filter: self.filter.clone(),
            mode,
        };
        let options: Vec<AttachOptions> = targets
            .iter()
            .map(|(t, strings)| attacher.options(t, strings.clone()))
            .collect();
        let requests: Vec<AttachRequest> = targets
            .iter()
            .zip(&options)
            .map(|((t, _), options)| AttachRequest {
                object: &t.object,
                probe: t.probe(),
                options,
            })
            .collect();
        match self.engine.attach_many(&requests) {
            Ok(ids) => self.ids.extend(ids),
            Err((_, EngineError::Interrupted)) => {
                return Err(SessionError::Interrupted(super::Interrupted(Box::new(
                    self.engine,
                ))))
            }
            Err((i, source)) => {
                return Err(SessionError::Attach {
                    probe: targets[i].0.probe().full_name(),
                    path: targets[i].0.open_path.clone(),
                    source: Box::new(source),
                })
            }
        }
        self.sites += targets
            .iter()
            .map(|(t, _)| t.probe().sites.len())
            .sum::<usize>();
        Ok(self)
    }

    /// When the duty cycle began (the attach's end): the start of the time it scales over.
    pub fn attach_began(&self) -> Instant {
        self.duty
            .as_ref()
            .map_or_else(Instant::now, DutyCycle::began)
    }

    /// With an overhead budget: the time attached so far and the cost model, for scaling
    /// counts in reports.
    pub fn sampling(&self) -> Option<Arc<Sampling>> {
        self.duty.as_ref().map(DutyCycle::sampling)
    }

    /// Takes the probes out or puts them back when the duty cycle says so (a no-op without
    /// a budget); true when they were just taken out: a gap begins, and starts still open
    /// must be forgotten (see [`Step::Gap`]).
    pub fn duty_step(&mut self) -> bool {
        let Some(duty) = &mut self.duty else {
            return false;
        };
        let hits = self.engine.stats().probes.iter().map(|p| p.hits).sum();
        match duty.poll(Instant::now(), hits) {
            None => false,
            Some(Toggle::Resume) => {
                // Last attached first: a pair's dones come after its starts, and a start must
                // not be seen before its done can be.
                for id in self.ids.iter().rev() {
                    // A failure leaves the probe out; its hits stop, which the report shows.
                    let _ = self.engine.resume(*id);
                }
                duty.resumed(Instant::now());
                false
            }
            Some(Toggle::Suspend) => {
                let _ = self.engine.suspend(&self.ids);
                true
            }
        }
    }

    /// [`Session::duty_step`] in the run loop: before a gap, every event fired so far is
    /// handed to `step`, then [`Step::Gap`].
    fn duty_cycle<E>(&mut self, step: &mut impl FnMut(Step) -> Result<Flow, E>) -> Result<(), E> {
        if self.duty_step() {
            self.engine.sync(Duration::from_millis(100));
            while let Some(batch) = self.events.try_recv() {
                step(Step::Events(&batch))?;
            }
            step(Step::Gap)?;
        }
        Ok(())
    }

    /// Detaches every probe; returns how long it took.
    pub fn detach_all(&mut self) -> Duration {
        let began = Instant::now();
        self.engine.detach_all();
        began.elapsed()
    }

    /// The processes traced (with their children); empty: every process.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// How this session attaches, for attaching more while its loop runs (see
    /// [`run_loop`]'s `on_change`).
    pub fn attacher(&self) -> Attacher {
        Attacher {
            filter: self.filter.clone(),
            mode: self.mode,
        }
    }
}

/// Attaches one more target the way its session does (same processes, same mode).
#[derive(Clone)]
pub struct Attacher {
    filter: ProcFilter,
    mode: Mode,
}

impl Attacher {
    pub fn attach(
        &self,
        engine: &mut Engine,
        t: &Target,
        strings: Vec<usize>,
    ) -> Result<ProbeId, EngineError> {
        engine.attach(&t.object, t.probe(), &self.options(t, strings))
    }

    fn options(&self, t: &Target, strings: Vec<usize>) -> AttachOptions {
        AttachOptions {
            strings,
            filter: self.filter.clone(),
            mode: self.mode,
            open_path: Some(t.open_path.clone()),
        }
    }
}

pub struct LoopOptions {
    pub duration: Option<f64>,
    pub interval: Option<f64>,
    /// Raised to end the loop (by the caller's signal handlers).
    pub stop: &'static AtomicBool,
    /// How long the events already read may take to be handled once the loop has ended.
    pub drain: Duration,
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
    /// Every [`POLL`], and before each batch drained at the end: may the loop go on?
    Check,
    /// The probes were just taken out for a while (duty cycling): starts still waiting for
    /// their done must be forgotten, not paired with a done seen after the gap.
    Gap,
}

/// What the caller's `step` wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// End the loop (or the drain), e.g. enough events seen, or nowhere left to print them.
    Stop,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Duration,
    /// The stop flag was raised.
    Requested,
    /// Every traced process has exited.
    TargetsExited,
    /// The engine closed its event stream.
    StreamClosed,
    /// `step` returned [`Flow::Stop`].
    Asked,
}

/// How the loop ended.
pub struct Ended {
    pub why: End,
    /// The figures as the intake stopped, before the drain: what the kernel counted up to the
    /// end (the probes stay attached, and counting, until the caller detaches).
    pub stats_at_stop: Stats,
}

/// Whether every one of `pids` has exited (never for none).
pub fn all_exited(pids: &[u32]) -> bool {
    !pids.is_empty() && !pids.iter().any(|&p| is_alive(p))
}

/// Runs until --duration, the stop flag, every traced process's exit, the end of the event
/// stream or `step`'s [`Flow::Stop`], handing every event batch, report time and check to
/// `step`. Then stops the intake, hands over what was already read (within
/// [`LoopOptions::drain`], while `step` lets it; the rest is counted as dropped), and gives
/// the last report. Changes to the traced files or processes go to `on_change`, which may
/// attach more in `engine`; it returns true when it followed a replaced file into its new
/// version, which is then the one watched.
pub fn run_loop<E: From<std::io::Error>>(
    session: &mut Session,
    options: &LoopOptions,
    mut on_change: impl FnMut(&Change, &mut Engine) -> bool,
    mut step: impl FnMut(Step) -> Result<Flow, E>,
) -> Result<Ended, E> {
    let duration = options.duration.map(Duration::from_secs_f64);
    let interval = options.interval.map(Duration::from_secs_f64);
    let requested = || options.stop.load(Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let why = rt.block_on(async {
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
            if requested() {
                return Ok::<End, E>(End::Requested);
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(End::Duration);
            }
            session.duty_cycle(&mut step)?;
            let flow = tokio::select! {
                batch = session.events.recv() => match batch {
                    Some(batch) => step(Step::Events(&batch))?,
                    None => return Ok(End::StreamClosed),
                },
                _ = ticker.tick(), if interval.is_some() => {
                    let stats = session.engine.stats();
                    step(Step::Report { now_ns: monotonic_ns(), stats: &stats, last: false })?
                }
                _ = second.tick() => {
                    let stats = session.engine.stats();
                    step(Step::Tick { now_ns: monotonic_ns(), stats: &stats })?
                }
                _ = &mut deadline, if duration.is_some() => return Ok(End::Duration),
                _ = watch.tick() => {
                    if requested() {
                        return Ok(End::Requested);
                    }
                    if step(Step::Check)? == Flow::Stop {
                        return Ok(End::Asked);
                    }
                    // Every traced process gone: what is in flight is still handed over below.
                    if all_exited(&session.pids) {
                        return Ok(End::TargetsExited);
                    }
                    for change in session.changes.changes() {
                        if on_change(&change, &mut session.engine) {
                            if let Change::Replaced { path } = &change {
                                session.changes.accept(path);
                            }
                        }
                    }
                    Flow::Continue
                }
            };
            if flow == Flow::Stop {
                return Ok(End::Asked);
            }
        }
    })?;
    session.engine.stop_intake(Duration::from_millis(500));
    let stats_at_stop = session.engine.stats();
    let drain_until = Instant::now() + options.drain;
    while Instant::now() < drain_until && step(Step::Check)? == Flow::Continue {
        let Some(batch) = session.events.try_recv() else {
            break;
        };
        if step(Step::Events(&batch))? == Flow::Stop {
            break;
        }
    }
    session.events.discard();
    (options.on_stop)();
    let stats = session.engine.stats();
    step(Step::Report {
        now_ns: monotonic_ns(),
        stats: &stats,
        last: true,
    })?;
    Ok(Ended { why, stats_at_stop })
}

#[cfg(test)]
mod tests {
    //! The loop's endings, with a real engine (root, BPF) that has nothing attached.
    use super::*;
    use std::process::{Child, Command};

    fn session(pids: Vec<u32>, cancel: &'static AtomicBool) -> Session {
        let options = SessionOptions {
            pids,
            exact_forks: false,
            mode: Mode::default(),
            engine: EngineOptions::default(),
            watch: WatchFiles::Traced,
            duty: None,
        };
        attach(&[], options, cancel).expect("loading the BPF engine (run as root)")
    }

    fn options(duration: f64, stop: &'static AtomicBool) -> LoopOptions {
        LoopOptions {
            duration: Some(duration),
            interval: None,
            stop,
            drain: DRAIN_BUDGET,
            on_stop: || {},
        }
    }

    /// Runs the loop, counting the last reports; `check` answers every `Step::Check`.
    fn run(session: &mut Session, options: &LoopOptions, check: Flow) -> (End, usize, Duration) {
        let started = Instant::now();
        let mut last_reports = 0;
        let ended = run_loop(
            session,
            options,
            |_, _| false,
            |step| {
                Ok::<_, std::io::Error>(match step {
                    Step::Check => check,
                    Step::Report { last: true, .. } => {
                        last_reports += 1;
                        Flow::Continue
                    }
                    _ => Flow::Continue,
                })
            },
        )
        .unwrap();
        (ended.why, last_reports, started.elapsed())
    }

    /// Checks that a loop given 30 s ended long before, for `want`, with one last report.
    fn ends_early((why, last_reports, took): (End, usize, Duration), want: End) -> Duration {
        assert_eq!(why, want);
        assert_eq!(last_reports, 1);
        assert!(took < Duration::from_secs(10), "{took:?}");
        took
    }

    fn sleeper(seconds: &str) -> Child {
        Command::new("sleep")
            .arg(seconds)
            .spawn()
            .expect("running sleep")
    }

    #[test]
    fn the_loop_ends_at_the_duration_with_one_last_report() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let mut s = session(Vec::new(), &STOP);
        let (why, last_reports, took) = run(&mut s, &options(0.3, &STOP), Flow::Continue);
        assert_eq!(why, End::Duration);
        assert_eq!(last_reports, 1);
        assert!(took >= Duration::from_millis(300), "{took:?}");
    }

    #[test]
    fn the_loop_ends_when_the_stop_flag_is_raised() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let mut s = session(Vec::new(), &STOP);
        let raiser = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            STOP.store(true, Ordering::Relaxed);
        });
        ends_early(
            run(&mut s, &options(30.0, &STOP), Flow::Continue),
            End::Requested,
        );
        raiser.join().unwrap();
    }

    #[test]
    fn the_loop_ends_when_a_step_asks_it_to() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let mut s = session(Vec::new(), &STOP);
        ends_early(run(&mut s, &options(30.0, &STOP), Flow::Stop), End::Asked);
    }

    #[test]
    fn the_loop_ends_only_once_every_traced_process_has_exited() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let (mut first, mut second) = (sleeper("60"), sleeper("60"));
        let mut s = session(vec![first.id(), second.id()], &STOP);
        // The checks drive the processes: the first is killed, the loop is seen to go on for
        // a few checks after it is gone, then the second is killed and only that ends it.
        let mut checks_after_first = 0;
        let mut second_killed = false;
        let ended = run_loop(
            &mut s,
            &options(30.0, &STOP),
            |_, _| false,
            |step| {
                if let Step::Check = step {
                    if is_alive(first.id()) {
                        first.kill().unwrap();
                    } else if checks_after_first < 3 {
                        checks_after_first += 1;
                    } else if !second_killed {
                        second.kill().unwrap();
                        second_killed = true;
                    }
                }
                Ok::<_, std::io::Error>(Flow::Continue)
            },
        )
        .unwrap();
        assert_eq!(ended.why, End::TargetsExited);
        assert!(
            second_killed,
            "the loop ended before the second process exited"
        );
        assert_eq!(checks_after_first, 3);
        first.wait().unwrap();
        second.wait().unwrap();
    }

    #[test]
    fn no_traced_process_is_never_all_exited() {
        assert!(!all_exited(&[]));
        assert!(!all_exited(&[std::process::id()]));
    }
}
