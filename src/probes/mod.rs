pub mod argspec;
pub mod catalog;
pub mod elf;
pub mod event;
pub mod process;

pub mod attach;
pub mod bpf;
pub mod decode;
pub mod engine;
pub mod filter;
pub mod kpair;
pub mod ktop;
pub mod ktoplat;
pub mod privilege;
pub mod queue;
mod reader;
pub mod select;
pub mod targets;
pub mod watch;

pub use argspec::{ArgLoc, ArgSpec, ArgSpecError, Reg, RegRef};
pub use elf::{read_probes, ElfError, ObjectProbes, Probe, Site};
pub use event::{ArgValue, Event, ProbeKey};
