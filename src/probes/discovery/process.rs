//! Process discovery: which ELF objects each process maps, and the probes in them.
//!
//! A scan reads `/proc/PID/maps` (through `procfs`) and keeps the file-backed executable
//! mappings, one [`MappedObject`] per (device, inode). Objects are opened through
//! `/proc/PID/root/<path>` so processes in containers resolve their own files, and through
//! `/proc/PID/map_files/` when the file was deleted after it was mapped. [`ProbeCache`] reads
//! each (device, inode) once, however many processes map it.
//!
//! Processes that cannot be scanned (zombies, kernel threads, gone, unreadable) are collected as
//! [`Skipped`] with a reason; they never abort a scan.

use super::elf::{read_probes, ElfError, ObjectProbes};
use procfs::process::{MMPermissions, MMapPath, Process};
use procfs::ProcError;
use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What identifies an object on disk: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `st_dev` encoding (`makedev(major, minor)`), so keys from maps and from stat agree.
    pub dev: u64,
    pub inode: u64,
}

impl ObjectKey {
    /// The key of a file on disk, from `stat`.
    pub fn of_path(path: &Path) -> std::io::Result<ObjectKey> {
        let meta = std::fs::metadata(path)?;
        Ok(ObjectKey {
            dev: meta.dev(),
            inode: meta.ino(),
        })
    }
}

/// One ELF object mapped by one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedObject {
    /// The path as the process mapped it (inside its own mount namespace), without
    /// the ` (deleted)` suffix.
    pub path: PathBuf,
    /// True when the file was deleted (or replaced) after the process mapped it.
    pub deleted: bool,
    pub key: ObjectKey,
    /// Where usdtop may open it, best first: `/proc/PID/root/<path>` (containers: maps shows
    /// paths inside the process's mount namespace), `<path>` itself (a chroot in our namespace:
    /// maps shows our path), `/proc/PID/map_files/<range>` (exactly the mapped inode; root only;
    /// the only way to deleted files).
    pub open_paths: Vec<PathBuf>,
    /// Lowest address the object is mapped at in this process (its load base).
    pub start: u64,
}

/// A live process and the objects it maps (executable first, then in address order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessInfo {
    pid: u32,
    comm: String,
    /// `/proc/PID/exe` as the process sees it, if readable.
    exe: Option<PathBuf>,
    objects: Vec<MappedObject>,
}

/// Why a process was not scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Zombie,
    KernelThread,
    /// No such process: it exited (possibly between being listed and being read).
    Exited,
    PermissionDenied,
    /// Anything else `/proc` answered with.
    Unreadable(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Zombie => f.write_str("zombie"),
            SkipReason::KernelThread => f.write_str("kernel thread"),
            SkipReason::Exited => f.write_str("no such process (it exited)"),
            SkipReason::PermissionDenied => f.write_str("permission denied"),
            SkipReason::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// A process left out of a scan, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub pid: u32,
    pub comm: Option<String>,
    pub reason: SkipReason,
}

impl From<ProcError> for SkipReason {
    fn from(e: ProcError) -> Self {
        match e {
            ProcError::NotFound(_) => SkipReason::Exited,
            ProcError::PermissionDenied(_) => SkipReason::PermissionDenied,
            ProcError::Io(e, _) if e.raw_os_error() == Some(libc::ESRCH) => SkipReason::Exited,
            other => SkipReason::Unreadable(other.to_string()),
        }
    }
}

/// `/proc/PID` (procfs takes an `i32`; a pid above that cannot exist: pid_max is at most 2^22).
fn open_process(pid: u32) -> Result<Process, SkipReason> {
    let pid = i32::try_from(pid).map_err(|_| SkipReason::Exited)?;
    Ok(Process::new(pid)?)
}

const DELETED_SUFFIX: &str = " (deleted)";

/// Read the objects a process maps. Only file-backed mappings with execute permission count:
/// a probe can only fire in code, and this keeps data files (locale archives, fonts, caches)
/// out of the picture.
fn scan_process(pid: u32) -> Result<ProcessInfo, SkipReason> {
    let proc = open_process(pid)?;
    let stat = proc.stat()?;
    if stat.state == 'Z' || stat.state == 'X' {
        return Err(SkipReason::Zombie);
    }
    if stat.flags & (libc::PF_KTHREAD as u32) != 0 {
        return Err(SkipReason::KernelThread);
    }
    let maps = proc.maps()?;
    let exe = proc.exe().ok().map(|p| strip_deleted(&p).0);
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut objects: Vec<MappedObject> = Vec::new();
    let mut seen: HashMap<ObjectKey, usize> = HashMap::new();
    // Executable mappings decide which objects count; the lowest mapping of each gives its base.
    let mut starts: HashMap<ObjectKey, u64> = HashMap::new();
    for map in maps.iter() {
        let MMapPath::Path(raw) = &map.pathname else {
            continue;
        };
        if map.inode == 0 {
            continue;
        }
        let key = ObjectKey {
            dev: libc::makedev(map.dev.0 as u32, map.dev.1 as u32),
            inode: map.inode,
        };
        let start = starts.entry(key).or_insert(map.address.0);
        *start = (*start).min(map.address.0);
        if !map.perms.contains(MMPermissions::EXECUTE) || seen.contains_key(&key) {
            continue;
        }
        let (path, deleted) = strip_deleted(raw);
        let map_file = PathBuf::from(format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            map.address.0, map.address.1
        ));
        let open_paths = if deleted {
            vec![map_file]
        } else {
            vec![
                root.join(path.strip_prefix("/").unwrap_or(&path)),
                path.clone(),
                map_file,
            ]
        };
        seen.insert(key, objects.len());
        objects.push(MappedObject {
            path,
            deleted,
            key,
            open_paths,
            start: 0,
        });
    }
    if objects.is_empty() && maps.iter().next().is_none() {
        // Kernel threads that slipped through the flag check have no mappings at all.
        return Err(SkipReason::KernelThread);
    }
    for obj in &mut objects {
        obj.start = starts.get(&obj.key).copied().unwrap_or(0);
    }
    // The executable first, then libraries in address order (maps is already in address order).
    if let Some(exe) = &exe {
        if let Some(i) = objects.iter().position(|o| &o.path == exe) {
            let main = objects.remove(i);
            objects.insert(0, main);
        }
    }
    Ok(ProcessInfo {
        pid,
        comm: stat.comm,
        exe,
        objects,
    })
}

/// Split the ` (deleted)` marker the kernel appends to unlinked files off a mapped path.
fn strip_deleted(path: &Path) -> (PathBuf, bool) {
    use std::os::unix::ffi::OsStrExt;
    let text = path.as_os_str().as_bytes();
    match text.strip_suffix(DELETED_SUFFIX.as_bytes()) {
        Some(rest) => (PathBuf::from(std::ffi::OsStr::from_bytes(rest)), true),
        None => (path.to_path_buf(), false),
    }
}

impl MappedObject {
    /// A path to this object that works from usdtop's own mount namespace (what the probes are
    /// read from and a uprobe is attached to): see `best_open_path`.
    pub fn open_path(&self) -> PathBuf {
        best_open_path(self)
    }
}

/// The first candidate that is the mapped inode; failing that (overlayfs reports the
/// lower layer's device in maps) the first that exists; failing that the first, for its error.
fn best_open_path(obj: &MappedObject) -> PathBuf {
    let exists: Vec<(&PathBuf, ObjectKey)> = obj
        .open_paths
        .iter()
        .filter_map(|p| ObjectKey::of_path(p).ok().map(|k| (p, k)))
        .collect();
    exists
        .iter()
        .find(|(_, k)| *k == obj.key)
        .or(exists.first())
        .map(|(p, _)| (*p).clone())
        .or_else(|| obj.open_paths.first().cloned())
        .unwrap_or_else(|| obj.path.clone())
}

/// The fields of `/proc/PID/stat` the front-ends read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `Z` (exited, not yet reaped)...
    pub state: char,
    pub ppid: u32,
    /// Clock ticks after boot: tells a reused pid from the old process.
    pub start_time: u64,
}

/// Reads `/proc/PID/stat`; `None` when the process is gone or the line is not understood.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// "pid (comm) state ppid ..." — comm may hold spaces and parentheses: fields start after the
/// last `)`.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether the process still runs: a zombie has exited and fires no probes.
pub fn is_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|s| s.state != 'Z')
}

/// Every process id in `/proc`, in ascending order.
pub fn all_pids() -> std::io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// The probes of one object, shared between every process that maps it. An object that cannot
/// be read keeps its error, so it is reported rather than silently empty.
pub type CachedObject = Arc<Result<ObjectProbes, ElfError>>;

/// An object of a process together with its (cached) probes.
#[derive(Debug, Clone)]
pub struct ObjectWithProbes {
    pub object: MappedObject,
    pub probes: CachedObject,
}

impl ObjectWithProbes {
    /// Number of probes (provider:name), 0 when the object could not be read.
    pub fn probe_count(&self) -> usize {
        self.probes.as_ref().as_ref().map_or(0, |o| o.probes.len())
    }
    pub fn site_count(&self) -> usize {
        self.probes.as_ref().as_ref().map_or(0, |o| o.site_count())
    }
    pub fn error(&self) -> Option<&ElfError> {
        self.probes.as_ref().as_ref().err()
    }
}

/// A scanned process with the probes of every object it maps.
#[derive(Debug, Clone)]
pub struct ProcessProbes {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<PathBuf>,
    pub objects: Vec<ObjectWithProbes>,
}

impl ProcessProbes {
    /// The objects that have at least one probe.
    pub fn with_probes(&self) -> impl Iterator<Item = &ObjectWithProbes> {
        self.objects.iter().filter(|o| o.probe_count() > 0)
    }
}

/// The result of scanning every process on the machine.
#[derive(Debug, Clone, Default)]
pub struct MachineScan {
    pub processes: Vec<ProcessProbes>,
    pub skipped: Vec<Skipped>,
}

/// Cache hit/miss counters (for benchmarks and the TUI status line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

/// Probes of ELF objects, read once per (device, inode).
///
/// A hit is checked against the file's size and modification time (one `stat`), because inode
/// numbers are reused: rebuild a binary and the new file may get the inode of one deleted
/// earlier, and a file can be rewritten in place.
#[derive(Debug, Default)]
pub struct ProbeCache {
    objects: HashMap<ObjectKey, CacheEntry>,
    stats: CacheStats,
}

#[derive(Debug)]
struct CacheEntry {
    probes: CachedObject,
    /// Size and mtime when read; None when they could not be checked (then trusted).
    stamp: Option<Stamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// The stamp of the object's first candidate path, if that is the mapped inode. (On overlayfs
/// the keys differ; such objects are trusted by key alone.)
fn stamp_of(obj: &MappedObject) -> Option<Stamp> {
    let meta = std::fs::metadata(obj.open_paths.first()?).ok()?;
    let key = ObjectKey {
        dev: meta.dev(),
        inode: meta.ino(),
    };
    (key == obj.key).then(|| Stamp {
        size: meta.size(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
    })
}

impl ProbeCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn clear(&mut self) {
        self.objects.clear();
    }

    /// The probes of a mapped object, read on first use. The returned object's `path` is the
    /// path as mapped by the first process that asked, not the `/proc/...` path it was read from.
    pub fn object(&mut self, obj: &MappedObject) -> CachedObject {
        let stamp = stamp_of(obj);
        if let Some(hit) = self.objects.get(&obj.key) {
            let unchanged = match (hit.stamp, stamp) {
                (Some(then), Some(now)) => then == now,
                _ => true,
            };
            if unchanged {
                self.stats.hits += 1;
                return hit.probes.clone();
            }
        }
        self.stats.misses += 1;
        let read = read_probes(&obj.open_path()).map(|mut o| {
            o.path = obj.path.clone();
            o
        });
        let probes = Arc::new(read);
        self.objects.insert(
            obj.key,
            CacheEntry {
                probes: probes.clone(),
                stamp,
            },
        );
        probes
    }

    /// The probes of a file named by path (keyed by its stat device and inode).
    pub fn file(&mut self, path: &Path) -> CachedObject {
        let key = match ObjectKey::of_path(path) {
            Ok(k) => k,
            Err(e) => return Arc::new(Err(ElfError::Io(e))),
        };
        self.object(&MappedObject {
            path: path.to_path_buf(),
            deleted: false,
            key,
            open_paths: vec![path.to_path_buf()],
            start: 0,
        })
    }

    /// Every object process `pid` maps, with its probes.
    pub fn process(&mut self, pid: u32) -> Result<ProcessProbes, SkipReason> {
        let info = scan_process(pid)?;
        Ok(self.attach_probes(info))
    }

    /// The objects of `pid` that contain probes (what "probes of pid P" means).
    pub fn probes_of_pid(&mut self, pid: u32) -> Result<Vec<ObjectWithProbes>, SkipReason> {
        Ok(self
            .process(pid)?
            .objects
            .into_iter()
            .filter(|o| o.probe_count() > 0)
            .collect())
    }

    fn attach_probes(&mut self, info: ProcessInfo) -> ProcessProbes {
        let objects = info
            .objects
            .into_iter()
            .map(|object| ObjectWithProbes {
                probes: self.object(&object),
                object,
            })
            .collect();
        ProcessProbes {
            pid: info.pid,
            comm: info.comm,
            exe: info.exe,
            objects,
        }
    }

    /// Scan every process on the machine. Processes that cannot be scanned are in `skipped`.
    pub fn scan_all(&mut self) -> std::io::Result<MachineScan> {
        let mut scan = MachineScan::default();
        for pid in all_pids()? {
            match scan_process(pid) {
                Ok(info) => scan.processes.push(self.attach_probes(info)),
                Err(reason) => scan.skipped.push(Skipped {
                    pid,
                    comm: open_process(pid)
                        .ok()
                        .and_then(|p| p.stat().ok())
                        .map(|s| s.comm),
                    reason,
                }),
            }
        }
        Ok(scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_a_comm_with_spaces_and_parentheses() {
        let line = "42 (a) b (c) Z 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 987 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.state, s.ppid, s.start_time), ('Z', 7, 987));
        assert_eq!(parse_stat("42 (a"), None);
    }

    #[test]
    fn this_process_is_alive_and_has_a_parent() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert_eq!(
            proc_stat(me).unwrap().ppid,
            std::os::unix::process::parent_id()
        );
    }

    #[test]
    fn deleted_suffix_is_split_off() {
        assert_eq!(
            strip_deleted(Path::new("/usr/lib/libfoo.so (deleted)")),
            (PathBuf::from("/usr/lib/libfoo.so"), true)
        );
        assert_eq!(
            strip_deleted(Path::new("/usr/bin/python3.11")),
            (PathBuf::from("/usr/bin/python3.11"), false)
        );
    }

    #[test]
    fn this_process_maps_its_own_executable_first() {
        let info = scan_process(std::process::id()).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(info.objects[0].path, exe);
        assert!(info
            .objects
            .iter()
            .any(|o| o.path.to_string_lossy().contains("libc.so")));
        let mut keys: Vec<_> = info.objects.iter().map(|o| o.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), info.objects.len(), "objects are deduplicated");
    }

    #[test]
    fn kernel_threads_and_missing_processes_are_skipped_with_a_reason() {
        // kthreadd is pid 2 on every Linux machine that is not a pid namespace.
        if let Ok(stat) = Process::new(2).and_then(|p| p.stat()) {
            if stat.comm == "kthreadd" {
                assert_eq!(scan_process(2), Err(SkipReason::KernelThread));
            }
        }
        assert_eq!(scan_process(i32::MAX as u32), Err(SkipReason::Exited));
        assert_eq!(scan_process(u32::MAX), Err(SkipReason::Exited));
    }

    #[test]
    fn a_machine_scan_finds_this_process_and_says_why_others_were_skipped() {
        let mut cache = ProbeCache::new();
        let scan = cache.scan_all().unwrap();
        let me = std::process::id();
        assert!(scan.processes.iter().any(|p| p.pid == me));
        for s in &scan.skipped {
            assert!(!scan.processes.iter().any(|p| p.pid == s.pid));
        }
        if let Some(k) = scan.skipped.iter().find(|s| s.pid == 2) {
            assert_eq!(k.reason, SkipReason::KernelThread);
            assert_eq!(k.comm.as_deref(), Some("kthreadd"));
        }
    }

    #[test]
    fn a_file_rewritten_in_place_is_read_again() {
        let dir = std::env::temp_dir().join(format!("usdtop-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("obj");
        std::fs::write(&path, b"not ELF at first").unwrap();
        let mut cache = ProbeCache::new();
        assert!(matches!(cache.file(&path).as_ref(), Err(ElfError::NotElf)));
        assert!(matches!(cache.file(&path).as_ref(), Err(ElfError::NotElf)));
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1 });
        // Same inode, new contents (and size): the cached answer must not be reused.
        let inode = ObjectKey::of_path(&path).unwrap();
        std::fs::write(&path, std::fs::read("/usr/bin/true").unwrap()).unwrap();
        assert_eq!(ObjectKey::of_path(&path).unwrap(), inode);
        assert!(cache.file(&path).as_ref().is_ok());
        assert_eq!(cache.stats().misses, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cache_reads_each_object_once() {
        let mut cache = ProbeCache::new();
        let me = std::process::id();
        let first = cache.process(me).unwrap();
        let misses = cache.stats().misses;
        assert_eq!(misses as usize, first.objects.len());
        cache.process(me).unwrap();
        assert_eq!(cache.stats().misses, misses, "second scan reads nothing");
        assert_eq!(cache.stats().hits as usize, first.objects.len());
    }
}
