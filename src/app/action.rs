//! What can happen to the app (actions: keys already mapped to intents, and results from the
//! runtime) and what the app asks the runtime to do (commands). The app never touches BPF,
//! procfs or the terminal itself; this is its whole interface.

use super::explorer::ProcessView;
use super::pairing::KernelLatency;
use super::scan::ProcessScan;
use crate::probes::discovery::catalog::Pair;
use crate::probes::{Event, ProbeKey};
use std::sync::Arc;

/// The panes that can hold the focus, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    Processes,
    Objects,
    Probes,
    Log,
    Histogram,
    Top,
}

impl Pane {
    pub const ORDER: [Pane; 6] = [
        Pane::Processes,
        Pane::Objects,
        Pane::Probes,
        Pane::Log,
        Pane::Histogram,
        Pane::Top,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Processes => "Processes",
            Pane::Objects => "Objects",
            Pane::Probes => "Probes",
            Pane::Log => "Request log",
            Pane::Histogram => "Latency",
            Pane::Top => "Top",
        }
    }

    pub fn is_explorer(self) -> bool {
        matches!(self, Pane::Processes | Pane::Objects | Pane::Probes)
    }
}

/// Inputs to [`super::App::update`].
#[derive(Debug, Clone)]
pub enum Action {
    // --- intents (from the key map) ---
    FocusNext,
    FocusPrev,
    Focus(Pane),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Drill down (top row → key filter; histogram bucket → latency filter).
    Enter,
    /// Step back: close help, clear the filter being typed or the focused pane's, pop the
    /// last drill-down.
    Back,
    /// Attach or detach the selected probe.
    Toggle,
    /// Start editing the `/` filter of the focused explorer pane (processes from the others).
    StartFilter,
    FilterInput(char),
    FilterBackspace,
    /// Finish editing the filter (keeps it).
    FilterDone,
    /// Cycle the sort order of the focused table.
    CycleSort,
    /// Cycle the histogram/top window (10 s → 1 min → all).
    CycleWindow,
    /// Follow the next catalog start/done pair that has an attached probe.
    CyclePair,
    /// Pause or resume the request log.
    TogglePause,
    /// Clear the request log and the aggregations.
    Clear,
    /// Cycle the overhead budget: off, 1 %, 5 %, off (duty-cycled attachment).
    CycleBudget,
    /// The tracer took the probes out for a while (duty cycling): open starts are forgotten.
    Gap,
    /// What the duty cycle did so far: the fraction of time attached and the estimated cost
    /// of attaching all the time (a fraction of the CPU).
    Sampled {
        fraction: f64,
        full_overhead: f64,
    },
    /// The outcome of [`Command::SetBudget`].
    BudgetSet {
        budget: Option<f64>,
        result: Result<(), String>,
    },
    ToggleHelp,
    Quit,
    // --- results from the runtime ---
    /// Select this process (now, or once it is listed).
    SelectProcess(u32),
    /// A fresh process list (replaces the previous one).
    Processes(Vec<ProcessView>),
    /// A fresh process list as discovery scanned it (the app makes the views).
    Scanned(Vec<ProcessScan>),
    /// The runtime cannot attach at all (e.g. not root); shown, and Space explains it.
    AttachUnavailable(String),
    Attached {
        probe: Arc<ProbeKey>,
        sites: usize,
    },
    AttachFailed {
        probe: Arc<ProbeKey>,
        why: String,
    },
    Detached {
        probe: Arc<ProbeKey>,
    },
    /// One batch of decoded events, in arrival order.
    Events(Vec<Event>),
    /// Kernel-side counters: hits per attached probe (running totals), events the full ring
    /// dropped, events dropped because the UI fell behind, and string arguments left
    /// unreadable (running totals).
    ProbeCounts {
        hits: Vec<(Arc<ProbeKey>, u64)>,
        dropped: u64,
        too_slow: u64,
        unreadable: u64,
    },
    /// The followed pair is now paired in the kernel, with 1 request in `Some(n)` streamed
    /// (or again in user space from every event: `None`).
    Sampling(Option<u32>),
    /// Latencies the kernel paired since the previous report, as (latency ns, count), and the
    /// current sampling of the stream (1 in `sample_every`).
    KernelLatency {
        now_ns: u64,
        samples: Vec<(u64, u64)>,
        sample_every: u32,
    },
    /// A few times a second: which pair the tracer pairs in the kernel now, if any.
    PairingTick {
        now_ns: u64,
        kernel_pair: Option<Pair>,
    },
    /// The answer to [`Command::ReadKernelPairing`]: the kernel's latencies since the last one
    /// (`None`: no pair is in the kernel), and why the followed pair cannot go there, if so.
    PairingReport {
        now_ns: u64,
        report: Option<Result<KernelLatency, String>>,
        kernel_unsupported: Option<String>,
    },
    /// The outcome of [`Command::PairInKernel`].
    PairedInKernel {
        pair: Pair,
        rate: f64,
        result: Result<(), String>,
    },
    /// The outcome of [`Command::PairInStream`].
    PairedInStream {
        cooled: Option<(String, f64)>,
        result: Result<(), String>,
    },
    /// The screen's size changed: rows a page key moves, rows the histogram has for bars.
    Resize {
        page_rows: usize,
        hist_rows: usize,
    },
    /// The clock moved on (CLOCK_MONOTONIC ns, the clock of event timestamps).
    Tick {
        now_ns: u64,
    },
    /// Something to show on the status line.
    Status(String),
    Error(String),
}

/// Requests from the app to the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Attach every site of `probe`, events filtered to `pid` (and its children) when given.
    Attach {
        probe: Arc<ProbeKey>,
        pid: Option<u32>,
    },
    Detach {
        probe: Arc<ProbeKey>,
    },
    /// Pair `pair` in the kernel from now on (its probes fire `rate` times a second).
    PairInKernel {
        pair: Pair,
        rate: f64,
        now_ns: u64,
    },
    /// Stream every event of the kernel-paired pair again; `cooled`: auto moved it back
    /// because its rate (`start` probe, hits a second) fell.
    PairInStream {
        cooled: Option<(String, f64)>,
    },
    /// Keep the probes' cost under this fraction of the CPU by duty cycling (`None`: off).
    SetBudget(Option<f64>),
    /// Read the kernel's pairing aggregates and answer with [`Action::PairingReport`].
    ReadKernelPairing {
        now_ns: u64,
    },
    Quit,
}
