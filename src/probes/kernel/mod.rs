//! In-kernel aggregates read back: start/done pairing, counts per string key, and latency per
//! key, kept in BPF maps by the tracing program and read from the engine's maps here.
//! Imports `tracing` (the engine owning the maps) and nothing above `probes`.

pub mod kcalls;
pub mod kpair;
pub mod ktop;
pub mod ktoplat;
