//! All TUI state and behaviour, no drawing: the explorer (processes → objects → probes), the
//! live panes (request log, latency histogram, top table) and drill-down, driven by
//! `App::update(Action) -> Vec<Command>` so tests can run it without a terminal.

mod action;
pub mod aggregate;
mod explorer;
mod live;
mod state;

pub use action::{Action, Command, Pane};
pub use explorer::{Cursor, Explorer, ObjectView, ProbeView, ProcessSort, ProcessView};
pub use live::{normalize_key, DrillDown, HitRate, Live, LogEntry, LOG_CAP};
pub use state::{App, AttachState, Status};

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
