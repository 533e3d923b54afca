//! The discovery worker: scans /proc off the UI thread and sends what it found (the app makes
//! the views).
//! New pids are scanned every refresh; every process is re-scanned now and then so libraries
//! loaded later (dlopen) show up. Parsed objects are cached by device+inode (ProbeCache).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use usdtop::app::{ProcessScan, ScannedObject};
use usdtop::probes::discovery::process::{
    all_pids, proc_stat, CachedObject, ObjectKey, ObjectWithProbes, ProbeCache,
};
use usdtop::probes::discovery::targets::attach_path;

/// How often the pid list is re-read.
const REFRESH: Duration = Duration::from_secs(2);
/// How often every process's mappings are re-read.
const FULL_RESCAN: Duration = Duration::from_secs(30);

/// Parsed objects by mapped path, with the path to open them by; the runtime looks probes up
/// here when it attaches.
pub type ObjectIndex = Arc<Mutex<HashMap<String, (String, CachedObject)>>>;

pub fn spawn(first_pid: Option<u32>, tx: mpsc::Sender<Vec<ProcessScan>>, index: ObjectIndex) {
    let _ = std::thread::Builder::new()
        .name("usdtop-discovery".into())
        .spawn(move || Worker::new(index).run(first_pid, tx));
}

struct Worker {
    cache: ProbeCache,
    index: ObjectIndex,
    /// pid → (start time, scan), so unchanged processes are not re-read.
    known: HashMap<u32, (u64, ProcessScan)>,
    objects: HashMap<(ObjectKey, String), Arc<ScannedObject>>,
    /// Pids seen once, not scanned yet, with their start times.
    newcomers: HashMap<u32, u64>,
}

impl Worker {
    fn new(index: ObjectIndex) -> Worker {
        Worker {
            cache: ProbeCache::new(),
            index,
            known: HashMap::new(),
            objects: HashMap::new(),
            newcomers: HashMap::new(),
        }
    }

    fn run(mut self, first_pid: Option<u32>, tx: mpsc::Sender<Vec<ProcessScan>>) {
        // The process asked for comes first, so `-p`/`--demo` show it before a full scan ends.
        if let Some(pid) = first_pid {
            if let Some(view) = self.scan(pid) {
                if tx.blocking_send(vec![view]).is_err() {
                    return;
                }
            }
        }
        let mut last_full = Instant::now();
        let mut first = true;
        loop {
            // The first scan takes everything there is.
            let full = std::mem::take(&mut first) || last_full.elapsed() >= FULL_RESCAN;
            if full {
                last_full = Instant::now();
            }
            let list = self.refresh(full);
            if tx.blocking_send(list).is_err() {
                return;
            }
            std::thread::sleep(REFRESH);
        }
    }

    fn refresh(&mut self, full: bool) -> Vec<ProcessScan> {
        let pids = match all_pids() {
            Ok(p) => p,
            Err(_) => return self.known.values().map(|(_, v)| v.clone()).collect(),
        };
        let mut next = HashMap::with_capacity(pids.len());
        let mut newcomers = HashMap::new();
        for pid in pids {
            let start = start_time(pid);
            match self.known.remove(&pid) {
                Some((s, view)) if s == start && !full => {
                    next.insert(pid, (s, view));
                }
                // A process is scanned once it has lived through one refresh: compilers and
                // shell pipelines come and go by the hundred on a busy machine, and reading
                // their maps would be most of usdtop's idle cost.
                None if !full && self.newcomers.get(&pid) != Some(&start) => {
                    newcomers.insert(pid, start);
                }
                _ => {
                    if let Some(view) = self.scan(pid) {
                        next.insert(pid, (start, view));
                    }
                }
            }
        }
        self.known = next;
        self.newcomers = newcomers;
        self.known.values().map(|(_, v)| v.clone()).collect()
    }

    fn scan(&mut self, pid: u32) -> Option<ProcessScan> {
        let p = self.cache.process(pid).ok()?;
        let objects = p.objects.iter().map(|o| self.object(o)).collect();
        let view = ProcessScan {
            pid,
            comm: p.comm,
            exe: p.exe.map(|e| e.display().to_string()),
            objects,
        };
        self.known.insert(pid, (start_time(pid), view.clone()));
        Some(view)
    }

    fn object(&mut self, o: &ObjectWithProbes) -> Arc<ScannedObject> {
        let path = o.object.path.display().to_string();
        if let Some(v) = self.objects.get(&(o.object.key, path.clone())) {
            return v.clone();
        }
        let attach_path = attach_path(&o.object).display().to_string();
        self.index
            .lock()
            .unwrap()
            .insert(path.clone(), (attach_path.clone(), o.probes.clone()));
        let scanned = Arc::new(ScannedObject {
            key: o.object.key,
            path: path.clone(),
            attach_path,
            probes: o.probes.clone(),
        });
        self.objects.insert((o.object.key, path), scanned.clone());
        scanned
    }
}

/// The process start time (field 22 of /proc/PID/stat), to tell a reused pid from the old one.
fn start_time(pid: u32) -> u64 {
    proc_stat(pid).map_or(0, |s| s.start_time)
}
