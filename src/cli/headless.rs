//! What the aggregating commands (`latency`, `top`) share at the edge: the session's notices on
//! stderr, attaching with the signal handlers in place, the run loop with the stop flag, and the
//! figures every report carries.

use crate::stop;
use anyhow::{Context, Result};
use usdtop::probes::discovery::targets::Target;
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::Stats;
use usdtop::session::{self, LoopOptions, Session, SessionError, Step};

/// Says on stderr what a session notices: the files a PATH glob matched, a traced file or
/// process that changed.
pub fn notice(line: String) {
    eprintln!("usdtop: {line}");
}

/// Attaches with the stop signals caught first: a signal during the attach undoes it and ends
/// the process.
pub fn attach(
    targets: &[(Target, Vec<usize>)],
    pid: Option<u32>,
    mode: Mode,
    queue_mb: usize,
) -> Result<Session> {
    stop::install().context("installing signal handlers")?;
    match session::attach(targets, pid, mode, queue_mb, &stop::REQUESTED) {
        Err(SessionError::Interrupted(engine)) => stop::interrupted_attach(*engine.0),
        other => Ok(other?),
    }
}

/// Runs the session to its end (see [`session::run_loop`]); returns the exit status: 0, or
/// 128 + the signal that stopped it.
pub fn run(
    session: &mut Session,
    duration: Option<f64>,
    interval: Option<f64>,
    pid: Option<u32>,
    step: impl FnMut(Step) -> Result<()>,
) -> Result<u8> {
    let options = LoopOptions {
        duration,
        interval,
        pid,
        stop: &stop::REQUESTED,
        on_stop: stop::say_why_stopped,
    };
    session::run_loop(session, &options, notice, step)?;
    Ok(stop::exit_status())
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
