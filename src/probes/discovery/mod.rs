//! Discovery: what probes exist — ELF notes and their argument specs, processes and the objects
//! they map, probe patterns resolved to targets, the provider catalog and its hints, and changes to targets.
//! Imports nothing else of `probes` (the other rooms build on it).

pub mod argspec;
pub mod catalog;
pub mod elf;
pub mod hints;
pub mod process;
pub mod select;
pub mod targets;
pub mod watch;
