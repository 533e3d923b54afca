//! All TUI state and behaviour, no drawing: the explorer (processes → objects → probes), the
//! live panes (request log, latency histogram, top table) and drill-down, the views of what
//! discovery scanned, and where the followed pair is paired (user space or kernel), all driven
//! by `App::update(Action) -> Vec<Command>` so tests can run it without a terminal. The
//! runtime (`src/tui`) carries out the commands and reports their outcomes as actions.

mod action;
mod explorer;
mod live;
mod pairing;
mod scan;
mod state;

pub use action::{Action, Command, Pane};
pub use explorer::{
    Cursor, Explorer, Filters, ObjectView, PaneFilter, ProbeView, ProcessSort, ProcessView,
};
pub use live::{DrillDown, HitRate, Live, LogEntry, LOG_CAP};
pub use pairing::{KernelKey, KernelLatency, PairingMode, PairingPolicy};
pub use scan::{ProcessScan, ScannedObject};
pub use state::{App, AttachState, Status};

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
