//! What the commands that attach share at the edge: the session's notices on stderr, attaching
//! with the signal handlers in place, the run loop with the stop flag, and the figures every
//! aggregating report carries.

use crate::stop;
use anyhow::{Context, Result};
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::discovery::hints::{InertWatch, ProbeHits};
use usdtop::probes::discovery::targets::Target;
use usdtop::probes::discovery::watch::Change;
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::{Engine, EngineOptions, Stats};
use usdtop::session::duty::DutyOptions;
use usdtop::session::{
    self, Ended, Flow, LoopOptions, Plan, Session, SessionError, SessionOptions, Step, WatchFiles,
    DRAIN_BUDGET,
};

/// Says on stderr what a session notices: the files a PATH glob matched, a traced file or
/// process that changed.
pub fn notice(line: String) {
    eprintln!("usdtop: {line}");
}

/// Attaches with the stop signals caught first: a signal during the attach undoes it and ends
/// the process. Watches the -p process, or without -p the traced files.
pub fn attach(targets: &[(Target, Vec<usize>)], mode: Mode, how: &How) -> Result<Session> {
    stop::install().context("installing signal handlers")?;
    let options = SessionOptions {
        pids: how.pid.into_iter().collect(),
        exact_forks: how.exact_forks,
        mode,
        engine: EngineOptions {
            queue_bytes: how.queue_mb << 20,
            ..EngineOptions::default()
        },
        watch: WatchFiles::Traced,
        duty: how.duty,
    };
    let session = attached(session::attach(targets, options, &stop::REQUESTED))?;
    say_attached(&session, how.verbose);
    Ok(session)
}

/// The flags of `trace`, `latency` and `top` that say how their probes are attached.
#[derive(clap::Args, Debug, Clone)]
pub struct AttachFlags {
    /// With -p: attach for every process running the traced files and filter in BPF, so no
    /// hit of a process forked later is missed. Without it, each traced process gets links of
    /// its own: other processes running the same files pay nothing, and a child forked later
    /// is linked about 0.05-15 ms after its fork (its hits before that are not seen; -v says
    /// the longest wait).
    #[arg(long)]
    pub exact_forks: bool,
    /// Keep what the probes cost below PCT percent of the machine's CPU (hits per second ×
    /// the cost of a hit, measured at start): above it, attach them for only a slice of each
    /// period, scale counts and rates back up and say so ("sampled 12% of the time").
    /// Latencies are a sample of whole requests, never scaled. Needs the uprobe-multi path.
    #[arg(long, value_name = "PCT", value_parser = super::numbers::percent)]
    pub max_overhead: Option<f64>,
    /// With --max-overhead: attach for this fraction of each period whatever the estimate
    /// (for tests and benchmarks).
    #[arg(long, hide = true, requires = "max_overhead", value_parser = super::numbers::fraction)]
    pub duty: Option<f64>,
}

impl AttachFlags {
    /// How a command with these flags attaches.
    pub fn how(&self, pid: Option<u32>, queue_mb: usize, verbose: bool) -> How {
        How {
            pid,
            queue_mb,
            exact_forks: self.exact_forks,
            verbose,
            duty: self.duty(),
        }
    }

    /// The overhead budget asked for, if any.
    pub fn duty(&self) -> Option<DutyOptions> {
        self.max_overhead.map(|pct| DutyOptions {
            budget: pct / 100.0,
            fixed: self.duty,
        })
    }
}

/// How a command attaches: its -p, queue, fork following, -v and overhead budget.
pub struct How {
    pub pid: Option<u32>,
    pub queue_mb: usize,
    pub exact_forks: bool,
    pub verbose: bool,
    pub duty: Option<DutyOptions>,
}

/// With `-v`: how the probes were attached, and how long it took.
pub fn say_attached(session: &Session, verbose: bool) {
    if verbose {
        notice(format!("attach path: {}", session.engine.attach_path()));
        notice(format!(
            "attached {} site(s) in {:.1} ms",
            session.sites,
            session.attach_time.as_secs_f64() * 1e3
        ));
    }
}

/// Detaches everything; with `-v` says how long it took. Says, in any case, how many forked
/// children could not be followed.
pub fn detach(session: &mut Session, verbose: bool) {
    let took = session.detach_all();
    if verbose {
        notice(format!("detached in {:.1} ms", took.as_secs_f64() * 1e3));
    }
    let follow = session.engine.follow_stats();
    if verbose && follow.children > 0 {
        notice(format!(
            "followed {} forked child process(es), each linked within {:.1} ms of its fork \
             (hits before that are not seen)",
            follow.children,
            follow.worst_window.as_secs_f64() * 1e3
        ));
    }
    if follow.missed > 0 {
        notice(format!(
            "{} forked child process(es) could not be attached; their hits are not counted",
            follow.missed
        ));
    }
}

/// Attaches a plan: its targets, then the probes it needs attached only so that the runtime
/// fires them (counted, not traced), saying why.
pub fn attach_plan(plan: &Plan, how: &How) -> Result<Session> {
    let session = attach(&plan.targets, plan.mode, how)?;
    if plan.enable.is_empty() {
        return Ok(session);
    }
    let mut names: Vec<String> = plan.enable.iter().map(|t| t.probe().full_name()).collect();
    names.dedup();
    notice(format!(
        "also attaching {}: {}",
        names.join(", "),
        plan.enable_why.as_deref().unwrap_or("the runtime needs it")
    ));
    attached(session.attach_counted(&plan.enable))
}

/// The session of an attach, or the exit of the process when a signal interrupted it (the
/// attach is undone first).
pub fn attached(attach: Result<Session, SessionError>) -> Result<Session> {
    match attach {
        Err(SessionError::Interrupted(engine)) => stop::interrupted_attach(*engine.0),
        other => Ok(other?),
    }
}

/// Runs the session to its end (see [`session::run_loop`]); returns the exit status: 0, or
/// 128 + the signal that stopped it. Changes to what is traced are only said.
pub fn run(
    session: &mut Session,
    duration: Option<f64>,
    interval: Option<f64>,
    verbose: bool,
    mut step: impl FnMut(Step) -> Result<()>,
) -> Result<u8> {
    let options = LoopOptions {
        duration,
        interval,
        stop: &stop::REQUESTED,
        drain: DRAIN_BUDGET,
        on_stop: stop::say_why_stopped,
    };
    let say = |change: &Change, _: &mut Engine| {
        notice(change.to_string());
        false
    };
    let mut silence = SilenceHints::new(session.pids());
    session::run_loop(session, &options, say, |s| {
        silence.look(&s);
        step(s).map(|()| Flow::Continue)
    })?;
    detach(session, verbose);
    Ok(stop::exit_status())
}

/// Runs the session to its end with the stop flag, `on_change` and `step` the caller's; says
/// nothing on stopping (see [`session::run_loop`]).
pub fn run_quietly(
    session: &mut Session,
    duration: Option<f64>,
    drain: std::time::Duration,
    on_change: impl FnMut(&Change, &mut Engine) -> bool,
    mut step: impl FnMut(Step) -> Result<Flow>,
) -> Result<Ended> {
    let options = LoopOptions {
        duration,
        interval: None,
        stop: &stop::REQUESTED,
        drain,
        on_stop: || {},
    };
    let mut silence = SilenceHints::new(session.pids());
    session::run_loop(session, &options, on_change, |s| {
        silence.look(&s);
        step(s)
    })
}

/// Says on stderr, once per probe, why an attached probe has stayed silent for a few seconds
/// when the catalog knows a runtime switch it needs and that switch is off (see
/// [`usdtop::probes::discovery::hints`]).
struct SilenceHints {
    catalog: Catalog,
    watch: InertWatch,
    pids: Vec<u32>,
}

impl SilenceHints {
    fn new(pids: &[u32]) -> SilenceHints {
        SilenceHints {
            catalog: Catalog::builtin(),
            watch: InertWatch::default(),
            pids: pids.to_vec(),
        }
    }

    fn look(&mut self, step: &Step) {
        let Step::Tick { now_ns, stats } = step else {
            return;
        };
        let probes: Vec<ProbeHits> = stats
            .probes
            .iter()
            .map(|p| ProbeHits {
                path: &p.probe.path,
                full_name: p.probe.full_name(),
                hits: p.hits,
            })
            .collect();
        let pids = &self.pids;
        for line in self
            .watch
            .check(self.catalog.hints(), *now_ns, &probes, |_| pids.clone())
        {
            notice(format!("hint: {line}"));
        }
    }
}

/// The figures every JSON report ends with: how long it covers and what was lost.
pub fn insert_run_figures(
    o: &mut serde_json::Map<String, serde_json::Value>,
    elapsed_s: f64,
    stats: &Stats,
) {
    o.insert("elapsed_s".into(), serde_json::json!(elapsed_s));
    o.insert("drops".into(), serde_json::json!(stats.drops));
    o.insert(
        "unreadable_strings".into(),
        serde_json::json!(stats.unreadable),
    );
    o.insert("drops_too_slow".into(), serde_json::json!(stats.slow_drops));
    o.insert("events".into(), serde_json::json!(stats.events));
}
