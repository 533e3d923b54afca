//! What the commands that attach share at the edge: the session's notices on stderr, attaching
//! with the signal handlers in place, the run loop with the stop flag, and the figures every
//! aggregating report carries.

use crate::stop;
use anyhow::{Context, Result};
use usdtop::probes::discovery::targets::Target;
use usdtop::probes::discovery::watch::Change;
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::{Engine, EngineOptions, Stats};
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
pub fn attach(
    targets: &[(Target, Vec<usize>)],
    pid: Option<u32>,
    mode: Mode,
    queue_mb: usize,
) -> Result<Session> {
    stop::install().context("installing signal handlers")?;
    let options = SessionOptions {
        pids: pid.into_iter().collect(),
        mode,
        engine: EngineOptions {
            queue_bytes: queue_mb << 20,
            ..EngineOptions::default()
        },
        watch: WatchFiles::Traced,
    };
    attached(session::attach(targets, options, &stop::REQUESTED))
}

/// Attaches a plan: its targets, then the probes it needs attached only so that the runtime
/// fires them (counted, not traced), saying why.
pub fn attach_plan(plan: &Plan, pid: Option<u32>, queue_mb: usize) -> Result<Session> {
    let session = attach(&plan.targets, pid, plan.mode, queue_mb)?;
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
    session::run_loop(session, &options, say, |s| step(s).map(|()| Flow::Continue))?;
    Ok(stop::exit_status())
}

/// Runs the session to its end with the stop flag, `on_change` and `step` the caller's; says
/// nothing on stopping (see [`session::run_loop`]).
pub fn run_quietly(
    session: &mut Session,
    duration: Option<f64>,
    drain: std::time::Duration,
    on_change: impl FnMut(&Change, &mut Engine) -> bool,
    step: impl FnMut(Step) -> Result<Flow>,
) -> Result<Ended> {
    let options = LoopOptions {
        duration,
        interval: None,
        stop: &stop::REQUESTED,
        drain,
        on_stop: || {},
    };
    session::run_loop(session, &options, on_change, step)
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
