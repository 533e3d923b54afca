pub mod argspec;
pub mod catalog;
pub mod elf;
pub mod event;

pub use argspec::{ArgLoc, ArgSpec, ArgSpecError, Reg, RegRef};
pub use elf::{read_probes, ElfError, ObjectProbes, Probe, Site};
pub use event::{ArgValue, Event, ProbeKey};
pub mod process;
