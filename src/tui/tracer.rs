//! What the runtime needs from a tracer, as a trait so the loop does not care whether BPF is
//! there: attach a probe (all its sites), detach it, read its counters, and move a start/done
//! pair into the kernel (in-kernel pairing with a sampled stream, as `usdtop latency` does).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use usdtop::app::{KernelKey, KernelLatency};
use usdtop::probes::discovery::catalog::{Catalog, Pair};
use usdtop::probes::kernel::kcalls::{CallMaps, KernelCallStats, KernelCalls};
use usdtop::probes::kernel::kpair::KernelPairs;
use usdtop::probes::tracing::bpf::Mode;
use usdtop::probes::tracing::engine::{AttachOptions, Engine, EngineOptions, ProbeId, ProcFilter};
use usdtop::probes::tracing::queue::EventStream;
use usdtop::probes::{ObjectProbes, Probe, ProbeKey};
use usdtop::session::duty::{DutyCycle, DutyOptions, Toggle};
use usdtop::session::{return_key, KernelSide};

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
    /// Keeps the probes' cost under `budget` (a fraction of the CPU) by duty cycling, or
    /// stops doing so (`None`).
    fn set_budget(&mut self, _budget: Option<f64>) -> Result<(), String> {
        Err("no BPF tracer".into())
    }
    /// Called every frame: takes the probes out or puts them back as the duty cycle says.
    fn duty_tick(&mut self) -> Option<DutyTick> {
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

/// What a duty-cycle step did.
pub struct DutyTick {
    /// The probes were just taken out: open starts must be forgotten.
    pub gap: bool,
    /// The fraction of time attached since the budget was set.
    pub fraction: f64,
    /// The estimated cost of attaching all the time, a fraction of the CPU.
    pub full_overhead: f64,
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
    side: Side,
    pair: Pair,
    keys: Vec<ProbeKey>,
}

/// How the kernel pairs: by a start/done map with a sampled stream, or a call-shaped pair on
/// a stack per thread with latencies per key (its figures when last read).
// One value per tracer: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Side {
    Pair(KernelSide),
    Calls(KernelCalls, KernelCallStats),
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
    /// The maps call-shaped pairs use besides, likewise.
    call_maps: Option<CallMaps>,
    kernel: Option<InKernel>,
    /// Which argument names a call, for call-shaped pairs.
    catalog: Catalog,
    /// The duty cycle under an overhead budget, and the measured cost of a hit.
    duty: Option<DutyCycle>,
    hit_cost: Option<std::time::Duration>,
}

impl BpfTracer {
    /// Puts every attached probe back in (after a suspend of the duty cycle).
    fn resume_all(&mut self) {
        let ids: Vec<ProbeId> = self.ids.values().map(|a| a.id).collect();
        for id in ids {
            // A failure leaves the probe out; its hits stop, which the panes show.
            let _ = self.engine.resume(id);
        }
    }

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
            call_maps: None,
            kernel: None,
            catalog: Catalog::builtin(),
            duty: None,
            hit_cost: None,
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
        self.reattach_reading(key, mode, None)
    }

    /// As [`Self::reattach`], reading `strings` (when given) as the only string arguments for
    /// this attachment; a later reattach reads the probe's own strings again.
    fn reattach_reading(
        &mut self,
        key: &ProbeKey,
        mode: Mode,
        strings: Option<&[usize]>,
    ) -> Result<ProbeId, String> {
        let old = self.ids.get(key).ok_or("not attached")?;
        let options = AttachOptions {
            mode,
            ..old.options.clone()
        };
        let reading = AttachOptions {
            strings: strings.map_or_else(|| options.strings.clone(), <[usize]>::to_vec),
            ..options.clone()
        };
        let id = self
            .engine
            .attach(&old.object, &old.probe, &reading)
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

    /// Moves a call-shaped pair into the kernel: its returns, then its entries, re-attached in
    /// `Mode::Calls` reading only the argument that names a call (the catalog's label).
    fn calls_in_kernel(
        &mut self,
        pair: &Pair,
        pairs: KernelPairs,
        (starts, dones): (&[ProbeKey], &[ProbeKey]),
    ) -> Result<Side, String> {
        let maps = match self.call_maps.take() {
            Some(m) => m,
            None => CallMaps::take(&mut self.engine).map_err(|e| e.to_string())?,
        };
        let label = pair.label.filter(|&i| {
            self.catalog
                .args(&pair.start)
                .and_then(|a| a.get(i))
                .is_some_and(|a| a.is_str)
        });
        let (start_strings, done_strings) = match label {
            Some(i) => (vec![i], vec![return_key(pair, i, &self.catalog)]),
            None => (Vec::new(), Vec::new()),
        };
        let mut moved = || -> Result<(Vec<ProbeId>, Vec<ProbeId>), String> {
            let d = dones
                .iter()
                .map(|k| self.reattach_reading(k, Mode::Calls, Some(&done_strings)))
                .collect::<Result<Vec<_>, _>>()?;
            let s = starts
                .iter()
                .map(|k| self.reattach_reading(k, Mode::Calls, Some(&start_strings)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((s, d))
        };
        match moved() {
            Ok((start_ids, done_ids)) => {
                let calls = KernelCalls::with_maps(pairs, maps, start_ids, done_ids)
                    .map_err(|e| e.to_string())?;
                let before = calls.read();
                Ok(Side::Calls(calls, before))
            }
            Err(e) => {
                self.pairs = Some(pairs);
                self.call_maps = Some(maps);
                Err(e)
            }
        }
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

    fn set_budget(&mut self, budget: Option<f64>) -> Result<(), String> {
        let Some(budget) = budget else {
            if self.duty.take().is_some() {
                self.resume_all();
            }
            return Ok(());
        };
        let cost = match self.hit_cost {
            Some(c) => c,
            None => {
                let c = self.engine.measure_hit_cost().map_err(|e| e.to_string())?;
                *self.hit_cost.insert(c)
            }
        };
        if self.duty.is_some() {
            self.resume_all();
        }
        let options = DutyOptions {
            budget,
            fixed: None,
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.duty = Some(DutyCycle::new(options, cost, cpus, Instant::now()));
        Ok(())
    }

    fn duty_tick(&mut self) -> Option<DutyTick> {
        let duty = self.duty.as_mut()?;
        let hits = self.engine.stats().probes.iter().map(|p| p.hits).sum();
        let now = Instant::now();
        let mut gap = false;
        match duty.poll(now, hits) {
            Some(Toggle::Suspend) => {
                let ids: Vec<ProbeId> = self.ids.values().map(|a| a.id).collect();
                let _ = self.engine.suspend(&ids);
                match self.kernel.as_mut().map(|k| &mut k.side) {
                    Some(Side::Pair(k)) => k.gap(),
                    Some(Side::Calls(calls, _)) => calls.forget_open(),
                    None => {}
                }
                gap = true;
            }
            Some(Toggle::Resume) => {
                self.resume_all();
                if let Some(d) = self.duty.as_mut() {
                    d.resumed(Instant::now());
                }
            }
            None => {}
        }
        let duty = self.duty.as_ref()?;
        let sampling = duty.sampling();
        let wall = now.saturating_duration_since(duty.began());
        let fraction = if wall.is_zero() {
            1.0
        } else {
            sampling.attached(now).as_secs_f64() / wall.as_secs_f64()
        };
        Some(DutyTick {
            gap,
            fraction: fraction.min(1.0),
            full_overhead: sampling.full_overhead(),
        })
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
        let side = if pair.nested {
            self.calls_in_kernel(pair, pairs, (&starts, &dones))
        } else {
            // Dones first, as KernelSide configures them: a start must not wait for an unknown
            // done.
            let moved = self
                .reattach_all(&dones, Mode::Pair)
                .and_then(|d| Ok((self.reattach_all(&starts, Mode::Pair)?, d)));
            match moved {
                Ok((start_ids, done_ids)) => {
                    KernelSide::with_pairs(pairs, pair, start_ids, &done_ids, sample, now_ns)
                        .map(Side::Pair)
                        .map_err(|e| e.to_string())
                }
                Err(e) => {
                    self.pairs = Some(pairs);
                    Err(e)
                }
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
        let mut pairs = match k.side {
            Side::Pair(side) => side.into_pairs(),
            Side::Calls(calls, _) => {
                let (pairs, maps) = calls.into_maps();
                self.call_maps = Some(maps);
                pairs
            }
        };
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
        match &mut k.side {
            Side::Pair(side) => {
                if let Err(e) = side.tick(now_ns, &stats) {
                    return Some(Err(e.to_string()));
                }
                let delta = side.take_delta();
                Some(Ok(KernelLatency {
                    samples: delta.samples().collect(),
                    sample_every: side.sample_every,
                    ..KernelLatency::default()
                }))
            }
            Side::Calls(calls, before) => {
                let total = calls.read();
                let delta = total.since(before);
                *before = total;
                Some(Ok(KernelLatency {
                    samples: delta.pair.samples().collect(),
                    sample_every: 0,
                    keys: delta
                        .keys
                        .iter()
                        .map(|(key, k)| KernelKey {
                            key: key.clone(),
                            count: k.count,
                            samples: k.samples().collect(),
                        })
                        .collect(),
                    mismatched: delta.mismatches.total(),
                }))
            }
        }
    }
}
