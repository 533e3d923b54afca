//! Everything about probes, below the app and the front-ends; imports nothing above it. Three
//! rooms, data flowing one way: `discovery` (what exists) → `tracing` (attach, events) →
//! `kernel` (aggregates kept in BPF maps, read back).

pub mod discovery;
pub mod kernel;
pub mod tracing;

pub use discovery::elf::{read_probes, ObjectProbes, Probe, Site};
pub use tracing::event::{ArgValue, Event, ProbeKey};
