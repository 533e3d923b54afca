//! The tracing engine: loads bpf/usdt.bpf.c once, attaches and detaches probes at run time
//! without reloading, and streams decoded events in batches into a bounded queue.
//!
//! ```no_run
//! # use usdtop::probes::{read_probes, tracing::engine::*};
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let object = read_probes("/usr/bin/python3.11".as_ref())?;
//! let probe = object.probes.iter().find(|p| p.name == "gc__start").unwrap();
//! let mut engine = Engine::new(EngineOptions::default())?;
//! let mut events = engine.take_events().unwrap();
//! let id = engine.attach(&object, probe, &AttachOptions::default())?;
//! // events.recv().await -> Some(Vec<Event>); events.try_recv() -> Option<Vec<Event>>
//! println!("{:?}", engine.stats());
//! engine.detach(id);
//! # Ok(()) }
//! ```

use super::attach::{attach_site, AttachError, SiteLink};
pub use super::bpf::Mode;
use super::bpf::{self, encode_site, ArgPlan, RawSiteSpec};
use super::decode::{SiteInfo, SiteTable};
use super::event::ProbeKey;
use super::filter::with_descendants;
use super::follow::{Follower, Group};
use super::multi::{attach_multi, MultiLink, MultiLoader};
use super::queue::{self, DropCount, EventStream};
use super::reader::{read_loop, Counters, ReaderControl};
use crate::probes::discovery::catalog::Catalog;
use crate::probes::discovery::elf::{ObjectProbes, Probe};
use aya::maps::{
    Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, PerCpuValues, RingBuf,
};
use aya::programs::{BtfTracePoint, ProgramError, ProgramFd, UProbe};
use aya::{Btf, Ebpf, EbpfLoader};
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("not permitted to load BPF programs: {0}; {hint}", hint = super::privilege::hint())]
    NotPermitted(String),
    #[error("cannot load the BPF program: {0}")]
    Load(String),
    #[error("BPF map `{map}`: {error}")]
    Map { map: &'static str, error: MapError },
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("probe {0} has no sites to attach")]
    NoSites(String),
    #[error(transparent)]
    BadProbe(#[from] crate::probes::discovery::elf::BadProbe),
    #[error("too many attached {0}")]
    Full(&'static str),
    #[error("no attached probe with id {0:?}")]
    UnknownProbe(ProbeId),
    #[error("suspending probes needs the uprobe-multi attach path")]
    NotMulti,
    /// The cancel flag (see [`Engine::set_cancel`]) was raised while sites were being attached.
    #[error("attaching was interrupted")]
    Interrupted,
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> EngineError {
    move |error| EngineError::Map { map, error }
}

fn load_err(e: impl std::fmt::Display + std::fmt::Debug) -> EngineError {
    let text = e.to_string();
    let lower = format!("{e:?}").to_lowercase();
    // The verifier also answers EACCES; only a refusal without its log is about privileges
    // (aya's text ends in an empty "Verifier output:" then, e.g. a uprobe load with CAP_BPF only).
    let denied = lower.contains("operation not permitted") || lower.contains("permission denied");
    let empty_log = text.trim_end().strip_suffix("Verifier output:");
    if denied && (empty_log.is_some() || !lower.contains("verifier")) {
        let text = empty_log.map_or(&*text, |t| t.trim_end().trim_end_matches('.'));
        EngineError::NotPermitted(text.to_string())
    } else {
        // The Debug form carries the verifier log.
        EngineError::Load(format!("{text}: {e:?}"))
    }
}

/// Whether a string the traced process has not touched yet (its page not mapped in, e.g. a
/// literal in `.rodata` right after start) is read by faulting its page in, as the process's
/// own read would. Other tools read such strings as empty or unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultStrings {
    /// Sites with string arguments run the sleepable program, which faults only when the
    /// non-faulting read fails (BENCHMARKS.md: the same cost per event as the plain one).
    #[default]
    Always,
    /// Never touch the traced process's memory map: such strings stay unreadable (counted).
    Never,
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Ring buffer size in bytes (a power of two, at least a page). Default 16 MiB.
    pub ring_bytes: Option<u32>,
    /// Bytes of decoded events queued for the consumer before the reader drops batches (and
    /// counts them as "output too slow").
    pub queue_bytes: usize,
    pub fault_strings: FaultStrings,
    /// Use the per-site path even where uprobe-multi works (as [`ATTACH_PATH_ENV`] does).
    pub force_per_site: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            ring_bytes: None,
            queue_bytes: queue::DEFAULT_QUEUE_BYTES,
            fault_strings: FaultStrings::default(),
            force_per_site: false,
        }
    }
}

/// Which processes' hits are recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProcFilter {
    #[default]
    All,
    /// These processes, their existing descendants, and every process they fork from now on.
    /// On the uprobe-multi path each gets links of its own: other processes running the same
    /// file do not trap, and a forked child is linked shortly after its fork (see
    /// [`FollowStats::worst_window`]).
    Pids(Vec<u32>),
    /// The same processes, but with the sites attached for every process running the file and
    /// the others filtered out in BPF: no hit of a forked child is missed, and every process
    /// running the file traps (and has the probe's semaphore raised).
    PidsInBpf(Vec<u32>),
}

#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// Argument indices to read as C strings (catalog `string_args` or the user's `--str`).
    pub strings: Vec<usize>,
    pub filter: ProcFilter,
    pub mode: Mode,
    /// Where to open the object for the uprobe, when not at `ObjectProbes::path` (e.g.
    /// `/proc/PID/root/...` for a process in a container).
    pub open_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeId(pub u32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStats {
    pub id: ProbeId,
    pub probe: Arc<ProbeKey>,
    /// Hits in the kernel (after the process filter), streamed or not.
    pub hits: u64,
    /// String arguments (not NULL) that could not be read, also after faulting.
    pub unreadable: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events decoded and queued for the [`EventStream`].
    pub events: u64,
    /// Events the kernel could not put in the full ring buffer.
    pub drops: u64,
    /// Events read from the ring but dropped because the consumer fell behind by more than
    /// the queue holds ("dropped: output too slow").
    pub slow_drops: u64,
    /// Records whose site was detached before they were read (not an error).
    pub stale: u64,
    /// String arguments (not NULL) that could not be read, in every mode, all probes.
    pub unreadable: u64,
    pub probes: Vec<ProbeStats>,
}

/// How the engine attaches: the [`AttachPath`] in use and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachPath {
    /// One uprobe-multi link per object and attach request (per process with a filter).
    Multi,
    /// One uprobe perf event per site, for all processes, filtered in BPF; the text says why.
    PerSite(String),
}

impl std::fmt::Display for AttachPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachPath::Multi => write!(
                f,
                "uprobe-multi: one link per object and attach request, per process with -p \
                 (only the processes asked for trap)"
            ),
            AttachPath::PerSite(why) => write!(
                f,
                "per-site uprobe perf events ({why}): every process running the file traps, \
                 -p filters in BPF"
            ),
        }
    }
}

/// Forked children followed with their own links (see [`Engine::follow_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowStats {
    /// Children linked after their fork.
    pub children: u64,
    /// Children that could not be linked: none of their hits is seen.
    pub missed: u64,
    /// The longest time from a fork to the child's links: its hits in that time are not seen.
    pub worst_window: Duration,
}

/// The environment variable that forces the per-site path (`USDTOP_ATTACH_PATH=per-site`),
/// e.g. to compare the two paths or to test the fallback.
pub const ATTACH_PATH_ENV: &str = "USDTOP_ATTACH_PATH";

/// Where an attached probe's sites are linked; dropping the links detaches.
#[derive(Debug)]
enum Links {
    /// One uprobe perf event per site (the per-site path).
    PerSite(Vec<SiteLink>),
    /// In the uprobe-multi links of a [`LinkSet`], with the other probes attached with it.
    InSet(u32),
}

/// The uprobe-multi links of a set of probes attached together in one object (one attach
/// request: `postgresql:*` is one set): one link, or one per process of a filtered tree.
#[derive(Debug)]
enum SetLinks {
    Multi(MultiLink),
    /// Per-process links, kept by the follower (its group of the same set id).
    Followed,
    /// Taken out by [`Engine::suspend`] until [`Engine::resume`].
    Suspended,
}

/// What a set's links are made of, kept to make them again after a suspend.
#[derive(Debug)]
struct Relink {
    path: PathBuf,
    offsets: Vec<u64>,
    /// Each site's semaphore (file offset; 0 for none).
    ref_ctrs: Vec<u64>,
    cookies: Vec<u64>,
    /// Whether a site reads strings (the sleepable program, when loaded).
    strings: bool,
    filter: ProcFilter,
}

/// Probes linked together (see [`SetLinks`]). A probe detached while others stay is retired:
/// its sites keep trapping until the set closes, but its cookies point at a spec that only
/// counts for nobody, and are freed with the set.
#[derive(Debug)]
struct LinkSet {
    members: Vec<ProbeId>,
    relink: Relink,
    links: SetLinks,
    filter_slot: Option<u32>,
    retired: Vec<u32>,
}

/// One attached probe: all its sites. Dropping it detaches (closes the links and perf events).
#[derive(Debug)]
struct Attachment {
    probe: Arc<ProbeKey>,
    cookies: Vec<u32>,
    filter_slot: Option<u32>,
    links: Links,
}

/// The probe id the sites of a retired probe count for (nobody reads it).
const RETIRED: u32 = bpf::MAX_PROBES - 1;

/// One probe to attach with [`Engine::attach_many`].
pub struct AttachRequest<'a> {
    pub object: &'a ObjectProbes,
    pub probe: &'a Probe,
    pub options: &'a AttachOptions,
}

/// A probe prepared for a set: its sites, to be linked with the others of its object.
struct Prepared {
    id: ProbeId,
    open: PathBuf,
    offsets: Vec<u64>,
    ref_ctrs: Vec<u64>,
    cookies: Vec<u64>,
    strings: bool,
    filter: ProcFilter,
    filter_slot: Option<u32>,
}

/// The programs sites are linked to, for the path in use. `sleepable` is loaded at the first
/// attach that reads strings (verifying it takes ~0.4 s here); `Some(Err)` says why it is not
/// used.
enum Progs {
    Multi {
        loader: Arc<MultiLoader>,
        /// The sleepable program being verified on another thread since the start (it takes
        /// ~0.2 s, as long as the plain one: in parallel, the first string probe does not wait).
        pending: Option<std::thread::JoinHandle<Result<OwnedFd, String>>>,
        // Shared with the follower's groups: one fd per program, not one per group.
        hit: Arc<OwnedFd>,
        sleepable: Option<Result<Arc<OwnedFd>, String>>,
    },
    PerSite {
        why: String,
        hit: ProgramFd,
        sleepable: Option<Result<ProgramFd, String>>,
    },
}

pub struct Engine {
    progs: Progs,
    /// Links forked children on the uprobe-multi path with a process filter.
    follower: Option<Follower>,
    specs: Array<MapData, RawSiteSpec>,
    filter: BpfHashMap<MapData, u32, u64>,
    /// Per filter slot, the one tgid the kernel admits without a `pid_filter` lookup.
    filter_fast: Array<MapData, u32>,
    hits: PerCpuArray<MapData, u64>,
    drops: PerCpuArray<MapData, u64>,
    unreadable: PerCpuArray<MapData, u64>,
    /// Per probe id, failed attempts in a row to fault a string in (bpf/usdt.bpf.c).
    fault_fails: Array<MapData, u32>,
    nr_cpus: usize,
    sites: Arc<Mutex<SiteTable>>,
    attachments: BTreeMap<ProbeId, Attachment>,
    /// Probes linked together on the uprobe-multi path, by set id.
    sets: BTreeMap<u32, LinkSet>,
    next_set: u32,
    free_cookies: VecDeque<u32>,
    free_ids: VecDeque<u32>,
    /// Process-filter slots (bits of the `pid_filter` masks): the pid set each serves and how
    /// many attachments use it. Attachments with the same pids share a slot.
    slots: [Option<(Vec<u32>, usize)>; 64],
    counters: Arc<Counters>,
    events_rx: Option<EventStream>,
    slow_drops: DropCount,
    reader_control: Arc<ReaderControl>,
    reader: Option<JoinHandle<()>>,
    cancel: Option<&'static AtomicBool>,
    fork_tracking: Result<(), String>,
    /// Pointer + length strings of every probe attached (see [`Engine::set_str_lengths`]).
    str_lengths: Vec<(usize, usize)>,
    // Owns the programs (and the fork/exit tracepoint links); dropped last.
    _ebpf: Ebpf,
}

impl Engine {
    /// Loads the program and starts the reader thread. Needs root, CAP_BPF + CAP_PERFMON or
    /// CAP_SYS_ADMIN (see
    /// [`super::privilege`]).
    pub fn new(options: EngineOptions) -> Result<Engine, EngineError> {
        let mut loader = EbpfLoader::new();
        if let Some(bytes) = options.ring_bytes {
            if !bytes.is_power_of_two() || bytes < 4096 {
                return Err(EngineError::Load(format!(
                    "ring buffer size {bytes} must be a power of two of at least 4096 bytes"
                )));
            }
            loader.map_max_entries(bpf::MAP_EVENTS, bytes);
        }
        let mut ebpf = loader.load(bpf::PROGRAM).map_err(load_err)?;
        super::limits::raise_nofile();
        let never = (options.fault_strings == FaultStrings::Never)
            .then(|| "not asked for (--fault-strings never)".to_string());
        let fork_tracking = attach_fork_tracking(&mut ebpf);
        let progs = match multi_loader(&ebpf, fork_tracking.is_ok(), options.force_per_site) {
            Ok(loader) => {
                let loader = Arc::new(loader);
                let pending = match never {
                    Some(_) => None,
                    None => {
                        let loader = loader.clone();
                        std::thread::Builder::new()
                            .name("usdtop-verify".into())
                            .spawn(move || loader.load(bpf::PROG_HIT_SLEEPABLE, true))
                            .ok()
                    }
                };
                Progs::Multi {
                    hit: Arc::new(
                        loader
                            .load(bpf::PROG_HIT, false)
                            .map_err(EngineError::Load)?,
                    ),
                    loader,
                    pending,
                    sleepable: never.map(Err),
                }
            }
            Err(why) => Progs::PerSite {
                why,
                hit: load_uprobe(&mut ebpf, bpf::PROG_HIT)?,
                sleepable: never.map(Err),
            },
        };

        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or_else(|| EngineError::Load(format!("map {name} missing")))
        };
        let specs =
            Array::try_from(take(&mut ebpf, bpf::MAP_SPECS)?).map_err(map_err("site_specs"))?;
        let filter = BpfHashMap::try_from(take(&mut ebpf, bpf::MAP_FILTER)?)
            .map_err(map_err("pid_filter"))?;
        let filter_fast = Array::try_from(take(&mut ebpf, bpf::MAP_FILTER_FAST)?)
            .map_err(map_err("filter_fast"))?;
        let hits =
            PerCpuArray::try_from(take(&mut ebpf, bpf::MAP_HITS)?).map_err(map_err("hits"))?;
        let drops =
            PerCpuArray::try_from(take(&mut ebpf, bpf::MAP_DROPS)?).map_err(map_err("drops"))?;
        let unreadable = PerCpuArray::try_from(take(&mut ebpf, bpf::MAP_UNREADABLE)?)
            .map_err(map_err("unreadable"))?;
        let fault_fails = Array::try_from(take(&mut ebpf, bpf::MAP_FAULT_FAILS)?)
            .map_err(map_err("fault_fails"))?;
        let ring =
            RingBuf::try_from(take(&mut ebpf, bpf::MAP_EVENTS)?).map_err(map_err("events"))?;
        let follower = match progs {
            Progs::Multi { .. } => {
                let follow = RingBuf::try_from(take(&mut ebpf, bpf::MAP_FOLLOW)?)
                    .map_err(map_err("follow"))?;
                Some(Follower::start(follow).map_err(|e| {
                    EngineError::Load(format!("cannot start the follower thread: {e}"))
                })?)
            }
            Progs::PerSite { .. } => None,
        };
        let nr_cpus =
            aya::util::nr_cpus().map_err(|(what, e)| EngineError::Load(format!("{what}: {e}")))?;

        let sites = Arc::new(Mutex::new(SiteTable::new()));
        let counters = Arc::new(Counters::default());
        let reader_control = Arc::new(ReaderControl::default());
        let (sink, rx) = queue::bounded(options.queue_bytes);
        let slow_drops = sink.drop_count();
        let reader = {
            let (sites, counters, control) =
                (sites.clone(), counters.clone(), reader_control.clone());
            std::thread::Builder::new()
                .name("usdtop-ring".into())
                .spawn(move || read_loop(ring, sites, counters, control, sink))
                .map_err(|e| EngineError::Load(format!("cannot start the reader thread: {e}")))?
        };
        Ok(Engine {
            progs,
            follower,
            specs,
            filter,
            filter_fast,
            hits,
            drops,
            unreadable,
            fault_fails,
            nr_cpus,
            sites,
            attachments: BTreeMap::new(),
            free_cookies: (0..bpf::MAX_SITES).collect(),
            free_ids: (0..RETIRED).collect(),
            sets: BTreeMap::new(),
            next_set: 0,
            slots: std::array::from_fn(|_| None),
            counters,
            events_rx: Some(rx),
            slow_drops,
            reader_control,
            reader: Some(reader),
            cancel: None,
            fork_tracking,
            str_lengths: Vec::new(),
            _ebpf: ebpf,
        })
    }

    /// The event stream (once). Batches arrive at most every ~10 ms while probes fire.
    pub fn take_events(&mut self) -> Option<EventStream> {
        self.events_rx.take()
    }

    /// A flag that, once raised (e.g. by a signal handler), makes an attach in progress stop
    /// between two sites and fail with [`EngineError::Interrupted`], undoing what it attached.
    pub fn set_cancel(&mut self, flag: &'static AtomicBool) {
        self.cancel = Some(flag);
    }

    /// Stops the intake of events: the reader reads what the ring holds once more (for at most
    /// a few hundred ms), queues it, and stops; then the event stream ends once it is read.
    /// Probes stay attached (their hits are still counted) until detached. Returns whether the
    /// last pass ended within `timeout`.
    pub fn stop_intake(&self, timeout: Duration) -> bool {
        self.reader_control.closing.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        while !self.reader_control.done.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Strings given by pointer and length in the probes attached from now on, besides those
    /// the catalog knows: (string argument, length argument) index pairs (`trace --str 0:1`).
    /// A string is read this way only if it is one of `AttachOptions::strings`.
    pub fn set_str_lengths(&mut self, lengths: Vec<(usize, usize)>) {
        self.str_lengths = lengths;
    }

    /// Whether processes forked after a filtered attach are followed (needs kernel BTF);
    /// the error says why not.
    pub fn fork_tracking(&self) -> Result<(), &str> {
        self.fork_tracking.as_ref().map_err(String::as_str).copied()
    }

    /// Whether strings in pages the traced process has not touched are faulted in (see
    /// [`FaultStrings`]); the error says why not.
    /// (Known once a probe with string arguments is attached.)
    pub fn fault_strings(&self) -> Result<(), &str> {
        let why = match &self.progs {
            Progs::Multi { sleepable, .. } => sleepable.as_ref().and_then(|s| s.as_ref().err()),
            Progs::PerSite { sleepable, .. } => sleepable.as_ref().and_then(|s| s.as_ref().err()),
        };
        why.map_or(Ok(()), |w| Err(w.as_str()))
    }

    /// How probes are attached, and why when it is the fallback.
    pub fn attach_path(&self) -> AttachPath {
        match &self.progs {
            Progs::Multi { .. } => AttachPath::Multi,
            Progs::PerSite { why, .. } => AttachPath::PerSite(why.clone()),
        }
    }

    /// What following forked children did (uprobe-multi path with a process filter).
    pub fn follow_stats(&self) -> FollowStats {
        self.follower
            .as_ref()
            .map_or_else(FollowStats::default, |f| {
                let s = &f.stats;
                FollowStats {
                    children: s.children.load(Ordering::Relaxed),
                    missed: s.missed.load(Ordering::Relaxed),
                    worst_window: Duration::from_nanos(s.worst_window_ns.load(Ordering::Relaxed)),
                }
            })
    }

    /// Loads the sleepable program unless it is loaded or known to be unusable. A kernel
    /// without sleepable uprobes still traces, without faulting strings in.
    fn load_sleepable(&mut self) {
        match &mut self.progs {
            Progs::Multi {
                loader,
                sleepable,
                pending,
                ..
            } => {
                if sleepable.is_none() {
                    let prog = match pending.take().map(std::thread::JoinHandle::join) {
                        Some(Ok(loaded)) => loaded,
                        // No thread could be started, or it panicked: load it here.
                        _ => loader.load(bpf::PROG_HIT_SLEEPABLE, true),
                    };
                    *sleepable = Some(prog.map(Arc::new));
                }
            }
            Progs::PerSite { sleepable, .. } => {
                if sleepable.is_none() {
                    let prog = load_uprobe(&mut self._ebpf, bpf::PROG_HIT_SLEEPABLE);
                    *sleepable = Some(prog.map_err(|e| e.to_string()));
                }
            }
        }
    }

    /// The uprobe-multi program for links whose sites read strings or not.
    fn multi_prog(&self, reads_strings: bool) -> Option<Arc<OwnedFd>> {
        match &self.progs {
            Progs::Multi { sleepable, hit, .. } => Some(match sleepable {
                Some(Ok(p)) if reads_strings => p.clone(),
                _ => hit.clone(),
            }),
            Progs::PerSite { .. } => None,
        }
    }

    /// The program for a site: the sleepable one when it reads strings and is loaded.
    fn prog(&self, reads_strings: bool) -> BorrowedFd<'_> {
        match &self.progs {
            Progs::Multi { sleepable, hit, .. } => match sleepable {
                Some(Ok(p)) if reads_strings => p.as_fd(),
                _ => hit.as_fd(),
            },
            Progs::PerSite { sleepable, hit, .. } => match sleepable {
                Some(Ok(p)) if reads_strings => p.as_fd(),
                _ => hit.as_fd(),
            },
        }
    }

    /// Attaches every site of `probe` (one of `object.probes`) for all processes;
    /// `options.filter` limits which hits are recorded. The kernel raises the probe's semaphore
    /// while it is attached.
    pub fn attach(
        &mut self,
        object: &ObjectProbes,
        probe: &Probe,
        options: &AttachOptions,
    ) -> Result<ProbeId, EngineError> {
        let request = AttachRequest {
            object,
            probe,
            options,
        };
        self.attach_many(&[request])
            .map(|ids| ids[0])
            .map_err(|(_, e)| e)
    }

    /// Attaches several probes at once. On the uprobe-multi path those in one object with the
    /// same process filter share their links: one link for all their sites (one per process
    /// with `-p`), so `postgresql:*` costs one link, not 57, to make and to close. Each keeps
    /// its own id, counters and detach. On an error nothing stays attached; the error says
    /// which request failed.
    pub fn attach_many(
        &mut self,
        requests: &[AttachRequest<'_>],
    ) -> Result<Vec<ProbeId>, (usize, EngineError)> {
        let mut prepared: Vec<Prepared> = Vec::new();
        let undo = |engine: &mut Engine, prepared: &[Prepared]| {
            for p in prepared {
                let _ = engine.detach(p.id);
            }
        };
        for (i, r) in requests.iter().enumerate() {
            if self.cancelled() {
                undo(self, &prepared);
                return Err((i, EngineError::Interrupted));
            }
            match self.prepare(r.object, r.probe, r.options) {
                Ok(p) => prepared.push(p),
                Err(e) => {
                    undo(self, &prepared);
                    return Err((i, e));
                }
            }
        }
        let ids: Vec<ProbeId> = prepared.iter().map(|p| p.id).collect();
        if let Progs::PerSite { .. } = self.progs {
            return Ok(ids);
        }
        // Sets: probes of one object with one filter, in the order asked.
        let mut sets: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            let same = |first: usize| {
                let q = &prepared[first];
                q.open == p.open && q.filter == p.filter && q.filter_slot == p.filter_slot
            };
            match sets.iter_mut().find(|(first, _)| same(*first)) {
                Some((_, members)) => members.push(i),
                None => sets.push((i, vec![i])),
            }
        }
        for (first, members) in sets {
            let mut relink = Relink {
                path: prepared[first].open.clone(),
                offsets: Vec::new(),
                ref_ctrs: Vec::new(),
                cookies: Vec::new(),
                strings: false,
                filter: prepared[first].filter.clone(),
            };
            // Last asked first (a pair's dones come after its starts): the kernel puts a link's
            // sites in and takes them out one after another, at worst a grace period apart,
            // and a start must not be in while its done is out.
            for &m in members.iter().rev() {
                let p = &prepared[m];
                relink.offsets.extend(&p.offsets);
                relink.ref_ctrs.extend(&p.ref_ctrs);
                relink.cookies.extend(&p.cookies);
                relink.strings |= p.strings;
            }
            let sid = self.next_set;
            self.next_set = self.next_set.wrapping_add(1);
            let filter_slot = prepared[first].filter_slot;
            let result = self.link_set(sid, &relink, filter_slot);
            let member_ids: Vec<ProbeId> = members.iter().map(|&m| prepared[m].id).collect();
            for id in &member_ids {
                if let Some(a) = self.attachments.get_mut(id) {
                    a.links = Links::InSet(sid);
                }
            }
            let failed = result.is_err();
            self.sets.insert(
                sid,
                LinkSet {
                    members: member_ids,
                    relink,
                    // After an error a part may be in place (the follower's group): the undo
                    // below closes it.
                    links: result
                        .as_ref()
                        .map_or(SetLinks::Followed, |_| SetLinks::Suspended),
                    filter_slot,
                    retired: Vec::new(),
                },
            );
            match result {
                Ok(links) => self.sets.get_mut(&sid).expect("inserted").links = links,
                Err(e) => {
                    debug_assert!(failed);
                    undo(self, &prepared);
                    return Err((first, e));
                }
            }
        }
        Ok(ids)
    }

    /// Gives `probe` an id, cookies and site specs; on the per-site path links its sites too.
    fn prepare(
        &mut self,
        object: &ObjectProbes,
        probe: &Probe,
        options: &AttachOptions,
    ) -> Result<Prepared, EngineError> {
        if probe.sites.is_empty() {
            return Err(EngineError::NoSites(probe.full_name()));
        }
        probe.attachable()?;
        if self.free_cookies.len() < probe.sites.len() {
            return Err(EngineError::Full("probe sites"));
        }
        let id = ProbeId(
            self.free_ids
                .pop_front()
                .ok_or(EngineError::Full("probes"))?,
        );
        let key = Arc::new(ProbeKey {
            path: object.path.display().to_string(),
            provider: probe.provider.clone(),
            name: probe.name.clone(),
        });
        let mut attachment = Attachment {
            probe: key.clone(),
            cookies: Vec::new(),
            filter_slot: None,
            links: Links::PerSite(Vec::new()),
        };
        let open = options.open_path.as_deref().unwrap_or(&object.path);
        let result = self.attach_sites(id, open, probe, options, &mut attachment);
        self.attachments.insert(id, attachment);
        if result.is_err() {
            // Closes what was linked and frees the rest.
            let _ = self.detach(id);
        }
        result
    }

    fn attach_sites(
        &mut self,
        id: ProbeId,
        object: &Path,
        probe: &Probe,
        options: &AttachOptions,
        attachment: &mut Attachment,
    ) -> Result<Prepared, EngineError> {
        if !options.strings.is_empty() {
            self.load_sleepable();
        }
        for (map, name) in [
            (&mut self.hits, "hits"),
            (&mut self.unreadable, "unreadable"),
        ] {
            let zeros = PerCpuValues::try_from(vec![0u64; self.nr_cpus])
                .map_err(|e| map_err(name)(MapError::from(e)))?;
            map.set(id.0, zeros, 0).map_err(map_err(name))?;
        }
        self.fault_fails
            .set(id.0, 0, 0)
            .map_err(map_err("fault_fails"))?;
        let mask = match &options.filter {
            ProcFilter::All => 0,
            ProcFilter::Pids(pids) | ProcFilter::PidsInBpf(pids) => {
                let slot = self.filter_slot(pids)?;
                attachment.filter_slot = Some(slot);
                1u64 << slot
            }
        };
        let mut reads_strings = Vec::new();
        // How long a string is belongs to the probe, like its argument specs: the catalog says
        // it for the runtimes it knows (the JVM's strings), whichever front-end attaches.
        // The user's come first: they win over the catalog's for the same string.
        let mut lengths = self.str_lengths.clone();
        lengths.extend(Catalog::shared().str_lengths(&probe.full_name()));
        for site in &probe.sites {
            let cookie = self.free_cookies.pop_front().expect("counted above");
            attachment.cookies.push(cookie);
            let plans_args: Vec<ArgPlan> = match &site.args {
                Ok(args) => {
                    let (spec, plans) = encode_site(
                        id.0,
                        options.mode,
                        mask,
                        site.addr,
                        args,
                        &options.strings,
                        &lengths,
                    );
                    self.specs
                        .set(cookie, spec, 0)
                        .map_err(map_err("site_specs"))?;
                    plans
                }
                Err(e) => {
                    let (spec, _) = encode_site(id.0, options.mode, mask, site.addr, &[], &[], &[]);
                    self.specs
                        .set(cookie, spec, 0)
                        .map_err(map_err("site_specs"))?;
                    site.args_text
                        .split_whitespace()
                        .map(|_| ArgPlan::Unsupported(e.to_string()))
                        .collect()
                }
            };
            reads_strings.push(plans_args.contains(&ArgPlan::Str));
            self.sites.lock().unwrap().insert(
                cookie,
                SiteInfo {
                    probe: attachment.probe.clone(),
                    plans: plans_args,
                },
            );
        }
        let cookies: Vec<u64> = attachment.cookies.iter().map(|&c| c as u64).collect();
        let offsets: Vec<u64> = probe.sites.iter().map(|s| s.file_offset).collect();
        let sem = probe.semaphore_offset;
        let prepared = Prepared {
            id,
            open: object.to_path_buf(),
            offsets: offsets.clone(),
            ref_ctrs: vec![sem.unwrap_or(0); offsets.len()],
            cookies: cookies.clone(),
            strings: reads_strings.contains(&true),
            filter: options.filter.clone(),
            filter_slot: attachment.filter_slot,
        };
        if let Progs::PerSite { .. } = self.progs {
            let mut links = Vec::new();
            for (i, &offset) in offsets.iter().enumerate() {
                if self.cancelled() {
                    attachment.links = Links::PerSite(links);
                    return Err(EngineError::Interrupted);
                }
                // The sleepable program costs the same per hit (BENCHMARKS.md) but only sites
                // that read strings need it.
                let prog = self.prog(reads_strings[i]);
                match attach_site(prog, object, offset, sem, cookies[i]) {
                    Ok(link) => links.push(link),
                    Err(e) => {
                        attachment.links = Links::PerSite(links);
                        return Err(e.into());
                    }
                }
            }
            attachment.links = Links::PerSite(links);
        }
        Ok(prepared)
    }

    /// Makes the uprobe-multi links of set `sid`: one for every process, or one per process of
    /// the filter's tree (kept by the follower, which links later children).
    fn link_set(
        &self,
        sid: u32,
        relink: &Relink,
        filter_slot: Option<u32>,
    ) -> Result<SetLinks, EngineError> {
        let prog = self.prog(relink.strings);
        let multi_err = |pid: Option<u32>, error: std::io::Error| {
            AttachError::multi(&relink.path, relink.offsets.len(), pid, error)
        };
        let pids = match &relink.filter {
            ProcFilter::All | ProcFilter::PidsInBpf(_) => {
                let link = attach_multi(
                    prog,
                    &relink.path,
                    &relink.offsets,
                    &relink.ref_ctrs,
                    &relink.cookies,
                    None,
                )
                .map_err(|e| multi_err(None, e))?;
                return Ok(SetLinks::Multi(link));
            }
            ProcFilter::Pids(pids) => pids,
        };
        let bit = 1u64 << filter_slot.expect("set for a pid filter");
        let group = Group {
            bit,
            prog: self.multi_prog(relink.strings).expect("on this path"),
            path: relink.path.clone(),
            offsets: relink.offsets.clone(),
            ref_ctrs: relink.ref_ctrs.clone(),
            cookies: relink.cookies.clone(),
            links: BTreeMap::new(),
        };
        let follower = self.follower.as_ref().expect("started on this path");
        // Registered before the tree is listed: a child forked from now on is either listed
        // or reported to the follower (or both; linking twice is a no-op).
        let mut groups = follower.lock();
        groups.insert(sid, group);
        let group = groups.get_mut(&sid).expect("just inserted");
        // The tree is what the filter holds: seeded from /proc when the filter was made, kept
        // up to date by the kernel's fork hook since (a walk of /proc per probe took 1.2 s
        // for the 473 probes of hotspot_jni:*).
        let tree: Vec<u32> = self
            .filter
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, mask)| mask & bit != 0)
            .map(|(pid, _)| pid)
            .collect();
        if let Some(gone) = pids.iter().find(|p| !tree.contains(p)) {
            let error = std::io::Error::from_raw_os_error(libc::ESRCH);
            return Err(multi_err(Some(*gone), error).into());
        }
        for pid in tree {
            if self.cancelled() {
                return Err(EngineError::Interrupted);
            }
            match group.link(pid) {
                Ok(()) => {}
                // A descendant that exited meanwhile; a named process must be there.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) && !pids.contains(&pid) => {}
                Err(e) => return Err(multi_err(Some(pid), e).into()),
            }
        }
        Ok(SetLinks::Followed)
    }

    /// What one hit of a probe costs the process that fires it, measured on a site in usdtop
    /// itself (a `nop`, like a USDT site): the time of a tight loop of calls with the site attached
    /// (counting only, as the cheapest mode does) minus without, per call; the least of three
    /// rounds. Only on the uprobe-multi path (one link, not a perf event, per round).
    pub fn measure_hit_cost(&mut self) -> Result<Duration, EngineError> {
        const CALLS: u32 = 20_000;
        let Progs::Multi { hit, .. } = &self.progs else {
            return Err(EngineError::NotMulti);
        };
        let prog = hit
            .try_clone()
            .map_err(|e| EngineError::Load(e.to_string()))?;
        let offset = own_file_offset(usdtop_calibration_site as *const () as usize as u64)
            .map_err(|e| EngineError::Load(format!("locating the calibration site: {e}")))?;
        let cookie = self
            .free_cookies
            .pop_front()
            .ok_or(EngineError::Full("probe sites"))?;
        let Some(id) = self.free_ids.pop_front() else {
            self.free_cookies.push_back(cookie);
            return Err(EngineError::Full("probes"));
        };
        let (spec, _) = encode_site(id, Mode::Count, 0, 0, &[], &[], &[]);
        let result = self
            .specs
            .set(cookie, spec, 0)
            .map_err(map_err("site_specs"));
        let calls = || {
            let t = Instant::now();
            for _ in 0..CALLS {
                calibration_site();
            }
            t.elapsed()
        };
        let mut best: Option<Duration> = None;
        let result = result.and_then(|()| {
            for _ in 0..3 {
                let link = attach_multi(
                    prog.as_fd(),
                    Path::new("/proc/self/exe"),
                    &[offset],
                    &[],
                    &[cookie as u64],
                    Some(std::process::id()),
                )
                .map_err(|e| AttachError::multi(Path::new("/proc/self/exe"), 1, None, e))?;
                let with = calls();
                drop(link);
                let without = calls();
                let per_call = with.saturating_sub(without) / CALLS;
                best = Some(best.map_or(per_call, |b| b.min(per_call)));
            }
            Ok(())
        });
        self.free_cookies.push_back(cookie);
        self.free_ids.push_back(id);
        result.map(|()| best.unwrap_or_default())
    }

    /// Takes the probes' sites out of the traced processes for a while, keeping everything
    /// else (their ids, counters, argument specs): [`Engine::resume`] puts them back. For duty
    /// cycling; only on the uprobe-multi path, where this costs a link close per set (the
    /// sets of these probes go out whole).
    pub fn suspend(&mut self, ids: &[ProbeId]) -> Result<(), EngineError> {
        let mut sids = Vec::new();
        for id in ids {
            match self.attachments.get(id).map(|a| &a.links) {
                None => return Err(EngineError::UnknownProbe(*id)),
                Some(Links::PerSite(_)) => return Err(EngineError::NotMulti),
                Some(Links::InSet(sid)) if !sids.contains(sid) => sids.push(*sid),
                Some(Links::InSet(_)) => {}
            }
        }
        let mut closing = Vec::new();
        for sid in sids {
            let set = self.sets.get_mut(&sid).expect("a member's set exists");
            let links = std::mem::replace(&mut set.links, SetLinks::Suspended);
            closing.extend(self.take_set_links(sid, links));
        }
        // All at once: a start probe must not stay out longer than its done (or the reverse),
        // and the kernel's waits overlap.
        close_all(closing);
        Ok(())
    }

    /// Puts back the sites of a probe (and of its set) taken out by [`Engine::suspend`].
    pub fn resume(&mut self, id: ProbeId) -> Result<(), EngineError> {
        let sid = match self.attachments.get(&id).map(|a| &a.links) {
            None => return Err(EngineError::UnknownProbe(id)),
            Some(Links::PerSite(_)) => return Err(EngineError::NotMulti),
            Some(Links::InSet(sid)) => *sid,
        };
        let set = self.sets.get(&sid).expect("a member's set exists");
        if !matches!(set.links, SetLinks::Suspended) {
            return Ok(());
        }
        let result = self.link_set(sid, &set.relink, set.filter_slot);
        let set = self.sets.get_mut(&sid).expect("looked up above");
        match result {
            Ok(links) => {
                set.links = links;
                Ok(())
            }
            Err(e) => {
                // A group may be half made: the follower's copy goes with the next suspend
                // or the detach.
                set.links = SetLinks::Followed;
                Err(e)
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Detaches a probe: its semaphore drops back when no other tracer holds it (and, on the
    /// uprobe-multi path, once every probe attached with it is detached too).
    pub fn detach(&mut self, id: ProbeId) -> Result<(), EngineError> {
        close_all(self.unlink(id)?);
        Ok(())
    }

    /// Detaches a probe at once, the kernel's part (unregistering the uprobes, an RCU grace
    /// period or more) finishing on another thread: for a UI that must not freeze. Its hits
    /// stop being counted now; its sites may still trap for a moment.
    pub fn detach_in_background(&mut self, id: ProbeId) -> Result<(), EngineError> {
        let links = self.unlink(id)?;
        // The specs of its cookies stay until they are reused, and freed cookies are reused
        // last (after MAX_SITES others), long after the closes below are done.
        let closer = std::thread::Builder::new().name("usdtop-detach".into());
        if let Err(e) = closer.spawn(move || close_all(links)) {
            drop(e);
        }
        Ok(())
    }

    /// Detaches everything.
    pub fn detach_all(&mut self) {
        let mut links = Vec::new();
        let ids: Vec<ProbeId> = self.attachments.keys().copied().collect();
        for id in ids {
            links.extend(self.unlink(id).unwrap_or_default());
        }
        close_all(links);
    }

    /// Takes probe `id` out of the engine and returns the links to close: its own, or its
    /// set's when it was the set's last member (else it is retired in its set).
    fn unlink(&mut self, id: ProbeId) -> Result<Vec<Closing>, EngineError> {
        let a = self
            .attachments
            .remove(&id)
            .ok_or(EngineError::UnknownProbe(id))?;
        let (closing, free) = match a.links {
            Links::PerSite(l) => (l.into_iter().map(boxed).collect(), a.cookies.clone()),
            Links::InSet(sid) => {
                let set = self.sets.get_mut(&sid).expect("a member's set exists");
                set.members.retain(|m| *m != id);
                if set.members.is_empty() {
                    let set = self.sets.remove(&sid).expect("looked up above");
                    let mut free = a.cookies.clone();
                    free.extend(set.retired);
                    (self.take_set_links(sid, set.links), free)
                } else {
                    // Its sites stay linked with the others': they count for nobody now.
                    set.retired.extend(&a.cookies);
                    let (spec, _) = encode_site(RETIRED, Mode::Count, 0, 0, &[], &[], &[]);
                    for &c in &a.cookies {
                        let _ = self.specs.set(c, spec, 0);
                    }
                    (Vec::new(), Vec::new())
                }
            }
        };
        // Records already in the ring for these cookies are counted as stale, never misread:
        // cookies and ids go to the back of their free lists.
        let mut sites = self.sites.lock().unwrap();
        for c in &a.cookies {
            sites.remove(c);
        }
        drop(sites);
        self.free_cookies.extend(free);
        self.free_ids.push_back(id.0);
        if let Some(slot) = a.filter_slot {
            self.release_filter_slot(slot);
        }
        Ok(closing)
    }

    /// The links of set `sid` to close.
    fn take_set_links(&mut self, sid: u32, links: SetLinks) -> Vec<Closing> {
        match links {
            SetLinks::Multi(l) => vec![boxed(l)],
            SetLinks::Suspended => Vec::new(),
            SetLinks::Followed => {
                let group = self.follower.as_ref().and_then(|f| f.lock().remove(&sid));
                group
                    .map(|g| g.links.into_values().map(boxed).collect())
                    .unwrap_or_default()
            }
        }
    }

    /// The slot for this pid set: shared with attachments that filter on the same pids, or a
    /// new one seeded with the processes and their current descendants.
    fn filter_slot(&mut self, pids: &[u32]) -> Result<u32, EngineError> {
        let mut key = pids.to_vec();
        key.sort_unstable();
        key.dedup();
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|(k, _)| *k == key))
        {
            self.slots[i].as_mut().expect("found").1 += 1;
            return Ok(i as u32);
        }
        let i = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(EngineError::Full("process filters (64 distinct pid sets)"))?;
        self.slots[i] = Some((key, 1));
        let bit = 1u64 << i;
        for pid in with_descendants(pids) {
            let old = self.filter.get(&pid, 0).unwrap_or(0);
            if let Err(e) = self.filter.insert(pid, old | bit, 0) {
                self.release_filter_slot(i as u32);
                return Err(map_err("pid_filter")(e));
            }
        }
        // The first pid named fires most hits in the usual `-p PID` case.
        if let Some(&first) = pids.first() {
            if let Err(e) = self.filter_fast.set(i as u32, first, 0) {
                self.release_filter_slot(i as u32);
                return Err(map_err("filter_fast")(e));
            }
        }
        Ok(i as u32)
    }

    fn release_filter_slot(&mut self, slot: u32) {
        let Some((_, users)) = self.slots[slot as usize].as_mut() else {
            return;
        };
        *users -= 1;
        if *users > 0 {
            return;
        }
        self.slots[slot as usize] = None;
        let _ = self.filter_fast.set(slot, 0, 0);
        let bit = 1u64 << slot;
        let entries: Vec<(u32, u64)> = self.filter.iter().filter_map(Result::ok).collect();
        for (pid, mask) in entries {
            if mask & bit != 0 {
                let _ = if mask == bit {
                    self.filter.remove(&pid)
                } else {
                    self.filter.insert(pid, mask & !bit, 0)
                };
            }
        }
    }

    /// Waits (at most `timeout`) until every event committed before this call has been queued
    /// for the [`EventStream`]: use before a final report, e.g. once the traced process has exited.
    pub fn sync(&self, timeout: Duration) -> bool {
        let start = self.counters.passes.load(Ordering::Acquire);
        let deadline = std::time::Instant::now() + timeout;
        // One pass may have begun before the call; the one after it saw everything.
        while self.counters.passes.load(Ordering::Acquire) < start + 2 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// A map of the loaded program that the engine does not use itself (e.g. the pairing maps
    /// of src/probes/kernel/kpair.rs), once.
    pub fn take_map(&mut self, name: &str) -> Option<aya::maps::Map> {
        self._ebpf.take_map(name)
    }

    /// Events delivered, drops, unreadable strings, and per-probe hits (summed over CPUs).
    pub fn stats(&self) -> Stats {
        let sum = |v: Result<PerCpuValues<u64>, MapError>| v.map(|v| v.iter().sum()).unwrap_or(0);
        let probes: Vec<ProbeStats> = self
            .attachments
            .iter()
            .map(|(id, a)| ProbeStats {
                id: *id,
                probe: a.probe.clone(),
                hits: sum(self.hits.get(&id.0, 0)),
                unreadable: sum(self.unreadable.get(&id.0, 0)),
            })
            .collect();
        Stats {
            events: self.counters.events.load(Ordering::Relaxed),
            stale: self.counters.stale.load(Ordering::Relaxed),
            drops: sum(self.drops.get(&0, 0)),
            unreadable: probes.iter().map(|p| p.unreadable).sum(),
            slow_drops: self.slow_drops.get(),
            probes,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.detach_all();
        self.reader_control.closing.store(true, Ordering::Release);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// A link (or perf event) to close, whatever its kind.
type Closing = Box<dyn Send + std::fmt::Debug>;

fn boxed<T: Send + std::fmt::Debug + 'static>(t: T) -> Closing {
    Box::new(t)
}

/// Closes links in parallel: each close waits for the kernel to unregister its uprobes (an RCU
/// grace period, ~0.1 s here), so closing a 71-site probe's perf events one by one took 8 s; in
/// parallel the waits overlap.
fn close_all<T: Send>(links: Vec<T>) {
    const THREADS: usize = 64;
    if links.len() <= 1 {
        return drop(links);
    }
    let per_thread = links.len().div_ceil(THREADS);
    let mut links = links;
    std::thread::scope(|scope| {
        while !links.is_empty() {
            let chunk: Vec<T> = links.drain(..per_thread.min(links.len())).collect();
            // If no thread can be started, the chunk is closed here, just more slowly.
            if let Err(e) = std::thread::Builder::new().spawn_scoped(scope, move || drop(chunk)) {
                drop(e);
            }
        }
    });
}

/// Loads one of the object's uprobe programs and returns a handle to it.
fn load_uprobe(ebpf: &mut Ebpf, name: &str) -> Result<ProgramFd, EngineError> {
    let prog: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or_else(|| EngineError::Load(format!("program {name} missing")))?
        .try_into()
        .map_err(load_err)?;
    prog.load().map_err(load_err)?;
    prog.fd()
        .and_then(|fd| fd.try_clone().map_err(ProgramError::from))
        .map_err(load_err)
}

// The site [`Engine::measure_hit_cost`] attaches to: a `nop`, as `<sys/sdt.h>` writes at every
// USDT site. The kernel emulates a probed `nop`; any other instruction is single-stepped out of
// line, a second trap that costs several times more here, so the site must be a `nop` for the
// measure to be a USDT hit's.
std::arch::global_asm!(
    ".globl usdtop_calibration_site",
    ".type usdtop_calibration_site, @function",
    "usdtop_calibration_site:",
    "nop",
    "ret",
    ".size usdtop_calibration_site, . - usdtop_calibration_site",
);

extern "C" {
    fn usdtop_calibration_site();
}

/// One pass over the calibration site.
fn calibration_site() {
    // SAFETY: the function above touches no memory and no register but the return address.
    unsafe { usdtop_calibration_site() }
}

/// The offset in usdtop's own executable file of the code at `addr` (from /proc/self/maps).
fn own_file_offset(addr: u64) -> std::io::Result<u64> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    maps.lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (start, end) = f.first()?.split_once('-')?;
            let (start, end) = (
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            );
            let offset = u64::from_str_radix(f.get(2)?, 16).ok()?;
            (start <= addr && addr < end && f.get(5).map(Path::new) == Some(exe.as_path()))
                .then_some(addr - start + offset)
        })
        .ok_or_else(|| std::io::Error::other("not in a mapping of /proc/self/exe"))
}

/// The uprobe-multi loader, or why the per-site path is used instead.
fn multi_loader(
    ebpf: &Ebpf,
    fork_tracking: bool,
    force_per_site: bool,
) -> Result<MultiLoader, String> {
    if force_per_site {
        return Err("asked for".into());
    }
    if let Ok(v) = std::env::var(ATTACH_PATH_ENV) {
        match v.as_str() {
            "per-site" => return Err(format!("{ATTACH_PATH_ENV}=per-site")),
            "multi" | "" => {}
            other => {
                return Err(format!(
                    "{ATTACH_PATH_ENV}={other} is neither `multi` nor `per-site`"
                ))
            }
        }
    }
    // uprobe-multi exists from 6.6; its pid filter is right from 6.10.
    match super::limits::kernel_version() {
        Some(v) if v >= (6, 10) => {}
        Some((a, b)) => return Err(format!("kernel {a}.{b}: uprobe-multi needs 6.10")),
        None => return Err("unknown kernel version".into()),
    }
    // Children are linked when the fork hook reports them.
    if !fork_tracking {
        return Err("no fork tracking (kernel BTF)".into());
    }
    let mut maps = Vec::new();
    for (name, map) in ebpf.maps() {
        let fd = map_fd(map)
            .try_clone_to_owned()
            .map_err(|e| format!("map {name}: {e}"))?;
        maps.push((name.to_string(), fd));
    }
    MultiLoader::new(bpf::PROGRAM, maps)
}

/// The fd of any aya map.
fn map_fd(map: &aya::maps::Map) -> BorrowedFd<'_> {
    use aya::maps::Map::*;
    let data = match map {
        Array(m)
        | ArrayOfMaps(m)
        | BloomFilter(m)
        | CgroupArray(m)
        | CgroupStorage(m)
        | CgrpStorage(m)
        | CpuMap(m)
        | DevMap(m)
        | DevMapHash(m)
        | HashMap(m)
        | HashOfMaps(m)
        | InodeStorage(m)
        | LpmTrie(m)
        | LruHashMap(m)
        | PerCpuArray(m)
        | PerCpuCgroupStorage(m)
        | PerCpuHashMap(m)
        | PerCpuLruHashMap(m)
        | PerfEventArray(m)
        | ProgramArray(m)
        | Queue(m)
        | ReusePortSockArray(m)
        | RingBuf(m)
        | SockHash(m)
        | SockMap(m)
        | SkStorage(m)
        | Stack(m)
        | StackTraceMap(m)
        | Unsupported(m)
        | XskMap(m) => m,
    };
    data.fd().as_fd()
}

fn attach_fork_tracking(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
    for (prog, tp) in [
        (bpf::PROG_FORK, "sched_process_fork"),
        (bpf::PROG_EXIT, "sched_process_exit"),
    ] {
        let p: &mut BtfTracePoint = ebpf
            .program_mut(prog)
            .ok_or_else(|| format!("program {prog} missing"))?
            .try_into()
            .map_err(|e| format!("{prog}: {e}"))?;
        p.load(tp, &btf).map_err(|e| format!("{prog}: {e}"))?;
        p.attach().map_err(|e| format!("{prog}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_can_move_to_another_thread_or_task() {
        fn send<T: Send>() {}
        send::<Engine>();
    }
}
