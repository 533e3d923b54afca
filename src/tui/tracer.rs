//! What the runtime needs from a tracer, as a trait so the loop does not care whether BPF is
//! there: attach a probe (all its sites), detach it, read its counters, and move a start/done
//! pair into the kernel (in-kernel pairing with a sampled stream, as `usdtop latency` does).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use usdtop::probes::discovery::catalog::Pair;
use usdtop::probes::kernel::kpair::KernelPairs;
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::{AttachOptions, Engine, EngineOptions, ProbeId, ProcFilter};
use usdtop::probes::tracing::queue::EventStream;
use usdtop::probes::{ObjectProbes, Probe, ProbeKey};
use usdtop::session::KernelSide;

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

/// Latencies paired in the kernel as (latency ns, count), and the streamed 1-in-n sampling.
pub type KernelLatency = (Vec<(u64, u64)>, u32);

pub struct Counts {
    pub hits: Vec<(Arc<ProbeKey>, u64)>,
    pub dropped: u64,
    pub unreadable: u64,
    pub too_slow: u64,
}

pub trait Tracer {
    /// Attaches every site; returns how many.
    fn attach(&mut self, req: AttachRequest<'_>) -> Result<usize, String>;
    fn detach(&mut self, probe: &ProbeKey) -> Result<(), String>;
    fn counts(&self) -> Counts;
    /// How probes are attached (uprobe-multi or per-site, and why), for the help screen.
    fn attach_path(&self) -> Option<String> {
        None
    }
    /// The event stream (taken once).
    fn take_events(&mut self) -> Option<EventStream>;
    /// Pairs `pair` in the kernel from now on: its attached start and done probes are
    /// re-attached in pairing mode, with 1 request in `sample` streamed (`None`: adaptive).
    fn pair_in_kernel(
        &mut self,
        _pair: &Pair,
        _sample: Option<u32>,
        _now_ns: u64,
    ) -> Result<(), String> {
        Err("no BPF tracer".into())
    }
    /// The pair being paired in the kernel, if any.
    fn kernel_pair(&self) -> Option<&Pair> {
        None
    }
    /// Back to streaming every event of the kernel pair's probes.
    fn pair_in_stream(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Latencies paired in the kernel since the previous call, as (latency ns, count), and
    /// the streamed sampling (1 in n), after adapting it to the event rate.
    fn kernel_latency(&mut self, _now_ns: u64) -> Option<Result<KernelLatency, String>> {
        None
    }
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
            unreadable: 0,
            too_slow: 0,
        }
    }

    fn take_events(&mut self) -> Option<EventStream> {
        None
    }
}

/// What is needed to attach a probe again in another mode.
struct Attached {
    id: ProbeId,
    object: ObjectProbes,
    probe: Probe,
    options: AttachOptions,
}

struct InKernel {
    side: KernelSide,
    pair: Pair,
    keys: Vec<ProbeKey>,
}

/// The real thing: the BPF engine.
pub struct BpfTracer {
    engine: Engine,
    ids: HashMap<ProbeKey, Attached>,
    /// Hits of earlier attachments of a probe (re-attaching in another mode restarts the
    /// kernel's counter; the panes should not see the total drop).
    hit_base: HashMap<ProbeKey, u64>,
    /// The pairing maps, once taken from the engine (they can be taken only once).
    pairs: Option<KernelPairs>,
    kernel: Option<InKernel>,
}

impl BpfTracer {
    pub fn start() -> Result<BpfTracer, String> {
        // A short queue between the ring reader and the UI bounds memory when the UI falls
        // behind: what does not fit is dropped and counted, and the count is shown.
        let options = EngineOptions {
            queue_bytes: 16 << 20,
            ..EngineOptions::default()
        };
        let engine = Engine::new(options).map_err(|e| e.to_string())?;
        Ok(BpfTracer {
            engine,
            ids: HashMap::new(),
            hit_base: HashMap::new(),
            pairs: None,
            kernel: None,
        })
    }

    fn key_of(object: &ObjectProbes, probe: &Probe) -> ProbeKey {
        ProbeKey {
            path: object.path.display().to_string(),
            provider: probe.provider.clone(),
            name: probe.name.clone(),
        }
    }

    fn hits_of(&self, id: ProbeId) -> u64 {
        let stats = self.engine.stats();
        stats
            .probes
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.hits)
            .unwrap_or(0)
    }

    /// Attaches `key` again in `mode`; the old attachment goes only once the new one works.
    fn reattach(&mut self, key: &ProbeKey, mode: Mode) -> Result<ProbeId, String> {
        let old = self.ids.get(key).ok_or("not attached")?;
        let options = AttachOptions {
            mode,
            ..old.options.clone()
        };
        let id = self
            .engine
            .attach(&old.object, &old.probe, &options)
            .map_err(|e| e.to_string())?;
        let old_id = old.id;
        *self.hit_base.entry(key.clone()).or_default() += self.hits_of(old_id);
        let _ = self.engine.detach(old_id);
        let entry = self.ids.get_mut(key).expect("checked above");
        entry.id = id;
        entry.options = options;
        Ok(id)
    }

    fn reattach_all(&mut self, keys: &[ProbeKey], mode: Mode) -> Result<Vec<ProbeId>, String> {
        keys.iter().map(|k| self.reattach(k, mode)).collect()
    }

    fn keys_named(&self, full_name: &str) -> Vec<ProbeKey> {
        let mut keys: Vec<ProbeKey> = self
            .ids
            .keys()
            .filter(|k| k.full_name() == full_name)
            .cloned()
            .collect();
        keys.sort_by(|a, b| a.path.cmp(&b.path));
        keys
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
        let name = req.probe.full_name();
        if self
            .kernel
            .as_ref()
            .is_some_and(|k| k.pair.start == name || k.pair.done == name)
        {
            // A new site of the kernel pair: everything streams until the runtime moves the
            // pair (with all its probes) into the kernel again.
            self.pair_in_stream()?;
        }
        let id = self
            .engine
            .attach(req.object, req.probe, &options)
            .map_err(|e| e.to_string())?;
        let key = Self::key_of(req.object, req.probe);
        let attached = Attached {
            id,
            object: req.object.clone(),
            probe: req.probe.clone(),
            options,
        };
        if let Some(old) = self.ids.insert(key.clone(), attached) {
            *self.hit_base.entry(key).or_default() += self.hits_of(old.id);
            let _ = self.engine.detach(old.id);
        }
        Ok(req.probe.sites.len())
    }

    fn detach(&mut self, probe: &ProbeKey) -> Result<(), String> {
        if self.kernel.as_ref().is_some_and(|k| k.keys.contains(probe)) {
            self.pair_in_stream()?;
        }
        self.hit_base.remove(probe);
        match self.ids.remove(probe) {
            // Space must not freeze the screen while the kernel unregisters the uprobes.
            Some(a) => self
                .engine
                .detach_in_background(a.id)
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn attach_path(&self) -> Option<String> {
        use usdtop::probes::tracing::engine::AttachPath;
        Some(match self.engine.attach_path() {
            AttachPath::Multi => "uprobe-multi links, per process with -p".to_string(),
            AttachPath::PerSite(why) => format!("per-site perf events ({why})"),
        })
    }

    fn counts(&self) -> Counts {
        let stats = self.engine.stats();
        Counts {
            hits: stats
                .probes
                .into_iter()
                .map(|p| {
                    let base = self.hit_base.get(&*p.probe).copied().unwrap_or(0);
                    (p.probe, base + p.hits)
                })
                .collect(),
            dropped: stats.drops,
            unreadable: stats.unreadable,
            too_slow: stats.slow_drops,
        }
    }

    fn take_events(&mut self) -> Option<EventStream> {
        self.engine.take_events()
    }

    fn pair_in_kernel(
        &mut self,
        pair: &Pair,
        sample: Option<u32>,
        now_ns: u64,
    ) -> Result<(), String> {
        self.pair_in_stream()?;
        let (starts, dones) = (self.keys_named(&pair.start), self.keys_named(&pair.done));
        if starts.is_empty() || dones.is_empty() {
            return Err(format!(
                "{} and {} are not both attached",
                pair.start, pair.done
            ));
        }
        let pairs = match self.pairs.take() {
            Some(p) => p,
            None => KernelPairs::new(&mut self.engine).map_err(|e| e.to_string())?,
        };
        // Dones first, as KernelSide configures them: a start must not wait for an unknown done.
        let moved = self
            .reattach_all(&dones, Mode::Pair)
            .and_then(|d| Ok((self.reattach_all(&starts, Mode::Pair)?, d)));
        let side = match moved {
            Ok((start_ids, done_ids)) => {
                KernelSide::with_pairs(pairs, pair, start_ids, &done_ids, sample, now_ns)
                    .map_err(|e| e.to_string())
            }
            Err(e) => {
                self.pairs = Some(pairs);
                Err(e)
            }
        };
        let keys: Vec<ProbeKey> = starts.into_iter().chain(dones).collect();
        match side {
            Ok(side) => {
                self.kernel = Some(InKernel {
                    side,
                    pair: pair.clone(),
                    keys,
                });
                Ok(())
            }
            Err(why) => {
                // Whatever was moved goes back to streaming (the maps are lost only if
                // configuring them failed, and then pairing in the kernel cannot work anyway).
                for k in &keys {
                    let _ = self.reattach(k, Mode::Stream);
                }
                Err(why)
            }
        }
    }

    fn kernel_pair(&self) -> Option<&Pair> {
        self.kernel.as_ref().map(|k| &k.pair)
    }

    fn pair_in_stream(&mut self) -> Result<(), String> {
        let Some(k) = self.kernel.take() else {
            return Ok(());
        };
        let mut pairs = k.side.into_pairs();
        let mut first_err = None;
        for key in &k.keys {
            if let Some(a) = self.ids.get(key) {
                let _ = pairs.clear_role(a.id);
            }
            if let Err(e) = self.reattach(key, Mode::Stream) {
                first_err.get_or_insert(format!("{}: {e}", key.full_name()));
            }
        }
        self.pairs = Some(pairs);
        first_err.map_or(Ok(()), Err)
    }

    fn kernel_latency(&mut self, now_ns: u64) -> Option<Result<KernelLatency, String>> {
        let stats = self.engine.stats();
        let k = self.kernel.as_mut()?;
        if let Err(e) = k.side.tick(now_ns, &stats) {
            return Some(Err(e.to_string()));
        }
        let delta = k.side.take_delta();
        Some(Ok((delta.samples().collect(), k.side.sample_every)))
    }
}
