//! What the runtime needs from a tracer, as a trait so the loop does not care whether BPF is
//! there: attach a probe (all its sites), detach it, read its counters.

use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;
use usdtop::probes::{Event, Probe, ProbeKey};

pub struct AttachRequest<'a> {
    pub object: &'a Path,
    pub probe: &'a Probe,
    /// Record only hits of this process and its children.
    pub pid: Option<u32>,
    /// Argument indices to read as C strings (from the catalog).
    pub strings: Vec<usize>,
}

pub struct Counts {
    pub hits: Vec<(Arc<ProbeKey>, u64)>,
    pub dropped: u64,
}

pub trait Tracer {
    /// Attaches every site; returns how many.
    fn attach(&mut self, req: AttachRequest<'_>) -> Result<usize, String>;
    fn detach(&mut self, probe: &ProbeKey) -> Result<(), String>;
    fn counts(&self) -> Counts;
    /// The event stream (taken once).
    fn take_events(&mut self) -> Option<mpsc::Receiver<Vec<Event>>>;
}

/// Stands in when no tracer could be started; every attach says why.
pub struct Unavailable(pub String);

impl Tracer for Unavailable {
    fn attach(&mut self, _req: AttachRequest<'_>) -> Result<usize, String> {
        Err(self.0.clone())
    }

    fn detach(&mut self, _probe: &ProbeKey) -> Result<(), String> {
        Ok(())
    }

    fn counts(&self) -> Counts {
        Counts {
            hits: Vec::new(),
            dropped: 0,
        }
    }

    fn take_events(&mut self) -> Option<mpsc::Receiver<Vec<Event>>> {
        None
    }
}
