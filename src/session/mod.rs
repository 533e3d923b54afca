//! Sessions: what a command or the TUI asks for, planned once (the pair and its keys, the
//! argument to split by, kernel or stream), the probes attached, the kernel side of a pair, and
//! the run loop. Imports `probes` and `aggregate`; never `app`, `ui` or the front-ends.

pub mod duty;
pub mod kernel;
pub mod plan;
pub mod request;
pub mod run;

pub use kernel::{
    calls_pairing, kernel_pairing, CallsSide, KernelSide, TopKernel, TopTotals, TARGET_STREAM_RATE,
};
pub use plan::{
    build_pair, call_shaped_names, calls_unsupported, check_arg, done_spec, kernel_unsupported,
    parse_arg_ref, parse_key, resolve, return_key, strings_for, AggMode, ArgRef,
};
pub use request::{plan_latency, plan_top, Ask, LatencyPlan, Place, Plan, TopAsk, TopPlan};
pub use run::{
    all_exited, attach, run_loop, Attacher, End, Ended, Flow, LoopOptions, Session, SessionOptions,
    Step, WatchFiles, DRAIN_BUDGET, POLL,
};

use crate::probes::discovery::select::PatternError;
use crate::probes::discovery::targets::{ArgIndexError, TargetError};
use crate::probes::kernel::kpair::KpairError;
use crate::probes::kernel::ktop::KtopError;
use crate::probes::kernel::ktoplat::KtoplatError;
use crate::probes::tracing::engine::{Engine, EngineError};
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error(
        "{0} does not start a pair the catalog knows; name its done probe too: \
         usdtop latency {0} PROVIDER:DONE"
    )]
    UnknownPair(String),
    #[error(
        "`{text}` is not an argument of {probe}: write argN (N from 0) or a catalog argument name"
    )]
    NotAnArgument { text: String, probe: String },
    #[error("which argument of {0} should rows be keyed by? give --by argN")]
    NoKey(String),
    #[error("cannot {what} {probe} in the kernel: {why}")]
    KernelRefused {
        what: &'static str,
        probe: String,
        why: String,
    },
    #[error(transparent)]
    Targets(#[from] TargetError),
    #[error(transparent)]
    ArgIndex(#[from] ArgIndexError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An overhead budget asked where probes cannot be taken out and put back cheaply.
    #[error("--max-overhead needs the uprobe-multi attach path; this one is {0}")]
    BudgetNeedsMulti(String),
    #[error("attaching {probe} in {}", path.display())]
    Attach {
        probe: String,
        path: PathBuf,
        #[source]
        source: Box<EngineError>,
    },
    /// The stop flag was raised during the attach; dropping the engine undoes it.
    #[error("interrupted while attaching")]
    Interrupted(Interrupted),
    #[error("the engine's event stream was already taken")]
    EventsTaken,
    #[error(transparent)]
    Kernel(#[from] KpairError),
    #[error(transparent)]
    KernelTop(#[from] KtopError),
    #[error(transparent)]
    KernelTopLat(#[from] KtoplatError),
}

/// The engine of an attach that was stopped half way, for the caller to drop when it is ready.
pub struct Interrupted(pub Box<Engine>);

impl std::fmt::Debug for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupted(Engine)")
    }
}
