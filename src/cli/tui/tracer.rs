//! What the runtime needs from a tracer, as a trait so the loop does not care whether BPF is
//! there: attach a probe (all its sites), detach it, read its counters.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use usdtop::probes::bpf::Mode;
use usdtop::probes::engine::{AttachOptions, Engine, EngineOptions, ProbeId, ProcFilter};
use usdtop::probes::{Event, ObjectProbes, Probe, ProbeKey};

pub struct AttachRequest<'a> {
    pub object: &'a ObjectProbes,
    /// Where to open the object, when not at its mapped path (containers, deleted files).
    pub open_path: Option<PathBuf>,
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

/// The real thing: the BPF engine.
pub struct BpfTracer {
    engine: Engine,
    ids: HashMap<ProbeKey, ProbeId>,
}

impl BpfTracer {
    pub fn start() -> Result<BpfTracer, String> {
        // A short queue between the ring reader and the UI bounds memory when the UI falls
        // behind: the kernel ring fills instead and its drops are counted and shown.
        let options = EngineOptions {
            channel_batches: 32,
            ..EngineOptions::default()
        };
        let engine = Engine::new(options).map_err(|e| e.to_string())?;
        Ok(BpfTracer {
            engine,
            ids: HashMap::new(),
        })
    }
}

impl Tracer for BpfTracer {
    fn attach(&mut self, req: AttachRequest<'_>) -> Result<usize, String> {
        let options = AttachOptions {
            strings: req.strings,
            filter: match req.pid {
                Some(pid) => ProcFilter::Pids(vec![pid]),
                None => ProcFilter::All,
            },
            mode: Mode::Stream,
            open_path: req.open_path,
        };
        let id = self
            .engine
            .attach(req.object, req.probe, &options)
            .map_err(|e| e.to_string())?;
        let key = ProbeKey {
            path: req.object.path.display().to_string(),
            provider: req.probe.provider.clone(),
            name: req.probe.name.clone(),
        };
        if let Some(old) = self.ids.insert(key, id) {
            let _ = self.engine.detach(old);
        }
        Ok(req.probe.sites.len())
    }

    fn detach(&mut self, probe: &ProbeKey) -> Result<(), String> {
        match self.ids.remove(probe) {
            Some(id) => self.engine.detach(id).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn counts(&self) -> Counts {
        let stats = self.engine.stats();
        Counts {
            hits: stats
                .probes
                .into_iter()
                .map(|p| (p.probe, p.hits))
                .collect(),
            dropped: stats.drops,
        }
    }

    fn take_events(&mut self) -> Option<mpsc::Receiver<Vec<Event>>> {
        self.engine.take_events()
    }
}
